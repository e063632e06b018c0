"""Preparation jobs that need PyTorch: artifacts that measured cells consume."""
import json
import os
import time


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


def neuralscale_search(job):
    # type: (Dict[str, Any]) -> Dict[str, Any]
    """The NeuralScale architecture search; its JSON artifact reproduces the architectures."""
    import torch

    from toolkit.device.data import load_dataset
    from toolkit.device.scaling.neuralscale import architecture_descent, save_artifact

    settings = job["settings"]
    # The synthetic set is made with the experiment's class count (e.g. 100 to search a
    # network whose other architectures come from CIFAR-100 searches).
    extra = {"classes": int(settings["classes"])} if settings["dataset"] == "synthetic" else {}
    dataset = load_dataset(settings["dataset"], seed=int(settings["seed"]), **extra)
    if dataset.classes != int(settings["classes"]):
        raise ValueError("data set {} has {} classes, the experiment says {}".format(
            settings["dataset"], dataset.classes, settings["classes"]))
    started = time.time()
    artifact = architecture_descent(settings["model"], dataset, config=settings["neuralscale"],
                                    seed=int(settings["seed"]))
    save_artifact(artifact, job["artifacts"]["neuralscale"])
    return {"records": [("search_seconds", time.time() - started, "s")],
            "versions": {"torch": torch.__version__}}


def train_accuracy(job):
    # type: (Dict[str, Any]) -> Dict[str, Any]
    """Train one architecture for its accuracy; the result JSON is the artifact."""
    import torch

    from toolkit.device.backends.pytorch.accuracy import train_accuracy as train
    from toolkit.device.data import load_dataset

    settings, target = job["settings"], job["artifacts"]["accuracy"]
    dataset = load_dataset(settings["dataset"], seed=int(settings["seed"]))
    result = train(settings["model"], settings["widths"], dataset,
                   config=settings["accuracy_training"], seed=int(settings["seed"]),
                   cache_dir=os.path.join(os.path.dirname(target), "checkpoints"))
    tmp = "{}.tmp.{}".format(target, os.getpid())
    with open(tmp, "w") as handle:
        json.dump(result, handle)
    os.replace(tmp, target)
    return {"records": [("accuracy", float(result["max_test_acc"]), "ratio")],
            "versions": {"torch": torch.__version__}}
