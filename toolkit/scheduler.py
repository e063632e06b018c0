"""Runs pending cells one at a time through a runner and stores each result as it finishes."""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from toolkit import artifacts
from toolkit import rounds as cell_rounds
from toolkit.device import models
from toolkit.experiments import kinds
from toolkit.experiments.cells import Cell
from toolkit.results import RunStore, record_values
from toolkit.runners.base import EngineLost, JobOutcome, Runner
from toolkit.runners.follow import LogFollower


@dataclass
class RunSummary:
    counts: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    # (status, reason) -> labels of the cells that ended so, for cells that were not ok:
    # a reason shared by many cells is said once, with its count and cells.
    reasons: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    failed_logs: list[Path] = field(default_factory=list)

    def add(self, status: str, label: str = "", reason: str = "") -> bool:
        """Count a cell; True when its (status, reason) is new in this run."""
        self.counts[status] = self.counts.get(status, 0) + 1
        if status == "ok":
            return True
        labels = self.reasons.setdefault((status, reason), [])
        labels.append(label)
        return len(labels) == 1

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)

    def line(self) -> str:
        parts = [f"{n} {status}" for status, n in sorted(self.counts.items())]
        if self.skipped:
            parts.append(f"{self.skipped} already done")
        return ", ".join(parts) or "nothing to do"

    def grouped(self, shown: int = 4) -> list[str]:
        """One line per distinct reason, failures first: status, count, reason, some cells."""
        order = {"failed": 0, "invalid": 1, "not run": 2}
        lines = []
        for (status, reason), labels in sorted(self.reasons.items(),
                                               key=lambda item: (order.get(item[0][0], 3),
                                                                 -len(item[1]))):
            cells = ", ".join(labels[:shown]) + (f" and {len(labels) - shown} more"
                                                 if len(labels) > shown else "")
            lines.append(f"{status} x{len(labels)}: {reason} ({cells})")
        return lines


def analytic_records(settings: dict[str, Any]) -> list[tuple[str, float, str]]:
    """Closed-form size and cost of the cell's model (computed, not measured)."""
    model, widths, classes = settings["model"], settings["widths"], settings["classes"]
    return [("params", float(models.count_params(model, widths, classes)), "count"),
            ("macs", float(models.count_macs(model, widths, classes)), "MAC")]


def preparation_runner(runner: Runner, store: RunStore,
                       show: Callable[[str], None] | None = None) -> artifacts.JobRunner:
    """Runs preparation jobs through the cells' runner, logging beside the cells; `show` gets
    the job's newest log line while it runs (searches and training take minutes to hours)."""

    def run(name: str, job: dict[str, Any], timeout: float) -> str | None:
        log_path = store.logs_dir / f"{name}.log"
        with _following(log_path, show, f"{job['kind']}: "):
            outcome = runner.run_job(job, store.jobs_dir / name, log_path, timeout=timeout)
        reason = outcome.failure_reason()
        if reason is None and outcome.result["status"] != "ok":
            reason = f"{outcome.result['status']}: {outcome.result['reason']}"
        return reason

    return run


def _following(log_path: Path, show: Callable[[str], None] | None,
               label: str = "") -> contextlib.AbstractContextManager[Any]:
    if show is None:
        return contextlib.nullcontext()
    return LogFollower(log_path, lambda line: show(label + line))


