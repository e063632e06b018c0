"""A recording stand-in for the parts of the TensorRT Python API the emitter uses.

It records every layer with its attributes, infers output shapes by TensorRT's documented rules
(independently of step_graph's own shape inference), enforces the rules that make real builds
fail (kernel tensor shapes, equal ranks for elementwise/select, bool conditions, slice bounds,
and in strongly typed networks: no mixed float types), and can execute the recorded network in
NumPy, so the emitted network is checked by value, not only by shape.
"""
import types

import numpy as np

from toolkit.device.training import numpy_reference as ref


class _DataType(object):
    def __init__(self, name, np_dtype):
        self.name, self.np = name, np_dtype

    def __repr__(self):
        return "DataType." + self.name


float32 = _DataType("FLOAT", np.float32)
float16 = _DataType("HALF", np.float16)
bool_ = _DataType("BOOL", np.bool_)


class _EnumValue(object):
    """A member of a stand-in enum: typed like TensorRT's (not a string), so a layer method
    given the wrong enum, or a string, fails as it would with TensorRT."""

    def __init__(self, enum, name):
        self.enum, self.name = enum, name

    def __repr__(self):
        return "{}.{}".format(self.enum, self.name)


def _enum(name, members):
    cls = type(name, (), {})
    for member in members:
        setattr(cls, member, _EnumValue(name, member))
    return cls


def _check_enum(value, enum):
    if not (isinstance(value, _EnumValue) and value.enum == enum):
        raise TypeError("expected a tensorrt.{} member, got {!r}".format(enum, value))
    return value


class Weights(object):
    def __init__(self, value=None):
        if isinstance(value, _DataType) or value is None:
            self.array, self.dtype = None, value or float32
        else:
            self.array = np.asarray(value)
            self.dtype = {np.dtype(np.float32): float32,
                          np.dtype(np.float16): float16}[self.array.dtype]

    @property
    def size(self):
        return 0 if self.array is None else self.array.size


class FakeTensor(object):
    def __init__(self, network, layer=None, name=None, dtype=None, shape=None):
        self.network, self.layer, self.name = network, layer, name
        self._dtype, self._shape = dtype, shape
        self.is_output = False

    @property
    def shape(self):
        if self._shape is None:
            return self.network.infer(self.layer)[0]
        return self._shape

    @property
    def dtype(self):
        if self._dtype is not None:
            return self._dtype
        return self.network.infer(self.layer)[1]

    @dtype.setter
    def dtype(self, value):
        if self.network.strongly_typed:
            raise AssertionError("strongly typed networks do not allow setting tensor types")
        self._dtype = value


class FakeLayer(object):
    def __init__(self, network, kind, inputs, **params):
        self.network, self.kind, self.inputs, self.params = network, kind, list(inputs), params
        self.name = kind
        self.output = FakeTensor(network, self)
        self.num_outputs = 1
        self.precision = None
        self.output_type = None

    def get_output(self, index):
        assert index == 0
        return self.output

    def set_input(self, index, tensor):
        while len(self.inputs) <= index:
            self.inputs.append(None)
        self.inputs[index] = tensor

    def set_output_type(self, index, dtype):
        if self.network.strongly_typed:
            raise AssertionError("set_output_type is not allowed in strongly typed networks")
        self.output_type = dtype

    def __setattr__(self, key, value):
        if key == "precision" and value is not None and getattr(self, "network", None) is not None \
                and self.network.strongly_typed:
            raise AssertionError("layer precision is not allowed in strongly typed networks")
        object.__setattr__(self, key, value)


def _broadcast(shapes):
    ranks = {len(s) for s in shapes}
    if len(ranks) != 1:
        raise AssertionError("operands need equal ranks: {}".format(shapes))
    out = []
    for dims in zip(*shapes, strict=True):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            raise AssertionError("cannot broadcast {}".format(shapes))
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


