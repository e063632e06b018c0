"""A backend-neutral training-step graph: forward, loss gradient, hand-written backward and the
SGD update of a CIFAR VGG, as a flat list of nodes.

Long because the step is one graph written node by node: its forward, backward and update parts
name each other's nodes, and split across files they could only be read together.

Why this shape: every node is ONE TensorRT layer (same op, same attributes, same output shape),
so the NumPy reference executor (numpy_reference.py) runs exactly the computation the TensorRT
emitter (toolkit/device/backends/tensorrt/emitter.py) builds; a test walks both and checks they
agree.
Compound steps (conv weight gradient = nine shifted slices, each a matrix multiply; BatchNorm
backward from reductions and elementwise layers; ...) are helper functions that append nodes.

Ops (inputs -> output; attributes), all tensors NCHW / row-major, ranks never broadcast (TensorRT
elementwise needs equal ranks, so per-channel vectors are reshaped to [1, C, 1, 1] first):

- constant () value (numpy array)
- conv (x, w) stride, pre, post            IConvolutionLayer, kernel [Co, Ci, k, k], no bias
- deconv (x, w) stride, pre, post          IDeconvolutionLayer, kernel [Ci_x, Co_out, k, k]
- matmul (a, b) transpose_a, transpose_b   IMatrixMultiplyLayer
- elementwise (a, b) op: sum sub prod div max equal greater   IElementWiseLayer (broadcast)
- unary (x) op: exp log sqrt recip         IUnaryLayer
- relu (x)                                 IActivationLayer
- maxpool (x) window (stride = window)     IPoolingLayer
- select (cond, a, b)                      ISelectLayer
- resize (x) scales (integer, nearest)     IResizeLayer
- slice (x) start, shape, stride           ISliceLayer
- pad (x) pre, post (last two dims, zeros) IPaddingLayer
- reduce (x) op: sum avg max, axes, keep   IReduceLayer
- softmax (x) axis                         ISoftMaxLayer
- shuffle (x) perm, reshape                IShuffleLayer (first transpose, then reshape)
- concat (xs...) axis                      IConcatenationLayer

Freezing (same definition as training/freeze.py): freeze=k makes the first k conv blocks
(conv3x3 + BatchNorm + ReLU) constants; their BatchNorm runs in inference mode with the given
running statistics, folded into the conv constants (w * s, (b - mean) * s + beta with
s = gamma / sqrt(var + eps)), and no backward pass is built for the frozen prefix (which also
owns a max-pool right after the last frozen block). The classifier is never frozen.

Pure python + numpy: importable on the device (Python 3.6) and on the host.
"""
import numpy as np

from toolkit.errors import UserError

from ..models import vgg

ELEMENTWISE_OPS = ("sum", "sub", "prod", "div", "max", "equal", "greater")
UNARY_OPS = ("exp", "log", "sqrt", "recip")
REDUCE_OPS = ("sum", "avg", "max")
ROLES = ("forward", "loss", "backward", "update")


class Node(object):
    """One layer: op, input value names, one output value name, attributes, role."""

    __slots__ = ("op", "inputs", "output", "attrs", "role")

    def __init__(self, op, inputs, output, attrs, role):
        # type: (str, List[str], str, Dict[str, Any], str) -> None
        self.op = op
        self.inputs = list(inputs)
        self.output = output
        self.attrs = attrs
        self.role = role

    def __repr__(self):
        return "Node({} {} -> {})".format(self.op, self.inputs, self.output)


