"""Run comparison: per-cell latency ratios with a noise-aware verdict.

A cell changed only when its median moved beyond the ratio threshold AND the two runs' spreads
(inter-quartile ranges of the raw samples) do not overlap, so noise alone is not a change.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from toolkit.device.measure.stats import nearest_rank
from toolkit.experiments.cells import COORDINATES
from toolkit.results import RunStore

NO_CHANGE, SLOWER, FASTER = "no change", "slower", "faster"


@dataclass(frozen=True)
class CellComparison:
    cell_id: str
    label: str
    p50_a: float | None
    p50_b: float | None
    ratio: float | None  # B / A
    verdict: str


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


def _labels(store: RunStore) -> dict[str, str]:
    cells = pl.read_parquet(store.path / "cells.parquet")
    names = [name for name in COORDINATES if name in cells.columns]
    return {row["cell_id"]: " ".join(f"{row[n]:g}" if isinstance(row[n], float) else str(row[n])
                                     for n in names if n in row)
            for row in cells.iter_rows(named=True)}


def compare_runs(a: RunStore, b: RunStore, threshold: float = 0.10,
                 metric: str = "latency") -> list[CellComparison]:
    quart_a, quart_b = _quartiles(a, metric), _quartiles(b, metric)
    labels = _labels(a) | _labels(b)
    rows = []
    for cell_id in sorted(set(labels), key=labels.__getitem__):
        qa, qb = quart_a.get(cell_id), quart_b.get(cell_id)
        if qa is None or qb is None:
            missing = "A" if qa is None else "B"
            rows.append(CellComparison(cell_id, labels[cell_id], qa and qa[1], qb and qb[1],
                                       None, f"not comparable: no samples in run {missing}"))
            continue
        ratio = qb[1] / qa[1]
        verdict = NO_CHANGE
        if ratio > 1 + threshold and qb[0] > qa[2]:
            verdict = SLOWER
        elif ratio < 1 / (1 + threshold) and qb[2] < qa[0]:
            verdict = FASTER
        rows.append(CellComparison(cell_id, labels[cell_id], qa[1], qb[1], ratio, verdict))
    return rows


def write_markdown(rows: list[CellComparison], a: RunStore, b: RunStore, threshold: float,
                   path: Path) -> Path:
    lines = [f"# Run comparison: {a.run_id} (A) vs {b.run_id} (B)", "",
             f"Latency p50 ratio B/A per cell; a change needs a ratio beyond ±{threshold:.0%} "
             "and non-overlapping inter-quartile ranges of the raw samples.", "",
             "| cell | p50 A (ms) | p50 B (ms) | B/A | verdict |",
             "| --- | ---: | ---: | ---: | --- |"]
    for row in rows:
        def ms(value: float | None) -> str:
            return "–" if value is None else f"{value * 1e3:.3g}"
        ratio = "–" if row.ratio is None else f"{row.ratio:.3f}"
        lines.append(f"| {row.label} | {ms(row.p50_a)} | {ms(row.p50_b)} | {ratio} | "
                     f"{row.verdict} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
