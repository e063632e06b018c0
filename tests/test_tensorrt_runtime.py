"""The TensorRT cells' runtime side on the CPU, with stand-ins for pycuda and the engine: the
defects of the Jetson first-contact issue that need no GPU to show (dtype mapping, object
lifetime against the CUDA context, conv_mode gating, the step cap)."""
import ast
import inspect
import textwrap
import weakref

import numpy as np
import pytest
from fake_tensorrt import make_trt

from toolkit.device import data
from toolkit.device.backends.onnxruntime_training import trainer as ort_trainer
from toolkit.device.backends.pytorch import trainer as torch_trainer
from toolkit.device.backends.tensorrt import adapter as adapters
from toolkit.device.backends.tensorrt import inference, runtime, training
from toolkit.device.measure.sampling import Protocol
from toolkit.device.results import NotRun
from toolkit.device.scenarios import training as scenario
from toolkit.device.training import common

ALIVE = weakref.WeakSet()  # every stand-in TensorRT object not yet freed


class _Tracked(object):
    def __init__(self):
        ALIVE.add(self)


class FakeContext(_Tracked):
    def __init__(self, engine):
        super().__init__()
        self.engine = engine  # as TensorRT's bindings keep the engine alive

    def set_tensor_address(self, name, address):
        pass

    def execute_async_v3(self, stream):
        return True


class FakeEngine(_Tracked):
    """Tensor-API engine with one float input, one bool output."""

    def __init__(self, trt, runtime_):
        super().__init__()
        self.trt, self.runtime = trt, runtime_
        self.num_io_tensors = 2
        self.tensors = [("x", trt.TensorIOMode.INPUT, (2, 3), trt.DataType.FLOAT),
                        ("mask", trt.TensorIOMode.OUTPUT, (2, 3), trt.DataType.BOOL)]
        self.device_memory_size = 1024

    def get_tensor_name(self, i):
        return self.tensors[i][0]

    def _get(self, name, field):
        return next(t[field] for t in self.tensors if t[0] == name)

    def get_tensor_mode(self, name):
        return self._get(name, 1)

    def get_tensor_shape(self, name):
        return self._get(name, 2)

    def get_tensor_dtype(self, name):
        return self._get(name, 3)

    def create_execution_context(self):
        return FakeContext(self)


class FakeRuntime(_Tracked):
    def __init__(self, logger):
        super().__init__()

    def deserialize_cuda_engine(self, plan):
        return FakeEngine(TRT, self)


def _trt(version="8.5.2"):
    trt = make_trt(version)
    trt.DataType = type("DataType", (), {"FLOAT": trt.float32, "HALF": trt.float16,
                                         "BOOL": trt.bool, "INT32": "DataType.INT32"})
    trt.TensorIOMode = type("TensorIOMode", (), {"INPUT": "INPUT", "OUTPUT": "OUTPUT"})
    trt.Runtime = FakeRuntime

    def nptype(data_type):  # TensorRT 8.5.2's under numpy 1.24-1.26, where np.bool is gone
        if data_type == trt.bool:
            raise AttributeError("module 'numpy' has no attribute 'bool'")
        return {trt.float32: np.float32, trt.float16: np.float16}[data_type]

    trt.nptype = nptype
    return trt


TRT = _trt()


class FakeAllocation(object):
    def __init__(self, log):
        self.log, self.freed = log, False

    def free(self):
        self.freed = True

    def __int__(self):
        return 1


class FakeCuda(object):
    """pycuda.driver as the runtime uses it; pop() records which TensorRT objects were alive."""

    def __init__(self):
        self.log = []
        self.allocations = []
        cuda = self

        class Context(object):
            def pop(self):
                cuda.log.append(("pop", len(ALIVE), sum(not a.freed for a in cuda.allocations)))

        class Device(object):
            def __init__(self, index):
                pass

            def make_context(self):
                return Context()

        self.Device = Device

    def mem_alloc(self, nbytes):
        allocation = FakeAllocation(self.log)
        self.allocations.append(allocation)
        return allocation

    def Stream(self):  # noqa: N802 - pycuda's name
        return type("Stream", (), {"handle": 0, "synchronize": lambda self: None})()


def test_io_dtypes_do_not_use_trt_nptype():
    """TensorRT 8.5.2's nptype maps bool to np.bool, gone in numpy 1.24 (JetPack 5's pin)."""
    with pytest.raises(AttributeError):
        TRT.nptype(TRT.DataType.BOOL)
    engine = FakeEngine(TRT, None)
    io = adapters.Adapter(TRT).io_tensors(engine)
    assert [(t["name"], t["dtype"]) for t in io] == [("x", np.dtype(np.float32)),
                                                     ("mask", np.dtype(np.bool_))]