class Graph(object):
    """Values (name -> shape, dtype 'float' | 'bool'), inputs, nodes and named outputs."""

    def __init__(self):
        self.nodes = []  # type: List[Node]
        self.shapes = {}  # type: Dict[str, Tuple[int, ...]]
        self.dtypes = {}  # type: Dict[str, str]
        self.inputs = []  # type: List[str]
        self.outputs = []  # type: List[Tuple[str, str]]  # (external name, value)
        self.meta = {}  # type: Dict[str, Any]
        self.role = "forward"
        self._count = 0

    # -- construction ---------------------------------------------------------------------------
    def add_input(self, name, shape, dtype="float"):
        # type: (str, Sequence[int], str) -> str
        if name in self.shapes:
            raise ValueError("duplicate value name {!r}".format(name))
        self.shapes[name] = tuple(int(d) for d in shape)
        self.dtypes[name] = dtype
        self.inputs.append(name)
        return name

    def add(self, op, inputs, shape, attrs=None, dtype="float", name=None):
        # type: (str, Sequence[str], Sequence[int], Optional[Dict[str, Any]], str, Optional[str]) -> str
        for value in inputs:
            if value not in self.shapes:
                raise ValueError("{}: unknown input value {!r}".format(op, value))
        self._count += 1
        out = name or "{}_{}".format(op, self._count)
        if out in self.shapes:
            raise ValueError("duplicate value name {!r}".format(out))
        self.shapes[out] = tuple(int(d) for d in shape)
        self.dtypes[out] = dtype
        self.nodes.append(Node(op, inputs, out, dict(attrs or {}), self.role))
        return out

    def mark_output(self, value, name):
        # type: (str, str) -> None
        if any(existing == name for existing, _ in self.outputs):
            raise ValueError("duplicate output name {!r}".format(name))
        self.outputs.append((name, value))

    def shape(self, value):
        # type: (str) -> Tuple[int, ...]
        return self.shapes[value]

    def producers(self):
        # type: () -> Dict[str, Node]
        return {node.output: node for node in self.nodes}

    def constants(self):
        # type: () -> Dict[str, Any]
        return {n.output: n.attrs["value"] for n in self.nodes if n.op == "constant"}


# ---------------------------------------------------------------------------------------------
# Single-layer ops (shape inference here; the TensorRT stand-in in the tests infers independently)
# ---------------------------------------------------------------------------------------------

def _pair(v):
    # type: (Any) -> Tuple[int, int]
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[1])
    return int(v), int(v)


def constant(g, value, name=None):
    # type: (Graph, Any, Optional[str]) -> str
    value = np.asarray(value, dtype=np.float64)
    return g.add("constant", [], value.shape, {"value": value}, name=name)


def scalar(g, v, rank):
    # type: (Graph, float, int) -> str
    """A constant of shape [1] * rank (broadcasts against any tensor of that rank)."""
    return constant(g, np.full([1] * rank, float(v)))


def conv(g, x, w, stride=1, pre=0, post=None):
    # type: (Graph, str, str, Any, Any, Any) -> str
    n, ci, h, wd = g.shape(x)
    co, ci_w, kh, kw = g.shape(w)
    if ci != ci_w:
        raise ValueError("conv: input has {} channels, kernel {}".format(ci, ci_w))
    s, pre, post = _pair(stride), _pair(pre), _pair(pre if post is None else post)
    ho = (h + pre[0] + post[0] - kh) // s[0] + 1
    wo = (wd + pre[1] + post[1] - kw) // s[1] + 1
    return g.add("conv", [x, w], (n, co, ho, wo), {"stride": s, "pre": pre, "post": post,
                                                   "kernel": (kh, kw), "maps": co})


def deconv(g, x, w, stride=1, pre=0, post=None):
    # type: (Graph, str, str, Any, Any, Any) -> str
    """Transposed convolution; kernel [C_x, C_out, k, k] (a conv kernel [Co, Ci] used as is)."""
    n, c, h, wd = g.shape(x)
    c_w, co, kh, kw = g.shape(w)
    if c != c_w:
        raise ValueError("deconv: input has {} channels, kernel {}".format(c, c_w))
    s, pre, post = _pair(stride), _pair(pre), _pair(pre if post is None else post)
    ho = (h - 1) * s[0] + kh - pre[0] - post[0]
    wo = (wd - 1) * s[1] + kw - pre[1] - post[1]
    return g.add("deconv", [x, w], (n, co, ho, wo), {"stride": s, "pre": pre, "post": post,
                                                     "kernel": (kh, kw), "maps": co})


def matmul(g, a, b, transpose_a=False, transpose_b=False):
    # type: (Graph, str, str, bool, bool) -> str
    sa, sb = g.shape(a), g.shape(b)
    if len(sa) != 2 or len(sb) != 2:
        raise ValueError("matmul: 2-D operands only, got {} and {}".format(sa, sb))
    m, k = (sa[1], sa[0]) if transpose_a else sa
    k2, n = (sb[1], sb[0]) if transpose_b else sb
    if k != k2:
        raise ValueError("matmul: inner dimensions {} and {} differ".format(k, k2))
    return g.add("matmul", [a, b], (m, n), {"transpose_a": bool(transpose_a),
                                           "transpose_b": bool(transpose_b)})


