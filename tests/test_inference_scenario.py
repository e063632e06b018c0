"""The inference scenario (toolkit.device.scenarios.inference) owns a cell's sequence once: a new
backend that implements its small interface gets every standard part (input batch, first run,
protocol, latency and memory records, verdict, result) without writing any of it. The
onnxruntime cell runs through it for real, the TensorRT cell on CPU stand-ins (fake_gpu_stack),
and both return the records, series and settings the cells returned before the scenario."""
import contextlib
import inspect
import json
import sys
import time
import types
import weakref

import fake_gpu_stack
import numpy as np
import pytest

from toolkit.device.backends.onnxruntime import inference as ort
from toolkit.device.backends.tensorrt import inference, runtime
from toolkit.device.results import NotRun
from toolkit.device.scenarios import inference as scenario

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


# What the cells returned before the scenario (their own sequence, at beea0a5), run on the tiny
# model below: (name, unit) of every record, in order, and the sample series and settings.
LATENCY = [("latency_" + k, "s") for k in ("iqr", "max", "mean", "min", "p50", "p90", "p99",
                                           "std")] + [
    ("latency_cv", "ratio"), ("latency_rcv", "ratio"), ("latency_n", "count"),
    ("throughput", "1/s")]
RSS_RECORDS = [("rss_baseline", "B"), ("rss_peak", "B"), ("model_memory", "B")]
ORT_RECORDS = [("session_create", "s"), ("first_run", "s")] + LATENCY + RSS_RECORDS
ORT_SETTINGS = {"providers", "intra_op_num_threads", "inter_op_num_threads", "execution_mode",
                "graph_optimization_level", "enable_cpu_mem_arena", "enable_mem_pattern",
                "training_addon_loaded"}
TIMING = {"warmup_count", "warmup_seconds", "measure_seconds"}
# TensorRT: engine_plan_size, a setup record, now comes before first_run (it came right after).
TRT_RECORDS = [("engine_build", "s"), ("engine_from_cache", "ratio"),
               ("engine_deserialize", "s"), ("context_create", "s"), ("engine_plan_size", "B"),
               ("first_run", "s")] + LATENCY + [
    (part + k, "s") for part in ("gpu_compute_", "h2d_", "d2h_", "enqueue_")
    for k in ("iqr", "max", "mean", "min", "p50", "p90", "p99", "std")] + [
    ("engine_device_memory", "B"), ("gpu_memory_baseline", "B"),
    ("gpu_memory_delta_engine", "B"), ("gpu_memory_delta_context", "B"),
    ("gpu_memory_delta_buffers", "B"), ("gpu_memory_delta_after_runs", "B"),
    ("gpu_memory_peak_delta", "B")] + RSS_RECORDS
TRT_SERIES = {"latency", "h2d", "gpu_compute", "d2h", "enqueue"}


