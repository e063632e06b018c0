"""The inference scenario (toolkit.device.inference.scenario) owns a cell's sequence once: a new
backend that implements its small interface gets every standard part (input batch, first run,
protocol, latency and memory records, verdict, result) without writing any of it. The
onnxruntime cell runs through it for real, the TensorRT cell on CPU stand-ins (fake_gpu_stack),
and both return the records, series and settings the cells returned before the scenario."""
import contextlib
import json
import time
import weakref

import numpy as np
import pytest

from toolkit.device.inference import scenario
from toolkit.device.results import NotRun

PROTOCOL = {"warmup_count": 2, "warmup_seconds": 0.0, "min_count": 5, "min_seconds": 0.0,
            "max_seconds": 30.0, "max_cv": 10.0}
BATCH, INPUT_SHAPE = 4, [3, 8, 8]
RUN_SECONDS = 0.002
RSS = [1000, 1500]  # what the stand-in peak_rss_bytes returns, call after call


class Infer(object):
    """A callable infer (weak-referenceable, so a test can see when it is released)."""

    def __init__(self, backend, x):
        self.backend, self.x = backend, x

    def __call__(self):
        backend = self.backend
        backend.runs += 1
        if backend.runs == backend.fail_at:
            raise RuntimeError("run {} failed".format(backend.runs))
        time.sleep(RUN_SECONDS)
        return self.x.sum()


class SleepingBackend(scenario.InferenceBackend):
    """A pure-Python backend: each inference sleeps a fixed time; it logs its calls."""

    def __init__(self, fail_at=None):
        self.calls, self.runs, self.fail_at = ["init"], 0, fail_at

    @contextlib.contextmanager
    def scope(self, job):
        self.calls.append("enter")
        try:
            yield
        finally:
            self.infer_alive_at_exit = self.infer_ref is not None and self.infer_ref() is not None
            self.calls.append("exit")

    infer_ref = None

    def check(self, job):
        self.calls.append("check")
        if job["coords"]["device"] != "cpu":
            raise NotRun("sleeping runs on the CPU only")

    def load(self, job):
        self.calls.append("load")
        return [("sleeping_load", 0.5, "s"), ("sleeping_model_size", 64.0, "B")]

    def prepare(self, x):
        self.calls.append("prepare")
        self.x = x
        infer = Infer(self, x)
        self.infer_ref = weakref.ref(infer)
        return infer

    def measurements(self, samples):
        self.calls.append("measurements")
        self.seen, self.runs_seen = list(samples), self.runs
        return [("sleeping_runs", float(self.runs), "count")], {
            "sleeping_series": {"unit": "s", "values": [RUN_SECONDS]}}

    def describe(self):
        self.calls.append("describe")
        return {"settings": {"sleeping": True}, "versions": {"sleeping": "1"}}


@pytest.fixture
def rss(monkeypatch):
    """peak_rss_bytes logs its calls into the backend's: the baseline and the peak are placed."""
    state = {"backend": None, "values": iter(RSS)}

    def peak():
        state["backend"].calls.append("rss")
        return next(state["values"])

    monkeypatch.setattr(scenario.memory, "peak_rss_bytes", peak)
    return state


def job(device="cpu", seed=7, **protocol):
    return {"kind": "inference", "coords": {"framework": "sleeping", "device": device,
                                            "precision": "fp32", "batch": BATCH},
            "settings": {"input_shape": list(INPUT_SHAPE), "seed": seed},
            "protocol": dict(PROTOCOL, **protocol), "artifacts": {}}


def records_of(result):
    records = {name: (value, unit) for name, value, unit in result["records"]}
    assert len(records) == len(result["records"]), "a record appears twice"
    return records