class FakeNetwork(object):
    """INetworkDefinition stand-in; `has_cast` selects the 8.6+/10.x API (add_cast)."""

    def __init__(self, strongly_typed=False, has_cast=True):
        self.strongly_typed = strongly_typed
        self.layers, self.inputs, self.outputs = [], [], []
        if has_cast:  # absent before 8.6, as in TensorRT (hasattr selects the fallback)
            self.add_cast = self._add_cast

    # -- API --------------------------------------------------------------------------------------
    def _layer(self, kind, inputs, **params):
        layer = FakeLayer(self, kind, inputs, **params)
        self.layers.append(layer)
        return layer

    def add_input(self, name, dtype, shape):
        t = FakeTensor(self, None, name, dtype, tuple(shape))
        self.inputs.append(t)
        return t

    def mark_output(self, tensor):
        tensor.is_output = True
        self.outputs.append(tensor)

    def add_constant(self, shape, weights):
        assert weights.size == int(np.prod(shape)), "constant weights do not fill the shape"
        return self._layer("constant", [], shape=tuple(shape), weights=weights)

    def add_convolution_nd(self, input, num_output_maps, kernel_shape, kernel, bias=None):
        return self._layer("convolution", [input], maps=num_output_maps,
                           kernel_shape=tuple(kernel_shape), kernel=kernel, bias=bias)

    def add_deconvolution_nd(self, input, num_output_maps, kernel_shape, kernel, bias=None):
        return self._layer("deconvolution", [input], maps=num_output_maps,
                           kernel_shape=tuple(kernel_shape), kernel=kernel, bias=bias)

    def add_matrix_multiply(self, input0, op0, input1, op1):
        return self._layer("matrix_multiply", [input0, input1],
                           op0=_check_enum(op0, "MatrixOperation"),
                           op1=_check_enum(op1, "MatrixOperation"))

    def add_elementwise(self, input1, input2, op):
        return self._layer("elementwise", [input1, input2],
                           op=_check_enum(op, "ElementWiseOperation"))

    def add_unary(self, input, op):
        return self._layer("unary", [input], op=_check_enum(op, "UnaryOperation"))

    def add_activation(self, input, type):
        return self._layer("activation", [input], type=_check_enum(type, "ActivationType"))

    def add_pooling_nd(self, input, type, window_size):
        return self._layer("pooling", [input], type=_check_enum(type, "PoolingType"),
                           window=tuple(window_size))

    def add_select(self, condition, then_input, else_input):
        return self._layer("select", [condition, then_input, else_input])

    def add_resize(self, input):
        return self._layer("resize", [input])

    def add_slice(self, input, start, shape, stride):
        return self._layer("slice", [input], start=tuple(start), shape=tuple(shape),
                           stride=tuple(stride))

    def add_padding_nd(self, input, pre_padding, post_padding):
        return self._layer("padding", [input], pre=tuple(pre_padding), post=tuple(post_padding))

    def add_reduce(self, input, op, axes, keep_dims):
        return self._layer("reduce", [input], op=_check_enum(op, "ReduceOperation"), axes=axes,
                           keep=keep_dims)

    def add_softmax(self, input):
        return self._layer("softmax", [input])

    def add_shuffle(self, input):
        return self._layer("shuffle", [input])

    def add_concatenation(self, inputs):
        return self._layer("concatenation", list(inputs))

    def add_identity(self, input):
        return self._layer("identity", [input])

    def _add_cast(self, input, to_type):
        return self._layer("cast", [input], to=to_type)

    # -- shape and type inference ------------------------------------------------------------------
    def infer(self, layer):
        """(shape, dtype) of the layer's output, cached on the layer's current attributes."""
        key = tuple(sorted((name, repr(value)) for name, value in vars(layer).items()
                           if name not in ("network", "output", "params", "inputs", "_cache")))
        key += tuple(id(t) for t in layer.inputs)
        cache = layer.__dict__.setdefault("_cache", {})
        if key not in cache:
            cache.clear()
            cache[key] = self._infer(layer)
        return cache[key]

    def _infer(self, layer):
        p, k = layer.params, layer.kind
        ins = layer.inputs
        shapes = [t.shape for t in ins]
        dtypes = [t.dtype for t in ins]
        floats = {d.name for d in dtypes if d is not bool_}
        if self.strongly_typed and len(floats) > 1 and k not in ("cast",):
            raise AssertionError("{} {}: mixed input types {}".format(k, layer.name, floats))
        dtype = next((d for d in dtypes if d is not bool_), float32)
        if k == "constant":
            return p["shape"], p["weights"].dtype if self.strongly_typed else float32
        if k in ("convolution", "deconvolution"):
            n, c, h, w = shapes[0]
            kh, kw = p["kernel_shape"]
            stride = tuple(getattr(layer, "stride_nd", (1, 1)))
            pre = tuple(getattr(layer, "pre_padding", (0, 0)))
            post = tuple(getattr(layer, "post_padding", (0, 0)))
            if k == "convolution":
                expect_kernel = (p["maps"], c, kh, kw)
                out = [(size + a + b - kk) // s + 1 for size, a, b, kk, s
                       in zip((h, w), pre, post, (kh, kw), stride, strict=True)]
            else:
                expect_kernel = (c, p["maps"], kh, kw)
                out = [(size - 1) * s + kk - a - b for size, a, b, kk, s
                       in zip((h, w), pre, post, (kh, kw), stride, strict=True)]
            if len(ins) > 1 and ins[1] is not None:
                assert p["kernel"].size == 0, "kernel tensor given: build-time kernel must be empty"
                assert shapes[1] == expect_kernel, "{} kernel tensor {} != {}".format(
                    k, shapes[1], expect_kernel)
            else:
                assert p["kernel"].size == int(np.prod(expect_kernel)), "kernel weights size"
                if self.strongly_typed:
                    assert p["kernel"].dtype is dtypes[0], "kernel weights type"
            return (n, p["maps"], out[0], out[1]), dtype
        if k == "matrix_multiply":
            a, b = shapes
            assert len(a) == len(b) == 2
            a = a[::-1] if p["op0"].name == "TRANSPOSE" else a
            b = b[::-1] if p["op1"].name == "TRANSPOSE" else b
            assert a[1] == b[0], "matmul inner dims {} {}".format(a, b)
            return (a[0], b[1]), dtype
        if k == "elementwise":
            out = _broadcast(shapes)
            cmp = p["op"].name in ("EQUAL", "GREATER", "LESS")
            return out, bool_ if cmp else dtype
        if k == "select":
            assert dtypes[0] is bool_, "select condition must be bool"
            return _broadcast(shapes), dtypes[1]
        if k in ("unary", "activation", "softmax"):
            return shapes[0], dtype
        if k in ("identity", "cast"):
            if k == "cast":
                return shapes[0], p["to"]
            return shapes[0], layer.output_type or dtype
        if k == "pooling":
            n, c, h, w = shapes[0]
            stride = tuple(getattr(layer, "stride_nd", (1, 1)))
            win = p["window"]
            return (n, c, (h - win[0]) // stride[0] + 1, (w - win[1]) // stride[1] + 1), dtype
        if k == "resize":
            scales = layer.scales
            return tuple(int(d * s) for d, s in zip(shapes[0], scales, strict=True)), dtype
        if k == "slice":
            for d, (st, n, sd) in enumerate(zip(p["start"], p["shape"], p["stride"], strict=True)):
                assert st >= 0 and st + (n - 1) * sd < shapes[0][d], "slice out of bounds"
            return p["shape"], dtype
        if k == "padding":
            n, c, h, w = shapes[0]
            return (n, c, h + p["pre"][0] + p["post"][0], w + p["pre"][1] + p["post"][1]), dtype
        if k == "reduce":
            axes = [i for i in range(len(shapes[0])) if p["axes"] >> i & 1]
            if p["keep"]:
                return tuple(1 if i in axes else d for i, d in enumerate(shapes[0])), dtype
            return tuple(d for i, d in enumerate(shapes[0]) if i not in axes), dtype
        if k == "shuffle":
            shape = shapes[0]
            perm = getattr(layer, "first_transpose", None)
            if perm is not None:
                shape = tuple(shape[i] for i in perm)
            dims = getattr(layer, "reshape_dims", None)
            if dims is not None:
                assert int(np.prod(dims)) == int(np.prod(shape)), "reshape volume"
                shape = tuple(dims)
            second = getattr(layer, "second_transpose", None)
            if second is not None:
                shape = tuple(shape[i] for i in second)
            return shape, dtype
        if k == "concatenation":
            axis = layer.axis
            base = list(shapes[0])
            for s in shapes[1:]:
                assert len(s) == len(base) and all(
                    a == b for i, (a, b) in enumerate(zip(s, base, strict=True)) if i != axis)
            base[axis] = sum(s[axis] for s in shapes)
            return tuple(base), dtype
        raise AssertionError("unknown layer kind " + k)

    # -- execution --------------------------------------------------------------------------------
    def run(self, feeds, compute=np.float64, emulate_half=True):
        """Execute every layer in order (NumPy); returns {output name: array}. Tensors typed
        float16 are rounded to half precision after each layer (emulate_half)."""
        values = {}
        for t in self.inputs:
            values[id(t)] = np.asarray(feeds[t.name], dtype=compute)
        for layer in self.layers:
            args = [values[id(t)] for t in layer.inputs]
            out = self._eval(layer, args, compute)
            if emulate_half and layer.output.dtype is float16:  # emulate half storage
                out = np.asarray(out, dtype=np.float16).astype(compute)
            values[id(layer.output)] = out
        return {t.name: values[id(t)] for t in self.outputs}

    def _eval(self, layer, args, compute):
        p, k = layer.params, layer.kind
        if k == "constant":
            return np.asarray(p["weights"].array, dtype=compute).reshape(p["shape"])
        if k in ("convolution", "deconvolution"):
            w = args[1] if len(args) > 1 else np.asarray(
                p["kernel"].array, dtype=compute).reshape(layer.output.shape[1:2] + (
                    args[0].shape[1],) + p["kernel_shape"] if k == "convolution" else
                    (args[0].shape[1], p["maps"]) + p["kernel_shape"])
            fn = ref._conv if k == "convolution" else ref._deconv
            return fn(args[0], w, tuple(layer.stride_nd), tuple(layer.pre_padding),
                      tuple(layer.post_padding))
        if k == "matrix_multiply":
            a = args[0].T if p["op0"].name == "TRANSPOSE" else args[0]
            b = args[1].T if p["op1"].name == "TRANSPOSE" else args[1]
            return a @ b
        if k == "elementwise":
            return {"SUM": np.add, "SUB": np.subtract, "PROD": np.multiply, "DIV": np.divide,
                    "MAX": np.maximum, "EQUAL": np.equal, "GREATER": np.greater}[
                        p["op"].name](args[0], args[1])
        if k == "unary":
            return {"EXP": np.exp, "LOG": np.log, "SQRT": np.sqrt,
                    "RECIP": lambda v: 1.0 / v}[p["op"].name](args[0])
        if k == "activation":
            return np.maximum(args[0], 0)
        if k == "pooling":
            return ref._maxpool(args[0], p["window"][0])
        if k == "select":
            return np.where(args[0], args[1], args[2])
        if k == "resize":
            out = args[0]
            for axis, s in enumerate(layer.scales):
                out = np.repeat(out, int(s), axis=axis) if s != 1 else out
            return out
        if k == "slice":
            return ref._slice(args[0], p["start"], p["shape"], p["stride"])
        if k == "padding":
            return np.pad(args[0], ((0, 0), (0, 0), (p["pre"][0], p["post"][0]),
                                    (p["pre"][1], p["post"][1])))
        if k == "reduce":
            axes = tuple(i for i in range(args[0].ndim) if p["axes"] >> i & 1)
            fn = {"SUM": np.sum, "AVG": np.mean, "MAX": np.max}[p["op"].name]
            return fn(args[0], axis=axes, keepdims=p["keep"])
        if k == "softmax":
            axis = [i for i in range(args[0].ndim) if layer.axes >> i & 1]
            assert len(axis) == 1
            return ref._softmax(args[0], axis[0])
        if k == "shuffle":
            out = args[0]
            if getattr(layer, "first_transpose", None) is not None:
                out = np.transpose(out, layer.first_transpose)
            if getattr(layer, "reshape_dims", None) is not None:
                out = out.reshape(layer.reshape_dims)
            if getattr(layer, "second_transpose", None) is not None:
                out = np.transpose(out, layer.second_transpose)
            return out
        if k == "concatenation":
            return np.concatenate(args, axis=layer.axis)
        if k in ("identity", "cast"):
            return args[0]
        raise AssertionError(k)


def make_trt(version="10.3.0"):
    """A module-like stand-in for `tensorrt` of the given version."""
    major = int(version.split(".")[0])
    minor = tuple(int(v) for v in version.split(".")[:2])
    trt = types.SimpleNamespace()
    trt.__version__ = version
    trt.float32, trt.float16, trt.bool = float32, float16, bool_
    trt.Weights = Weights
    trt.ElementWiseOperation = _enum("ElementWiseOperation", [
        "SUM", "SUB", "PROD", "DIV", "MAX", "MIN", "EQUAL", "GREATER", "LESS"])
    trt.UnaryOperation = _enum("UnaryOperation", ["EXP", "LOG", "SQRT", "RECIP"])
    trt.ReduceOperation = _enum("ReduceOperation", ["SUM", "AVG", "MAX", "MIN", "PROD"])
    trt.ActivationType = _enum("ActivationType", ["RELU"])
    trt.PoolingType = _enum("PoolingType", ["MAX", "AVERAGE"])
    trt.MatrixOperation = _enum("MatrixOperation", ["NONE", "TRANSPOSE", "VECTOR"])
    if minor >= (8, 5):  # 8.5 introduced InterpolationMode; 10 dropped ResizeMode
        trt.InterpolationMode = _enum("InterpolationMode", ["NEAREST", "LINEAR"])
    if major >= 10:
        flags = ["EXPLICIT_BATCH", "STRONGLY_TYPED"]
    else:
        trt.ResizeMode = _enum("ResizeMode", ["NEAREST", "LINEAR"])
        flags = ["EXPLICIT_BATCH", "EXPLICIT_PRECISION"]
    trt.NetworkDefinitionCreationFlag = type("NetworkDefinitionCreationFlag", (), {
        name: i for i, name in enumerate(flags)})
    trt.ResizeCoordinateTransformation = _enum("ResizeCoordinateTransformation",
                                               ["ALIGN_CORNERS", "ASYMMETRIC", "HALF_PIXEL"])
    trt.ResizeRoundMode = _enum("ResizeRoundMode", ["FLOOR", "CEIL"])
    return trt


def make_network(trt, strongly_typed=False):
    has_cast = tuple(int(v) for v in trt.__version__.split(".")[:2]) >= (8, 6)
    return FakeNetwork(strongly_typed, has_cast)
