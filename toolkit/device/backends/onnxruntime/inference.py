"""ONNX Runtime inference cell: session creation, first run and steady-state latency apart.

The sequence (input, first run, protocol, the common records, the result) is the inference
scenario's (toolkit.device.scenarios.inference); OrtBackend holds what is onnxruntime's: the
provider check, the session and its settings.
"""
import sys
import time

from toolkit.device.measure.sampling import Protocol, sample
from toolkit.device.results import NotRun
from toolkit.device.scenarios import inference as scenario

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


class OrtBackend(scenario.InferenceBackend):
    """onnxruntime's side of the inference scenario (toolkit.device.scenarios.inference): one
    InferenceSession with the recorded options; its creation is the setup stage."""

    def __init__(self):
        self.ort = import_inference_runtime()

    def check(self, job):
        # type: (Dict[str, Any]) -> None
        ort, coords = self.ort, job["coords"]
        if coords["precision"] != "fp32":
            raise NotRun("onnxruntime cells run the fp32 ONNX export; {} is not built".format(
                coords["precision"]))
        self.provider = _PROVIDERS.get(coords["device"])
        available = ort.get_available_providers()
        if self.provider not in available:
            raise NotRun("no {} in onnxruntime {} (available: {})".format(
                self.provider or coords["device"], ort.__version__, ", ".join(available)))

    def load(self, job):
        # type: (Dict[str, Any]) -> List[Tuple[str, float, str]]
        self.options = _session_options(self.ort, job["settings"])
        started = time.perf_counter()
        self.session = self.ort.InferenceSession(job["artifacts"]["onnx"], self.options,
                                                 providers=[self.provider])
        return [("session_create", time.perf_counter() - started, "s")]

    def prepare(self, x):
        # type: (Any) -> Callable[[], Any]
        feed = {self.session.get_inputs()[0].name: x}
        run_session = self.session.run
        return lambda: run_session(None, feed)

    def describe(self):
        # type: () -> Dict[str, Dict[str, Any]]
        import numpy as np

        options = self.options
        return {
            "settings": {
                "providers": self.session.get_providers(),
                "intra_op_num_threads": options.intra_op_num_threads,
                "inter_op_num_threads": options.inter_op_num_threads,
                "execution_mode": "sequential",
                "graph_optimization_level": "ORT_ENABLE_ALL",
                "enable_cpu_mem_arena": options.enable_cpu_mem_arena,
                "enable_mem_pattern": options.enable_mem_pattern,
                "training_addon_loaded": "torch" in sys.modules,
            },
            "versions": {"onnxruntime": self.ort.__version__, "numpy": np.__version__},
        }


def run(job):
    # type: (Dict[str, Any]) -> Dict[str, Any]
    """The "inference" job for framework "onnxruntime"."""
    return scenario.run(job, OrtBackend())


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
