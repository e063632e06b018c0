"""Artifacts that cells consume (ONNX exports), cached by the hash of what defines them."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from toolkit.experiments.cells import Cell, stable_hash

# Frameworks whose inference cells load an ONNX export of the cell's model.
ONNX_CONSUMERS = ("onnxruntime", "tensorrt")


def onnx_export_job(cell: Cell, cache_root: Path) -> dict[str, Any]:
    """The export job for a cell's model; its output path is unique to the export's inputs."""
    settings = {name: cell.settings[name] for name in ("model", "widths", "classes", "seed",
                                                       "opset")}
    coords = {"framework": "pytorch", "batch": cell.coords["batch"]}
    key = stable_hash({"settings": settings, "coords": coords})
    path = cache_root / "onnx" / f"{settings['model']}-b{coords['batch']}-{key}.onnx"
    return {"kind": "export_onnx", "coords": coords, "settings": settings,
            "artifacts": {"onnx": str(path)}, "key": key}


def jobs_for(cell: Cell, cache_root: Path) -> dict[str, dict[str, Any]]:
    """Artifact name -> the job that makes it, for what this cell needs."""
    if cell.kind == "inference" and cell.coords["framework"] in ONNX_CONSUMERS:
        return {"onnx": onnx_export_job(cell, cache_root)}
    return {}
