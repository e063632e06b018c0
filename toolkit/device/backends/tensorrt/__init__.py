"""TensorRT: inference engines from the ONNX export, and training steps written with the
Network Definition API (emitter.py from the framework-neutral step graph) on CUDA devices.

Nothing here imports tensorrt or pycuda at module level: they are imported inside the functions
that need them, so these modules import (and are tested) on hosts without a GPU. All version
differences of TensorRT 8.2 / 8.5 / 10.x live in adapter.py.
"""
from toolkit.device.backends import Backend, register


@register
class TensorRT(Backend):
    name = "tensorrt"
    jobs = {"inference": ".inference:run", "training": ".training:run"}
    host_packages = ()  # GPU only: never run by the host runner of a CPU machine
    reads_onnx = True
