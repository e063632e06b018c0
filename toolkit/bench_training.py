"""The training harness-overhead benchmark (`invoke bench --name training_harness_overhead`).

What a training cell's step costs over a bare PyTorch loop with the same settings
(toolkit/device/backends/pytorch/bare.py), for the quick profile's PyTorch CPU fp32 cell
(VGG-16, batch 64), per runner (the host process always; Docker when an engine answers and
holds this checkout's PyTorch image), measured two ways:

- in one process (the target, as the inference bench): the cell's own path (TorchBackend,
  common.timed_training) and the bare loop in alternating blocks; the per-step work of the
  harness, with the machine's drift cancelled between neighbouring blocks;
- in alternating processes (recorded): the cell as a real job and the bare loop as a job of
  its own through the same runner, so the process or container, its threads and affinity and
  the host following its log count too. Each process carries a placement bias of a few %
  (see bench.HARNESS_PROCESSES) and a neighbour's load hits one process, not its pair, so a
  few pairs resolve a process-level cost of several % (issue 25 reported ~10 %) on a quiet
  machine, not one of 2 %.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from toolkit import artifacts
from toolkit.errors import UserError
from toolkit.experiments import kinds
from toolkit.experiments import spec as specs
from toolkit.experiments.cells import Cell
from toolkit.experiments.expansion import expand
from toolkit.results import RunStore, record_values
from toolkit.runners.host import HostRunner
from toolkit.scheduler import preparation_runner

Figures = dict[str, Any]

OVERHEAD_TARGET = 0.02
# Freeze 10: the cheapest step of the study, so a fixed per-step cost weighs most there.
OVERHEAD_FREEZE = 10
OVERHEAD_ROUNDS = 5  # alternating block pairs in one process (odd: the median is a round's)
OVERHEAD_BLOCK_STEPS = 4  # timed steps per block, after one warm-up step
OVERHEAD_PAIRS = 3  # cell and bare processes, order alternating
OVERHEAD_STEPS = 8  # timed steps per process (count only, no minimum duration)


def overhead_cell() -> Cell:
    """The quick profile's PyTorch CPU fp32 training cell at batch 64, freeze 10."""
    resolved = specs.resolve(specs.find_spec("training"), "quick", {
        "framework": ["pytorch"], "device": ["cpu"], "precision": ["fp32"], "batch": [64],
        "freeze": [OVERHEAD_FREEZE]})
    return next(cell for cell in expand(resolved) if cell.kind == "training")


def cell_job(cell: Cell, settings: dict[str, Any], paths: dict[str, str]) -> dict[str, Any]:
    """The cell's job with a count-only protocol: the profile's warm-up steps, then timed
    steps."""
    job = cell.definition() | {"settings": settings, "artifacts": paths}
    job["protocol"] = dict(job["protocol"], warmup_seconds=0.0, min_count=OVERHEAD_STEPS,
                           min_seconds=0.0)
    return job


def bare_job(job: dict[str, Any]) -> dict[str, Any]:
    """The bare loop's job: the cell's own job (coords, settings, protocol), another kind."""
    return job | {"kind": "training_bare"}


def _step_p50(outcome: Any, what: str) -> tuple[float, dict[str, Any]]:
    """The step-time median and settings of one job. A cell whose spread exceeds the profile's
    max CV (invalid) still measured its steps: its median counts, as the bare loop's does."""
    result = outcome.result
    if result is None or result["status"] not in ("ok", "invalid"):
        reason = outcome.failure_reason() or f"{result['status']}: {result['reason']}"
        raise UserError(f"training_harness_overhead: the {what} failed: {reason}")
    return record_values(result["records"])["step_time_p50"], result["settings"]


def measure_pairs(runner: Any, job: dict[str, Any], workdir: Path,
                  pairs: int = OVERHEAD_PAIRS) -> Figures:
    """Cell and bare loop alternately through one runner: each pair's ratio (cell step p50 over
    bare step p50), their median - 1 as the overhead, and the threads each side ran with."""
    store = RunStore(workdir)
    for directory in (store.jobs_dir, store.logs_dir):
        directory.mkdir(parents=True, exist_ok=True)
    jobs = {"cell": job, "bare": bare_job(job)}
    steps: dict[str, list[float]] = {"cell": [], "bare": []}
    threads: dict[str, int] = {}
    for index in range(pairs):
        order = ("cell", "bare") if index % 2 == 0 else ("bare", "cell")
        for name in order:
            outcome = runner.run_job(jobs[name], store.jobs_dir / f"{name}-{index}",
                                     store.logs_dir / f"{name}-{index}.log", timeout=600)
            p50, used = _step_p50(outcome, name)
            steps[name].append(p50)
            threads[name] = int(used["threads"])
    ratios = [cell / bare for cell, bare in zip(steps["cell"], steps["bare"], strict=True)]
    return {"overhead": statistics.median(ratios) - 1.0,
            "overhead_min": min(ratios) - 1.0, "overhead_max": max(ratios) - 1.0,
            "cell_step_s": statistics.median(steps["cell"]),
            "bare_step_s": statistics.median(steps["bare"]),
            "threads_cell": threads["cell"], "threads_bare": threads["bare"]}


