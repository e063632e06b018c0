"""Preparation jobs: artifacts that measured cells consume (run in the PyTorch environment)."""
import os


def export_onnx(job):
    # type: (Dict[str, Any]) -> Dict[str, Any]
    """Export one model at one width list to ONNX; written under a temporary name, then renamed."""
    import onnx
    import torch

    from toolkit.device.models.export import export_onnx as export

    settings, target = job["settings"], job["artifacts"]["onnx"]
    tmp = "{}.tmp.{}".format(target, os.getpid())
    info = export(settings["model"], settings["widths"], tmp, classes=int(settings["classes"]),
                  batch=int(job["coords"]["batch"]), seed=int(settings["seed"]),
                  opset=int(settings["opset"]))
    os.replace(tmp, target)
    return {"records": [], "settings": info,
            "versions": {"torch": torch.__version__, "onnx": onnx.__version__}}
