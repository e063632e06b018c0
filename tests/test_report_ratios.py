"""The scaling study's derived figures in the report: per-cell and NeuralScale ÷ uniform."""
import json

from toolkit.report.render import render_report
from toolkit.results import RunStore


def _cell(store: RunStore, method: str, scale: float, latency: float, memory: float,
          params: float, accuracy: float) -> None:
    store.save_cell({
        "cell_id": f"{method}-{scale}", "experiment": "scaling-inference", "status": "ok",
        "reason": "", "runner": "host", "started_at": "t", "wall_s": 1.0,
        "coords": {"model": "vgg11", "method": method, "scale": scale,
                   "framework": "onnxruntime", "device": "cpu", "precision": "fp32", "batch": 1},
        "records": [["latency_p50", latency, "s"], ["model_memory", memory, "B"],
                    ["params", params, "count"], ["accuracy", accuracy, "ratio"]],
    })


def test_derived_columns_and_method_ratios(tmp_path):
    store = RunStore.create(tmp_path, "run", {"profile": "smoke", "experiments": [
        "scaling-inference"], "selection": {}, "cell_ids": []})
    _cell(store, "uniform", 0.5, 0.002, 40e6, 2e6, 0.80)
    _cell(store, "neuralscale", 0.5, 0.005, 60e6, 2e6, 0.84)
    store.rebuild_tables()
    md = render_report(store.path, tmp_path / "out")["md"].read_text()
    assert "accuracy / MB" in md and "memory / param (B)" in md
    assert "| 20.0 | ok |" in md and "| 30.0 | ok |" in md  # 40e6 B / 2e6 params; 60e6 / 2e6
    assert "**NeuralScale ÷ uniform at equal scale**" in md
    ratio_row = next(line for line in md.splitlines() if line.startswith("| vgg11 | 0.5 |"))
    # latency 2.5, memory 1.5, memory/param 1.5, accuracy/MB (0.84/60)/(0.80/40) = 0.7, acc 1.05
    assert ratio_row.split(" | ")[6:] == ["2.50", "1.50", "1.50", "0.700", "1.05 |"]
    assert json.loads((store.path / "manifest.json").read_text())["run_id"] == "run"
