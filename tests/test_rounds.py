"""Rounds: cells measured several times, interleaved, combined into medians; drift between
rounds; resume keeps finished rounds."""
import json
import statistics

import polars as pl
import pytest
from conftest import TINY_SPEC

from toolkit import rounds
from toolkit.results import RunStore


def _round(index: int, status: str = "ok", latency: float = 1e-3, reason: str = "") -> dict:
    return {"cell_id": "c", "round": index, "status": status, "reason": reason,
            "started_at": f"t{index}", "wall_s": 2.0, "coords": {"model": "vgg11"},
            "records": [["latency_p50", latency, "s"], ["params", 100.0, "count"]]
            if status in ("ok", "invalid") else [],
            "samples": {"latency": {"unit": "s", "values": [latency] * 3}}
            if status in ("ok", "invalid") else {}}


def test_a_cell_is_the_median_of_its_rounds():
    combined = rounds.combine([_round(0, latency=3e-3), _round(1, latency=1e-3),
                               _round(2, latency=2e-3)], planned=3)
    values = {metric: value for metric, value, _ in combined["records"]}
    assert values == {"latency_p50": 2e-3, "params": 100.0}
    assert combined["status"] == "ok" and combined["wall_s"] == 6.0
    assert len(combined["samples"]["latency"]["values"]) == 9  # raw samples of every round
    assert [r["values"]["latency_p50"] for r in combined["rounds"]] == [3e-3, 1e-3, 2e-3]
    assert rounds.round_values(combined, "latency_p50") == [3e-3, 1e-3, 2e-3]
    assert rounds.is_finished(combined) and not rounds.is_finished(combined, planned=4)


def test_round_statuses_combine_worst_first():
    failed = rounds.combine([_round(0), _round(1, "failed", reason="killed")], planned=2)
    assert failed["status"] == "failed" and failed["reason"] == "killed"
    assert not rounds.is_finished(failed)
    invalid = rounds.combine([_round(0, "invalid", reason="CV 0.6"), _round(1, "invalid",
                                                                          reason="CV 0.7")], 2)
    assert invalid["status"] == "invalid"
    assert invalid["reason"] == "round 1: CV 0.6; round 2: CV 0.7"
    assert rounds.is_finished(invalid)
    outvoted = rounds.combine([_round(0, "invalid", reason="CV 0.6"), _round(1), _round(2)], 3)
    assert outvoted["status"] == "ok" and outvoted["rounds"][0]["reason"] == "CV 0.6"
    half = rounds.combine([_round(0, "invalid", reason="CV 0.6"), _round(1)], planned=2)
    assert half["status"] == "invalid"  # half the rounds: the median rests on it
    not_run = rounds.combine([_round(0, "not run", reason="no GPU")], planned=3)
    assert not_run["status"] == "not run" and rounds.is_finished(not_run)  # no more rounds


def test_a_cell_from_before_rounds_counts_as_one_round():
    legacy = {"status": "ok", "records": [["latency_p50", 1.0, "s"]]}
    assert rounds.rounds_done(legacy) == 1 and rounds.round_values(legacy, "latency_p50") == [1.0]


def _cell_with(latencies: list[float]) -> dict:
    return rounds.combine([_round(i, latency=v) for i, v in enumerate(latencies)],
                          len(latencies))


def test_drift_is_the_move_of_the_machine_speed_between_rounds():
    # Every cell 30 % slower in round 2: the machine moved, not the cells.
    cells = [_cell_with([1.0, 1.3, 1.0]), _cell_with([2.0, 2.6, 2.0]), _cell_with([5.0, 6.5, 5.0])]
    speeds = rounds.speed_by_round(rounds.timings(cells))
    assert speeds == pytest.approx([1.0, 1.3, 1.0])
    assert rounds.drift(speeds) == pytest.approx(0.3)
    steady = [_cell_with([1.0, 1.01, 0.99]), _cell_with([2.0, 1.98, 2.02])]
    assert rounds.drift(rounds.speed_by_round(rounds.timings(steady))) < rounds.DRIFT_THRESHOLD
    assert rounds.drift(rounds.speed_by_round(rounds.timings([_cell_with([1.0])]))) is None