def _session_in_context(cuda, fail=False):
    with runtime.CudaContext(cuda):
        session = runtime.EngineSession(TRT, cuda, adapters.Adapter(TRT), None, b"plan")
        try:
            session.create_context()
            session.allocate(adapters.Adapter(TRT).io_tensors(session.engine))
            if fail:
                raise RuntimeError("a step failed")
        finally:
            session.close()


@pytest.mark.parametrize("fail", [False, True])
def test_tensorrt_objects_are_released_before_the_context_is_popped(fail):
    cuda = FakeCuda()
    if fail:
        with pytest.raises(RuntimeError, match="a step failed"):
            _session_in_context(cuda, fail=True)
    else:
        _session_in_context(cuda)
    assert cuda.log == [("pop", 0, 0)]  # no engine, context, runtime or allocation left


def test_objects_left_in_a_failed_frame_are_released_before_the_pop():
    """An error before a session's try/finally (e.g. while building) leaves objects in the
    frames of the traceback: the context clears them first."""
    cuda = FakeCuda()

    def build_then_fail():
        engine = FakeRuntime(None).deserialize_cuda_engine(b"plan")  # noqa: F841
        raise ValueError("parser error")

    with pytest.raises(ValueError), runtime.CudaContext(cuda):
        build_then_fail()
    assert cuda.log == [("pop", 0, 0)]


def _closes_in_the_context(function):
    """Whether `function` has a `with ...CudaContext(...)` block holding a try whose body
    yields (the cell's whole sequence runs there) and whose finally block calls .close()."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    for block in ast.walk(tree):
        if not (isinstance(block, ast.With) and any(
                isinstance(item.context_expr, ast.Call)
                and ast.unparse(item.context_expr.func).endswith("CudaContext")
                for item in block.items)):
            continue
        for node in ast.walk(block):
            if (isinstance(node, ast.Try)
                    and any(isinstance(n, ast.Yield) for s in node.body for n in ast.walk(s))
                    and any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                            and n.func.attr == "close"
                            for s in node.finalbody for n in ast.walk(s))):
                return True
    return False


def test_the_cells_release_their_objects_inside_the_context():
    """Both TensorRT cells hold their engine in an EngineSession closed in a finally block in
    their backend's scope, inside the CUDA context (the scenarios run the cell in that scope)."""
    for function in (training.TrtBackend.scope, inference.TrtBackend.scope):
        assert _closes_in_the_context(function), function.__qualname__
    assert not _closes_in_the_context(training.TrtBackend.check)  # the check is not vacuous


@pytest.mark.parametrize("version, allowed", [("8.2.1", False), ("8.5.2", True),
                                              ("10.3.0", True)])
def test_kernel_tensor_convolutions_need_tensorrt_8_5(version, allowed):
    trt = _trt(version)
    adapter = adapters.Adapter(trt)
    coords = {"device": "cuda", "precision": "fp32"}
    if allowed:
        training.check_cell(adapter, coords, {"conv_mode": "kernel_tensor"}, True)
    else:
        with pytest.raises(NotRun, match="conv_mode 'kernel_tensor' needs TensorRT >= 8.5"):
            training.check_cell(adapter, coords, {"conv_mode": "kernel_tensor"}, True)
    training.check_cell(adapter, coords, {"conv_mode": "im2col"}, True)


@pytest.mark.parametrize("cap, steps", [(0, 12), (None, 12), (5, 6)])
def test_a_step_cap_of_0_means_no_cap(cap, steps):
    """The spec default max_steps = 0 trains every batch of every epoch (the TensorRT copy of
    the loop stopped after one step)."""
    dataset = data.synthetic(n_train=64, n_test=8)
    protocol = Protocol.from_dict({"warmup_count": 1, "warmup_seconds": 0.0, "min_count": 1,
                                   "min_seconds": 0.0, "max_seconds": 10.0, "max_cv": 10.0})
    calls = []
    losses, _, samples, _ = common.timed_training(
        lambda x, y: calls.append(len(y)) or 1.0, dataset, 16, 3, 0, {"max_steps": cap},
        protocol)
    # 3 epochs x 4 batches; a cap counts the timed steps after the first (untimed) one
    assert len(calls) == steps and len(losses) == steps


def test_every_trainer_uses_the_one_timed_loop():
    """The scenario runs the loop; every trainer's entry point goes through the scenario."""
    assert "common.timed_training(" in inspect.getsource(scenario)
    for module in (training, torch_trainer, ort_trainer):
        source = inspect.getsource(module)
        assert "scenario.run(job, " in inspect.getsource(module.run), module.__name__
        assert "timed_loop(" not in source and "timed_training(" not in source, module.__name__
