"""Preparation jobs: what a cell consumes (an ONNX export, a NeuralScale search, ...), made by a
device-side job run by the same runner as the cells and cached by the hash of what defines it.
A piece already in the cache is not made again, so runs resume and share work. Which pieces a
cell needs is its experiment kind's business (toolkit/experiments/kinds/<kind>/prepare.py).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from toolkit.experiments.cells import stable_hash

Record = tuple[str, float, str]
# Runs one preparation job; returns None on success or the reason it failed.
JobRunner = Callable[[str, dict[str, Any], float], str | None]


class PreparationFailed(Exception):
    """A preparation job failed: the cell is recorded as failed with this reason."""


def cached_job(kind: str, settings: dict[str, Any], coords: dict[str, Any], name: str,
               cache_root: Path, suffix: str, stem: str = "") -> dict[str, Any]:
    """A preparation job whose artifact is cached as <name>/<stem>-<hash><suffix>; the stem is
    what the file holds (by default the model)."""
    key = stable_hash({"kind": kind, "settings": settings, "coords": coords})
    path = cache_root / name / f"{stem or settings['model']}-{key}{suffix}"
    return {"kind": kind, "coords": coords, "settings": settings,
            "artifacts": {name: str(path)}, "key": key}


def ensure(job: dict[str, Any], run: JobRunner, timeout: float) -> Path:
    """The job's artifact: from the cache, else made by running the job."""
    (name, target), = job["artifacts"].items()
    path = Path(target)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        reason = run(f"{name}-{job['key']}", job, timeout)
        if reason is not None:
            raise PreparationFailed(f"{job['kind']}: {reason}")
        if not path.is_file():
            raise PreparationFailed(f"{job['kind']}: finished without writing {path.name}")
    return path
