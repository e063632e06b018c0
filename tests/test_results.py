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


def test_cells_table_names_the_image_and_the_widths(tmp_path):
    store = RunStore.create(tmp_path, "r1", {"cell_ids": ["a", "b"], "selection": {}})
    store.save_cell(_payload("a", "ok", 0.01) | {
        "image": "edgerepro/onnxruntime:amd64-1", "image_id": "sha256:abc",
        "settings": {"widths": [32, 64, 128, 128, 256, 256, 256, 256]}})
    store.save_cell(_payload("b", "failed"))  # an older payload: no image, no settings
    store.rebuild_tables()
    cells = {row["cell_id"]: row for row in
             pl.read_parquet(store.path / "cells.parquet").iter_rows(named=True)}
    assert cells["a"]["image_id"] == "sha256:abc"
    assert cells["a"]["widths"] == "[32, 64, 128, 128, 256, 256, 256, 256]"
    assert cells["b"]["image_id"] == "" and cells["b"]["widths"] == "[]"


def test_a_kept_artifact_is_copied_once(tmp_path):
    store = RunStore.create(tmp_path, "r1", {"cell_ids": [], "selection": {}})
    source = tmp_path / "cache" / "vgg11-abc.json"
    source.parent.mkdir()
    source.write_text('{"fit": 1}')
    kept = store.keep_artifact(source, "neuralscale")
    assert kept == store.path / "neuralscale" / "vgg11-abc.json"
    assert kept.read_text() == '{"fit": 1}'
    source.write_text('{"fit": 2}')  # same name, same content hash: never rewritten
    store.keep_artifact(source, "neuralscale")
    assert kept.read_text() == '{"fit": 1}'


def test_ctrl_c_while_a_cell_is_recorded_waits_until_it_is_whole(tmp_path):
    """The cell file and the tables are written whole, then the interrupt is raised."""
    import os
    import signal

    import pytest

    store = RunStore.create(tmp_path, "r1", {"cell_ids": ["a"], "selection": {}})
    original = store.rebuild_tables

    def interrupted_rebuild():
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives mid-way
        original()

    store.rebuild_tables = interrupted_rebuild
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        store.record_cell(_payload("a", "ok", 0.01))
    assert signal.getsignal(signal.SIGINT) is handler
    assert store.finished_ids() == {"a"}
    assert pl.read_parquet(store.path / "cells.parquet")["cell_id"].to_list() == ["a"]
