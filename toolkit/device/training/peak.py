"""Sustained dense matmul FLOP/s of this machine: the denominator of model-FLOP utilisation (MFU).

Each run measures its own peak in the same container and thread setting as its training cells,
rather than trusting a datasheet number the machine may never reach (a 2-core VM, a Jetson in a
low power mode, thermal limits).

Method: for each dtype in settings "dtypes" (default fp32, bf16, fp16), the FLOP/s of
- square C = A @ B for each size in settings "sizes" (default 1024, 2048), FLOPs 2 n^3, and
- (torch) every distinct convolution of the models in settings "conv_models" at each batch in
  "conv_batches" (VGG: 3x3, padding 1), through torch's conv2d: the library path the training
  cells take (on x86 oneDNN's JIT kernels for convolutions, while torch.matmul goes to MKL,
  which on AMD CPUs picks narrower kernels: a square-only peak would sit below what training
  reaches). FLOPs count only the taps on the input, as the training cells' do (flops.py).
Each shape is timed with the job's sampling protocol (warm-up, then min count and min duration,
capped at SHAPE_CALLS and SHAPE_SECONDS);
FLOP/s = FLOPs / p50; the peak of a dtype is the best shape ("best_shapes" in settings). The
smallest shape is always measured; a larger one where one call would take longer than
max_seconds / (min_count + 1) at the rate already measured is skipped and listed in settings
"skipped_sizes_too_slow" (an emulated bf16 on an AVX2 CPU runs at ~1 GFLOP/s). A dtype the
framework cannot multiply on this device is reported in settings "unsupported" with the reason,
not as a number. On CUDA every call is followed by a synchronize.

On the CPU the theoretical peak (measure/cpu_peak.py: cores x clock x FLOP per cycle) is recorded
beside it, with the source of each term in settings "theoretical": a measured peak above it is a
defect of the measurement.

Job: kind "peak"; coords "framework" ("pytorch" or "numpy"), "device" ("cpu" | "cuda");
settings "sizes", "conv_models", "conv_batches", "dtypes", "threads" (optional), "seed".
Records: peak_flops_<dtype> (FLOP/s), peak_flops_<dtype>_theoretical (FLOP/s, CPU),
matmul_flops_<dtype>_<n> and conv_flops_<dtype>_<batch>x<cin>x<cout>x<side> (FLOP/s),
matmul_time_<dtype>_<n> and conv_time_... (s, p50), and for CPU runs the thread count.
"""

from toolkit.device.measure.cpu_peak import native_bf16, read_cpuinfo
from toolkit.device.measure.sampling import Protocol, sample
from toolkit.device.measure.stats import summarize
from toolkit.device.results import NotRun
from toolkit.device.training.flops import conv_shapes, conv_taps

DEFAULT_SIZES = (1024, 2048)
DEFAULT_DTYPES = ("fp32", "bf16", "fp16")
_PROBE = ("matmul", 64)  # the one untimed call that checks a dtype has a kernel on this device
DEFAULT_PROTOCOL = {"warmup_count": 2, "warmup_seconds": 0.2, "min_count": 5, "min_seconds": 1.0,
                    "max_seconds": 10.0, "max_cv": 0.25}


# Seconds of sampling per shape at most: a peak is the best of ~20 shapes, and the profiles'
# min_seconds (paper: 60 s per cell) would make it take longer than the training cells.
SHAPE_SECONDS = 0.5
SHAPE_CALLS = 10  # and at most this many calls required: the p50 of 10 is a stable peak


def _protocol(job):
    # type: (Dict[str, Any]) -> Protocol
    values = dict(DEFAULT_PROTOCOL)
    values.update(job.get("protocol") or {})
    values["min_seconds"] = min(float(values["min_seconds"]), SHAPE_SECONDS)
    values["warmup_seconds"] = min(float(values["warmup_seconds"]), SHAPE_SECONDS)
    values["min_count"] = min(int(values["min_count"]), SHAPE_CALLS)
    return Protocol.from_dict(values)


def shape_flops(shape):
    # type: (Tuple[Any, ...]) -> float
    """FLOPs of one call: ("matmul", n) or ("conv", batch, cin, cout, side)."""
    if shape[0] == "matmul":
        return 2.0 * shape[1] ** 3
    _, batch, cin, cout, side = shape
    return 2.0 * batch * cin * cout * conv_taps(side, padding_taps=False)


def shape_name(shape):
    # type: (Tuple[Any, ...]) -> str
    return "{}".format(shape[1]) if shape[0] == "matmul" else "x".join(str(v) for v in shape[1:])


def job_shapes(settings):
    # type: (Dict[str, Any]) -> List[Tuple[Any, ...]]
    """The squares and the models' distinct convolutions, cheapest first."""
    from toolkit.device import models

    shapes = [("matmul", int(n)) for n in settings.get("sizes", DEFAULT_SIZES)]
    image_size = int(settings.get("image_size", 32))
    for model in settings.get("conv_models", []):
        for batch in settings.get("conv_batches", []):
            for cin, cout, side in conv_shapes(model, models.full_widths(model), image_size):
                shape = ("conv", int(batch), cin, cout, side)
                if shape not in shapes:
                    shapes.append(shape)
    return sorted(shapes, key=shape_flops)


