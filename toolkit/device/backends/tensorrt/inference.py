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

The sequence (input, first run, protocol, the common records, the result) is the inference
scenario's (toolkit.device.scenarios.inference); TrtBackend holds what is TensorRT's: the CUDA
context as its scope, the engine, the timed run and the engine's own records.
"""
import contextlib
import hashlib
import time

import numpy as np

from toolkit.device.backends.tensorrt import runtime
from toolkit.device.backends.tensorrt.adapter import Adapter
from toolkit.device.measure.stats import summarize
from toolkit.device.results import NotRun
from toolkit.device.scenarios import inference as scenario

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


class TrtBackend(scenario.InferenceBackend):
    """TensorRT's side of the inference scenario (toolkit.device.scenarios.inference): the scope
    is the CUDA context, and the engine session is released in it, before the context is
    popped; only plain values outlive the scope."""

    def __init__(self):
        self.trt, self.cuda = runtime.require_stack()
        self.adapter = Adapter(self.trt)
        self.session = None  # type: Optional[runtime.EngineSession]

    @contextlib.contextmanager
    def scope(self, job):
        with runtime.CudaContext(self.cuda) as ctx:
            self.gpu = ctx.describe()
            self.logger = runtime.make_logger(self.trt)
            try:
                yield
            finally:
                if self.session is not None:
                    self.session.close()  # while the CUDA context is current
                    self.session = None

    def check(self, job):
        # type: (Dict[str, Any]) -> None
        coords = job["coords"]
        if coords.get("device", "cuda") != "cuda":
            raise NotRun("TensorRT runs on CUDA devices only, not {!r}".format(
                coords.get("device")))
        self.precision = precision = coords.get("precision", "fp32")
        if precision not in ("fp32", "fp16"):
            raise NotRun("TensorRT inference is built for fp32 and fp16 here, not {}".format(
                precision))
        if precision == "fp16" and not self.trt.Builder(self.logger).platform_has_fast_fp16:
            raise NotRun("this GPU has no fast FP16 (builder.platform_has_fast_fp16 is False)")

    def load(self, job):
        # type: (Dict[str, Any]) -> List[Tuple[str, float, str]]
        """The plan (built, or from the cache), the engine, its execution context and device
        buffers, with the memory probe's marks between them."""
        trt, cuda, adapter, logger = self.trt, self.cuda, self.adapter, self.logger
        settings, precision = job["settings"], self.precision
        batch = int(job["coords"]["batch"])
        self.workspace = workspace = int(settings.get("workspace", GIB))
        with open(job["artifacts"]["onnx"], "rb") as handle:
            onnx_bytes = handle.read()
        self.fields = {"kind": "tensorrt-inference", "format": 1,
                       "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
                       "precision": precision, "batch": batch, "workspace": workspace,
                       "tensorrt": trt.__version__, "gpu": self.gpu["name"],
                       "compute_capability": self.gpu["compute_capability"]}
        plan, from_cache, build_seconds = runtime.cached_plan(
            job.get("artifacts", {}).get("engine_cache_dir"), self.fields,
            lambda: build_from_onnx(trt, adapter, logger, onnx_bytes, precision, batch,
                                    workspace))
        self.probe = probe = runtime.MemoryProbe(cuda, self.gpu["integrated"])
        started = time.perf_counter()
        self.session = session = runtime.EngineSession(trt, cuda, adapter, logger, plan)
        deserialize = time.perf_counter() - started
        probe.mark("engine")
        engine = session.engine
        started = time.perf_counter()
        context = session.create_context()
        context_create = time.perf_counter() - started
        probe.mark("context")
        inputs = [t for t in adapter.io_tensors(engine) if t["input"]]
        if len(inputs) != 1:
            raise ValueError("expected one input, the engine has {}".format(len(inputs)))
        if any(d < 0 for d in inputs[0]["shape"]):
            shape = [batch] + [int(d) for d in settings["input_shape"]]
            adapter.set_input_shape(engine, context, inputs[0]["name"], shape)
        io = adapter.context_io(engine, context)
        del context  # the session holds it
        session.allocate(io)
        probe.mark("buffers")
        self.in_name = inputs[0]["name"]
        self.out_names = [t["name"] for t in io if not t["input"]]
        self.io = [{"name": t["name"], "shape": list(t["shape"]), "dtype": str(t["dtype"])}
                   for t in io]
        return [("engine_build", build_seconds, "s"),
                ("engine_from_cache", float(from_cache), "ratio"),
                ("engine_deserialize", deserialize, "s"), ("context_create", context_create, "s"),
                ("engine_plan_size", float(len(plan)), "B")]

    def prepare(self, x):
        # type: (Any) -> Callable[[], None]
        """x into the pinned input buffer; infer times each part of a run trtexec's way."""
        session, in_name, out_names = self.session, self.in_name, self.out_names
        cuda, buffers, stream, execute = (session.cuda, session.buffers, session.stream,
                                          session.execute)
        host_in = buffers.pinned(in_name)
        if tuple(x.shape) != tuple(host_in.shape):
            raise ValueError("the input batch is {}, the engine's input {} is {}".format(
                list(x.shape), in_name, list(host_in.shape)))
        np.copyto(host_in, x.astype(host_in.dtype))
        for name in out_names:
            buffers.pinned(name)
        addresses = buffers.addresses()
        events = [cuda.Event() for _ in range(4)]
        parts = {"h2d": [], "compute": [], "d2h": [], "enqueue": []}  # type: Dict[str, List[float]]
        self.parts = parts

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

        return infer

    def measurements(self, samples):
        # type: (List[float]) -> Tuple[List[Tuple[str, float, str]], Dict[str, Any]]
        """The parts of the kept runs (first run and warm-up dropped), engine and probe memory."""
        self.probe.mark("after_runs")
        kept = {k: v[len(v) - len(samples):] for k, v in self.parts.items()}
        records = _summary_records("gpu_compute_", kept["compute"])
        records += _summary_records("h2d_", kept["h2d"])
        records += _summary_records("d2h_", kept["d2h"])
        records += _summary_records("enqueue_", kept["enqueue"])
        engine_info = self.adapter.engine_memory(self.session.engine)
        records += [(k, v, "B") for k, v in sorted(engine_info.items())]
        records += self.probe.records()
        series = {"gpu_compute" if k == "compute" else k: {"unit": "s", "values": v}
                  for k, v in kept.items()}
        return records, series

    def describe(self):
        # type: () -> Dict[str, Dict[str, Any]]
        return {
            "settings": {"precision": self.precision, "workspace": self.workspace,
                         "engine_cache": self.fields, "gpu": self.gpu, "io": self.io},
            "versions": {"tensorrt": self.trt.__version__, "numpy": np.__version__},
        }


def run(job):
    # type: (Dict[str, Any]) -> Dict[str, Any]
    """The "inference" job for framework "tensorrt"."""
    return scenario.run(job, TrtBackend())
