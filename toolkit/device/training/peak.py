"""Sustained dense matmul FLOP/s of this machine: the denominator of model-FLOP utilisation (MFU).

Each run measures its own peak in the same container and thread setting as its training cells,
rather than trusting a datasheet number the machine may never reach (a 2-core VM, a Jetson in a
low power mode, thermal limits).

Method: square C = A @ B for each size in settings "sizes" (default 1024, 2048) and each dtype in
settings "dtypes" (default fp32, bf16, fp16), timed with the job's sampling protocol (warm-up,
then min count and min duration); FLOP/s of one size = 2 n^3 / p50; the peak of a dtype is the
best size. The smallest size is always measured; a larger size where one call would take longer
than max_seconds / (min_count + 1) at the rate already measured is skipped and listed in
settings "skipped_sizes_too_slow" (an emulated bf16 on an AVX2 CPU runs at ~1 GFLOP/s). A
dtype the framework cannot multiply on this device is reported in settings "unsupported" with
the reason, not as a number. On CUDA every call is followed by a synchronize.

Job: kind "peak"; coords "framework" ("pytorch" or "numpy"), "device" ("cpu" | "cuda");
settings "sizes", "dtypes", "threads" (optional), "seed".
Records: peak_flops_<dtype> (FLOP/s), matmul_flops_<dtype>_<n> (FLOP/s),
matmul_time_<dtype>_<n> (s, p50), and for CPU runs the thread count.
"""

from toolkit.device.measure.sampling import Protocol, sample
from toolkit.device.measure.stats import summarize
from toolkit.device.results import NotRun

DEFAULT_SIZES = (1024, 2048)
DEFAULT_DTYPES = ("fp32", "bf16", "fp16")
_PROBE = 64  # size of the one untimed call that checks a dtype has a kernel on this device
DEFAULT_PROTOCOL = {"warmup_count": 2, "warmup_seconds": 0.2, "min_count": 5, "min_seconds": 1.0,
                    "max_seconds": 10.0, "max_cv": 0.25}


def _protocol(job):
    # type: (Dict[str, Any]) -> Protocol
    values = dict(DEFAULT_PROTOCOL)
    values.update(job.get("protocol") or {})
    return Protocol.from_dict(values)


def _measure(matmul, n, protocol):
    # type: (Callable[[], Any], int, Protocol) -> Tuple[float, float, List[float]]
    samples = sample(matmul, protocol)["samples"]
    p50 = summarize(samples)["p50"]
    return 2.0 * n ** 3 / p50, p50, samples


def _result(job, measure, unsupported, versions, settings):
    # type: (Dict[str, Any], Callable[[str, int], Any], Dict[str, str], Dict[str, str], Dict[str, Any]) -> Dict[str, Any]
    protocol = _protocol(job)
    sizes = [int(n) for n in job.get("settings", {}).get("sizes", DEFAULT_SIZES)]
    dtypes = list(job.get("settings", {}).get("dtypes", DEFAULT_DTYPES))
    records, samples, too_slow = [], {}, {}  # type: List[Any], Dict[str, Any], Dict[str, Any]
    budget = protocol.max_seconds / (protocol.min_count + 1)  # seconds one call may take
    for dtype in dtypes:
        if dtype in unsupported:
            continue
        best, skipped, rate = 0.0, [], None
        try:  # does the dtype have a kernel on this device at all?
            measure(dtype, _PROBE)()
        except (RuntimeError, TypeError) as error:  # not implemented for this dtype/device
            unsupported[dtype] = "{}: {}".format(type(error).__name__, error)
            continue
        for n in sorted(sizes):
            if rate is not None and 2.0 * n ** 3 / rate > budget:
                skipped.append(n)  # one call would exceed the time budget: too slow to matter
                continue
            flops, p50, values = _measure(measure(dtype, n), n, protocol)
            records += [("matmul_flops_{}_{}".format(dtype, n), flops, "FLOP/s"),
                        ("matmul_time_{}_{}".format(dtype, n), p50, "s")]
            samples["matmul_time_{}_{}".format(dtype, n)] = {"unit": "s", "values": values}
            best = max(best, flops)
            rate = best
        if skipped:
            too_slow[dtype] = skipped
        records.append(("peak_flops_" + dtype, best, "FLOP/s"))
    if not any(name.startswith("peak_flops_") for name, _, _ in records):
        raise NotRun("no dtype could be measured: {}".format(unsupported))
    settings = dict(settings, sizes=sizes, dtypes=dtypes, unsupported=unsupported,
                    skipped_sizes_too_slow=too_slow, probe_size=_PROBE,
                    protocol=protocol.as_dict())
    return {"records": records, "samples": samples, "settings": settings, "versions": versions}


def run_torch(job):
    # type: (Dict[str, Any]) -> Dict[str, Any]
    """Peak with torch.matmul (the kernels the PyTorch cells use: MKL/oneDNN/OpenBLAS, cuBLAS)."""
    import torch

    device = job["coords"].get("device", "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise NotRun("CUDA is not available here (torch {}, built for CUDA {}, no visible "
                     "device)".format(torch.__version__, torch.version.cuda))
    if device not in ("cpu", "cuda"):
        raise NotRun("unknown device {!r}".format(device))
    settings = job.get("settings", {})
    if settings.get("threads"):
        torch.set_num_threads(int(settings["threads"]))
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    unsupported = {}  # type: Dict[str, str]
    if device == "cuda" and not torch.cuda.is_bf16_supported():
        unsupported["bf16"] = "not supported by this GPU"
    generator = torch.Generator().manual_seed(int(settings.get("seed", 0)))

    def measure(dtype, n):
        if dtype not in dtypes:
            raise TypeError("unknown dtype {!r}".format(dtype))
        a = torch.randn(n, n, generator=generator).to(device=device, dtype=dtypes[dtype])
        b = torch.randn(n, n, generator=generator).to(device=device, dtype=dtypes[dtype])
        out = torch.empty(n, n, device=device, dtype=dtypes[dtype])
        torch.matmul(a, b, out=out)  # raises here if the dtype has no kernel on this device
        if device == "cuda":
            def call():
                torch.matmul(a, b, out=out)
                torch.cuda.synchronize()
            return call
        return lambda: torch.matmul(a, b, out=out)

    return _result(job, measure, unsupported,
                   {"torch": torch.__version__, "cuda": torch.version.cuda or ""},
                   {"framework": "pytorch", "device": device,
                    "threads": torch.get_num_threads(),
                    "device_name": torch.cuda.get_device_name() if device == "cuda" else ""})


def run_numpy(job):
    # type: (Dict[str, Any]) -> Dict[str, Any]
    """Peak with numpy's BLAS (what the ONNX Runtime cells' host sees without torch); fp32 only
    (numpy has no bf16, and its fp16 matmul is a non-BLAS loop)."""
    import numpy as np

    if job["coords"].get("device", "cpu") != "cpu":
        raise NotRun("numpy runs on the CPU only")
    settings = job.get("settings", {})
    rng = np.random.default_rng(int(settings.get("seed", 0)))
    unsupported = {"bf16": "numpy has no bfloat16",
                   "fp16": "numpy's float16 matmul is not BLAS (not a peak)"}

    def measure(dtype, n):
        if dtype != "fp32":
            raise TypeError("unknown dtype {!r}".format(dtype))
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        out = np.empty((n, n), dtype=np.float32)
        return lambda: np.matmul(a, b, out=out)

    return _result(job, measure, unsupported, {"numpy": np.__version__},
                   {"framework": "numpy", "device": "cpu"})
