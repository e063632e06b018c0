"""The training benchmarks' set-up (not their timings): the harness-overhead bench compares the
cell with a bare loop of the same settings, and the freeze bench measures the claims' profile."""
import math
import tomllib
from pathlib import Path

from toolkit import bench, bench_training
from toolkit.device import job as device_job
from toolkit.device import models
from toolkit.results import record_values

PUBLISHED = Path(__file__).resolve().parents[1] / "reports" / "published"


def test_the_overhead_cell_is_the_quick_pytorch_cpu_cell_with_a_count_only_protocol():
    cell = bench_training.overhead_cell()
    assert cell.experiment == "training" and cell.kind == "training"
    assert cell.coords | {"freeze": 0} == {"model": "vgg16", "framework": "pytorch",
                                           "device": "cpu", "precision": "fp32", "freeze": 0,
                                           "batch": 64}
    job = bench_training.cell_job(cell, dict(cell.settings), {})
    assert job["protocol"]["warmup_seconds"] == 0 and job["protocol"]["min_seconds"] == 0
    assert job["protocol"]["min_count"] == bench_training.OVERHEAD_STEPS
    bare = bench_training.bare_job(job)
    assert bare["kind"] == "training_bare"
    assert {k: v for k, v in bare.items() if k != "kind"} == \
        {k: v for k, v in job.items() if k != "kind"}


def test_the_bare_loop_trains_with_the_cells_settings():
    """Run both jobs (a narrow VGG-16 at batch 4 to stay quick): every setting the step's cost
    depends on is the one the cell used, and the bare loop times the protocol's steps."""
    cell = bench_training.overhead_cell()
    settings = dict(cell.settings, widths=models.scale_widths("vgg16", 0.125),
                    data={"name": "synthetic", "n_train": 64, "n_test": 16})
    job = bench_training.cell_job(cell, settings, {})
    job["coords"] = dict(job["coords"], batch=4)
    job["protocol"] = dict(job["protocol"], warmup_count=1, min_count=3, max_cv=100.0)
    results = {name: device_job.execute(one) for name, one in
               (("cell", job), ("bare", bench_training.bare_job(job)))}
    for name, result in results.items():
        assert result["status"] == "ok", (name, result["reason"])
    used = {name: result["settings"] for name, result in results.items()}
    for key in ("optimizer", "lr", "momentum", "weight_decay", "threads", "freeze_split",
                "trainable_params", "classes", "widths"):
        assert used["bare"][key] == used["cell"][key], key
    assert used["bare"]["freeze_split"] > 0  # freeze 10: a frozen prefix on both sides
    assert len(results["bare"]["samples"]["step_time"]["values"]) == 3


def test_the_freeze_bench_measures_the_profile_the_cpu_claim_is_judged_on():
    claims = tomllib.loads((PUBLISHED / "meissl_retraining.toml").read_text())["claims"]
    cpu = next(c for c in claims if c["id"] == "meissl-freeze-plus-precision-speedup-cpu")
    assert cpu["min_profile"] == bench.TRAINING_BENCH_PROFILE


def test_the_in_process_job_alternates_the_cells_path_and_the_bare_loop():
    cell = bench_training.overhead_cell()
    settings = dict(cell.settings, widths=models.scale_widths("vgg16", 0.125),
                    data={"name": "synthetic", "n_train": 64, "n_test": 16})
    job = bench_training.cell_job(cell, settings, {})
    job["coords"] = dict(job["coords"], batch=4)
    job = bench_training.in_process_job(job)
    assert job["kind"] == "training_harness_overhead"
    result = device_job.execute(job)
    assert result["status"] == "ok", result["reason"]
    values = record_values(result["records"])
    rounds, steps = bench_training.OVERHEAD_ROUNDS, bench_training.OVERHEAD_BLOCK_STEPS
    assert values["rounds"] == rounds
    assert values["cell_n"] == values["bare_n"] == rounds * steps
    assert values["cell_p50"] > 0 and values["bare_p50"] > 0
    assert math.isfinite(values["overhead"]) and values["overhead"] > -1
    used = result["settings"]
    for key in ("optimizer", "lr", "threads", "freeze_split", "trainable_params", "widths"):
        assert used["bare"][key] == used["cell"][key], key
