"""Step graph (training/step_graph.py) -> TensorRT INetworkDefinition, layer by layer.

Each graph node becomes the TensorRT layer of the same name (see step_graph's op table), except:
- a `conv` whose kernel is a graph constant (a frozen block) gets it as build-time weights, so
  TensorRT can fuse it; a trainable kernel is input 1 of the layer (empty build-time weights);
- conv_mode "im2col" (TensorRT 8.2, see adapter.py) builds a trainable conv as k*k shifted
  slices + concatenation + one matrix multiply, and a stride-1 deconv as the same on the padded
  gradient with the kernel transposed and flipped by the slice order.

Precision:
- fp32: everything float32.
- fp16, weakly typed (TensorRT <= 10 default): the network is float32; the builder's FP16 flag
  lets TensorRT choose half precision; layers of the "update" role are pinned to float32
  (layer.precision + output type; the config obeys precision constraints).
- fp16, strongly typed (TensorRT 10, `strongly_typed=True`): every tensor's type is explicit:
  inputs and outputs stay float32 (master weights), the forward/loss/backward nodes compute in
  float16 (cast layers at the boundary, constants created in float16), the SGD update in float32.

emit() returns an Emitted record: the TensorRT tensor of every graph value and the layers each
node produced, so tests can walk graph and network side by side.
"""
import numpy as np

from .adapter import Adapter

_ELEMENTWISE = {"sum": "SUM", "sub": "SUB", "prod": "PROD", "div": "DIV", "max": "MAX",
                "equal": "EQUAL", "greater": "GREATER"}
_UNARY = {"exp": "EXP", "log": "LOG", "sqrt": "SQRT", "recip": "RECIP"}
_REDUCE = {"sum": "SUM", "avg": "AVG", "max": "MAX"}


def axes_mask(axes):
    # type: (Sequence[int]) -> int
    mask = 0
    for axis in axes:
        mask |= 1 << int(axis)
    return mask


class Emitted(object):
    """What emit() built: tensors by graph value, layers by node output, inputs, outputs."""

    def __init__(self):
        self.tensors = {}  # type: Dict[str, Any]
        self.layers = {}  # type: Dict[str, List[Any]]
        self.inputs = {}  # type: Dict[str, Any]
        self.outputs = {}  # type: Dict[str, Any]
        self.keepalive = []  # type: List[Any]  # numpy arrays behind build-time weights
        self.settings = {}  # type: Dict[str, Any]


