"""NumPy reference executor of a step graph (step_graph.py): every node is one layer, run here
with the semantics TensorRT documents for that layer. float32 by default; float64 for tests.

Also `sgd_step(graph, state, x, onehot, lr)`: one training step on a parameter dict, the CPU
twin of the TensorRT runtime's step (same inputs, same outputs, same buffer swap).
"""
import numpy as np


def _conv(x, w, stride, pre, post):
    xp = np.pad(x, ((0, 0), (0, 0), (pre[0], post[0]), (pre[1], post[1])), mode="constant")
    n, _, h, wd = xp.shape
    co, _, kh, kw = w.shape
    ho = (h - kh) // stride[0] + 1
    wo = (wd - kw) // stride[1] + 1
    out = np.zeros((n, co, ho, wo), dtype=np.result_type(x, w))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + (ho - 1) * stride[0] + 1:stride[0],
                       j:j + (wo - 1) * stride[1] + 1:stride[1]]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j], optimize=True)
    return out


def _deconv(x, w, stride, pre, post):
    n, _, h, wd = x.shape
    _, co, kh, kw = w.shape
    full_h, full_w = (h - 1) * stride[0] + kh, (wd - 1) * stride[1] + kw
    out = np.zeros((n, co, full_h, full_w), dtype=np.result_type(x, w))
    for i in range(kh):
        for j in range(kw):
            out[:, :, i:i + (h - 1) * stride[0] + 1:stride[0],
                j:j + (wd - 1) * stride[1] + 1:stride[1]] += np.einsum(
                    "nchw,co->nohw", x, w[:, :, i, j], optimize=True)
    return out[:, :, pre[0]:full_h - post[0], pre[1]:full_w - post[1]]


def _maxpool(x, k):
    n, c, h, w = x.shape
    ho, wo = h // k, w // k
    return x[:, :, :ho * k, :wo * k].reshape(n, c, ho, k, wo, k).max(axis=(3, 5))


_ELEMENTWISE = {
    "sum": np.add, "sub": np.subtract, "prod": np.multiply, "div": np.divide,
    "max": np.maximum, "equal": np.equal, "greater": np.greater,
}
_UNARY = {"exp": np.exp, "log": np.log, "sqrt": np.sqrt, "recip": lambda v: 1.0 / v}
_REDUCE = {"sum": np.sum, "avg": np.mean, "max": np.max}


def _softmax(z, axis):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _shuffle(x, perm, shape):
    if perm is not None:
        x = np.transpose(x, perm)
    if shape is not None:
        x = np.reshape(x, shape)
    return np.ascontiguousarray(x)


def _slice(x, start, shape, stride):
    index = tuple(slice(start[d], start[d] + (shape[d] - 1) * stride[d] + 1, stride[d])
                  for d in range(len(shape)))
    return x[index]


def _run_node(node, args, dtype):
    a = node.attrs
    op = node.op
    if op == "constant":
        return np.asarray(a["value"], dtype=dtype)
    if op == "conv":
        return _conv(args[0], args[1], a["stride"], a["pre"], a["post"])
    if op == "deconv":
        return _deconv(args[0], args[1], a["stride"], a["pre"], a["post"])
    if op == "matmul":
        x = args[0].T if a["transpose_a"] else args[0]
        y = args[1].T if a["transpose_b"] else args[1]
        return x @ y
    if op == "elementwise":
        return _ELEMENTWISE[a["op"]](args[0], args[1])
    if op == "unary":
        return _UNARY[a["op"]](args[0])
    if op == "relu":
        return np.maximum(args[0], 0)
    if op == "maxpool":
        return _maxpool(args[0], a["window"])
    if op == "select":
        return np.where(args[0], args[1], args[2])
    if op == "resize":
        out = args[0]
        for axis, factor in enumerate(a["scales"]):
            if factor != 1:
                out = np.repeat(out, factor, axis=axis)
        return out
    if op == "slice":
        return _slice(args[0], a["start"], a["shape"], a["stride"])
    if op == "pad":
        pre, post = a["pre"], a["post"]
        return np.pad(args[0], ((0, 0), (0, 0), (pre[0], post[0]), (pre[1], post[1])),
                      mode="constant")
    if op == "reduce":
        return _REDUCE[a["op"]](args[0], axis=a["axes"], keepdims=a["keep"])
    if op == "softmax":
        return _softmax(args[0], a["axis"])
    if op == "shuffle":
        return _shuffle(args[0], a["perm"], a["reshape"])
    if op == "concat":
        return np.concatenate(args, axis=a["axis"])
    raise ValueError("numpy reference: unknown op {!r}".format(op))


