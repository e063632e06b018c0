"""TensorRT backends of the device side: the training-step emitter and runtime, and inference.

Nothing here imports tensorrt or pycuda at module level: they are imported inside the functions
that need them, so these modules import (and are tested) on hosts without a GPU. All version
differences of TensorRT 8.2 / 8.5 / 10.x live in adapter.py.
"""
