"""Run comparison: per-cell latency ratios with a noise-aware verdict.

A cell changed only when its median moved beyond the ratio threshold AND the two runs' spreads
do not overlap, so noise alone is not a change. The spread is the order-statistic interval of
the median over rounds, with its level (toolkit/intervals.py), when both runs measured the cell
in at least 2 rounds: rounds are fresh processes, so they capture run-to-run noise that the
samples of one process do not.
Runs from before rounds fall back to the inter-quartile ranges of the raw samples.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from toolkit import intervals
from toolkit.device.measure.stats import nearest_rank
from toolkit.experiments.cells import COORDINATES
from toolkit.results import RunStore
from toolkit.rounds import MEASURED

# The smallest ratio change that counts unless --threshold says otherwise.
DEFAULT_THRESHOLD = 0.10

NO_CHANGE, SLOWER, FASTER = "no change", "slower", "faster"
ROUNDS, SAMPLES = "rounds", "samples"  # the basis a row was judged on

Interval = tuple[float, float]


@dataclass(frozen=True)
class CellComparison:
    """One cell's verdict. a_interval/b_interval are the spreads the verdict was judged on:
    the interval of the median over rounds (basis "rounds", intervals.py) or the inter-quartile
    range of the raw samples (basis "samples"). ratio_interval (rounds only) brackets B/A without
    pairing rounds across runs: (B low / A high, B high / A low)."""
    cell_id: str
    label: str
    p50_a: float | None
    p50_b: float | None
    ratio: float | None  # B / A
    verdict: str
    a_interval: Interval | None = None
    b_interval: Interval | None = None
    ratio_interval: Interval | None = None
    basis: str = SAMPLES


def _quartiles(store: RunStore, metric: str) -> dict[str, tuple[float, float, float]]:
    path = store.path / "samples.parquet"
    if not path.exists():
        return {}
    samples = pl.read_parquet(path).filter(pl.col("metric") == metric)
    out = {}
    for (cell_id,), group in samples.group_by("cell_id"):
        values = sorted(group["value"].to_list())
        out[cell_id] = tuple(nearest_rank(values, q) for q in (25, 50, 75))
    return out


def _round_values(store: RunStore, metric: str) -> dict[str, list[float]]:
    """Each cell's measured per-round figures, in round order; only cells with 2 rounds or more
    (one round has no interval, so those cells fall back to the samples)."""
    path = store.path / "rounds.parquet"
    if not path.exists():
        return {}
    rounds = (pl.read_parquet(path)
              .filter((pl.col("metric") == metric) & pl.col("status").is_in(list(MEASURED)))
              .sort("round"))
    out = {}
    for (cell_id,), group in rounds.group_by("cell_id", maintain_order=True):
        if group.height >= 2:
            out[cell_id] = group["value"].to_list()
    return out


def _labels(store: RunStore) -> dict[str, str]:
    cells = pl.read_parquet(store.path / "cells.parquet")
    names = [name for name in COORDINATES if name in cells.columns]
    return {row["cell_id"]: " ".join(f"{row[n]:g}" if isinstance(row[n], float) else str(row[n])
                                     for n in names if n in row)
            for row in cells.iter_rows(named=True)}


def _verdict(ratio: float, threshold: float, a: Interval, b: Interval) -> str:
    """A change needs both a large ratio and spreads apart in the same direction."""
    if ratio > 1 + threshold and b[0] > a[1]:
        return SLOWER
    if ratio < 1 / (1 + threshold) and b[1] < a[0]:
        return FASTER
    return NO_CHANGE


def _unpaired_ratio_interval(a: Interval, b: Interval) -> Interval | None:
    """B/A bracket from the two medians' intervals: rounds of different runs were not measured
    side by side, so they cannot be paired as intervals.ratio_interval pairs them."""
    return (b[0] / a[1], b[1] / a[0]) if a[0] > 0 else None


def _from_rounds(cell_id: str, label: str, values_a: list[float], values_b: list[float],
                 threshold: float) -> CellComparison | None:
    interval_a = intervals.median_interval(values_a)
    interval_b = intervals.median_interval(values_b)
    p50_a, p50_b = statistics.median(values_a), statistics.median(values_b)
    if interval_a is None or interval_b is None or p50_a <= 0:
        return None
    ratio = p50_b / p50_a
    return CellComparison(cell_id, label, p50_a, p50_b, ratio,
                          _verdict(ratio, threshold, interval_a, interval_b),
                          interval_a, interval_b, _unpaired_ratio_interval(interval_a, interval_b),
                          ROUNDS)


def _from_samples(cell_id: str, label: str, qa: tuple[float, float, float] | None,
                  qb: tuple[float, float, float] | None, threshold: float) -> CellComparison:
    iqr_a = qa and (qa[0], qa[2])
    iqr_b = qb and (qb[0], qb[2])
    if qa is None or qb is None:
        missing = "A" if qa is None else "B"
        return CellComparison(cell_id, label, qa and qa[1], qb and qb[1], None,
                              f"not comparable: no samples in run {missing}", iqr_a, iqr_b)
    ratio = qb[1] / qa[1]
    return CellComparison(cell_id, label, qa[1], qb[1], ratio,
                          _verdict(ratio, threshold, iqr_a, iqr_b), iqr_a, iqr_b)


def compare_runs(a: RunStore, b: RunStore, threshold: float = DEFAULT_THRESHOLD,
                 metric: str = "latency") -> list[CellComparison]:
    """Rows per cell, on rounds of f"{metric}_p50" where both runs have 2 or more measured
    rounds of the cell, else on the raw samples of `metric`."""
    rounds_a, rounds_b = _round_values(a, f"{metric}_p50"), _round_values(b, f"{metric}_p50")
    quart_a, quart_b = _quartiles(a, metric), _quartiles(b, metric)
    labels = _labels(a) | _labels(b)
    rows = []
    for cell_id in sorted(set(labels), key=labels.__getitem__):
        row = None
        if cell_id in rounds_a and cell_id in rounds_b:
            row = _from_rounds(cell_id, labels[cell_id], rounds_a[cell_id], rounds_b[cell_id],
                               threshold)
        rows.append(row or _from_samples(cell_id, labels[cell_id], quart_a.get(cell_id),
                                         quart_b.get(cell_id), threshold))
    return rows


def _decimals(value: float, digits: int = 3) -> int:
    """Decimals that give `value` about `digits` significant digits, so a figure and its
    interval share one precision."""
    if value == 0 or not math.isfinite(value):
        return digits
    return max(0, digits - 1 - math.floor(math.log10(abs(value))))


def format_ms(value: float | None, interval: Interval | None = None) -> str:
    """A time in seconds as ms with its interval, e.g. "1.23 [1.20–1.27]"."""
    if value is None:
        return "–"
    places = _decimals(value * 1e3)
    text = f"{value * 1e3:.{places}f}"
    if interval is not None:
        text += f" [{interval[0] * 1e3:.{places}f}–{interval[1] * 1e3:.{places}f}"
        text += (f"; {intervals.level_text(interval.level)}]"
                 if isinstance(interval, intervals.Interval) else "]")
    return text


def format_ratio(ratio: float | None, interval: Interval | None = None) -> str:
    """B/A with its interval, e.g. "1.301 [1.250–1.350]"."""
    if ratio is None:
        return "–"
    text = f"{ratio:.3f}"
    if interval is not None:
        text += f" [{interval[0]:.3f}–{interval[1]:.3f}]"
    return text


def write_markdown(rows: list[CellComparison], a: RunStore, b: RunStore, threshold: float,
                   path: Path) -> Path:
    lines = [f"# Run comparison: {a.run_id} (A) vs {b.run_id} (B)", "",
             f"Latency p50 ratio B/A per cell; a change needs a ratio beyond ±{threshold:.0%} "
             "and spreads (in brackets) that do not overlap: on basis *rounds*, the "
             "order-statistic intervals (level beside each) of each run's median over its "
             "rounds (the B/A bracket divides them, as rounds of two runs cannot be "
             "paired); on basis *samples* (runs without rounds), the inter-quartile ranges "
             "of the raw samples.", "",
             "| cell | p50 A (ms) | p50 B (ms) | B/A | basis | verdict |",
             "| --- | ---: | ---: | ---: | --- | --- |"]
    for row in rows:
        lines.append(f"| {row.label} | {format_ms(row.p50_a, row.a_interval)} | "
                     f"{format_ms(row.p50_b, row.b_interval)} | "
                     f"{format_ratio(row.ratio, row.ratio_interval)} | {row.basis} | "
                     f"{row.verdict} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
