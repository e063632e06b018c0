import polars as pl

from toolkit.results import RunStore, latest_run


def _payload(cell_id: str, status: str, latency: float | None = None) -> dict:
    records = [["latency_p50", latency, "s"]] if latency is not None else []
    return {"cell_id": cell_id, "experiment": "e", "status": status, "reason": "",
            "runner": "host", "started_at": "t", "wall_s": 1.0, "records": records,
            "coords": {"model": "vgg11", "method": "uniform", "scale": 0.5,
                       "framework": "onnxruntime", "device": "cpu", "precision": "fp32",
                       "batch": 1},
            "samples": {"latency": {"unit": "s", "values": [0.1, 0.2]}} if latency else {}}


def test_store_tables_and_finished_cells(tmp_path):
    store = RunStore.create(tmp_path, "r1", {"cell_ids": ["a", "b", "c"], "selection": {}})
    store.save_cell(_payload("a", "ok", 0.01))
    store.save_cell(_payload("b", "failed"))
    store.rebuild_tables()
    assert store.finished_ids() == {"a"}  # failed cells are retried
    assert not store.is_complete()
    records = pl.read_parquet(store.path / "records.parquet")
    assert records.select("cell_id", "metric", "value").rows() == [("a", "latency_p50", 0.01)]
    cells = pl.read_parquet(store.path / "cells.parquet")
    assert sorted(cells["status"].to_list()) == ["failed", "ok"]
    assert pl.read_parquet(store.path / "samples.parquet").height == 2
    assert pl.read_csv(store.path / "records.csv").equals(records)
    store.save_cell(_payload("b", "not run"))
    store.save_cell(_payload("c", "ok", 0.02))
    assert store.is_complete()
    assert latest_run(tmp_path).run_id == "r1"
    assert not list(store.cells_dir.glob(".*tmp*"))  # atomic writes leave no temporaries
