"""The TensorRT emitter walked through a recording stand-in of INetworkDefinition.

Checks that every node the NumPy reference runs has its TensorRT counterpart with the same output
shape, that the network is valid by TensorRT's rules (kernel tensor shapes, ranks, types), and
that the recorded network computes the same values as the reference (so the emitter cannot
silently drift from the verified graph).
"""
import subprocess
import sys

import numpy as np
import pytest

from tests import fake_tensorrt as fake
from toolkit.device.backends.tensorrt import emitter
from toolkit.device.backends.tensorrt.adapter import Adapter, parse_version
from toolkit.device.training import numpy_reference as ref
from toolkit.device.training import step_graph as sg

# graph op -> the TensorRT layer kinds that must appear among that node's layers
COUNTERPART = {
    "conv": {"kernel_tensor": "convolution", "im2col": "matrix_multiply"},
    "deconv": {"kernel_tensor": "deconvolution", "im2col": "matrix_multiply"},
    "matmul": "matrix_multiply", "elementwise": "elementwise", "unary": "unary",
    "relu": "activation", "maxpool": "pooling", "select": "select", "resize": "resize",
    "slice": "slice", "pad": "padding", "reduce": "reduce", "softmax": "softmax",
    "shuffle": "shuffle", "concat": "concatenation",
}


def _frozen(cfg, seed=0):
    r = np.random.default_rng(seed)
    shapes = {n: s for n, s, _ in sg.parameter_shapes(cfg)}
    out = {}
    for name in sg.frozen_value_names(cfg):
        shape = shapes.get(name) or (shapes[name.rsplit(".", 1)[0] + ".weight"][0],)
        out[name] = r.uniform(0.5, 1.5, shape) if name.endswith("running_var") else \
            r.standard_normal(shape) * 0.3
    return out


def _emit(cfg, version="10.3.0", precision="fp32", strongly=False, conv_mode=None, seed=0):
    trt = fake.make_trt(version)
    graph = sg.build_vgg_step(cfg, _frozen(cfg, seed))
    network = fake.make_network(trt, strongly)
    built = emitter.emit(graph, network, trt, precision, strongly, conv_mode)
    return graph, network, built


def _feeds(graph, seed=1):
    r = np.random.default_rng(seed)
    cfg = graph.meta["config"]
    params = {n: r.standard_normal(s) * 0.3 for n, s in graph.shapes.items() if n in graph.inputs}
    feeds = ref.initial_state(graph, params, np.float64)
    feeds["x"] = r.standard_normal(graph.shapes["x"])
    feeds["onehot"] = ref.one_hot(r.integers(0, cfg["classes"], cfg["batch"]), cfg["classes"],
                                  np.float64)
    feeds["lr"] = np.array([0.05])
    return feeds


@pytest.mark.parametrize("version,freeze,conv_mode", [
    ("10.3.0", 0, None), ("10.3.0", 5, None), ("8.5.2", 0, None), ("8.2.1", 0, None),
    ("8.2.1", 5, None), ("10.3.0", 0, "im2col"),
])
def test_every_graph_node_has_its_layer_with_the_same_shape(version, freeze, conv_mode):
    cfg = sg.StepConfig("vgg16", None, 10, 4, 32, freeze, 5e-4, 0.9)
    graph, network, built = _emit(cfg, version, conv_mode=conv_mode)
    mode = built.settings["conv_mode"]
    assert mode == (conv_mode or ("im2col" if version.startswith("8.2") else "kernel_tensor"))
    constants = graph.constants()
    for node in graph.nodes:
        if node.op == "constant":
            continue
        tensor = built.tensors[node.output]
        assert tuple(tensor.shape) == graph.shape(node.output), node
        kinds = {layer.kind for layer in built.layers[node.output]}
        want = COUNTERPART[node.op]
        if isinstance(want, dict):
            want = "convolution" if node.inputs[1] in constants else want[mode]
        assert want in kinds, (node, kinds)
    # inputs and outputs: same names, shapes, all float32 at the boundary
    assert [t.name for t in network.inputs] == graph.inputs
    for t in network.inputs:
        assert tuple(t.shape) == graph.shape(t.name) and t.dtype is fake.float32
    assert [t.name for t in network.outputs] == [name for name, _ in graph.outputs]
    for (_, value), t in zip(graph.outputs, network.outputs, strict=True):
        assert tuple(t.shape) == graph.shape(value) and t.dtype is fake.float32
    # frozen kernels are build-time weights; trainable ones are input 1 (kernel_tensor mode)
    convs = [layer for layer in network.layers if layer.kind == "convolution"]
    assert sum(1 for c in convs if c.params["kernel"].size) == freeze
    if mode == "kernel_tensor":
        assert sum(1 for c in convs if len(c.inputs) > 1) == 13 - freeze
    else:
        assert len(convs) == freeze and not any(
            layer.kind == "deconvolution" for layer in network.layers)
    for layer in network.layers:  # every recorded layer has a well-defined output
        assert all(d > 0 for d in layer.output.shape)


