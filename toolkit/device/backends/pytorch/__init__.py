"""PyTorch: training cells, the measured peak, the bare loop the training harness-overhead
bench compares cells with, and the preparation jobs (ONNX export, the NeuralScale search,
accuracy training, ONNX Runtime Training's artifacts) that need torch."""
from toolkit.device.backends import Backend, register


@register
class PyTorch(Backend):
    name = "pytorch"
    jobs = {
        "training": ".trainer:run",
        # The training harness-overhead bench: the bare loop alone, and against the cell's path.
        "training_bare": ".bare:run",
        "training_harness_overhead": ".bare:harness_overhead",
        "peak": "toolkit.device.training.peak:run_torch",
        "export_onnx": ".prepare:export_onnx",
        "neuralscale_search": ".prepare:neuralscale_search",
        "train_accuracy": ".prepare:train_accuracy",
        # Written with torch, read by the onnxruntime-training cells.
        "ort_training_artifacts": "toolkit.device.backends.onnxruntime_training.artifacts:generate",
    }
    host_packages = ("torch",)
