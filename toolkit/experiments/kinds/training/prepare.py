"""What a training cell consumes: its data set as an .npz where a host-side library makes it,
and, for ONNX Runtime Training, the training graphs. Each is a preparation job
(toolkit/artifacts.py) run through the cell's runner."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from toolkit.artifacts import JobRunner, PreparationFailed, cached_job, ensure
from toolkit.experiments.cells import Cell
from toolkit.experiments.kinds.base import Prepared

# Data sets made by host-side libraries the images lack (digits: scikit-learn): training cells
# read them from an .npz written on the host.
HOST_MADE_DATASETS = ("digits",)


def dataset_job(cell: Cell, cache_root: Path) -> dict[str, Any]:
    settings = {"data": cell.settings["data"], "seed": cell.settings["seed"]}
    return cached_job("export_dataset", settings, {"framework": "numpy"}, "dataset_file",
                      cache_root, ".npz", stem=cell.settings["dataset"])


def prepare(cell: Cell, cache_root: Path, run: JobRunner) -> Prepared:
    """(the cell's settings, artifact paths for the job, no records)."""
    settings, paths = dict(cell.settings), {}
    timeout = cell.settings["prepare_timeout_seconds"]
    if cell.settings["dataset"] in HOST_MADE_DATASETS:
        paths["dataset_file"] = str(ensure(dataset_job(cell, cache_root), run, timeout))
    if cell.coords["framework"] == "onnxruntime-training":
        # The training graphs, generated with torch from the cell's freeze spec; the job
        # caches them by content under cache_dir, so a second call only confirms the hit.
        paths["cache_dir"] = str(cache_root / "ort-training")
        job = {"kind": "ort_training_artifacts", "coords": cell.coords | {"framework": "pytorch"},
               "settings": settings, "artifacts": paths}
        reason = run(f"ort-training-{cell.id}", job, timeout)
        if reason is not None:
            raise PreparationFailed(f"ort_training_artifacts: {reason}")
    return settings, paths, []