def _broadcast(sa, sb):
    # type: (Tuple[int, ...], Tuple[int, ...]) -> Tuple[int, ...]
    if len(sa) != len(sb):
        raise ValueError("elementwise operands need equal ranks, got {} and {}".format(sa, sb))
    out = []
    for x, y in zip(sa, sb):  # noqa: B905 (Python 3.6)
        if x != y and 1 not in (x, y):
            raise ValueError("cannot broadcast {} and {}".format(sa, sb))
        out.append(max(x, y))
    return tuple(out)


def elementwise(g, op, a, b):
    # type: (Graph, str, str, str) -> str
    if op not in ELEMENTWISE_OPS:
        raise ValueError("elementwise op {!r}".format(op))
    dtype = "bool" if op in ("equal", "greater") else "float"
    return g.add("elementwise", [a, b], _broadcast(g.shape(a), g.shape(b)), {"op": op}, dtype)


def add(g, a, b):
    return elementwise(g, "sum", a, b)


def sub(g, a, b):
    return elementwise(g, "sub", a, b)


def mul(g, a, b):
    return elementwise(g, "prod", a, b)


def unary(g, op, x):
    # type: (Graph, str, str) -> str
    if op not in UNARY_OPS:
        raise ValueError("unary op {!r}".format(op))
    return g.add("unary", [x], g.shape(x), {"op": op})


def relu(g, x):
    return g.add("relu", [x], g.shape(x))


