"""Training backends of the device side (PyTorch, ONNX Runtime Training, TensorRT).

`pytorch_accuracy`: the accuracy protocol (train from scratch, max test accuracy over epochs)
with result caching and checkpoints.
"""