@pytest.mark.parametrize("version,conv_mode,freeze", [
    ("10.3.0", "kernel_tensor", 0), ("10.3.0", "kernel_tensor", 2), ("8.2.1", "im2col", 0),
    ("8.2.1", "im2col", 3),
])
def test_emitted_network_computes_what_the_reference_computes(version, conv_mode, freeze):
    widths = [4, 4, 6, 6, 8, 8, 8, 8, 8, 8, 8, 8, 8]
    cfg = sg.StepConfig("vgg16", widths, 10, 2, 32, freeze, 5e-4, 0.9, expose_grads=True)
    graph, network, _ = _emit(cfg, version, conv_mode=conv_mode)
    feeds = _feeds(graph)
    want = ref.execute(graph, feeds, np.float64)
    got = network.run(feeds)
    assert set(got) == set(want)
    for name in want:  # constants are float32 weights in the network: float32-level agreement
        scale = np.abs(want[name]).max()
        assert np.abs(got[name] - want[name]).max() <= 1e-5 * scale + 1e-12, name


def test_strongly_typed_fp16_casts_at_the_boundary_and_updates_in_fp32():
    widths = [4, 4, 6, 6, 8, 8, 8, 8, 8, 8, 8, 8, 8]
    # A random narrow VGG's deep backward chain amplifies input perturbations of 5e-4 into
    # ~15 % gradient changes, so half precision is checked numerically on a short trainable
    # chain (10 frozen blocks, batch 16); types are checked on every node regardless.
    cfg = sg.StepConfig("vgg16", widths, 10, 16, 32, 10, 5e-4, 0.9, loss_scale=1024.0)
    graph, network, built = _emit(cfg, "10.3.0", "fp16", True)
    kinds = [layer.kind for layer in network.layers]
    assert "cast" in kinds and "identity" not in kinds
    producers = graph.producers()
    for node in graph.nodes:
        if node.op == "constant" or graph.dtypes[node.output] == "bool":
            continue
        dtype = built.tensors[node.output].dtype  # inference raises on mixed float inputs
        assert dtype is (fake.float32 if node.role == "update" else fake.float16), node
    assert all(t.dtype is fake.float32 for t in network.outputs)
    assert built.settings["compute_precision"].startswith("float16")
    # numerically: half storage in forward/backward, a sane loss and small update errors
    feeds = _feeds(graph)
    want = ref.execute(graph, feeds, np.float64)
    got = network.run(feeds)
    assert abs(float(got["loss"][0, 0]) - float(want["loss"][0, 0])) < 0.01
    convs = {layer["conv"] for layer in sg.layer_names("vgg16") if layer["op"] == "C"}
    for name in graph.meta["trainable"]:
        if name.endswith(".bias") and name.rsplit(".", 1)[0] in convs:
            continue  # conv bias before a training-mode BN: gradient analytically zero
        step_want = want["new:" + name] - feeds[name]
        step_got = got["new:" + name] - feeds[name]
        err = np.abs(step_got - step_want).max() / (np.abs(step_want).max() + 1e-8)
        assert err < 0.05, (name, err)
    assert producers  # (graph walked)


def test_weakly_typed_fp16_pins_the_update_layers_to_fp32():
    widths = [4, 4, 6, 6, 8, 8, 8, 8, 8, 8, 8, 8, 8]
    cfg = sg.StepConfig("vgg16", widths, 10, 2, 32, 0, 5e-4, 0.0)
    graph, network, built = _emit(cfg, "8.5.2", "fp16", False)
    for node in graph.nodes:
        for layer in built.layers[node.output]:
            if layer.kind == "constant":  # made on first use; weights, not a computation
                continue
            if node.role == "update":
                assert layer.precision is fake.float32, node
            else:
                assert layer.precision is None, node
    assert not any(layer.kind == "cast" for layer in network.layers)


def test_strong_typing_needs_tensorrt_10():
    trt = fake.make_trt("8.5.2")
    assert not Adapter(trt).has_strong_typing
    assert Adapter(fake.make_trt("10.3.0")).has_strong_typing


def test_version_parsing():
    assert parse_version("8.2.1.8") == (8, 2, 1)
    assert parse_version("10.3.0") == (10, 3, 0)
    assert parse_version("8.5.2.2") == (8, 5, 2)


def test_device_modules_import_without_tensorrt_or_pycuda():
    code = ("import sys; sys.modules['tensorrt'] = None; sys.modules['pycuda'] = None\n"
            "from toolkit.device.backends.tensorrt import adapter, emitter, inference\n"
            "from toolkit.device.backends.tensorrt import runtime, training\n"
            "import toolkit.device.training.step_graph, toolkit.device.training.numpy_reference\n"
            "bad = [m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules]\n"
            "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
