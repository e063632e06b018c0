"""Run comparison: noise is no change, a real 2x slow-down is flagged."""
import random
import statistics

import polars as pl
import pytest

from toolkit.intervals import median_interval, overlap
from toolkit.report.compare import (
    FASTER,
    NO_CHANGE,
    ROUNDS,
    SAMPLES,
    SLOWER,
    CellComparison,
    compare_runs,
    write_markdown,
)
from toolkit.results import RunStore

MEDIANS = {"a": 0.001, "b": 0.004, "c": 0.010}


def _run(tmp_path, run_id: str, seed: int, slow: dict[str, float] | None = None) -> RunStore:
    """Samples of each cell: lognormal noise (~8 %) around its median, plus rare long stalls."""
    rng = random.Random(seed)
    store = RunStore.create(tmp_path, run_id, {"cell_ids": list(MEDIANS), "selection": {}})
    for cell_id, median in MEDIANS.items():
        factor = (slow or {}).get(cell_id, 1.0)
        values = [median * factor * rng.lognormvariate(0, 0.08) * (20 if rng.random() < 0.01
                                                                   else 1) for _ in range(300)]
        store.save_cell({
            "cell_id": cell_id, "experiment": "e", "status": "ok", "reason": "", "runner": "host",
            "started_at": "t", "wall_s": 1.0, "records": [],
            "coords": {"model": "vgg11", "method": "uniform", "scale": median * 100,
                       "framework": "onnxruntime", "device": "cpu", "precision": "fp32",
                       "batch": 1},
            "samples": {"latency": {"unit": "s", "values": values}}})
    store.rebuild_tables()
    return store


def test_two_runs_of_the_same_cells_show_no_change(tmp_path):
    rows = compare_runs(_run(tmp_path, "A", 1), _run(tmp_path, "B", 2))
    assert [r.verdict for r in rows] == [NO_CHANGE] * 3
    assert all(0.9 < r.ratio < 1.1 for r in rows)


def test_a_cell_slowed_twofold_is_flagged_and_only_that_one(tmp_path):
    rows = {r.cell_id: r for r in compare_runs(_run(tmp_path, "A", 1),
                                               _run(tmp_path, "B", 1, slow={"b": 2.0}))}
    assert rows["b"].verdict == SLOWER and 1.9 < rows["b"].ratio < 2.1
    assert rows["a"].verdict == rows["c"].verdict == NO_CHANGE


