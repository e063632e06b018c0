"""The training scenario (toolkit.device.scenarios.training) owns a cell's sequence once: a new
backend that implements its small interface gets every standard part (protocol, max_steps,
records, evaluation, result) without writing any of it (the TensorRT backend on CPU stand-ins:
test_tensorrt_training_cell.py)."""
import contextlib
import json
import math
import time

import numpy as np
import pytest

from toolkit.device.results import NotRun
from toolkit.device.scenarios import training as scenario
from toolkit.device.training import common

PROTOCOL = {"warmup_count": 1, "warmup_seconds": 0.0, "min_count": 3, "min_seconds": 0.0,
            "max_seconds": 30.0, "max_cv": 10.0}
BATCH, N_TRAIN = 16, 64
STEP_SECONDS = 0.002
FLOPS = {"train": 300.0, "forward": 100.0, "train_ratio": 1.0}


class CountingBackend(scenario.TrainingBackend):
    """A pure-Python backend: its "model" halves the loss at every step; it logs its calls."""

    name = "counting"

    def __init__(self, loss=8.0):
        self.calls, self.loss, self.steps = [], loss, 0

    @contextlib.contextmanager
    def scope(self, job):
        self.calls.append("enter")
        try:
            yield
        finally:
            self.calls.append("exit")

    def check(self, job):
        self.calls.append("check")
        if job["coords"]["device"] != "cpu":
            raise NotRun("counting runs on the CPU only")

    def setup(self, job, dataset):
        self.calls.append("setup")
        return dict(FLOPS)

    def prepare(self, x, y):
        return ("prepared", x), y

    def step(self, x, y):
        assert x[0] == "prepared" and len(x[1]) == len(y) == BATCH
        time.sleep(STEP_SECONDS)
        self.steps += 1
        loss, self.loss = self.loss, self.loss / 2
        return np.float32(loss)

    def measurements(self, samples):
        self.calls.append("measurements")
        self.seen = list(samples)
        return [("counting_setup", 0.25, "s")], {"counting_series": {"unit": "s",
                                                                     "values": [1.0]}}

    def evaluate(self, dataset):
        self.calls.append("evaluate")
        self.steps_before_evaluation = self.steps
        return {"accuracy": 0.75}

    def describe(self):
        self.calls.append("describe")
        return {"settings": {"counting": True, "trainable_params": ["w"]},
                "versions": {"counting": "1"}}


def job(device="cpu", **settings):
    base = {"model": "vgg16", "seed": 0,
            "data": {"name": "synthetic", "n_train": N_TRAIN, "n_test": 16}}
    base.update(settings)
    return {"kind": "training", "coords": {"framework": "counting", "device": device,
                                           "precision": "fp32", "freeze": 0, "batch": BATCH},
            "settings": base, "protocol": dict(PROTOCOL), "artifacts": {}}


def records_of(result):
    records = {name: (value, unit) for name, value, unit in result["records"]}
    assert len(records) == len(result["records"]), "a record appears twice"
    return records


def test_a_new_backend_gets_every_part_of_the_scenario():
    backend = CountingBackend()
    result = scenario.run(job(), backend)
    json.dumps(result)  # the result file is plain JSON
    records = records_of(result)
    assert backend.calls == ["enter", "check", "setup", "measurements", "describe", "exit"]
    samples = result["samples"]["step_time"]["values"]
    losses = result["samples"]["loss"]["values"]
    # The protocol: one untimed first step, the warm-up dropped, at least min_count samples,
    # each sample timing a whole step.
    assert len(samples) >= PROTOCOL["min_count"] and min(samples) >= STEP_SECONDS
    assert backend.steps == len(losses) == 1 + PROTOCOL["warmup_count"] + len(samples)
    assert result["timing"]["warmup_count"] == PROTOCOL["warmup_count"]
    assert backend.seen == samples
    assert losses == [8.0 / 2 ** i for i in range(len(losses))]
    # The standard records, with their units.
    p50 = records["step_time_p50"][0]
    assert records["step_time_n"] == (len(samples), "count")
    assert records["throughput"] == (pytest.approx(BATCH / p50), "1/s")
    assert records["first_step"][1] == "s" and records["first_step"][0] >= STEP_SECONDS
    assert records["train_flops_per_image"] == (FLOPS["train"], "FLOP")
    assert records["forward_flops_per_image"] == (FLOPS["forward"], "FLOP")
    assert records["train_flops_per_step"] == (FLOPS["train"] * BATCH, "FLOP")
    assert records["achieved_flops"] == (pytest.approx(FLOPS["train"] * BATCH / p50), "FLOP/s")
    assert records["epoch_time_estimate"] == (pytest.approx(N_TRAIN / BATCH * p50), "s")
    assert records["loss_first"] == (8.0, "nat") and records["loss_last"] == (losses[-1], "nat")
    assert records["loss_finite"] == (1.0, "ratio")
    assert records["steps"] == (float(len(losses)), "count")
    assert records["rss_peak"][1] == records["rss_baseline"][1] == "B"
    assert records["rss_peak"][0] >= records["rss_baseline"][0] > 0
    assert records["counting_setup"] == (0.25, "s")  # the backend's own
    assert "accuracy" not in records  # epochs 0: timing only
    assert result["samples"]["counting_series"] == {"unit": "s", "values": [1.0]}
    assert result["invalid"] is None
    assert result["settings"]["counting"] is True and result["settings"]["epochs"] == 0
    assert result["settings"]["data"]["name"] == "synthetic"
    assert result["versions"] == {"counting": "1"}


def test_an_epochs_run_is_capped_by_max_steps_and_evaluated_after_its_steps():
    backend = CountingBackend()
    result = scenario.run(job(epochs=2, max_steps=5), backend)
    records = records_of(result)
    # 64 images / 16 = 4 steps an epoch, 8 in two: the cap stops 5 timed steps after the first.
    assert backend.steps == len(result["samples"]["loss"]["values"]) == 6
    assert len(result["samples"]["step_time"]["values"]) == 5 - PROTOCOL["warmup_count"]
    assert backend.calls == ["enter", "check", "setup", "measurements", "evaluate", "describe",
                             "exit"]
    assert backend.steps_before_evaluation == 6
    assert records["accuracy"] == (0.75, "ratio")
    assert result["settings"]["epochs"] == 2
    uncapped = CountingBackend()
    scenario.run(job(epochs=2, max_steps=0), uncapped)  # the spec default: no cap
    assert uncapped.steps == 8


def test_a_non_finite_loss_makes_the_cell_invalid():
    result = scenario.run(job(), CountingBackend(loss=math.inf))
    assert result["invalid"] == "non-finite loss"
    assert records_of(result)["loss_finite"] == (0.0, "ratio")


def test_a_cell_that_cannot_run_loads_and_builds_nothing(monkeypatch):
    monkeypatch.setattr(common, "load_data", lambda job: pytest.fail("data loaded"))
    backend = CountingBackend()
    with pytest.raises(NotRun, match="CPU only"):
        scenario.run(job(device="cuda"), backend)
    assert backend.calls == ["enter", "check", "exit"]
