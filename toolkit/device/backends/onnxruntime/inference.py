"""ONNX Runtime inference cell: session creation, first run and steady-state latency apart."""
import sys
import time

from toolkit.device.measure import memory
from toolkit.device.measure.sampling import Protocol, sample
from toolkit.device.results import NotRun, latency_records, memory_records

_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def import_inference_runtime():
    # type: () -> Any
    """onnxruntime without its training add-on.

    The training wheels' import-time check loads ORTModule and with it all of PyTorch (about
    500 MB of RSS) when torch is installed beside them: an inference cell must not carry that.
    """
    sys.modules.setdefault("onnxruntime.training", None)  # type: ignore
    import onnxruntime

    return onnxruntime


def _session_options(ort, settings):
    # type: (Any, Dict[str, Any]) -> Any
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(settings["threads"])
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # The CPU arena grows and never shrinks: both settings change peak memory, so they are recorded.
    options.enable_cpu_mem_arena = bool(settings["cpu_mem_arena"])
    options.enable_mem_pattern = bool(settings["mem_pattern"])
    return options


def run(job):
    # type: (Dict[str, Any]) -> Dict[str, Any]
    import numpy as np

    ort = import_inference_runtime()
    rss_baseline = memory.peak_rss_bytes()  # interpreter + numpy + onnxruntime imported
    coords, settings = job["coords"], job["settings"]
    if coords["precision"] != "fp32":
        raise NotRun("onnxruntime cells run the fp32 ONNX export; {} is not built".format(
            coords["precision"]))
    provider = _PROVIDERS.get(coords["device"])
    available = ort.get_available_providers()
    if provider not in available:
        raise NotRun("no {} in onnxruntime {} (available: {})".format(
            provider or coords["device"], ort.__version__, ", ".join(available)))

    options = _session_options(ort, settings)
    started = time.perf_counter()
    session = ort.InferenceSession(job["artifacts"]["onnx"], options, providers=[provider])
    session_create = time.perf_counter() - started

    rng = np.random.default_rng(int(settings["seed"]))
    shape = [int(coords["batch"])] + [int(d) for d in settings["input_shape"]]
    feed = {session.get_inputs()[0].name: rng.standard_normal(shape).astype(np.float32)}
    run_session = session.run

    started = time.perf_counter()
    run_session(None, feed)
    first_run = time.perf_counter() - started

    protocol = Protocol.from_dict(job["protocol"])
    timing = sample(lambda: run_session(None, feed), protocol)
    rss_peak = memory.peak_rss_bytes()

    latency, invalid = latency_records(timing["samples"], int(coords["batch"]), protocol)
    records = [("session_create", session_create, "s"), ("first_run", first_run, "s")]
    records += latency + memory_records(rss_baseline, rss_peak)
    return {
        "records": records,
        "invalid": invalid,
        "samples": {"latency": {"unit": "s", "values": timing.pop("samples")}},
        "timing": timing,
        "settings": {
            "providers": session.get_providers(),
            "intra_op_num_threads": options.intra_op_num_threads,
            "inter_op_num_threads": options.inter_op_num_threads,
            "execution_mode": "sequential",
            "graph_optimization_level": "ORT_ENABLE_ALL",
            "enable_cpu_mem_arena": options.enable_cpu_mem_arena,
            "enable_mem_pattern": options.enable_mem_pattern,
            "training_addon_loaded": "torch" in sys.modules,
        },
        "versions": {"onnxruntime": ort.__version__, "numpy": np.__version__},
    }


def harness_overhead(job):
    # type: (Dict[str, Any]) -> Dict[str, Any]
    """Median latency through the harness vs a bare timed `session.run` loop, interleaved rounds.

    Both in this one process on the same session, so only the harness differs. Each round
    compares its two adjacent blocks (alternating which goes first) and the overhead is the
    median of the rounds' ratios: the machine's drift over seconds (a busy neighbour, clock
    changes) cancels instead of landing on one side.
    """
    import numpy as np

    from toolkit.device.measure.stats import summarize

    ort = import_inference_runtime()
    settings, batch = job["settings"], int(job["coords"]["batch"])
    session = ort.InferenceSession(job["artifacts"]["onnx"], _session_options(ort, settings),
                                   providers=["CPUExecutionProvider"])
    shape = [batch] + [int(d) for d in settings["input_shape"]]
    feed = {session.get_inputs()[0].name: np.ones(shape, dtype=np.float32)}
    protocol = Protocol.from_dict(job["protocol"])
    clock = time.perf_counter

    def bare_block(count):
        # type: (int) -> List[float]
        for _ in range(protocol.warmup_count):
            session.run(None, feed)
        times = []
        for _ in range(count):  # timed the plainest way
            t0 = clock()
            session.run(None, feed)
            times.append(clock() - t0)
        return times

    harness, bare, ratios = [], [], []  # type: List[float], List[float], List[float]
    count = protocol.min_count
    for round_index in range(int(settings.get("rounds", 5))):
        if round_index % 2:
            b = bare_block(count)
            h = sample(lambda: session.run(None, feed), protocol)["samples"]
        else:
            h = sample(lambda: session.run(None, feed), protocol)["samples"]
            b = bare_block(len(h))
        count = len(h)
        ratios.append(summarize(h)["p50"] / summarize(b)["p50"])
        harness += h
        bare += b
    h, b = summarize(harness)["p50"], summarize(bare)["p50"]
    return {"records": [("harness_p50", h, "s"), ("bare_p50", b, "s"),
                        ("overhead", float(np.median(ratios)) - 1.0, "ratio"),
                        ("rounds", float(len(ratios)), "count"),
                        ("harness_n", float(len(harness)), "count"),
                        ("bare_n", float(len(bare)), "count")],
            "versions": {"onnxruntime": ort.__version__}}
