"""TensorRT inference cell for the scaling experiment: an engine from the ONNX export, timed the
way trtexec times.

Job (kind "inference", framework "tensorrt"):
- coords: "device" "cuda", "precision" "fp32" | "fp16", "batch".
- settings: "input_shape" ([C, H, W]), "seed", "workspace" (bytes, default 1 GiB).
- artifacts: "onnx" (path), "engine_cache_dir" (optional; plans cached per ONNX content,
  precision, batch, workspace, TensorRT version and GPU).
- protocol: warm-up count/seconds, min count and min seconds, max seconds, max CV.

Per iteration (trtexec's split): H2D copy, GPU compute and D2H copy each between CUDA events;
the enqueue time (host time until the execution call returns); end-to-end latency (host clock
around H2D + execute + D2H + synchronize), which is the sampled latency and gives throughput.
Each kept raw, summarised (min, p50, p90, p99, mean, ...).
Memory: engine device-memory size (what the engine says), plan size (its serialized weights and
kernels), and measured cudaMemGetInfo deltas: after deserializing (weights), after creating the
execution context (activation memory), after the I/O buffers; on an integrated GPU (Jetson) the
system MemAvailable deltas for the same stages; peak RSS.
"""
import hashlib
import time

import numpy as np

from toolkit.device.backends.tensorrt import runtime
from toolkit.device.backends.tensorrt.adapter import Adapter
from toolkit.device.measure import memory
from toolkit.device.measure.sampling import Protocol, sample
from toolkit.device.measure.stats import summarize
from toolkit.device.results import NotRun, latency_records, memory_records

GIB = 1 << 30


def build_from_onnx(trt, adapter, logger, onnx_bytes, precision, batch, workspace):
    # type: (Any, Adapter, Any, bytes, str, int, int) -> bytes
    builder = trt.Builder(logger)
    network = adapter.create_network(builder)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise RuntimeError("TensorRT's ONNX parser failed: " + "; ".join(errors))
    config = adapter.builder_config(builder, workspace, fp16=precision == "fp16")
    adapter.optimization_profile(builder, config, network, batch)
    return adapter.build_plan(builder, network, config)


def _summary_records(prefix, values):
    # type: (str, List[float]) -> List[Tuple[str, float, str]]
    summary = summarize(values)
    return [(prefix + key, value, "s") for key, value in sorted(summary.items())
            if key not in ("n", "cv", "rcv")]


def _measure(session, adapter, probe, settings, batch, protocol):
    # type: (Any, Any, Any, Dict[str, Any], int, Any) -> Dict[str, Any]
    """Context, buffers, the first run and the sampled runs of one engine; only plain values
    leave it (session.close() releases what it created)."""
    cuda, engine = session.cuda, session.engine
    started = time.perf_counter()
    context = session.create_context()
    context_create = time.perf_counter() - started
    probe.mark("context")
    io = adapter.io_tensors(engine)
    inputs = [t for t in io if t["input"]]
    if len(inputs) != 1:
        raise ValueError("expected one input, the engine has {}".format(len(inputs)))
    shape = [batch] + [int(d) for d in settings["input_shape"]]
    if any(d < 0 for d in inputs[0]["shape"]):
        adapter.set_input_shape(engine, context, inputs[0]["name"], shape)
    io = adapter.context_io(engine, context)
    del context  # the session holds it
    buffers = session.allocate(io)
    probe.mark("buffers")
    stream, execute = session.stream, session.execute
    in_name = inputs[0]["name"]
    out_names = [t["name"] for t in io if not t["input"]]
    rng = np.random.Generator(np.random.PCG64(int(settings.get("seed", 0))))
    host_in = buffers.pinned(in_name)
    np.copyto(host_in, rng.standard_normal(host_in.shape).astype(host_in.dtype))
    for name in out_names:
        buffers.pinned(name)
    addresses = buffers.addresses()
    events = [cuda.Event() for _ in range(4)]
    parts = {"h2d": [], "compute": [], "d2h": [], "enqueue": []}  # type: Dict[str, List[float]]

    def infer():
        events[0].record(stream)
        cuda.memcpy_htod_async(buffers.device[in_name], host_in, stream)
        events[1].record(stream)
        t0 = time.perf_counter()
        execute(addresses, stream.handle)
        parts["enqueue"].append(time.perf_counter() - t0)
        events[2].record(stream)
        for name in out_names:
            cuda.memcpy_dtoh_async(buffers.host[name], buffers.device[name], stream)
        events[3].record(stream)
        stream.synchronize()
        parts["h2d"].append(events[1].time_since(events[0]) / 1000.0)
        parts["compute"].append(events[2].time_since(events[1]) / 1000.0)
        parts["d2h"].append(events[3].time_since(events[2]) / 1000.0)

    started = time.perf_counter()
    infer()
    first_run = time.perf_counter() - started
    for values in parts.values():
        del values[:]
    timing = sample(infer, protocol)
    probe.mark("after_runs")
    warm = int(timing["warmup_count"])
    return {"timing": timing, "first_run": first_run, "context_create": context_create,
            "engine_info": adapter.engine_memory(engine), "io": io,
            "parts": {k: v[warm:] for k, v in parts.items()}}  # warm-up iterations dropped