def test_a_new_backend_gets_every_part_of_the_scenario(rss):
    backend = rss["backend"] = SleepingBackend()
    result = scenario.run(job(), backend)
    json.dumps(result)  # the result file is plain JSON
    # The baseline after the framework's import (the constructor), the peak after the runs.
    assert backend.calls == ["init", "rss", "enter", "check", "load", "prepare", "rss",
                             "measurements", "describe", "exit"]
    assert not backend.infer_alive_at_exit  # the scope can release what infer holds
    assert set(result) == {"records", "invalid", "samples", "timing", "settings", "versions"}
    samples = result["samples"]["latency"]["values"]
    # The protocol: one untimed first run, the warm-up dropped, at least min_count samples,
    # each sample timing a whole run.
    assert len(samples) >= PROTOCOL["min_count"] and min(samples) >= RUN_SECONDS
    assert backend.runs == 1 + PROTOCOL["warmup_count"] + len(samples) == backend.runs_seen
    assert result["timing"]["warmup_count"] == PROTOCOL["warmup_count"]
    assert set(result["timing"]) == {"warmup_count", "warmup_seconds", "measure_seconds"}
    assert backend.seen == samples
    # The standard records, with their units, the setup records first.
    records = records_of(result)
    assert [n for n, _, _ in result["records"][:3]] == ["sleeping_load", "sleeping_model_size",
                                                        "first_run"]
    assert records["first_run"][1] == "s" and records["first_run"][0] >= RUN_SECONDS
    p50 = records["latency_p50"][0]
    assert p50 == pytest.approx(float(np.median(samples)))
    assert records["latency_n"] == (len(samples), "count")
    assert records["throughput"] == (pytest.approx(BATCH / p50), "1/s")
    for key in ("min", "max", "mean", "p90", "p99", "std", "iqr"):
        assert records["latency_" + key][1] == "s"
    assert records["latency_cv"][1] == records["latency_rcv"][1] == "ratio"
    assert records["rss_baseline"] == (RSS[0], "B") and records["rss_peak"] == (RSS[1], "B")
    assert records["model_memory"] == (RSS[1] - RSS[0], "B")
    assert [n for n, _, _ in result["records"][-3:]] == ["rss_baseline", "rss_peak",
                                                         "model_memory"]
    assert records["sleeping_runs"] == (float(backend.runs), "count")  # the backend's own
    assert records["sleeping_load"] == (0.5, "s")
    assert result["samples"]["sleeping_series"] == {"unit": "s", "values": [RUN_SECONDS]}
    assert result["invalid"] is None
    assert result["settings"] == {"sleeping": True} and result["versions"] == {"sleeping": "1"}


def test_the_input_is_seeded_and_shaped_from_the_job(rss):
    backend = rss["backend"] = SleepingBackend()
    scenario.run(job(seed=7), backend)
    shape = tuple([BATCH] + INPUT_SHAPE)
    assert backend.x.shape == shape and backend.x.dtype == np.float32
    # What the onnxruntime and TensorRT cells drew themselves before the scenario.
    expected = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    assert np.array_equal(backend.x, expected)
    again = SleepingBackend()
    rss["backend"], rss["values"] = again, iter(RSS)
    scenario.run(job(seed=8), again)
    assert again.x.shape == shape and not np.array_equal(again.x, expected)
    default = dict(job(), settings={"input_shape": INPUT_SHAPE})  # no seed: 0
    zero = SleepingBackend()
    rss["backend"], rss["values"] = zero, iter(RSS)
    scenario.run(default, zero)
    assert np.array_equal(zero.x, np.random.default_rng(0).standard_normal(shape).astype(
        np.float32))


def test_too_few_samples_make_the_cell_invalid_and_keep_its_records(rss):
    backend = rss["backend"] = SleepingBackend()
    result = scenario.run(job(min_count=10 ** 6, max_seconds=0.03), backend)
    n = len(result["samples"]["latency"]["values"])
    assert result["invalid"] == "only {} samples, protocol needs 1000000".format(n)
    assert records_of(result)["latency_n"] == (n, "count")


def test_a_cell_that_cannot_run_loads_nothing(rss):
    backend = rss["backend"] = SleepingBackend()
    with pytest.raises(NotRun, match="CPU only"):
        scenario.run(job(device="cuda"), backend)
    assert backend.calls == ["init", "rss", "enter", "check", "exit"]


def test_the_scope_is_left_when_a_run_fails(rss):
    backend = rss["backend"] = SleepingBackend(fail_at=4)  # during the warm-up
    with pytest.raises(RuntimeError, match="run 4 failed"):
        scenario.run(job(), backend)
    assert backend.calls == ["init", "rss", "enter", "check", "load", "prepare", "exit"]
