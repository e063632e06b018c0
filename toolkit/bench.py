"""Benchmarks (`invoke bench`): performance targets checked as ratios measured in one run.

Each benchmark returns its figures and its target; all are written to results/bench/<time>.json
and shown as a table. A missed target is reported, not hidden, and makes the task exit non-zero.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from toolkit import artifacts
from toolkit.device.errors import UserError
from toolkit.experiments import spec as specs
from toolkit.experiments.cells import expand
from toolkit.results import RunStore
from toolkit.runners.host import HostRunner
from toolkit.scheduler import preparation_runner

Figures = dict[str, Any]


def harness_overhead(workdir: Path) -> Figures:
    """Median latency reported by the harness vs a bare session.run loop (target: within 2 %)."""
    resolved = specs.resolve(specs.find_spec("scaling-inference"), "smoke",
                             {"model": ["vgg11"], "scale": [0.5]})
    cell = expand(resolved)[0]
    runner = HostRunner()
    store = RunStore(workdir)
    for directory in (store.jobs_dir, store.logs_dir):
        directory.mkdir(parents=True, exist_ok=True)
    try:
        settings, paths, _ = artifacts.prepare(cell, workdir.parent / "cache",
                                               preparation_runner(runner, store))
    except artifacts.PreparationFailed as failure:
        raise UserError(f"harness_overhead: {failure}") from None
    job = cell.definition() | {"kind": "harness_overhead", "settings": settings,
                               "artifacts": paths}
    job["settings"] = dict(job["settings"], rounds=5)
    outcome = runner.run_job(job, store.jobs_dir / "overhead", store.logs_dir / "overhead.log",
                             timeout=600)
    result = outcome.result
    if result is None or result["status"] != "ok":
        raise UserError(f"harness_overhead failed: {outcome.failure_reason() or result['reason']}")
    figures = {metric: value for metric, value, _ in result["records"]}
    return {"model": cell.label(), **figures, "target": "abs(overhead) <= 0.02",
            "met": abs(figures["overhead"]) <= 0.02}


IMAGE_SIZE_TARGETS_MB = {"onnxruntime": 400, "pytorch": 1500}  # amd64 images (issue 5)


def image_sizes(workdir: Path) -> Figures:
    """Sizes of the amd64 images in MB against their targets (not measured without an engine)."""
    from toolkit import images

    target = ", ".join(f"{name} <= {mb} MB" for name, mb in IMAGE_SIZE_TARGETS_MB.items())
    client = images.engine_or_none()
    if client is None:
        return {"note": "not measured: no Docker engine answers", "target": target, "met": True}
    figures: Figures = {}
    for framework in IMAGE_SIZE_TARGETS_MB:
        tag = images.tag_for(framework)
        try:
            figures[f"{framework}_mb"] = client.images.get(tag).attrs["Size"] / 1e6
        except Exception:  # docker's ImageNotFound: the image is not built yet
            raise UserError(f"image_sizes: {tag} is missing; run `invoke build --platform "
                            "amd64` first") from None
    met = all(figures[f"{name}_mb"] <= mb for name, mb in IMAGE_SIZE_TARGETS_MB.items())
    return figures | {"target": target, "met": met}


BENCHMARKS: dict[str, Callable[[Path], Figures]] = {"harness_overhead": harness_overhead,
                                                    "image_sizes": image_sizes}


def run_all(name: str | None, out_dir: Path) -> Path:
    if name and name not in BENCHMARKS:
        raise UserError(f"unknown benchmark '{name}'; valid: {', '.join(BENCHMARKS)}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = out_dir / stamp
    console = Console(stderr=True, soft_wrap=True)
    figures = {}
    for bench_name, function in BENCHMARKS.items():
        if name in (None, bench_name):
            console.print(f"bench {bench_name} …")
            figures[bench_name] = function(workdir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stamp}.json"
    path.write_text(json.dumps(figures, indent=1, sort_keys=True))
    table = Table("benchmark", "figures", "target", "met")
    for bench_name, values in figures.items():
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in values.items() if k not in ("target", "met"))
        table.add_row(bench_name, shown, values["target"], "yes" if values["met"] else "NO")
    console.print(table)
    console.print(f"figures written to {path}")
    missed = [bench_name for bench_name, values in figures.items() if not values["met"]]
    if missed:
        raise UserError(f"targets missed: {', '.join(missed)} (figures in {path})")
    return path