def _payload(cell: Cell, runner: Runner, started_at: str, settings: dict[str, Any],
             prepared: list[tuple[str, float, str]], outcome: JobOutcome | None,
             reason: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "cell_id": cell.id, "experiment": cell.experiment, "kind": cell.kind,
        "coords": cell.coords, "settings": settings, "protocol": cell.protocol,
        "runner": runner.name, "started_at": started_at, "records": [], "samples": {},
        "image": "", "image_id": "", "image_digest": "",
    }
    if hasattr(runner, "image_identity"):  # container runners: which image measured the cell
        payload |= runner.image_identity(cell.coords["framework"])
    if getattr(runner, "host", None):  # fleet runs: which device measured the cell
        payload["host"] = runner.host
    result = outcome.result if outcome else None
    if result is None:
        payload |= {"status": "failed", "reason": reason or outcome.failure_reason()}
    else:
        payload |= {key: result.get(key) for key in ("status", "reason", "samples", "versions",
                                                      "timing")}
        payload["backend_settings"] = result.get("settings") or {}
        payload["samples"] = payload["samples"] or {}
        payload["records"] = [list(r) for r in result["records"]]
    if outcome is not None:
        payload |= {"exit_code": outcome.exit_code, "wall_s": outcome.wall_s,
                    "log_tail": outcome.log_tail}
        if payload["status"] in ("ok", "invalid") and outcome.peak_rss_kernel is not None:
            payload["records"].append(["rss_peak_kernel", float(outcome.peak_rss_kernel), "B"])
    else:
        payload |= {"exit_code": None, "wall_s": 0.0, "log_tail": ""}
    if payload["status"] == "ok" and (bad := cell_rounds.non_finite(payload)):
        # A NaN in a round that claims to be fine is an error of that round (retried on
        # resume), never a figure: a median or an interval over it would depend on order.
        payload |= {"status": "failed",
                    "reason": f"non-finite {', '.join(bad)} in a round reported ok"}
    if payload["status"] in ("ok", "invalid"):
        payload["records"] += [list(r) for r in prepared]
        payload[cell_rounds.ONCE] = [name for name, _, _ in prepared]
        if kinds.is_experiment_cell(cell):
            payload["records"] += [list(r) for r in analytic_records(settings)]
    return payload


def _summary_line(payload: dict[str, Any]) -> str:
    if payload["status"] not in ("ok", "invalid"):
        return f"{payload['status']}: {payload['reason']}"
    values = record_values(payload["records"])
    peak = values.get("rss_peak_kernel", values.get("rss_peak", float("nan")))
    if "peak_flops_fp32" in values:
        return f"matmul peak {values['peak_flops_fp32'] / 1e9:.1f} GFLOP/s (fp32)"
    latency = values.get("latency_p50", values.get("step_time_p50", float("nan")))
    text = f"p50 {latency * 1e3:.3f} ms, peak RSS {peak / 2**20:.0f} MiB"
    if "achieved_flops" in values:
        text += f", {values['achieved_flops'] / 1e9:.1f} GFLOP/s"
    if "cgroup_memory_peak" in values:
        text += f", container peak {values['cgroup_memory_peak'] / 2**20:.0f} MiB"
    return text if payload["status"] == "ok" else f"{text} (invalid: {payload['reason']})"


class RunProgress(Progress):
    """A bar per run (what it measures now, how far, its status counts, time) and, beneath
    it, the newest output line of the job the run waits for (`activity`)."""

    def __init__(self, console: Console) -> None:
        super().__init__(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                         TimeRemainingColumn(), console=console, transient=True)

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        for task in self.tasks:
            if task.fields.get("activity") and not task.finished:
                yield Text(f"  {task.fields['activity']}", style="dim", no_wrap=True,
                           overflow="ellipsis")


