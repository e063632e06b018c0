"""The training study's part of the report (kind "training": frameworks, precisions and frozen
layers): its step-time, FLOP and utilisation columns, the speed-up table over full fp32
training, and the throughput and loss charts."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from toolkit import units
from toolkit.report import charts, summary
from toolkit.report.kinds.base import (
    CellRounds,
    Chart,
    Column,
    Experiment,
    Kind,
    Metrics,
    Row,
    Section,
    Span,
    Table,
    drawn,
    ratio_text,
    skipped,
)

Series = tuple[tuple[float, float], ...]  # (step, value) pairs of one cell's raw sample series
LOSS_SERIES = "loss"  # the per-step training loss in samples.parquet (device-side trainers)
TRAINING = "training"  # its column group, between the speed and the memory columns
COLUMNS = (
    Column("step p50 (ms)", "step_time_p50", "ms", group=TRAINING),
    Column("step p50 95% CI (ms)", "step_time_p50", "ms", group=TRAINING, interval=True),
    Column("step robust CV (%)", "step_time_rcv", "%", group=TRAINING),
    Column("train FLOP ratio (%)", "train_flops_ratio", "%", group=TRAINING),
    Column("achieved (GFLOP/s)", "achieved_flops", "GFLOP/s", group=TRAINING),
    Column("MFU (%)", "mfu", "%", group=TRAINING),
    Column("peak fp32 (GFLOP/s)", "peak_flops_fp32", "GFLOP/s", group=TRAINING),
    Column("peak bf16 (GFLOP/s)", "peak_flops_bf16", "GFLOP/s", group=TRAINING),
    Column("peak fp16 (GFLOP/s)", "peak_flops_fp16", "GFLOP/s", group=TRAINING),
    Column("theoretical fp32 (GFLOP/s)", "peak_flops_fp32_theoretical", "GFLOP/s",
           group=TRAINING),
    Column("theoretical bf16 (GFLOP/s)", "peak_flops_bf16_theoretical", "GFLOP/s",
           group=TRAINING),
    Column("epoch estimate (s)", "epoch_time_estimate", "s", group=TRAINING),
    Column("loss (last)", "loss_last", "nat", group=TRAINING),
)
# Kept out of the table to keep it readable; they stay in records.parquet.
HIDDEN = frozenset({
    "step_time_min", "step_time_p90", "step_time_p99", "step_time_max", "step_time_mean",
    "step_time_std", "step_time_iqr", "step_time_cv", "step_time_n", "setup", "first_step",
    "forward_flops_per_image", "train_flops_per_image", "train_flops_per_step",
    "steps_per_epoch", "loss_first", "loss_tail_mean", "loss_finite", "steps",
})
# The peak cell's per-shape figures stay in the raw data (each dtype's best is shown).
HIDDEN_PREFIXES = ("matmul_", "conv_flops_", "conv_time_")
# What tells two training cells of one framework apart, in label order (device always shown).
LABEL = ("model", "device", "precision", "freeze", "batch")
# Bars and lines in the speed-up table's order: precisions of one freeze level side by side.
ORDER = ("framework", "model", "device", "batch", "freeze", "precision")


def section(exp: Experiment) -> Section:
    """The speed-up table where a freeze 0 fp32 reference ran, then the charts."""
    table = speedups(exp.rows, exp.metrics, exp.rounds)
    losses = load_series(exp.run_dir / "samples.parquet", LOSS_SERIES)
    return Section([table] if table.rows else [], _charts(exp, losses))


def speedups(rows: list[Row], metrics: dict[str, Metrics], rounds: CellRounds) -> Table:
    """Training throughput per (framework, device, batch, freeze) and precision, relative to
    the same framework, device and batch at freeze 0 in fp32: the training study's matrix
    (with intervals and their levels where the cells have rounds)."""
    intro = (Span("Speed-up over full fp32 training", "strong"),
             Span(" (throughput relative to freeze 0, fp32; same framework, device, batch; "
                  "[interval; level] of the speed-up computed round by round; ! where the "
                  "speed-up lies outside it)"))
    if not rows or "freeze" not in rows[0]:
        return Table(intro, [], [])
    throughput = {(r["framework"], r["device"], r["batch"], r["freeze"], r["precision"]):
                  r["cell_id"] for r in rows
                  if r["status"] == "ok" and "throughput" in metrics.get(r["cell_id"], {})}
    precisions = sorted({key[4] for key in throughput})
    body = []
    for group in sorted({key[:4] for key in throughput}):
        reference = throughput.get((*group[:3], 0, "fp32"))
        if not reference:
            continue
        body.append([summary.coord_text(v) for v in group] + [
            ratio_text(throughput[(*group, p)], reference, "throughput", metrics, rounds, "×")
            if (*group, p) in throughput else units.MISSING for p in precisions])
    return Table(intro, ["framework", "device", "batch", "freeze", *precisions], body)


def load_series(path: Path, metric: str) -> dict[str, Series]:
    """cell_id -> (sample index, value) pairs of one raw sample series in samples.parquet."""
    if not path.exists():
        return {}
    frame = (pl.scan_parquet(path).filter(pl.col("metric") == metric)
             .select("cell_id", "i", "value").sort("cell_id", "i").collect())
    out: dict[str, list[tuple[float, float]]] = {}
    for cell_id, i, value in frame.iter_rows():
        out.setdefault(cell_id, []).append((float(i), value))
    return {cell_id: tuple(pairs) for cell_id, pairs in out.items()}


def _label(row: dict[str, Any], shown: list[str]) -> str:
    """"cpu / fp16 / freeze 4 / batch 8": numbers carry their coordinate's name, or a reader
    could not tell a freeze of 8 from a batch of 8."""
    parts = []
    for coord in shown:
        text = summary.coord_text(row.get(coord))
        parts.append(f"{coord} {text}" if coord in ("freeze", "batch") else text)
    return " / ".join(parts)


def _coord_key(row: dict[str, Any], coords: tuple[str, ...]) -> tuple:
    """Sort key by coordinates in their own types (freeze 4 before 10), missing values last."""
    return tuple((row.get(c) is None, row.get(c) if row.get(c) is not None else 0)
                 for c in coords)


def _charts(exp: Experiment, losses: dict[str, Series]) -> list[Chart]:
    """Throughput per framework and loss curves of the ok training cells (not the peak cells:
    they have neither a throughput nor a loss)."""
    ok = sorted((r for r in exp.rows if r["status"] == "ok"
                 and ("throughput" in exp.metrics.get(r["cell_id"], {})
                      or r["cell_id"] in losses)),
                key=lambda r: _coord_key(r, ORDER))
    several_models = len({r.get("model") for r in ok}) > 1
    shown = [c for c in LABEL if c != "model" or several_models]
    return [_throughput_chart(exp, ok, shown), _loss_chart(exp, ok, shown, losses)]


def _throughput_chart(exp: Experiment, ok: list[Row], shown: list[str]) -> Chart:
    """Images/s of every ok training cell, one bar each, coloured per framework."""
    title = f"{exp.name}: training throughput per framework"
    bars = [charts.Bar(str(r["framework"]), _label(r, ["framework", *shown]),
                       exp.metrics[r["cell_id"]]["throughput"][0])
            for r in ok if "throughput" in exp.metrics.get(r["cell_id"], {})]
    path = exp.charts_dir / f"{exp.slug}-throughput.svg"
    if not charts.throughput_chart(bars, path, title):
        return skipped(title, "no ok training cell has a throughput record", path)
    return drawn(path, title, f"{title}: one bar per cell, coloured per framework",
                 "Training images/s (batch ÷ step-time p50), one bar per "
                 f"{' / '.join(['framework', *shown])}; ok cells only.")


def _loss_chart(exp: Experiment, ok: list[Row], shown: list[str],
                losses: dict[str, Series]) -> Chart:
    """Loss of every step of every ok training cell, one panel per framework."""
    title = f"{exp.name}: training loss per step"
    traces = [charts.Trace(str(r["framework"]), _label(r, shown), losses[r["cell_id"]])
              for r in ok if losses.get(r["cell_id"])]
    path = exp.charts_dir / f"{exp.slug}-loss.svg"
    if not charts.loss_chart(traces, path, title):
        return skipped(title, f"no ok training cell has {LOSS_SERIES!r} samples in "
                              "samples.parquet", path)
    return drawn(path, title, f"{title}: one panel per framework, one line per cell",
                 "Training loss of every step from the first (warm-up included), from "
                 "samples.parquet; one panel per framework, one line per "
                 f"{' / '.join(shown)}; ok cells only.")


KIND = Kind("training", marker="freeze", marker_text="a training freeze", section=section,
            columns=COLUMNS, hidden=HIDDEN, hidden_prefixes=HIDDEN_PREFIXES)