def tiny_onnx(path, batch=BATCH):
    """Conv (4 maps, 3x3, no bias) + Relu on [batch] + INPUT_SHAPE, a static batch as the
    toolkit's exports have."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3],
                           np.random.default_rng(0).standard_normal(108).astype(np.float32))
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["y"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["y"], ["output"])], "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch] + INPUT_SHAPE)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 4, 8, 8])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                                ir_version=8), str(path))
    return str(path)


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


def ort_job(path, **coords):
    return {"kind": "inference",
            "coords": dict({"framework": "onnxruntime", "device": "cpu", "precision": "fp32",
                            "batch": BATCH}, **coords),
            "settings": {"input_shape": list(INPUT_SHAPE), "seed": 0, "threads": 1,
                         "cpu_mem_arena": True, "mem_pattern": True},
            "artifacts": {"onnx": path}, "protocol": dict(PROTOCOL)}


def test_the_onnxruntime_cell_returns_what_it_returned_before_the_scenario(tmp_path):
    pytest.importorskip("onnxruntime")
    result = ort.run(ort_job(tiny_onnx(tmp_path / "tiny.onnx")))
    json.dumps(result)
    assert [(n, u) for n, _, u in result["records"]] == ORT_RECORDS
    assert set(result["samples"]) == {"latency"} and result["samples"]["latency"]["unit"] == "s"
    assert set(result["settings"]) == ORT_SETTINGS
    assert result["settings"]["providers"] == ["CPUExecutionProvider"]
    assert result["settings"]["intra_op_num_threads"] == 1
    assert set(result["versions"]) == {"onnxruntime", "numpy"}
    assert set(result["timing"]) == TIMING and result["invalid"] is None
    records = records_of(result)
    assert records["latency_n"][0] == len(result["samples"]["latency"]["values"]) >= 5


def test_the_onnxruntime_cell_checks_before_it_loads(tmp_path):
    pytest.importorskip("onnxruntime")
    missing = str(tmp_path / "absent.onnx")  # loading it would fail otherwise
    with pytest.raises(NotRun, match="fp32 ONNX export; fp16 is not built"):
        ort.run(ort_job(missing, precision="fp16"))
    with pytest.raises(NotRun, match="no tpu in onnxruntime"):
        ort.run(ort_job(missing, device="tpu"))


def test_every_inference_cell_goes_through_the_scenario():
    for module in (ort, inference):
        assert "scenario.run(job, " in inspect.getsource(module.run), module.__name__
    source = inspect.getsource(inference)
    assert "sample(" not in source and "latency_records(" not in source


@pytest.fixture
def stack(monkeypatch):
    """tensorrt and pycuda.driver stand-ins that build and run the engine on the CPU."""
    found = fake_gpu_stack.make_stack()
    monkeypatch.setattr(runtime, "require_stack", lambda: found)
    monkeypatch.setitem(sys.modules, "pycuda", types.SimpleNamespace(VERSION_TEXT="fake"))
    return found


def trt_job(path, **coords):
    return {"kind": "inference",
            "coords": dict({"framework": "tensorrt", "device": "cuda", "precision": "fp32",
                            "batch": BATCH}, **coords),
            "settings": {"input_shape": list(INPUT_SHAPE), "seed": 3},
            "artifacts": {"onnx": path}, "protocol": dict(PROTOCOL)}


def test_the_tensorrt_cell_returns_what_it_returned_before_the_scenario(stack, tmp_path):
    """Built from the ONNX model, run on the seeded batch, released before the context pops."""
    ort_runtime = pytest.importorskip("onnxruntime")
    cuda = stack[1]
    copies = {"in": [], "out": []}
    upload, download = cuda.memcpy_htod_async, cuda.memcpy_dtoh_async

    def spy_upload(allocation, host, stream=None):
        copies["in"].append(np.array(host))
        upload(allocation, host, stream)

    def spy_download(host, allocation, stream=None):
        download(host, allocation, stream)
        copies["out"].append(np.array(host))

    cuda.memcpy_htod_async, cuda.memcpy_dtoh_async = spy_upload, spy_download
    path = tiny_onnx(tmp_path / "tiny.onnx")
    job = trt_job(path)
    job["artifacts"]["engine_cache_dir"] = str(tmp_path / "engines")
    result = inference.run(job)
    json.dumps(result)
    assert [(n, u) for n, _, u in result["records"]] == TRT_RECORDS
    records = records_of(result)
    samples = result["samples"]
    n = len(samples["latency"]["values"])
    assert set(samples) == TRT_SERIES and records["latency_n"][0] == n >= 5
    for name in ("h2d", "gpu_compute", "d2h"):  # the kept runs' events (stand-ins: 1 ms)
        assert samples[name] == {"unit": "s", "values": [0.001] * n}
    enqueue = samples["enqueue"]["values"]  # host clock around the execution call
    latency = samples["latency"]["values"]
    assert all(0 < t <= run for t, run in zip(enqueue, latency, strict=True))
    assert records["engine_from_cache"] == (0.0, "ratio")
    in_bytes, out_bytes = 4 * BATCH * 3 * 8 * 8, 4 * BATCH * 4 * 8 * 8
    assert records["gpu_memory_delta_buffers"] == (in_bytes + out_bytes, "B")
    assert set(result["settings"]) == {"precision", "workspace", "engine_cache", "gpu", "io"}
    assert result["settings"]["io"] == [
        {"name": "input", "shape": [BATCH] + INPUT_SHAPE, "dtype": "float32"},
        {"name": "output", "shape": [BATCH, 4, 8, 8], "dtype": "float32"}]
    assert result["settings"]["engine_cache"]["kind"] == "tensorrt-inference"
    assert set(result["versions"]) == {"tensorrt", "numpy"}
    assert set(result["timing"]) == TIMING and result["invalid"] is None
    # Every run uploaded the seeded batch; the engine's output is the model's (onnxruntime's).
    x = np.random.default_rng(3).standard_normal([BATCH] + INPUT_SHAPE).astype(np.float32)
    runs = 1 + result["timing"]["warmup_count"] + n
    assert len(copies["in"]) == len(copies["out"]) == runs
    assert all(np.array_equal(c, x) for c in copies["in"])
    session = ort_runtime.InferenceSession(path, providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input": x})[0]
    # The fake engine computes in float64 and stores float32; ONNX Runtime sums in float32 in
    # an order its CPU kernels pick. Each output is a 27-term dot product (3 channels x 3 x 3):
    # within LAMBDA sqrt(27) u sum|w x| of the exact one (tests/numerics.py), plus float32
    # rounding of each result; ReLU does not widen the gap.
    import numerics
    import onnx
    from onnx import numpy_helper

    from toolkit.device.training import numpy_reference

    (w,) = [numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer]
    spread = numpy_reference._conv(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64),
                                   (1, 1), (1, 1), (1, 1))
    u = numerics.UNIT_ROUNDOFF_FP32
    bound = numerics.LAMBDA * np.sqrt(w[0].size) * u * spread + 2 * u * np.abs(expected)
    assert np.all(np.abs(copies["out"][-1] - expected) <= bound)
    assert cuda.popped == [0]  # every device buffer freed while the context was current
    again = inference.run(job)
    assert ("engine_from_cache", 1.0, "ratio") in again["records"]
    assert cuda.popped == [0, 0]


def test_the_tensorrt_cell_checks_before_it_loads(stack, tmp_path, monkeypatch):
    missing = str(tmp_path / "absent.onnx")  # reading it would fail otherwise
    with pytest.raises(NotRun, match="CUDA devices only, not 'cpu'"):
        inference.run(trt_job(missing, device="cpu"))
    with pytest.raises(NotRun, match="fp32 and fp16 here, not bf16"):
        inference.run(trt_job(missing, precision="bf16"))
    monkeypatch.setattr(stack[0].Builder, "platform_has_fast_fp16", False)
    with pytest.raises(NotRun, match="no fast FP16"):
        inference.run(trt_job(missing, precision="fp16"))
    assert stack[1].popped == [0, 0, 0]


def test_a_failing_tensorrt_cell_still_releases_its_engine_in_the_context(stack, tmp_path):
    job = trt_job(tiny_onnx(tmp_path / "tiny.onnx"))
    job["settings"]["input_shape"] = [3, 4, 4]  # not the model's: refused, not run on
    with pytest.raises(ValueError, match=r"the input batch is \[4, 3, 4, 4\], the engine's "
                                         r"input input is \[4, 3, 8, 8\]"):
        inference.run(job)
    assert stack[1].allocations and stack[1].popped == [0]
