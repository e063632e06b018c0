"""What the TensorRT cells share on the GPU side: honest gating, the CUDA context, device and
system memory readings, device buffers, and the engine cache.

tensorrt and pycuda are imported only inside require_stack(); every other function receives the
modules it needs. A host without them gets NotRun("... not installed"), a host without a GPU
NotRun("no CUDA GPU ...").
"""
import gc
import hashlib
import json
import os
import time
import traceback

from toolkit.device.measure.gpu_memory import MemoryProbe  # noqa: F401 - the cells' import
from toolkit.device.results import NotRun


def require_stack():
    # type: () -> Tuple[Any, Any]
    """(tensorrt, pycuda.driver), or NotRun naming what is missing."""
    try:
        import tensorrt as trt
    except ImportError as error:
        raise NotRun("TensorRT not installed ({})".format(error)) from None
    try:
        import pycuda.driver as cuda
    except ImportError as error:
        raise NotRun("pycuda not installed ({})".format(error)) from None
    try:
        cuda.init()
        count = cuda.Device.count()
    except Exception as error:  # noqa: BLE001 - pycuda raises its own error types
        raise NotRun("no CUDA GPU ({}: {})".format(type(error).__name__, error)) from None
    if count < 1:
        raise NotRun("no CUDA GPU (cuda.Device.count() == 0)")
    return trt, cuda


class CudaContext(object):
    """A context on device `index`, pushed for the `with` block (no pycuda.autoinit magic)."""

    def __init__(self, cuda, index=0):
        self.cuda, self.device = cuda, cuda.Device(int(index))
        self.context = None

    def __enter__(self):
        self.context = self.device.make_context()
        return self

    def __exit__(self, exc_type, exc, tb):
        # TensorRT and CUDA objects must be gone before their context is popped (else
        # "defaultAllocator deallocate ... invalid argument" or a core dump: NVIDIA/TensorRT
        # 1632, 2052; inducer/pycuda 460). On an error, the frames the exception left hold
        # them: clear those frames first.
        if tb is not None:
            traceback.clear_frames(tb)
        gc.collect()
        self.context.pop()
        self.context = None
        return False

    def describe(self):
        # type: () -> Dict[str, Any]
        cuda = self.cuda
        major, minor = self.device.compute_capability()
        return {"name": self.device.name(), "compute_capability": "{}.{}".format(major, minor),
                "total_memory": int(self.device.total_memory()),
                "integrated": bool(self.device.get_attribute(
                    cuda.device_attribute.INTEGRATED))}


class Buffers(object):
    """One device allocation per engine I/O tensor, plus page-locked host mirrors on request."""

    def __init__(self, cuda, io):
        # type: (Any, List[Dict[str, Any]]) -> None
        import numpy as np

        self.cuda, self.io = cuda, {t["name"]: t for t in io}
        self.device = {}  # type: Dict[str, Any]
        self.host = {}  # type: Dict[str, Any]
        for t in io:
            nbytes = int(np.prod(t["shape"])) * t["dtype"].itemsize
            self.device[t["name"]] = cuda.mem_alloc(max(nbytes, 1))

    def pinned(self, name):
        # type: (str) -> Any
        if name not in self.host:
            t = self.io[name]
            self.host[name] = self.cuda.pagelocked_empty(tuple(t["shape"]), t["dtype"])
        return self.host[name]

    def upload(self, name, array, stream=None):
        # type: (str, Any, Any) -> None
        import numpy as np

        host = self.pinned(name)
        np.copyto(host, np.asarray(array, dtype=host.dtype).reshape(host.shape))
        if stream is None:
            self.cuda.memcpy_htod(self.device[name], host)
        else:
            self.cuda.memcpy_htod_async(self.device[name], host, stream)

    def download(self, name, stream=None):
        # type: (str, Any) -> Any
        host = self.pinned(name)
        if stream is None:
            self.cuda.memcpy_dtoh(host, self.device[name])
        else:
            self.cuda.memcpy_dtoh_async(host, self.device[name], stream)
        return host

    def addresses(self):
        # type: () -> Dict[str, int]
        return {name: int(alloc) for name, alloc in self.device.items()}

    def swap(self, pairs):
        # type: (Sequence[Tuple[str, str]]) -> None
        """Exchange the allocations of each (input, output) pair: the step's outputs become the
        next step's inputs without a copy."""
        for a, b in pairs:
            self.device[a], self.device[b] = self.device[b], self.device[a]

    def free(self):
        for alloc in self.device.values():
            alloc.free()
        self.device = {}


class EngineSession(object):
    """A deserialized engine with its runtime, execution context, I/O buffers and stream.

    close() releases them in dependency order (execution context, device memory, engine,
    runtime) and must run while the CUDA context is current: callers use try/finally inside
    `with CudaContext(...)`."""

    def __init__(self, trt, cuda, adapter, logger, plan):
        self.cuda, self.adapter = cuda, adapter
        self.runtime = trt.Runtime(logger)  # must outlive its engines
        self.engine = adapter.deserialize(self.runtime, plan)
        self.context = None  # type: Any
        self.buffers = None  # type: Optional[Buffers]
        self.stream = None  # type: Any
        self.execute = None  # type: Any

    def create_context(self):
        # type: () -> Any
        self.context = self.engine.create_execution_context()
        return self.context

    def allocate(self, io):
        # type: (List[Dict[str, Any]]) -> Buffers
        """Device buffers for `io`, a stream, and the executor bound to them."""
        self.buffers = Buffers(self.cuda, io)
        self.stream = self.cuda.Stream()
        self.execute = self.adapter.executor(self.engine, self.context)
        return self.buffers

    def close(self):
        self.execute = None
        self.stream = None
        self.context = None
        if self.buffers is not None:
            self.buffers.free()
            self.buffers.host = {}
            self.buffers = None
        self.engine = None
        self.runtime = None
        gc.collect()


class EventTimer(object):
    """GPU time of a region on a stream, with CUDA events (milliseconds -> seconds)."""

    def __init__(self, cuda):
        self.cuda = cuda
        self.start, self.end = cuda.Event(), cuda.Event()

    def begin(self, stream):
        self.start.record(stream)

    def finish(self, stream):
        self.end.record(stream)

    def seconds(self):
        # type: () -> float
        self.end.synchronize()
        return self.end.time_since(self.start) / 1000.0


def cache_key(fields):
    # type: (Dict[str, Any]) -> str
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:20]


def cached_plan(directory, fields, build):
    # type: (Optional[str], Dict[str, Any], Callable[[], bytes]) -> Tuple[bytes, bool, float]
    """(plan, from_cache, build seconds): engines are cached per device and TensorRT version
    (both are in `fields`), as <directory>/<key>.plan with a JSON sidecar of the fields."""
    path = None
    if directory:
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, cache_key(fields) + ".plan")
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                return handle.read(), True, 0.0
    started = time.perf_counter()
    plan = build()
    seconds = time.perf_counter() - started
    if path:
        tmp = "{}.tmp.{}".format(path, os.getpid())
        with open(tmp, "wb") as handle:
            handle.write(plan)
        os.replace(tmp, path)
        with open(path[:-5] + ".json", "w") as handle:
            json.dump(fields, handle, sort_keys=True, indent=1)
    return plan, False, seconds


def make_logger(trt, verbose=False):
    # type: (Any, bool) -> Any
    return trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
