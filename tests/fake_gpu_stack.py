"""tensorrt + pycuda.driver stand-ins that build and run a whole TensorRT cell on the CPU.

The builder records the network (fake_tensorrt.FakeNetwork), the "plan" names it, and the engine
executes it in NumPy on byte buffers that play device memory, so a cell's run(job) goes through
every stage (context, probe, build, engine cache, buffers, steps, swap, close) without a GPU.
Nothing here is timed like a GPU: it checks the sequence and what is recorded, not speed.
"""
import itertools
import types

import numpy as np
from fake_tensorrt import FakeNetwork, make_trt

_PLANS = {}  # plan bytes -> the recorded network
_SERIAL = itertools.count(1)


class _Network(FakeNetwork):
    @property
    def num_layers(self):
        return len(self.layers)

    @property
    def num_inputs(self):
        return len(self.inputs)

    def get_input(self, index):
        return self.inputs[index]


class _OnnxParser(object):
    """Fills the network from an ONNX model of Conv (no bias) and Relu nodes, the operators the
    tests' tiny models use; any other operator is a parser error, as TensorRT reports one."""

    def __init__(self, network, logger):
        self.network, self.errors = network, []

    @property
    def num_errors(self):
        return len(self.errors)

    def get_error(self, index):
        return self.errors[index]

    def parse(self, model):
        import onnx
        from onnx import numpy_helper

        graph, net, trt = onnx.load_from_string(bytes(model)).graph, self.network, self.trt
        weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        tensors = {v.name: net.add_input(v.name, trt.float32, tuple(
            d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim))
            for v in graph.input if v.name not in weights}
        for node in graph.node:
            if node.op_type == "Relu":
                layer = net.add_activation(tensors[node.input[0]], trt.ActivationType.RELU)
            elif node.op_type == "Conv" and len(node.input) == 2:
                kernel = weights[node.input[1]]
                layer = net.add_convolution_nd(tensors[node.input[0]], kernel.shape[0],
                                               kernel.shape[2:], trt.Weights(kernel))
                pads = next((list(a.ints) for a in node.attribute if a.name == "pads"), [0] * 4)
                layer.stride_nd, layer.pre_padding, layer.post_padding = (1, 1), pads[:2], pads[2:]
            else:
                self.errors.append("unsupported node {} ({})".format(node.name, node.op_type))
                return False
            tensors[node.output[0]] = layer.get_output(0)
        for value in graph.output:
            tensors[value.name].name = value.name
            net.mark_output(tensors[value.name])
        return True


class _Config(object):
    def __init__(self):
        self.flags, self.pool = [], {}

    def set_memory_pool_limit(self, pool, size):
        self.pool[pool] = size

    def set_flag(self, flag):
        self.flags.append(flag)


class _Builder(object):
    platform_has_fast_fp16 = True

    def __init__(self, logger):
        self.logger = logger

    def create_network(self, flags):
        strongly = bool(flags & (1 << 1)) and "STRONGLY_TYPED" in vars(
            self.trt.NetworkDefinitionCreationFlag)
        return _Network(strongly, has_cast=True)

    def create_builder_config(self):
        return _Config()

    def create_optimization_profile(self):
        def set_shape(name, low, opt, high):
            raise NotImplementedError("the stand-in engine runs static shapes only")

        return types.SimpleNamespace(set_shape=set_shape)

    def build_serialized_network(self, network, config):
        plan = "fake-plan-{}".format(next(_SERIAL)).encode()
        _PLANS[plan] = network
        return plan


class _Allocation(object):
    """Device memory: a byte array, known by a unique integer address."""

    live = {}  # address -> allocation

    def __init__(self, nbytes):
        self.data = np.zeros(int(nbytes), dtype=np.uint8)
        self.address = next(_SERIAL) << 20
        _Allocation.live[self.address] = self

    def __int__(self):
        return self.address

    def free(self):
        _Allocation.live.pop(self.address, None)


class _Context(object):
    def __init__(self, engine):
        self.engine, self.addresses = engine, {}

    def set_tensor_address(self, name, address):
        self.addresses[name] = int(address)

    def get_tensor_shape(self, name):
        return self.engine.get_tensor_shape(name)

    def execute_async_v3(self, stream):
        net, feeds = self.engine.network, {}
        for t in net.inputs:
            feeds[t.name] = self.engine.read(self.addresses[t.name], t.name)
        for name, value in net.run(feeds, compute=np.float32).items():
            self.engine.write(self.addresses[name], name, value)
        return True


