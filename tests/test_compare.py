"""Run comparison: noise is no change, a real 2x slow-down is flagged."""
import random

from toolkit.report.compare import NO_CHANGE, SLOWER, compare_runs
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