def run_cells(cells: list[Cell], store: RunStore, runner: Runner, cache_root: Path, *,
              force: bool = False, console: Console | None = None,
              prepare_with: Runner | None = None, progress: Progress | None = None,
              prefix: str = "") -> RunSummary:
    """Measure every round of every cell not yet finished in this run (all of them with force).

    Rounds are interleaved: round 1 of every cell, then round 2, ... (toolkit/rounds.py); a
    cell not run in its first round has no later ones, and a cell whose round failed measures
    no further rounds until a re-run retries it. Runs of several devices at once share
    one `progress` (a bar each) and tell their lines apart by `prefix`; a single run makes its
    own."""
    console = console or Console(stderr=True)
    summary = RunSummary()
    store.adopt_single_rounds()
    plan = [(index, cell) for index in range(max((c.rounds for c in cells), default=1))
            for cell in cells if index < cell.rounds]
    if force:
        for cell in cells:
            store.forget_rounds(cell.id)
        pending = plan
    else:
        done = {cell.id: store.done_rounds(cell.id) for cell in cells}
        pending = [(index, cell) for index, cell in plan if index not in done[cell.id]]
    not_run = {cell_id for cell_id, payload in store.cell_results().items()
               if payload["status"] == "not run" and not force}
    started = {cell.id for _, cell in pending}
    summary.skipped = sum(1 for cell in cells if cell.id not in started)
    shared = progress is not None
    progress = progress or RunProgress(console)

    def show(line: str) -> None:  # a running job's newest log line, under the run's bar
        progress.update(task, activity=f"{prefix}{line}")

    run_preparation = preparation_runner(prepare_with or runner, store, show)
    # Rounds of different cells are paired only within one pass (this sweep over round k):
    # a round measured again in a later sweep was not measured beside the others.
    sweep = time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"
    with contextlib.nullcontext(progress) if shared else progress:
        task = progress.add_task(f"{prefix}cells", total=len(pending), status="", activity="")
        failed: set[str] = set()
        for index, cell in pending:
            if cell.id in not_run or cell.id in failed:  # nothing to measure (again) now
                progress.update(task, advance=1)
                continue
            rounds = f" · round {index + 1}/{cell.rounds}" if cell.rounds > 1 else ""
            progress.update(task, description=f"{prefix}{cell.label()}{rounds}", activity="")
            payload = _measure(cell, store, runner, cache_root, run_preparation, show)
            payload["pass"] = f"{sweep}/{index + 1}"
            combined = store.record_round(payload, index, cell.rounds)
            if payload["status"] == "failed":  # its later rounds wait for a re-run
                summary.failed_logs.append(store.logs_dir / f"{cell.id}.log")
                failed.add(cell.id)
            if payload["status"] == "not run":
                not_run.add(cell.id)
            first = True
            if combined["status"] in ("not run", "failed") or index == cell.rounds - 1:
                first = summary.add(combined["status"], cell.label(), combined.get("reason") or "")
            line = _summary_line(payload) if first else "same reason as above"
            progress.console.print(f"{prefix}[{payload['status']}] {cell.label()}{rounds}: "
                                   f"{line}", markup=False, highlight=False)
            progress.update(task, advance=1, status=summary.line())
    return summary


def _measure(cell: Cell, store: RunStore, runner: Runner, cache_root: Path,
             run_preparation: artifacts.JobRunner, show: Callable[[str], None]) -> dict[str, Any]:
    """One round of one cell: prepare its artifacts (cached after the first round), run its
    job in a fresh process or container, and return its payload."""
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    outcome, reason, settings, prepared = None, None, cell.settings, []
    try:
        settings, paths, prepared = kinds.prepare(cell, cache_root, run_preparation)
        if "neuralscale" in paths:
            store.keep_artifact(Path(paths["neuralscale"]), "neuralscale")
    except artifacts.PreparationFailed as failure:
        reason = str(failure)
    if reason is None:
        job = cell.definition() | {"settings": settings, "artifacts": paths}
        log_path = store.logs_dir / f"{cell.id}.log"
        try:
            with _following(log_path, show):
                outcome = runner.run_job(job, store.jobs_dir / cell.id, log_path,
                                         timeout=cell.settings["timeout_seconds"])
        except EngineLost:
            raise
        except Exception as error:  # noqa: BLE001 - the engine failed, not the cell
            if isinstance(error, OSError) and error.errno == 28:
                raise  # a full disk stops the run (nothing measured is lost)
            reason = f"runner error: {type(error).__name__}: {error}"
    return _payload(cell, runner, started_at, settings, prepared, outcome, reason)