class _Engine(object):
    device_memory_size = 4096

    def __init__(self, trt, network):
        self.trt, self.network = trt, network
        self.tensors = ([(t.name, "INPUT", t) for t in network.inputs]
                        + [(t.name, "OUTPUT", t) for t in network.outputs])
        self.num_io_tensors = len(self.tensors)

    def _tensor(self, name):
        return next(t for n, _, t in self.tensors if n == name)

    def get_tensor_name(self, i):
        return self.tensors[i][0]

    def get_tensor_mode(self, name):
        mode = next(m for n, m, _ in self.tensors if n == name)
        return getattr(self.trt.TensorIOMode, mode)

    def get_tensor_shape(self, name):
        return tuple(self._tensor(name).shape)

    def get_tensor_dtype(self, name):
        dtype = self._tensor(name).dtype
        return {"FLOAT": self.trt.DataType.FLOAT, "HALF": self.trt.DataType.HALF,
                "BOOL": self.trt.DataType.BOOL}[dtype.name]

    def _view(self, address, name):
        t = self._tensor(name)
        return _Allocation.live[address].data.view(t.dtype.np).reshape(t.shape)

    def read(self, address, name):
        return self._view(address, name).copy()

    def write(self, address, name, value):
        view = self._view(address, name)
        view[...] = np.asarray(value, dtype=view.dtype).reshape(view.shape)

    def create_execution_context(self):
        return _Context(self)


class _Runtime(object):
    def __init__(self, logger):
        self.logger = logger

    def deserialize_cuda_engine(self, plan):
        network = _PLANS.get(bytes(plan))
        return None if network is None else _Engine(self.trt, network)


def make_stack(version="10.3.0"):
    """(tensorrt, pycuda.driver) stand-ins, as runtime.require_stack() returns them."""
    trt = make_trt(version)
    trt.Logger = type("Logger", (), {"WARNING": 2, "VERBOSE": 4,
                                     "__init__": lambda self, level=2: None})
    trt.DataType = types.SimpleNamespace(FLOAT=trt.float32, HALF=trt.float16, BOOL=trt.bool)
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", OBEY_PRECISION_CONSTRAINTS="OBEY")
    trt.Builder = type("Builder", (_Builder,), {"trt": trt})
    trt.Runtime = type("Runtime", (_Runtime,), {"trt": trt})
    trt.OnnxParser = type("OnnxParser", (_OnnxParser,), {"trt": trt})
    return trt, _cuda()


def _cuda():
    cuda = types.SimpleNamespace(device_attribute=types.SimpleNamespace(INTEGRATED="INTEGRATED"))
    cuda.popped = []  # per pop of a context: how many of its allocations were still live
    cuda.allocations = []

    class Device(object):
        def __init__(self, index):
            self.index = index

        def make_context(self):
            return types.SimpleNamespace(
                pop=lambda: cuda.popped.append(sum(a.address in _Allocation.live
                                                  for a in cuda.allocations)))

        def name(self):
            return "Fake GPU"

        def compute_capability(self):
            return (8, 7)

        def total_memory(self):
            return 8 << 30

        def get_attribute(self, attribute):
            return 0

    class Event(object):
        def record(self, stream=None):
            pass

        def synchronize(self):
            pass

        def time_since(self, other):
            return 1.0  # milliseconds

    def used():
        return sum(a.data.nbytes for a in _Allocation.live.values())

    cuda.Device = Device
    cuda.Event = Event
    cuda.init = lambda: None
    cuda.mem_get_info = lambda: ((8 << 30) - used(), 8 << 30)

    def mem_alloc(nbytes):
        cuda.allocations.append(_Allocation(nbytes))
        return cuda.allocations[-1]

    cuda.mem_alloc = mem_alloc
    cuda.pagelocked_empty = lambda shape, dtype: np.empty(shape, dtype=dtype)
    cuda.Stream = lambda: types.SimpleNamespace(handle=0, synchronize=lambda: None)

    def htod(allocation, host, stream=None):
        allocation.data[:host.nbytes] = np.ascontiguousarray(host).view(np.uint8).ravel()

    def dtoh(host, allocation, stream=None):
        host.view(np.uint8).ravel()[...] = allocation.data[:host.nbytes]

    cuda.memcpy_htod = cuda.memcpy_htod_async = htod
    cuda.memcpy_dtoh = cuda.memcpy_dtoh_async = dtoh
    return cuda
