"""Inference cells: the scenario (scenario.py, the one sequence) and the onnxruntime backend
(ort.py); each framework's module exposes run(job) -> result dict (TensorRT's:
toolkit.device.tensorrt.inference)."""
