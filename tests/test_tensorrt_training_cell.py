"""The TensorRT training cell end to end on the CPU: tensorrt and pycuda stand-ins
(fake_gpu_stack) build the step graph's network and execute it in NumPy, so every stage of
run(job) (context, memory probe, build, engine cache, buffers, steps, swap, release) runs
without a GPU. What is checked is the sequence and what is recorded, not speed."""
import json
import sys
import types

import fake_gpu_stack
import numpy as np
import pytest

from toolkit.device.backends.tensorrt import runtime, training
from toolkit.device.results import NotRun

PROTOCOL = {"warmup_count": 1, "warmup_seconds": 0.0, "min_count": 3, "min_seconds": 0.0,
            "max_seconds": 30.0, "max_cv": 10.0}
NARROW = [4, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8]


@pytest.fixture
def stack(monkeypatch):
    found = fake_gpu_stack.make_stack()
    monkeypatch.setattr(runtime, "require_stack", lambda: found)
    monkeypatch.setitem(sys.modules, "pycuda", types.SimpleNamespace(VERSION_TEXT="fake"))
    return found


def trt_job(**settings):
    base = {"model": "vgg16", "widths": NARROW, "classes": 10, "seed": 0, "lr": 0.05,
            "momentum": 0.9, "weight_decay": 5e-4, "distinct_batches": 2,
            "data": {"name": "synthetic", "n_train": 8, "n_test": 4, "classes": 10}}
    base.update(settings)
    return {"kind": "training", "coords": {"framework": "tensorrt", "device": "cuda",
                                           "precision": "fp32", "freeze": 2, "batch": 2},
            "settings": base, "protocol": dict(PROTOCOL), "artifacts": {}}


def test_the_tensorrt_cell_runs_end_to_end(stack, tmp_path):
    """Engine built from the step graph, executed in NumPy; released before the context pops."""
    trt_cell = trt_job()
    trt_cell["artifacts"]["engine_cache_dir"] = str(tmp_path)
    result = training.run(trt_cell)
    json.dumps(result)
    records = {n: (v, u) for n, v, u in result["records"]}
    assert {"first_step", "step_time_p50", "throughput", "achieved_flops", "gpu_step_time_p50",
            "network_define", "engine_build", "engine_load", "engine_plan_size",
            "engine_device_memory", "gpu_memory_delta_built", "gpu_memory_peak_delta",
            "rss_peak", "loss_first", "steps"} <= set(records)
    assert records["engine_from_cache"] == (0.0, "ratio")
    samples = result["samples"]
    assert samples["gpu_step_time"]["values"] == [0.001] * len(samples["step_time"]["values"])
    losses = samples["loss"]["values"]
    assert len(losses) == records["steps"][0] and all(np.isfinite(losses))
    assert len(set(losses)) == len(losses)  # the parameters change between steps
    assert result["settings"]["accuracy"] == "not measured" and result["invalid"] is None
    assert stack[1].popped == [0]  # every device buffer freed while the context was current
    again = training.run(trt_cell)
    assert ("engine_from_cache", 1.0, "ratio") in again["records"]
    assert again["samples"]["loss"]["values"] == losses
    capped = training.run(trt_job(epochs=2, max_steps=3))  # 4 batches an epoch
    assert len(capped["samples"]["loss"]["values"]) == 4
    assert stack[1].popped == [0, 0, 0]


def test_the_tensorrt_cell_says_why_it_cannot_run(stack):
    with pytest.raises(NotRun, match="SGD only"):
        training.run(trt_job(optimizer="adamw"))
    with pytest.raises(NotRun, match="not bf16"):
        training.run(dict(trt_job(), coords=dict(trt_job()["coords"], precision="bf16")))
    assert stack[1].popped and not any(stack[1].popped)  # no context left pushed or holding