def maxpool(g, x, window=2):
    # type: (Graph, str, int) -> str
    n, c, h, w = g.shape(x)
    return g.add("maxpool", [x], (n, c, h // window, w // window), {"window": int(window)})


def select(g, cond, a, b):
    # type: (Graph, str, str, str) -> str
    if g.dtypes[cond] != "bool":
        raise ValueError("select: condition must be bool")
    shape = _broadcast(_broadcast(g.shape(cond), g.shape(a)), g.shape(b))
    return g.add("select", [cond, a, b], shape)


def resize(g, x, scales):
    # type: (Graph, str, Sequence[int]) -> str
    shape = tuple(d * int(s) for d, s in zip(g.shape(x), scales))  # noqa: B905 (Python 3.6)
    return g.add("resize", [x], shape, {"scales": tuple(int(s) for s in scales)})


def slice_(g, x, start, shape, stride):
    # type: (Graph, str, Sequence[int], Sequence[int], Sequence[int]) -> str
    src = g.shape(x)
    for d in range(len(src)):
        st, n, sd = start[d], shape[d], stride[d]
        if st < 0 or st + (n - 1) * sd >= src[d]:
            raise ValueError("slice out of bounds on dim {}: {} in {}".format(d, (st, n, sd), src))
    return g.add("slice", [x], shape, {"start": tuple(start), "shape": tuple(shape),
                                       "stride": tuple(stride)})


def pad(g, x, pre, post):
    # type: (Graph, str, Any, Any) -> str
    n, c, h, w = g.shape(x)
    pre, post = _pair(pre), _pair(post)
    return g.add("pad", [x], (n, c, h + pre[0] + post[0], w + pre[1] + post[1]),
                 {"pre": pre, "post": post})


def reduce(g, op, x, axes, keep=True):
    # type: (Graph, str, str, Sequence[int], bool) -> str
    if op not in REDUCE_OPS:
        raise ValueError("reduce op {!r}".format(op))
    axes = tuple(sorted(int(a) for a in axes))
    src = g.shape(x)
    shape = tuple(1 if i in axes else d for i, d in enumerate(src)) if keep else \
        tuple(d for i, d in enumerate(src) if i not in axes)
    return g.add("reduce", [x], shape, {"op": op, "axes": axes, "keep": bool(keep)})


def softmax(g, x, axis):
    # type: (Graph, str, int) -> str
    return g.add("softmax", [x], g.shape(x), {"axis": int(axis)})


def shuffle(g, x, perm=None, reshape=None):
    # type: (Graph, str, Optional[Sequence[int]], Optional[Sequence[int]]) -> str
    shape = g.shape(x)
    if perm is not None:
        shape = tuple(shape[p] for p in perm)
    if reshape is not None:
        if int(np.prod(reshape)) != int(np.prod(shape)):
            raise ValueError("shuffle: cannot reshape {} to {}".format(shape, reshape))
        shape = tuple(reshape)
    return g.add("shuffle", [x], shape, {"perm": None if perm is None else tuple(perm),
                                         "reshape": None if reshape is None else tuple(reshape)})


def reshape(g, x, shape):
    return shuffle(g, x, reshape=shape)


def concat(g, xs, axis):
    # type: (Graph, Sequence[str], int) -> str
    shapes = [g.shape(x) for x in xs]
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return g.add("concat", list(xs), out, {"axis": int(axis)})


# ---------------------------------------------------------------------------------------------
# Primitives: forward and hand-derived backward, each a small subgraph (tested against autograd)
# ---------------------------------------------------------------------------------------------

def channel(g, v):
    # type: (Graph, str) -> str
    """A per-channel vector [C] as [1, C, 1, 1]."""
    return reshape(g, v, (1, g.shape(v)[0], 1, 1))


def conv_forward(g, x, w, b=None, stride=1, padding=1):
    # type: (Graph, str, str, Optional[str], int, int) -> str
    y = conv(g, x, w, stride, padding, padding)
    return y if b is None else add(g, y, channel(g, b))


def conv_input_grad(g, dy, w, x_shape, stride=1, padding=1):
    # type: (Graph, str, str, Sequence[int], int, int) -> str
    """dL/dx of y = conv(x, w): a deconvolution of dy with the same kernel, stride and padding.

    The deconvolution's natural size (Ho-1)*s + k - 2p falls short of H by the rows the strided
    conv never read (r = (H + 2p - k) mod s); they get zero gradient: post-padding is reduced
    by r, and where that would be negative the missing rows are zero-padded afterwards."""
    _, _, h, wd = x_shape
    _, _, ho, wo = g.shape(dy)
    _, _, kh, kw = g.shape(w)
    post = []
    extra = []
    for size, out, k in ((h, ho, kh), (wd, wo, kw)):
        natural = (out - 1) * stride + k - 2 * padding
        r = size - natural
        post.append(max(padding - r, 0))
        extra.append(max(r - padding, 0))
    dx = deconv(g, dy, w, stride, padding, tuple(post))
    if any(extra):
        dx = pad(g, dx, (0, 0), tuple(extra))
    return dx


def conv_weight_grad(g, x, dy, kernel, stride=1, padding=1):
    # type: (Graph, str, str, int, int, int) -> str
    """dL/dw = sum over batch and positions of dy x patch: for each kernel offset (i, j) the
    shifted, strided slice of the zero-padded input, a matrix multiply with dy; the k*k
    [Co, Ci] products are concatenated and reshaped to [Co, Ci, k, k]."""
    n, ci, _, _ = g.shape(x)
    _, co, ho, wo = g.shape(dy)
    xp = pad(g, x, padding, padding) if padding else x
    dy2 = shuffle(g, dy, perm=(1, 0, 2, 3), reshape=(co, n * ho * wo))
    parts = []
    for i in range(kernel):
        for j in range(kernel):
            s = slice_(g, xp, (0, 0, i, j), (n, ci, ho, wo), (1, 1, stride, stride))
            s2 = shuffle(g, s, perm=(1, 0, 2, 3), reshape=(ci, n * ho * wo))
            part = matmul(g, dy2, s2, transpose_b=True)  # [Co, Ci]
            parts.append(reshape(g, part, (co, ci, 1)))
    dw = concat(g, parts, 2)
    return reshape(g, dw, (co, ci, kernel, kernel))


def channel_sum(g, t):
    # type: (Graph, str) -> str
    """Sum over batch and space of [N, C, H, W] -> [C]."""
    return reduce(g, "sum", t, (0, 2, 3), keep=False)


def bn_train_forward(g, x, gamma, beta, eps):
    # type: (Graph, str, str, str, float) -> Tuple[str, Dict[str, str]]
    """BatchNorm with batch statistics (biased variance, as PyTorch normalises with)."""
    mean = reduce(g, "avg", x, (0, 2, 3))
    xc = sub(g, x, mean)
    var = reduce(g, "avg", mul(g, xc, xc), (0, 2, 3))
    inv = unary(g, "recip", unary(g, "sqrt", add(g, var, scalar(g, eps, 4))))
    xhat = mul(g, xc, inv)
    gamma4 = channel(g, gamma)
    y = add(g, mul(g, xhat, gamma4), channel(g, beta))
    return y, {"mean": mean, "var": var, "inv": inv, "xhat": xhat, "gamma": gamma4}


def bn_train_backward(g, dy, cache):
    # type: (Graph, str, Dict[str, str]) -> Tuple[str, str, str]
    """dx = gamma * inv * (dy - mean(dy) - xhat * mean(dy * xhat)); dgamma = sum(dy * xhat);
    dbeta = sum(dy) (sums and means over batch and space)."""
    xhat = cache["xhat"]
    dyx = mul(g, dy, xhat)
    dgamma = channel_sum(g, dyx)
    dbeta = channel_sum(g, dy)
    centred = sub(g, sub(g, dy, reduce(g, "avg", dy, (0, 2, 3))),
                  mul(g, xhat, reduce(g, "avg", dyx, (0, 2, 3))))
    dx = mul(g, centred, mul(g, cache["gamma"], cache["inv"]))
    return dx, dgamma, dbeta


def relu_backward(g, out, dout):
    # type: (Graph, str, str) -> str
    """select(relu output > 0, dY, 0) (relu output > 0 exactly where its input is)."""
    rank = len(g.shape(out))
    zero = scalar(g, 0.0, rank)
    return select(g, elementwise(g, "greater", out, zero), dout, zero)


def maxpool_backward(g, x, pooled, dpooled, window=2):
    # type: (Graph, str, str, str, int) -> str
    """Nearest-upsample the pooled output, compare with the input (equal -> mask) and select the
    upsampled gradient there. Ties inside a window would all receive it (PyTorch: the first
    only); after a ReLU, tied windows are zeros whose gradient the ReLU backward discards."""
    scales = (1, 1, window, window)
    up = resize(g, pooled, scales)
    mask = elementwise(g, "equal", up, x)
    return select(g, mask, resize(g, dpooled, scales), scalar(g, 0.0, 4))


def linear_forward(g, x2, w, b):
    # type: (Graph, str, str, str) -> str
    classes = g.shape(w)[0]
    return add(g, matmul(g, x2, w, transpose_b=True), reshape(g, b, (1, classes)))


def softmax_cross_entropy(g, logits, onehot, loss_scale=1.0):
    # type: (Graph, str, str, float) -> Tuple[str, str]
    """Mean cross-entropy loss [1, 1] (stable log-sum-exp) and dL/dlogits = (softmax - y) / N,
    times a static loss scale (half-precision backward passes underflow without one; the update
    divides it out again)."""
    n = g.shape(logits)[0]
    zmax = reduce(g, "max", logits, (1,))
    zs = sub(g, logits, zmax)
    lse = unary(g, "log", reduce(g, "sum", unary(g, "exp", zs), (1,)))
    picked = reduce(g, "sum", mul(g, onehot, zs), (1,))
    loss = reduce(g, "avg", sub(g, lse, picked), (0,))
    g.role = "backward"
    probs = softmax(g, logits, 1)
    dlogits = mul(g, sub(g, probs, onehot), scalar(g, float(loss_scale) / n, 2))
    return loss, dlogits


def linear_backward(g, x2, w, dz):
    # type: (Graph, str, str, str) -> Tuple[str, str, str]
    """dX = g W, dW = g^T X, db = sum over the batch."""
    dx = matmul(g, dz, w)
    dw = matmul(g, dz, x2, transpose_a=True)
    db = reduce(g, "sum", dz, (0,), keep=False)
    return dx, dw, db


class _Ranked(object):
    """Per-rank reshapes of one [1] input (the learning rate), made once each."""

    def __init__(self, g, value):
        self.g, self.value, self.by_rank = g, value, {1: value}

    def __call__(self, rank):
        if rank not in self.by_rank:
            self.by_rank[rank] = reshape(self.g, self.value, [1] * rank)
        return self.by_rank[rank]


def sgd_update(g, w, grad, lr, weight_decay=0.0, momentum=0.0, buf=None, loss_scale=1.0):
    # type: (Graph, str, str, Any, float, float, Optional[str], float) -> Tuple[str, Optional[str]]
    """PyTorch SGD (dampening 0, no Nesterov): d = grad + wd * w; buf' = m * buf + d;
    w' = w - lr * (buf' if momentum else d). `lr` is a _Ranked learning-rate input; a gradient
    computed with a loss scale is divided by it first."""
    rank = len(g.shape(w))
    d = grad
    if loss_scale != 1.0:
        d = mul(g, d, scalar(g, 1.0 / loss_scale, rank))
    if weight_decay:
        d = add(g, d, mul(g, w, scalar(g, weight_decay, rank)))
    new_buf = None
    if momentum:
        new_buf = add(g, mul(g, buf, scalar(g, momentum, rank)), d)
        d = new_buf
    return sub(g, w, mul(g, d, lr(rank))), new_buf


# ---------------------------------------------------------------------------------------------
# The VGG training step
# ---------------------------------------------------------------------------------------------

class StepConfig(object):
    """Everything the step graph depends on (recorded with every TensorRT result)."""

    def __init__(self, model="vgg16", widths=None, classes=10, batch=4, image_size=32, freeze=0,
                 weight_decay=5e-4, momentum=0.0, bn_eps=1e-5, bn_momentum=0.1,
                 track_running_stats=True, expose_grads=False, loss_scale=1.0):
        if model not in vgg.LAYOUTS:
            raise UserError("the TensorRT training step is defined for {} only, not {!r}".format(
                ", ".join(sorted(vgg.LAYOUTS)), model))
        self.model = model
        self.widths = [int(w) for w in (widths or vgg.FULL_WIDTHS[model])]
        if len(self.widths) != len(vgg.FULL_WIDTHS[model]):
            raise UserError("{}: expected {} widths, got {}".format(
                model, len(vgg.FULL_WIDTHS[model]), len(self.widths)))
        self.classes, self.batch, self.image_size = int(classes), int(batch), int(image_size)
        self.freeze = int(freeze)
        if not 0 <= self.freeze <= len(self.widths):
            raise UserError("{}: freeze must be in 0..{}, got {}".format(
                model, len(self.widths), freeze))
        self.weight_decay, self.momentum = float(weight_decay), float(momentum)
        self.bn_eps, self.bn_momentum = float(bn_eps), float(bn_momentum)
        self.track_running_stats = bool(track_running_stats)
        self.expose_grads = bool(expose_grads)
        self.loss_scale = float(loss_scale)  # static; exposed gradients are the scaled ones

    def as_dict(self):
        # type: () -> Dict[str, Any]
        return dict(vars(self))


def layer_names(model):
    # type: (str) -> List[Dict[str, Any]]
    """Per layout entry: ('C', conv index in features, bn index) or ('M', pool index)."""
    out, index = [], 0
    for op in vgg.LAYOUTS[model]:
        if op == "M":
            out.append({"op": "M", "index": index})
            index += 1
        else:
            out.append({"op": "C", "conv": "features.{}".format(index),
                        "bn": "features.{}".format(index + 1)})
            index += 3
    return out


def parameter_shapes(cfg):
    # type: (StepConfig) -> List[Tuple[str, Tuple[int, ...], int]]
    """(PyTorch state_dict name, shape, conv block index or -1 for the classifier) in order."""
    out, cin, block = [], 3, 0
    for layer in layer_names(cfg.model):
        if layer["op"] == "M":
            continue
        cout = cfg.widths[block]
        out += [(layer["conv"] + ".weight", (cout, cin, 3, 3), block),
                (layer["conv"] + ".bias", (cout,), block),
                (layer["bn"] + ".weight", (cout,), block),
                (layer["bn"] + ".bias", (cout,), block)]
        cin, block = cout, block + 1
    out += [("classifier.weight", (cfg.classes, cin), -1), ("classifier.bias", (cfg.classes,), -1)]
    return out


def frozen_value_names(cfg):
    # type: (StepConfig) -> List[str]
    """The values build_vgg_step needs for the frozen blocks: their parameters and BN statistics."""
    names = []
    for name, _, block in parameter_shapes(cfg):
        if 0 <= block < cfg.freeze:
            names.append(name)
            if name.endswith(".bias") and _is_bn(cfg, name):
                module = name.rsplit(".", 1)[0]
                names += [module + ".running_mean", module + ".running_var"]
    return names


def _is_bn(cfg, name):
    # type: (StepConfig, str) -> bool
    bns = {layer["bn"] for layer in layer_names(cfg.model) if layer["op"] == "C"}
    return name.rsplit(".", 1)[0] in bns


def build_vgg_step(cfg, frozen=None):
    # type: (StepConfig, Optional[Dict[str, Any]]) -> Graph
    """The training step of a CIFAR VGG as a Graph.

    Inputs (in order): "x" [N, 3, S, S], "onehot" [N, classes] (labels one-hot, made on the
    host), "lr" [1], then per trainable parameter its value (PyTorch name), its momentum buffer
    "momentum:<name>" (momentum > 0), and per trainable BatchNorm "<bn>.running_mean" and
    "<bn>.running_var" (track_running_stats).
    Outputs: "loss" [1, 1], "new:<name>" per trainable parameter, "new_momentum:<name>",
    "new:<bn>.running_mean/var", and with expose_grads "grad:<name>".
    meta["state"]: (input, output) pairs to swap between steps.
    `frozen`: the values named by frozen_value_names(cfg) (numpy arrays), needed when freeze > 0.
    """
    frozen = dict(frozen or {})
    missing = [n for n in frozen_value_names(cfg) if n not in frozen]
    if missing:
        raise UserError("build_vgg_step: frozen values missing: {}".format(", ".join(missing)))
    g = Graph()
    n, s = cfg.batch, cfg.image_size
    x = g.add_input("x", (n, 3, s, s))
    onehot = g.add_input("onehot", (n, cfg.classes))
    lr = _Ranked(g, g.add_input("lr", (1,)))
    shapes = {name: shape for name, shape, _ in parameter_shapes(cfg)}
    trainable = [name for name, _, block in parameter_shapes(cfg)
                 if block < 0 or block >= cfg.freeze]
    state, params, bufs = [], {}, {}
    for name in trainable:
        params[name] = g.add_input(name, shapes[name])
        state.append((name, "new:" + name))
        if cfg.momentum:
            bufs[name] = g.add_input("momentum:" + name, shapes[name])
            state.append(("momentum:" + name, "new_momentum:" + name))
    running = {}
    if cfg.track_running_stats:
        for name in trainable:
            if name.endswith(".weight") and _is_bn(cfg, name):
                module = name.rsplit(".", 1)[0]
                for stat in ("running_mean", "running_var"):
                    key = "{}.{}".format(module, stat)
                    running[key] = g.add_input(key, (shapes[name][0],))
                    state.append((key, "new:" + key))

    # -- forward --------------------------------------------------------------------------------
    g.role = "forward"
    h, block, tape = x, 0, []
    for layer in layer_names(cfg.model):
        if layer["op"] == "M":
            pooled = maxpool(g, h, 2)
            if block > cfg.freeze:  # a pool inside the trainable part needs a backward
                tape.append({"kind": "pool", "x": h, "y": pooled})
            h = pooled
            continue
        conv_name, bn_name = layer["conv"], layer["bn"]
        if block < cfg.freeze:
            h = relu(g, _frozen_conv_bn(g, h, frozen, conv_name, bn_name, cfg.bn_eps))
        else:
            a_in = h
            z = conv_forward(g, a_in, params[conv_name + ".weight"], params[conv_name + ".bias"])
            y, cache = bn_train_forward(g, z, params[bn_name + ".weight"],
                                        params[bn_name + ".bias"], cfg.bn_eps)
            h = relu(g, y)
            tape.append({"kind": "block", "conv": conv_name, "bn": bn_name, "x": a_in, "z": z,
                         "cache": cache, "out": h, "first": block == cfg.freeze})
            if cfg.track_running_stats:
                _running_update(g, cfg, running, bn_name, cache, z)
        block += 1
    n_, c, fh, fw = g.shape(h)
    if (fh, fw) != (1, 1):
        raise UserError("{}: image_size must leave a 1x1 map (32..63), got {}x{}".format(
            cfg.model, fh, fw))
    feat = reshape(g, h, (n_, c))
    logits = linear_forward(g, feat, params["classifier.weight"], params["classifier.bias"])

    # -- loss and its gradient ------------------------------------------------------------------
    g.role = "loss"
    loss, dlogits = softmax_cross_entropy(g, logits, onehot, cfg.loss_scale)
    g.mark_output(loss, "loss")

    # -- backward -------------------------------------------------------------------------------
    g.role = "backward"
    grads = {}
    dfeat, grads["classifier.weight"], grads["classifier.bias"] = linear_backward(
        g, feat, params["classifier.weight"], dlogits)
    dh = reshape(g, dfeat, (n_, c, 1, 1)) if tape else None
    for entry in reversed(tape):
        if entry["kind"] == "pool":
            dh = maxpool_backward(g, entry["x"], entry["y"], dh, 2)
            continue
        conv_name, bn_name = entry["conv"], entry["bn"]
        dy = relu_backward(g, entry["out"], dh)
        dz, grads[bn_name + ".weight"], grads[bn_name + ".bias"] = bn_train_backward(
            g, dy, entry["cache"])
        grads[conv_name + ".weight"] = conv_weight_grad(g, entry["x"], dz, 3, 1, 1)
        grads[conv_name + ".bias"] = channel_sum(g, dz)
        if not entry["first"]:
            dh = conv_input_grad(g, dz, params[conv_name + ".weight"], g.shape(entry["x"]), 1, 1)

    # -- update ---------------------------------------------------------------------------------
    g.role = "update"
    for name in trainable:
        new, new_buf = sgd_update(g, params[name], grads[name], lr, cfg.weight_decay,
                                  cfg.momentum, bufs.get(name), cfg.loss_scale)
        g.mark_output(new, "new:" + name)
        if new_buf is not None:
            g.mark_output(new_buf, "new_momentum:" + name)
    for key, value in sorted(g.meta.pop("running_new", {}).items()):
        g.mark_output(value, "new:" + key)
    if cfg.expose_grads:
        for name in trainable:
            g.mark_output(grads[name], "grad:" + name)
    g.meta.update(config=cfg.as_dict(), trainable=trainable, state=state,
                  frozen=[name for name, _, block in parameter_shapes(cfg)
                          if 0 <= block < cfg.freeze])
    return g


def _frozen_conv_bn(g, x, frozen, conv_name, bn_name, eps):
    # type: (Graph, str, Dict[str, Any], str, str, float) -> str
    """conv + inference-mode BN of a frozen block, folded into one constant conv + bias."""
    w = np.asarray(frozen[conv_name + ".weight"], dtype=np.float64)
    b = np.asarray(frozen[conv_name + ".bias"], dtype=np.float64)
    gamma = np.asarray(frozen[bn_name + ".weight"], dtype=np.float64)
    beta = np.asarray(frozen[bn_name + ".bias"], dtype=np.float64)
    mean = np.asarray(frozen[bn_name + ".running_mean"], dtype=np.float64)
    var = np.asarray(frozen[bn_name + ".running_var"], dtype=np.float64)
    scale = gamma / np.sqrt(var + eps)
    wc = constant(g, w * scale[:, None, None, None], name="frozen:" + conv_name + ".weight")
    y = conv(g, x, wc, 1, 1, 1)
    bias = constant(g, ((b - mean) * scale + beta).reshape(1, -1, 1, 1),
                    name="frozen:" + conv_name + ".bias")
    return add(g, y, bias)


def _running_update(g, cfg, running, bn_name, cache, z):
    # type: (Graph, StepConfig, Dict[str, str], str, Dict[str, str], str) -> None
    """running' = (1 - m) * running + m * batch statistic (variance unbiased, as PyTorch)."""
    role, g.role = g.role, "update"
    n, c, h, w = g.shape(z)
    count = n * h * w
    m = cfg.bn_momentum
    new = g.meta.setdefault("running_new", {})
    stats = (("running_mean", cache["mean"], 1.0),
             ("running_var", cache["var"], count / max(count - 1.0, 1.0)))
    for stat, batch_value, factor in stats:
        key = "{}.{}".format(bn_name, stat)
        flat = reshape(g, batch_value, (c,))
        new[key] = add(g, mul(g, running[key], scalar(g, 1.0 - m, 1)),
                       mul(g, flat, scalar(g, m * factor, 1)))
    g.role = role