def _docker_runner(workdir: Path) -> tuple[Any, str]:
    """(a Docker runner, '') or (None, why Docker is not measured)."""
    from toolkit.images.engine import engine_or_none
    from toolkit.images.naming import stale_images, tag_for
    from toolkit.runners.docker_runner import DockerRunner

    client = engine_or_none()
    if client is None:
        return None, "no Docker engine answers"
    problems = stale_images(client, ["pytorch"])
    if problems:
        return None, f"{'; '.join(problems)} (invoke build --framework pytorch)"
    tag = tag_for("pytorch")
    return DockerRunner(client, lambda framework: tag, workdir), ""


def in_process_job(job: dict[str, Any]) -> dict[str, Any]:
    """The one-process comparison's job: the cell's job, alternating short blocks."""
    return job | {"kind": "training_harness_overhead",
                  "settings": job["settings"] | {"rounds": OVERHEAD_ROUNDS},
                  "protocol": job["protocol"] | {"warmup_count": 1,
                                                 "min_count": OVERHEAD_BLOCK_STEPS}}


def measure_in_process(runner: Any, job: dict[str, Any], workdir: Path) -> Figures:
    """The one-process comparison through `runner`: its overhead, step medians and threads."""
    outcome = runner.run_job(in_process_job(job), workdir / "in-process",
                             workdir / "in-process.log", timeout=900)
    result = outcome.result
    if result is None or result["status"] != "ok":
        reason = outcome.failure_reason() or f"{result['status']}: {result['reason']}"
        raise UserError(f"training_harness_overhead: the one-process comparison failed: "
                        f"{reason}")
    values = record_values(result["records"])
    return {"overhead": values["overhead"], "cell_step_s": values["cell_p50"],
            "bare_step_s": values["bare_p50"],
            "threads_cell": int(result["settings"]["cell"]["threads"]),
            "threads_bare": int(result["settings"]["bare"]["threads"])}


def training_harness_overhead(workdir: Path) -> Figures:
    """Step time of the quick profile's PyTorch CPU fp32 training cell (VGG-16, batch 64,
    freeze 10) through the harness vs a bare PyTorch loop with the same settings, per runner:
    in one process, the median over alternating blocks of cell step p50 / bare step p50, - 1
    (target: at most 2 % on every runner measured, with the same threads on both sides); over
    alternating processes the same ratio, recorded (see the module docstring)."""
    cell = overhead_cell()
    host = HostRunner()
    store = RunStore(workdir)
    for directory in (store.jobs_dir, store.logs_dir):
        directory.mkdir(parents=True, exist_ok=True)
    try:
        settings, paths, _ = kinds.prepare(cell, workdir / "cache",
                                           preparation_runner(host, store))
    except artifacts.PreparationFailed as failure:
        raise UserError(f"training_harness_overhead: {failure}") from None
    job = cell_job(cell, settings, paths)
    figures: Figures = {"cell": cell.label(), "protocol": "quick", "rounds": OVERHEAD_ROUNDS,
                        "block_steps": OVERHEAD_BLOCK_STEPS, "pairs": OVERHEAD_PAIRS,
                        "process_steps": OVERHEAD_STEPS}
    runners = {"host": host}
    docker, reason = _docker_runner(workdir)  # its mount holds the cache and the jobs
    if docker is None:
        figures["docker"] = f"not run: {reason}"
    else:
        runners["docker"] = docker
    met = True
    for name, runner in runners.items():
        inside = measure_in_process(runner, job, workdir / name)
        pairs = measure_pairs(runner, job, workdir / name)
        figures |= {f"{name}_{key}": value for key, value in inside.items()}
        figures |= {f"{name}_process_{key}": pairs[key]
                    for key in ("overhead", "overhead_min", "overhead_max")}
        met = met and inside["overhead"] <= OVERHEAD_TARGET
        met = met and inside["threads_cell"] == inside["threads_bare"]
        met = met and pairs["threads_cell"] == pairs["threads_bare"]
    return figures | {"met": met}
