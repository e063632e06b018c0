"""The inference scenario: one cell's sequence, written once for every backend.

The scenario owns what makes the frameworks' inference numbers comparable: the RSS baseline,
the input batch, the timed first run, the sampling protocol (warm-up, then samples until both
min_count and min_seconds, or max_seconds), the latency records and their verdict, the memory
records and the result dict. A backend (OrtBackend in backends/onnxruntime/inference.py,
TrtBackend in backends/tensorrt/inference.py) only says how to load, feed, run and describe
itself, so a fix to the sequence reaches every framework and every framework's latency means the
same thing.

The interface (InferenceBackend; `load`, `prepare` and `describe` have no default):

- constructor: imports the framework (NotRun when absent): the RSS baseline includes it.
- scope(job): a context manager the rest runs in (TensorRT: the CUDA context, whose engine is
  released before the context is popped); default: none.
- check(job): raise NotRun when the cell cannot run here; runs before anything is read or
  loaded.
- load(job) -> setup records [(name, value, unit)]: reads the model and makes it runnable
  (session, or engine built or taken from the cache, deserialized, execution context, device
  buffers), timing its own stages (onnxruntime: session_create; TensorRT: engine_build, ...).
  They come first in the records.
- prepare(x) -> infer: `x` is the input batch; puts it where the run reads it (a feed, a pinned
  host buffer) and returns a callable without arguments that runs one inference on it, the
  timed region. The scenario calls it once (first_run), then per the protocol, and keeps no
  reference to it afterwards: what it holds can be released in the scope's exit.
- measurements(samples) -> (records, sample series): the backend's own, read right after the
  runs; `samples` are the kept latencies, one per call of infer among its last len(samples)
  calls (the first run and the warm-up came before them). Default: nothing.
- describe() -> {"settings": {...}, "versions": {...}}: the backend's effective settings.

The input batch: float32 standard normal from numpy's PCG64 seeded with settings["seed"]
(default 0), shape [coords["batch"]] + settings["input_shape"].
Records, in order: the setup records, first_run, latency_* and throughput
(results.latency_records), the backend's own, rss_baseline, rss_peak, model_memory.
Samples: "latency" plus the backend's series. Timing: the protocol's warm-up count and seconds,
the measuring seconds.

Job fields: coords "batch" (and what the backend's check reads: "device", "precision");
settings "input_shape" ([C, H, W]), "seed"; artifacts "onnx"; protocol (sampling.Protocol).
"""
import contextlib
import time

import numpy as np

from toolkit.device.measure import memory
from toolkit.device.measure.sampling import Protocol, sample
from toolkit.device.results import latency_records, memory_records


class InferenceBackend(object):
    """One framework's side of an inference cell (see the module docstring)."""

    def scope(self, job):
        # type: (Dict[str, Any]) -> Any
        return _nothing()

    def check(self, job):
        # type: (Dict[str, Any]) -> None
        pass

    def load(self, job):
        # type: (Dict[str, Any]) -> List[Tuple[str, float, str]]
        raise NotImplementedError

    def prepare(self, x):
        # type: (Any) -> Callable[[], Any]
        raise NotImplementedError

    def measurements(self, samples):
        # type: (List[float]) -> Tuple[List[Tuple[str, float, str]], Dict[str, Any]]
        return [], {}

    def describe(self):
        # type: () -> Dict[str, Dict[str, Any]]
        raise NotImplementedError


@contextlib.contextmanager
def _nothing():
    yield


def input_batch(settings, batch):
    # type: (Dict[str, Any], int) -> Any
    """The seeded input every backend runs on (float32, [batch] + input_shape)."""
    rng = np.random.Generator(np.random.PCG64(int(settings.get("seed", 0))))
    shape = [int(batch)] + [int(d) for d in settings["input_shape"]]
    return rng.standard_normal(shape).astype(np.float32)


def _timed_runs(infer, protocol):
    # type: (Callable[[], Any], Protocol) -> Tuple[float, Dict[str, Any]]
    """The first run's seconds and the protocol's timing; `infer` dies with this frame."""
    started = time.perf_counter()
    infer()
    first_run = time.perf_counter() - started
    return first_run, sample(infer, protocol)


def run(job, backend):
    # type: (Dict[str, Any], InferenceBackend) -> Dict[str, Any]
    """An "inference" job's result: the one sequence every backend goes through."""
    rss_baseline = memory.peak_rss_bytes()  # interpreter + numpy + the backend's framework
    batch = int(job["coords"]["batch"])
    protocol = Protocol.from_dict(job["protocol"])
    with backend.scope(job):
        backend.check(job)
        setup = backend.load(job)
        first_run, timing = _timed_runs(backend.prepare(input_batch(job["settings"], batch)),
                                        protocol)
        rss_peak = memory.peak_rss_bytes()
        samples = timing.pop("samples")
        own, series = backend.measurements(samples)
        description = backend.describe()

    latency, invalid = latency_records(samples, batch, protocol)
    records = list(setup) + [("first_run", first_run, "s")] + latency + own
    records += memory_records(rss_baseline, rss_peak)
    samples_out = {"latency": {"unit": "s", "values": samples}}
    samples_out.update(series)
    return {
        "records": records,
        "invalid": invalid,
        "samples": samples_out,
        "timing": timing,
        "settings": description["settings"],
        "versions": description["versions"],
    }
