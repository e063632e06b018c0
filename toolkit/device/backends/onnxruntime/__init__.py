"""ONNX Runtime: inference cells on the model's ONNX export, and the harness-overhead check."""
from toolkit.device.backends import Backend, register


@register
class OnnxRuntime(Backend):
    name = "onnxruntime"
    jobs = {"inference": ".inference:run", "harness_overhead": ".inference:harness_overhead"}
    # The host runner's CPU training build also serves inference; onnx checks the exports.
    host_packages = ("onnxruntime-training-cpu", "onnx")
    reads_onnx = True
