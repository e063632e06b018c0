"""ONNX Runtime Training: training cells on artifacts the PyTorch backend writes (artifacts.py)."""
from toolkit.device.backends import Backend, register


@register
class OnnxRuntimeTraining(Backend):
    name = "onnxruntime-training"
    jobs = {"training": ".trainer:run"}
    host_packages = ("onnxruntime-training-cpu",)