def test_cli_compare(invoke_cmd, tmp_path):
    _run(tmp_path, "A", 1)
    _run(tmp_path, "B", 1, slow={"c": 2.0})
    done = invoke_cmd("report", "--compare", "A,B", results=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("no change") == 2 and "slower" in done.stdout
    bad = invoke_cmd("report", "--compare", "A", results=tmp_path)
    assert bad.returncode == 2 and "--compare takes two run ids A,B, got 'A'" in bad.stderr


# Runs with rounds: each round a fresh process, so the verdict rests on the rounds' intervals.
ROUND_CELLS = {"moved": 0.001, "noisy": 0.002, "faster": 0.003}
STEADY = (1.00, 1.02, 0.98, 1.01, 0.99)  # ±2 % between rounds
NOISY = (1.00, 0.80, 1.20, 0.90, 1.10)  # ±20 % between rounds


def _rounds_run(tmp_path, run_id: str, rounds: dict[str, list[float]] | None,
                samples: dict[str, list[float]]) -> RunStore:
    """A run directory written directly as tables: cells, records (medians), samples and, when
    `rounds` is given, rounds.parquet with one ok row of latency_p50 per round."""
    store = RunStore(tmp_path / run_id)
    store.path.mkdir(parents=True)
    pl.DataFrame({"run_id": run_id, "cell_id": list(samples), "model": list(samples)}
                 ).write_parquet(store.path / "cells.parquet")
    pl.DataFrame([{"run_id": run_id, "cell_id": c, "metric": "latency_p50",
                   "value": statistics.median((rounds or {}).get(c) or values), "unit": "s"}
                  for c, values in samples.items()]).write_parquet(store.path / "records.parquet")
    pl.DataFrame([{"run_id": run_id, "cell_id": c, "metric": "latency", "i": i, "value": v,
                   "unit": "s"} for c, values in samples.items() for i, v in enumerate(values)]
                 ).write_parquet(store.path / "samples.parquet")
    if rounds is not None:
        pl.DataFrame([{"run_id": run_id, "cell_id": c, "round": k, "status": "ok",
                       "metric": "latency_p50", "value": v}
                      for c, values in rounds.items() for k, v in enumerate(values)],
                     schema={"run_id": pl.String, "cell_id": pl.String, "round": pl.Int64,
                             "status": pl.String, "metric": pl.String, "value": pl.Float64}
                     ).write_parquet(store.path / "rounds.parquet")
    return store


def _scaled(cells: dict[str, float], shape: tuple[float, ...], factors: dict[str, float]
            ) -> dict[str, list[float]]:
    return {c: [base * factors.get(c, 1.0) * s for s in shape] for c, base in cells.items()}


def _tight_samples(factors: dict[str, float]) -> dict[str, list[float]]:
    """Samples whose inter-quartile ranges are ±1 %: any shift beyond that reads as a change on
    the samples basis, so a row that should rest on rounds but does not gets a wrong verdict."""
    shape = tuple(1 + k / 1000 for k in range(-10, 11))
    return _scaled(ROUND_CELLS, shape, factors)


def _round_runs(tmp_path) -> dict[str, CellComparison]:
    """A: steady `moved` and `faster`, noisy `noisy`. B: `moved` 30 % slower, `noisy` 15 % slower
    (within its noise), `faster` 30 % faster. The samples disagree on purpose: identical for
    `moved`/`faster`, 15 % apart for `noisy`."""
    shapes = {"moved": STEADY, "noisy": NOISY, "faster": STEADY}

    def rounds(factors: dict[str, float]) -> dict[str, list[float]]:
        return {c: [ROUND_CELLS[c] * factors.get(c, 1.0) * s for s in shapes[c]]
                for c in ROUND_CELLS}

    a = _rounds_run(tmp_path, "A", rounds({}), _tight_samples({}))
    b = _rounds_run(tmp_path, "B", rounds({"moved": 1.3, "noisy": 1.15, "faster": 1 / 1.3}),
                    _tight_samples({"noisy": 1.15}))
    return {row.cell_id: row for row in compare_runs(a, b)}


def test_rounds_moved_30_percent_with_apart_intervals_is_slower(tmp_path):
    row = _round_runs(tmp_path)["moved"]
    assert row.basis == ROUNDS and row.verdict == SLOWER
    assert row.p50_a == pytest.approx(0.001) and row.ratio == pytest.approx(1.3)
    assert row.a_interval == pytest.approx(median_interval([0.001 * s for s in STEADY]))
    assert row.b_interval == pytest.approx(median_interval([0.0013 * s for s in STEADY]))
    assert row.b_interval[0] > row.a_interval[1]
    # the ratio's bracket divides the unpaired intervals, and holds the ratio
    assert row.ratio_interval == pytest.approx((row.b_interval[0] / row.a_interval[1],
                                                row.b_interval[1] / row.a_interval[0]))
    assert row.ratio_interval[0] < row.ratio < row.ratio_interval[1]


def test_rounds_moved_15_percent_within_overlapping_intervals_is_no_change(tmp_path):
    row = _round_runs(tmp_path)["noisy"]
    assert row.basis == ROUNDS and row.ratio == pytest.approx(1.15)
    assert overlap(row.a_interval, row.b_interval)
    assert row.verdict == NO_CHANGE  # the samples alone (15 % apart, ±1 %) would say slower


def test_rounds_faster_is_flagged(tmp_path):
    row = _round_runs(tmp_path)["faster"]
    assert row.basis == ROUNDS and row.verdict == FASTER


def test_a_run_without_rounds_falls_back_to_the_samples(tmp_path):
    rounds = _scaled(ROUND_CELLS, STEADY, {})
    a = _rounds_run(tmp_path, "A", None, _tight_samples({}))
    b = _rounds_run(tmp_path, "B", rounds, _tight_samples({"moved": 2.0}))
    rows = {row.cell_id: row for row in compare_runs(a, b)}
    assert {row.basis for row in rows.values()} == {SAMPLES}
    assert rows["moved"].verdict == SLOWER and rows["moved"].ratio == pytest.approx(2.0)
    assert rows["noisy"].verdict == rows["faster"].verdict == NO_CHANGE
    assert rows["moved"].a_interval == pytest.approx((0.001 * 0.995, 0.001 * 1.005))  # IQR
    assert rows["moved"].ratio_interval is None


def test_cells_with_fewer_than_two_measured_rounds_fall_back(tmp_path):
    """One round has no interval; failed rounds are not measurements."""
    a = _rounds_run(tmp_path, "A", {"moved": [0.001], "noisy": [0.002, 0.002]},
                    _tight_samples({}))
    b = _rounds_run(tmp_path, "B", {"moved": [0.0013, 0.0013], "noisy": [0.0026, 0.0026]},
                    _tight_samples({}))
    frame = pl.read_parquet(b.path / "rounds.parquet")
    frame.with_columns(status=pl.when(pl.col("cell_id") == "noisy").then(pl.lit("failed"))
                       .otherwise(pl.col("status"))).write_parquet(b.path / "rounds.parquet")
    rows = {row.cell_id: row for row in compare_runs(a, b)}
    assert rows["moved"].basis == rows["noisy"].basis == SAMPLES
    assert rows["moved"].verdict == rows["noisy"].verdict == NO_CHANGE


def test_markdown_shows_intervals_and_basis(tmp_path):
    a = _rounds_run(tmp_path, "A", {"moved": [0.00120, 0.00123, 0.00127]}, _tight_samples({}))
    b = _rounds_run(tmp_path, "B", None, _tight_samples({}))
    rows = compare_runs(a, a)
    text = write_markdown(rows, a, b, 0.1, tmp_path / "compare.md").read_text()
    assert ("| 1.23 [1.20–1.27; 75 %] | 1.23 [1.20–1.27; 75 %] | 1.000 [0.945–1.058] | rounds "
            "| no change |") \
        in text
    assert "| samples | no change |" in text
    assert "order-statistic intervals" in text and "inter-quartile ranges" in text