def _result(job, measure, unsupported, versions, settings, shapes):
    # type: (Dict[str, Any], Callable[[str, Tuple[Any, ...]], Any], Dict[str, str], Dict[str, str], Dict[str, Any], List[Tuple[Any, ...]]) -> Dict[str, Any]
    protocol = _protocol(job)
    dtypes = list(job.get("settings", {}).get("dtypes", DEFAULT_DTYPES))
    records, samples, too_slow, best_shapes = [], {}, {}, {}  # type: List[Any], Dict[str, Any], Dict[str, Any], Dict[str, str]
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
        for shape in shapes:
            flops = shape_flops(shape)
            if rate is not None and flops / rate > budget:
                skipped.append(shape_name(shape))  # one call would exceed the time budget
                continue
            values = sample(measure(dtype, shape), protocol)["samples"]
            p50 = summarize(values)["p50"]
            name = "{}_{{}}_{}_{}".format(shape[0], dtype, shape_name(shape))
            records += [(name.format("flops"), flops / p50, "FLOP/s"),
                        (name.format("time"), p50, "s")]
            samples[name.format("time")] = {"unit": "s", "values": values}
            if flops / p50 > best:
                best, best_shapes[dtype] = flops / p50, "{} {}".format(shape[0], shape_name(shape))
            rate = best
        if skipped:
            too_slow[dtype] = skipped
        records.append(("peak_flops_" + dtype, best, "FLOP/s"))
    if not any(name.startswith("peak_flops_") for name, _, _ in records):
        raise NotRun("no dtype could be measured: {}".format(unsupported))
    settings = dict(settings, sizes=[s[1] for s in shapes if s[0] == "matmul"],
                    conv_shapes=[shape_name(s) for s in shapes if s[0] == "conv"],
                    best_shapes=best_shapes, dtypes=dtypes, unsupported=unsupported,
                    skipped_sizes_too_slow=too_slow, probe_size=_PROBE[1],
                    protocol=protocol.as_dict())
    if settings.get("device", "cpu") == "cpu":
        records += _theoretical(settings, dtypes)
    return {"records": records, "samples": samples, "settings": settings, "versions": versions}


def _theoretical(settings, dtypes):
    # type: (Dict[str, Any], List[str]) -> List[Tuple[str, float, str]]
    """The CPU's theoretical peak per dtype; its terms and their sources go into settings."""
    from toolkit.device.measure.cpu_peak import theoretical_peak

    try:
        theory = theoretical_peak(int(settings.get("threads") or 0))
    except (OSError, RuntimeError, ValueError) as error:  # e.g. no executable memory allowed
        settings["theoretical"] = {"reason": "{}: {}".format(type(error).__name__, error)}
        return []
    flops = theory.pop("flops")
    settings["theoretical"] = theory
    return [("peak_flops_{}_theoretical".format(dtype), flops[dtype], "FLOP/s")
            for dtype in dtypes if dtype in flops]


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
    if device == "cpu":  # the precisions the CPU training cells run (backends/pytorch/trainer.py)
        unsupported["fp16"] = "no CPU training cell runs fp16 (no fp16 matmul units)"
        if not native_bf16(read_cpuinfo()):
            unsupported["bf16"] = "this CPU has no native bf16 (avx512_bf16, amx_bf16, bf16)"
    generator = torch.Generator().manual_seed(int(settings.get("seed", 0)))

    def measure(dtype, shape):
        if dtype not in dtypes:
            raise TypeError("unknown dtype {!r}".format(dtype))

        def tensor(*size):
            return torch.randn(*size, generator=generator).to(device=device,
                                                               dtype=dtypes[dtype])

        if shape[0] == "matmul":
            a, b = tensor(shape[1], shape[1]), tensor(shape[1], shape[1])
            out = torch.empty(shape[1], shape[1], device=device, dtype=dtypes[dtype])
            run = lambda: torch.matmul(a, b, out=out)  # noqa: E731
        else:
            _, batch, cin, cout, side = shape
            x, w = tensor(batch, cin, side, side), tensor(cout, cin, 3, 3)
            conv2d = torch.nn.functional.conv2d

            def run():
                with torch.no_grad():
                    return conv2d(x, w, padding=1)
        run()  # raises here if the dtype has no kernel on this device
        if device == "cuda":
            def call():
                run()
                torch.cuda.synchronize()
            return call
        return run

    return _result(job, measure, unsupported,
                   {"torch": torch.__version__, "cuda": torch.version.cuda or ""},
                   {"framework": "pytorch", "device": device,
                    "threads": torch.get_num_threads(),
                    "device_name": torch.cuda.get_device_name() if device == "cuda" else ""},
                   job_shapes(settings))


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

    def measure(dtype, shape):
        if dtype != "fp32":
            raise TypeError("unknown dtype {!r}".format(dtype))
        n = shape[1]
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        out = np.empty((n, n), dtype=np.float32)
        return lambda: np.matmul(a, b, out=out)

    squares = [shape for shape in job_shapes(settings) if shape[0] == "matmul"]
    return _result(job, measure, unsupported, {"numpy": np.__version__},
                   {"framework": "numpy", "device": "cpu", "threads": settings.get("threads")},
                   squares)