class _Emitter(object):
    def __init__(self, graph, network, trt, precision, strongly_typed, conv_mode):
        self.g, self.net, self.trt = graph, network, trt
        self.ad = Adapter(trt)
        if precision not in ("fp32", "fp16"):
            raise ValueError("precision must be fp32 or fp16, got {!r}".format(precision))
        self.precision, self.strongly = precision, bool(strongly_typed)
        self.conv_mode = conv_mode or self.ad.default_conv_mode
        if self.conv_mode not in ("kernel_tensor", "im2col"):
            raise ValueError("conv_mode must be kernel_tensor or im2col")
        self.out = Emitted()
        self.kinds = {}  # value -> 'float32' | 'float16' | 'bool'
        self.casts = {}  # (value, dtype) -> tensor
        self.constants = graph.constants()
        self.current = None  # type: Optional[List[Any]]

    # -- helpers ----------------------------------------------------------------------------------
    def compute_dtype(self, node):
        if self.precision == "fp16" and self.strongly and node.role != "update":
            return "float16"
        return "float32"

    def record(self, layer, node=None):
        if self.current is not None:
            self.current.append(layer)
        if node is not None:
            layer.name = "{}:{}".format(node.op, node.output)
        if (node is not None and self.precision == "fp16" and not self.strongly
                and node.role == "update"):
            layer.precision = self.trt.float32
            for i in range(layer.num_outputs):
                if layer.get_output(i).dtype != self.trt.bool:
                    layer.set_output_type(i, self.trt.float32)
        return layer

    def tensor(self, value, dtype):
        """The tensor of `value` in dtype (bools stay bool), with a cached cast if needed.
        Constants are made on first use, directly in the dtype wanted (no cast), so a frozen
        kernel that only ever feeds a convolution as build-time weights adds no layer."""
        if value in self.constants:
            key = (value, dtype if self.strongly else "float32")
            if key not in self.casts:
                self.casts[key] = self.const(self.constants[value], key[1])
            return self.casts[key]
        kind = self.kinds[value]
        if kind == "bool" or kind == dtype or not self.strongly:
            return self.out.tensors[value]
        key = (value, dtype)
        if key not in self.casts:
            layer = self.record(self.ad.cast(self.net, self.out.tensors[value], dtype))
            self.casts[key] = layer.get_output(0)
        return self.casts[key]

    def weights(self, array, dtype):
        arr = np.ascontiguousarray(np.asarray(array, dtype=self.ad.numpy_dtype(dtype)))
        self.out.keepalive.append(arr)
        return self.ad.weights(arr)

    def const(self, array, dtype):
        arr = np.asarray(array)
        return self.record(self.net.add_constant(tuple(arr.shape),
                                                 self.weights(arr, dtype))).get_output(0)

    def shuffle(self, x, perm=None, shape=None, second=None, node=None):
        layer = self.record(self.net.add_shuffle(x), node)
        if perm is not None:
            layer.first_transpose = tuple(perm)
        if shape is not None:
            layer.reshape_dims = tuple(shape)
        if second is not None:
            layer.second_transpose = tuple(second)
        return layer.get_output(0)

    def matmul(self, a, ta, b, tb):
        op = self.trt.MatrixOperation
        return self.record(self.net.add_matrix_multiply(
            a, op.TRANSPOSE if ta else op.NONE, b, op.TRANSPOSE if tb else op.NONE)).get_output(0)

    def im2col(self, x, shape, k, stride, pre, post, reverse=False):
        """[N, C, H, W] -> [k*k*C, N*Ho*Wo] columns (offset-major), zero-padded by pre/post."""
        n, c, h, w = shape
        if any(pre) or any(post):
            x = self.record(self.ad.pad(self.net, x, pre, post)).get_output(0)
        h, w = h + pre[0] + post[0], w + pre[1] + post[1]
        ho, wo = (h - k) // stride[0] + 1, (w - k) // stride[1] + 1
        parts = []
        offsets = [(i, j) for i in range(k) for j in range(k)]
        if reverse:
            offsets = offsets[::-1]
        for i, j in offsets:
            parts.append(self.record(self.net.add_slice(
                x, (0, 0, i, j), (n, c, ho, wo), (1, 1, stride[0], stride[1]))).get_output(0))
        layer = self.record(self.net.add_concatenation(parts))
        layer.axis = 1
        cols = self.shuffle(layer.get_output(0), (1, 0, 2, 3), (k * k * c, n * ho * wo))
        return cols, (ho, wo)

    # -- ops --------------------------------------------------------------------------------------
    def op_conv(self, node, dtype, args):
        a = node.attrs
        x_value, w_value = node.inputs
        x = self.tensor(x_value, dtype)
        k = a["kernel"][0]
        if w_value in self.constants:  # frozen: build-time weights TensorRT can fuse
            layer = self.record(self.net.add_convolution_nd(
                x, a["maps"], a["kernel"], self.weights(self.constants[w_value], dtype)), node)
        elif self.conv_mode == "kernel_tensor":
            kernel = self.tensor(w_value, dtype)
            layer = self.record(self.net.add_convolution_nd(
                x, a["maps"], a["kernel"], self.ad.empty_weights(dtype)), node)
            layer.set_input(1, kernel)
        else:
            n = self.g.shape(x_value)[0]
            cols, (ho, wo) = self.im2col(x, self.g.shape(x_value), k, a["stride"], a["pre"],
                                         a["post"])
            co, ci = self.g.shape(w_value)[:2]
            w2 = self.shuffle(self.tensor(w_value, dtype), (0, 2, 3, 1), (co, k * k * ci))
            y = self.matmul(w2, False, cols, False)
            return self.shuffle(y, None, (co, n, ho, wo), (1, 0, 2, 3))
        layer.stride_nd = a["stride"]
        layer.pre_padding = a["pre"]
        layer.post_padding = a["post"]
        return layer.get_output(0)

    def op_deconv(self, node, dtype, args):
        a = node.attrs
        x_value, w_value = node.inputs
        x = self.tensor(x_value, dtype)
        if self.conv_mode == "kernel_tensor" or w_value in self.constants:
            if w_value in self.constants:
                layer = self.record(self.net.add_deconvolution_nd(
                    x, a["maps"], a["kernel"], self.weights(self.constants[w_value], dtype)), node)
            else:
                kernel = self.tensor(w_value, dtype)
                layer = self.record(self.net.add_deconvolution_nd(
                    x, a["maps"], a["kernel"], self.ad.empty_weights(dtype)), node)
                layer.set_input(1, kernel)
            layer.stride_nd = a["stride"]
            layer.pre_padding = a["pre"]
            layer.post_padding = a["post"]
            return layer.get_output(0)
        # im2col: stride-1 deconv = conv of the (k-1-p)-padded input with the flipped,
        # transposed kernel; the flip is the reversed slice order.
        if tuple(a["stride"]) != (1, 1):
            raise NotImplementedError("im2col deconvolution supports stride 1 only")
        k = a["kernel"][0]
        pre = tuple(k - 1 - p for p in a["pre"])
        post = tuple(k - 1 - p for p in a["post"])
        n = self.g.shape(x_value)[0]
        cols, (ho, wo) = self.im2col(x, self.g.shape(x_value), k, (1, 1), pre, post,
                                     reverse=True)
        cx, co = self.g.shape(w_value)[:2]
        w2 = self.shuffle(self.tensor(w_value, dtype), (1, 2, 3, 0), (co, k * k * cx))
        y = self.matmul(w2, False, cols, False)
        return self.shuffle(y, None, (co, n, ho, wo), (1, 0, 2, 3))

    def op_matmul(self, node, dtype, args):
        return self.matmul(args[0], node.attrs["transpose_a"], args[1],
                           node.attrs["transpose_b"])

    def op_elementwise(self, node, dtype, args):
        op = getattr(self.trt.ElementWiseOperation, _ELEMENTWISE[node.attrs["op"]])
        return self.record(self.net.add_elementwise(args[0], args[1], op), node).get_output(0)

    def op_unary(self, node, dtype, args):
        op = getattr(self.trt.UnaryOperation, _UNARY[node.attrs["op"]])
        return self.record(self.net.add_unary(args[0], op), node).get_output(0)

    def op_relu(self, node, dtype, args):
        return self.record(self.net.add_activation(args[0], self.trt.ActivationType.RELU),
                           node).get_output(0)

    def op_maxpool(self, node, dtype, args):
        k = node.attrs["window"]
        layer = self.record(self.net.add_pooling_nd(args[0], self.trt.PoolingType.MAX, (k, k)),
                            node)
        layer.stride_nd = (k, k)
        return layer.get_output(0)

    def op_select(self, node, dtype, args):
        return self.record(self.net.add_select(args[0], args[1], args[2]), node).get_output(0)

    def op_resize(self, node, dtype, args):
        layer = self.record(self.net.add_resize(args[0]), node)
        layer.scales = [float(s) for s in node.attrs["scales"]]
        self.ad.set_nearest(layer)
        return layer.get_output(0)

    def op_slice(self, node, dtype, args):
        a = node.attrs
        return self.record(self.net.add_slice(args[0], a["start"], a["shape"], a["stride"]),
                           node).get_output(0)

    def op_pad(self, node, dtype, args):
        return self.record(self.ad.pad(self.net, args[0], node.attrs["pre"], node.attrs["post"]),
                           node).get_output(0)

    def op_reduce(self, node, dtype, args):
        a = node.attrs
        op = getattr(self.trt.ReduceOperation, _REDUCE[a["op"]])
        return self.record(self.net.add_reduce(args[0], op, axes_mask(a["axes"]), a["keep"]),
                           node).get_output(0)

    def op_softmax(self, node, dtype, args):
        layer = self.record(self.net.add_softmax(args[0]), node)
        layer.axes = axes_mask([node.attrs["axis"]])
        return layer.get_output(0)

    def op_shuffle(self, node, dtype, args):
        return self.shuffle(args[0], node.attrs["perm"], node.attrs["reshape"], node=node)

    def op_concat(self, node, dtype, args):
        layer = self.record(self.net.add_concatenation(list(args)), node)
        layer.axis = node.attrs["axis"]
        return layer.get_output(0)

    # -- driver -----------------------------------------------------------------------------------
    def run(self):
        g, out = self.g, self.out
        io_dtype = "float32"
        for name in g.inputs:
            kind = "bool" if g.dtypes[name] == "bool" else io_dtype
            tensor = self.net.add_input(name, self.ad.dtype(kind), g.shape(name))
            out.tensors[name] = out.inputs[name] = tensor
            self.kinds[name] = kind
        for node in g.nodes:
            dtype = self.compute_dtype(node)
            self.current = out.layers[node.output] = []
            if node.op == "constant":
                continue  # made on first use (see tensor())
            if node.op in ("conv", "deconv"):
                args = None  # these fetch their own inputs (constants as weights)
            else:
                args = [self.tensor(v, dtype) for v in node.inputs]
            tensor = getattr(self, "op_" + node.op)(node, dtype, args)
            out.tensors[node.output] = tensor
            if g.dtypes[node.output] == "bool":
                self.kinds[node.output] = "bool"
            else:
                self.kinds[node.output] = dtype if self.strongly else "float32"
        self.current = None
        marked = []
        for name, value in g.outputs:
            tensor = self.tensor(value, io_dtype)
            if any(tensor is t for t in marked):  # one tensor, two outputs: give it a copy
                tensor = self.record(self.net.add_identity(tensor)).get_output(0)
            marked.append(tensor)
            tensor.name = name
            self.net.mark_output(tensor)
            if not self.strongly:
                tensor.dtype = self.ad.dtype(io_dtype)
            out.outputs[name] = tensor
        out.settings = {"precision": self.precision, "strongly_typed": self.strongly,
                        "conv_mode": self.conv_mode,
                        "update_precision": "float32", "compute_precision": (
                            "float16 (strongly typed casts)" if self.strongly and
                            self.precision == "fp16" else "float16 allowed (builder flag)"
                            if self.precision == "fp16" else "float32")}
        return out


def emit(graph, network, trt, precision="fp32", strongly_typed=False, conv_mode=None):
    # type: (Any, Any, Any, str, bool, Optional[str]) -> Emitted
    """Add the step graph's layers to `network` (created by Adapter.create_network)."""
    return _Emitter(graph, network, trt, precision, strongly_typed, conv_mode).run()