def run(job):
    # type: (Dict[str, Any]) -> Dict[str, Any]
    trt, cuda = runtime.require_stack()
    rss_baseline = memory.peak_rss_bytes()
    adapter = Adapter(trt)
    coords, settings = job["coords"], job["settings"]
    if coords.get("device", "cuda") != "cuda":
        raise NotRun("TensorRT runs on CUDA devices only, not {!r}".format(coords.get("device")))
    precision, batch = coords.get("precision", "fp32"), int(coords["batch"])
    if precision not in ("fp32", "fp16"):
        raise NotRun("TensorRT inference is built for fp32 and fp16 here, not {}".format(
            precision))
    workspace = int(settings.get("workspace", GIB))
    with open(job["artifacts"]["onnx"], "rb") as handle:
        onnx_bytes = handle.read()
    protocol = Protocol.from_dict(job["protocol"])
    with runtime.CudaContext(cuda) as ctx:
        gpu = ctx.describe()
        logger = runtime.make_logger(trt)
        if precision == "fp16" and not trt.Builder(logger).platform_has_fast_fp16:
            raise NotRun("this GPU has no fast FP16 (builder.platform_has_fast_fp16 is False)")
        fields = {"kind": "tensorrt-inference", "format": 1,
                  "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(), "precision": precision,
                  "batch": batch, "workspace": workspace, "tensorrt": trt.__version__,
                  "gpu": gpu["name"], "compute_capability": gpu["compute_capability"]}
        plan, from_cache, build_seconds = runtime.cached_plan(
            job.get("artifacts", {}).get("engine_cache_dir"), fields,
            lambda: build_from_onnx(trt, adapter, logger, onnx_bytes, precision, batch,
                                    workspace))
        probe = runtime.MemoryProbe(cuda, gpu["integrated"])
        started = time.perf_counter()
        session = runtime.EngineSession(trt, cuda, adapter, logger, plan)
        try:
            deserialize = time.perf_counter() - started
            probe.mark("engine")
            result = _measure(session, adapter, probe, settings, batch, protocol)
        finally:
            session.close()  # while the CUDA context is current
    rss_peak = memory.peak_rss_bytes()
    timing, first_run, context_create, engine_info, io, measured = (
        result[k] for k in ("timing", "first_run", "context_create", "engine_info", "io",
                            "parts"))

    latency, invalid = latency_records(timing["samples"], batch, protocol)
    records = [("engine_build", build_seconds, "s"), ("engine_from_cache", float(from_cache),
                                                      "ratio"),
               ("engine_deserialize", deserialize, "s"), ("context_create", context_create, "s"),
               ("first_run", first_run, "s"), ("engine_plan_size", float(len(plan)), "B")]
    records += latency
    records += _summary_records("gpu_compute_", measured["compute"])
    records += _summary_records("h2d_", measured["h2d"])
    records += _summary_records("d2h_", measured["d2h"])
    records += _summary_records("enqueue_", measured["enqueue"])
    records += [(k, v, "B") for k, v in sorted(engine_info.items())]
    records += probe.records() + memory_records(rss_baseline, rss_peak)
    samples = {"latency": {"unit": "s", "values": timing.pop("samples")}}
    for key, values in measured.items():
        samples["gpu_compute" if key == "compute" else key] = {"unit": "s", "values": values}
    return {
        "records": records,
        "invalid": invalid,
        "samples": samples,
        "timing": timing,
        "settings": {"precision": precision, "workspace": workspace, "engine_cache": fields,
                     "gpu": gpu, "io": [{"name": t["name"], "shape": list(t["shape"]),
                                         "dtype": str(t["dtype"])} for t in io]},
        "versions": {"tensorrt": trt.__version__, "numpy": np.__version__},
    }