def execute(graph, feeds, dtype=np.float32, keep_all=False):
    # type: (Any, Dict[str, Any], Any, bool) -> Dict[str, Any]
    """Run every node in order. Returns {output name: array} (and every value with keep_all).

    Values no later node needs are dropped as the walk goes (so a VGG-16 step at batch 128 does
    not hold every intermediate at once)."""
    values = {}
    for name in graph.inputs:
        if name not in feeds:
            raise KeyError("missing graph input {!r}".format(name))
        value = np.asarray(feeds[name], dtype=dtype)
        if value.shape != graph.shapes[name]:
            raise ValueError("input {!r}: shape {} != graph {}".format(
                name, value.shape, graph.shapes[name]))
        values[name] = value
    last_use = {}
    for index, node in enumerate(graph.nodes):
        for value in node.inputs:
            last_use[value] = index
    wanted = {value for _, value in graph.outputs}
    for index, node in enumerate(graph.nodes):
        out = _run_node(node, [values[v] for v in node.inputs], dtype)
        if graph.dtypes[node.output] == "float":
            out = np.asarray(out, dtype=dtype)
        if out.shape != graph.shapes[node.output]:
            raise AssertionError("{}: produced {} but the graph says {}".format(
                node, out.shape, graph.shapes[node.output]))
        values[node.output] = out
        if not keep_all:
            for value in node.inputs:
                if last_use.get(value) == index and value not in wanted:
                    del values[value]
    result = dict(values) if keep_all else {}
    for name, value in graph.outputs:
        result[name] = values[value]
    return result


def initial_state(graph, params, dtype=np.float32):
    # type: (Any, Dict[str, Any], Any) -> Dict[str, Any]
    """The graph's state inputs from a parameter dict (PyTorch names; running stats included when
    given, else 0 / 1; momentum buffers 0)."""
    state = {}
    for name, _ in graph.meta["state"]:
        shape = graph.shapes[name]
        if name.startswith("momentum:"):
            state[name] = np.zeros(shape, dtype=dtype)
        elif name in params:
            state[name] = np.asarray(params[name], dtype=dtype).reshape(shape)
        elif name.endswith(".running_var"):
            state[name] = np.ones(shape, dtype=dtype)
        elif name.endswith(".running_mean"):
            state[name] = np.zeros(shape, dtype=dtype)
        else:
            raise KeyError("no value for state input {!r}".format(name))
    return state


def sgd_step(graph, state, x, onehot, lr, dtype=np.float32):
    # type: (Any, Dict[str, Any], Any, Any, float, Any) -> Tuple[float, Dict[str, Any]]
    """One step: returns (loss, the next state), outputs swapped into inputs by meta["state"]."""
    feeds = dict(state)
    feeds.update(x=x, onehot=onehot, lr=np.array([lr]))
    out = execute(graph, feeds, dtype)
    new_state = {name: out[produced] for name, produced in graph.meta["state"]}
    return float(out["loss"].reshape(-1)[0]), new_state


def one_hot(labels, classes, dtype=np.float32):
    # type: (Any, int, Any) -> Any
    labels = np.asarray(labels).astype(np.int64)
    out = np.zeros((labels.shape[0], int(classes)), dtype=dtype)
    out[np.arange(labels.shape[0]), labels] = 1
    return out