def test_store_keeps_each_round_and_the_combined_cell(tmp_path):
    store = RunStore.create(tmp_path, "r", {"cell_ids": ["c"], "selection": {}})
    base = {"experiment": "e", "kind": "inference", "runner": "host", "settings": {}}
    for index, latency in enumerate((1e-3, 3e-3)):
        store.record_round(base | _round(index, latency=latency), index, planned=3)
    assert store.done_rounds("c") == {0, 1} and "c" not in store.finished_ids()
    store.record_round(base | _round(2, latency=2e-3), 2, planned=3)
    assert "c" in store.finished_ids()
    table = pl.read_parquet(store.path / "rounds.parquet").filter(pl.col("metric") == "latency_p50")
    assert sorted(table["round"].to_list()) == [0, 1, 2]
    records = pl.read_parquet(store.path / "records.parquet")
    assert records.filter(pl.col("metric") == "latency_p50")["value"].to_list() == [2e-3]


@pytest.mark.slow
def test_rounds_are_interleaved_and_resume_keeps_finished_ones(invoke_cmd, tmp_path):
    done = invoke_cmd("run", "--experiment", str(TINY_SPEC), "--runner", "host", "--rounds", "2",
                      results=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "x 2 interleaved rounds" in done.stderr
    (run_dir,) = [p for p in tmp_path.iterdir() if p.name not in ("cache", "reports")]
    round_files = sorted((run_dir / "rounds").glob("*/*.json"))
    assert len(round_files) == 8  # 4 cells x 2 rounds
    payloads = [json.loads(p.read_text()) for p in round_files]
    firsts = [p["started_at"] for p in payloads if p["round"] == 0]
    seconds = [p["started_at"] for p in payloads if p["round"] == 1]
    assert max(firsts) <= min(seconds)  # every cell's round 1 before any round 2
    for cell in (run_dir / "cells").glob("*.json"):
        payload = json.loads(cell.read_text())
        values = rounds.round_values(payload, "latency_p50")
        assert len(values) == 2
        combined = {m: v for m, v, _ in payload["records"]}["latency_p50"]
        assert combined == pytest.approx(statistics.median(values))
    # An interrupted second round: only it is measured again.
    lost = next(p for p in round_files if p.name == "1.json")
    kept = {p: p.stat().st_mtime_ns for p in round_files if p != lost}
    lost.unlink()  # as if the run stopped while measuring it: the cell holds round 1 only
    store = RunStore(run_dir)
    store.save_cell(rounds.combine(store.round_results(lost.parent.name), planned=2))
    again = invoke_cmd("run", "--experiment", str(TINY_SPEC), "--runner", "host", "--rounds", "2",
                       results=tmp_path)
    assert again.returncode == 0, again.stderr
    assert lost.is_file() and all(p.stat().st_mtime_ns == t for p, t in kept.items())
    assert "round 2/2" in again.stderr and "round 1/2" not in again.stderr


def test_a_run_from_before_rounds_is_migrated_when_opened(tmp_path):
    from toolkit.errors import UserError
    from toolkit.results import FORMAT, FORMAT_KEY

    run = tmp_path / "old"
    (run / "cells").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"run_id": "old", "cell_ids": ["c"],
                                                   "selection": {}}))  # format 1: no field
    legacy = {"cell_id": "c", "experiment": "e", "kind": "inference", "coords": {},
              "status": "ok", "reason": "", "runner": "docker", "settings": {},
              "image": "edgerepro/onnxruntime:amd64-1", "image_id": "sha256:abc",
              "records": [["latency_p50", 1e-3, "s"]], "samples": {}}
    (run / "cells" / "c.json").write_text(json.dumps(legacy))
    store = RunStore.open(tmp_path, "old")
    assert store.manifest["format"] == FORMAT
    assert store.cell_results()["c"]["rounds"][0]["values"] == {"latency_p50": 1e-3}
    assert store.done_rounds("c") == {0} and store.is_complete()
    metadata = pl.read_parquet_metadata(run / "records.parquet")
    assert metadata[FORMAT_KEY] == str(FORMAT)
    # The cells table gains the columns format 1 lacked, e.g. the image id the report lists.
    assert pl.read_parquet(run / "cells.parquet")["image_id"].to_list() == ["sha256:abc"]
    assert not store.migrate()  # already current
    store.update_manifest(format=FORMAT + 1)
    with pytest.raises(UserError, match="newer edgerepro"):
        RunStore.open(tmp_path, "old")
