"""The hand-written training step (step graph + NumPy reference) against PyTorch autograd + SGD.

Tolerance: max |ours - torch| <= 1e-4 * max |torch| per tensor (+ 1e-12 absolute, for quantities
that are analytically zero, e.g. the conv bias gradient before a training-mode BatchNorm), all in
float64 on both sides.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from toolkit.device.training import numpy_reference as ref  # noqa: E402
from toolkit.device.training import step_graph as sg  # noqa: E402

RTOL = 1e-4


def close(ours, theirs, what=""):
    theirs = theirs.detach().double().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    ours = np.asarray(ours, dtype=np.float64).reshape(theirs.shape)
    err = np.abs(ours - theirs).max() if theirs.size else 0.0
    bound = RTOL * np.abs(theirs).max() + 1e-12
    assert err <= bound, "{}: max abs error {:.3g} > {:.3g}".format(what, err, bound)


def run(g, feeds):
    return ref.execute(g, feeds, np.float64, keep_all=True)


def rng(seed=0):
    return np.random.default_rng(seed)


# -- primitives ---------------------------------------------------------------------------------

CONV_CASES = [  # (N, Ci, H, W, Co, k, stride, pad)
    (2, 3, 8, 8, 4, 3, 1, 1),
    (2, 3, 9, 7, 5, 3, 2, 1),   # strided, odd sizes: the deconv needs extra padding rows
    (1, 2, 8, 8, 3, 3, 2, 0),   # strided, no padding
    (2, 4, 6, 6, 2, 3, 1, 0),   # valid conv
    (1, 3, 10, 10, 2, 3, 3, 2),  # stride 3, pad 2
    (2, 2, 7, 7, 3, 1, 2, 0),   # 1x1 strided
]


@pytest.mark.parametrize("n,ci,h,w,co,k,stride,padding", CONV_CASES)
def test_conv_forward_and_both_gradients_match_autograd(n, ci, h, w, co, k, stride, padding):
    r = rng(1)
    x = torch.tensor(r.standard_normal((n, ci, h, w)), requires_grad=True)
    wt = torch.tensor(r.standard_normal((co, ci, k, k)), requires_grad=True)
    b = torch.tensor(r.standard_normal(co), requires_grad=True)
    y = torch.nn.functional.conv2d(x, wt, b, stride=stride, padding=padding)
    dy = torch.tensor(r.standard_normal(tuple(y.shape)))
    y.backward(dy)

    g = sg.Graph()
    gx, gw, gb = g.add_input("x", x.shape), g.add_input("w", wt.shape), g.add_input("b", (co,))
    gy = sg.conv_forward(g, gx, gw, gb, stride, padding)
    assert g.shape(gy) == tuple(y.shape)
    gdy = g.add_input("dy", y.shape)
    gdx = sg.conv_input_grad(g, gdy, gw, g.shape(gx), stride, padding)
    gdw = sg.conv_weight_grad(g, gx, gdy, k, stride, padding)
    gdb = sg.channel_sum(g, gdy)
    out = run(g, {"x": x.detach().numpy(), "w": wt.detach().numpy(), "b": b.detach().numpy(),
                  "dy": dy.numpy()})
    close(out[gy], y, "y")
    close(out[gdx], x.grad, "dx")
    close(out[gdw], wt.grad, "dw")
    close(out[gdb], b.grad, "db")
    ops = {node.op for node in g.nodes}
    assert {"conv", "deconv", "slice", "matmul"} <= ops


def test_batchnorm_training_backward_matches_autograd():
    r = rng(2)
    x = torch.tensor(r.standard_normal((4, 3, 5, 5)) * 3 + 1, requires_grad=True)
    gamma = torch.tensor(r.standard_normal(3), requires_grad=True)
    beta = torch.tensor(r.standard_normal(3), requires_grad=True)
    y = torch.nn.functional.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5)
    dy = torch.tensor(r.standard_normal(tuple(y.shape)))
    y.backward(dy)

    g = sg.Graph()
    gx, gg, gbeta = g.add_input("x", x.shape), g.add_input("g", (3,)), g.add_input("b", (3,))
    gy, cache = sg.bn_train_forward(g, gx, gg, gbeta, 1e-5)
    gdy = g.add_input("dy", y.shape)
    gdx, gdg, gdb = sg.bn_train_backward(g, gdy, cache)
    out = run(g, {"x": x.detach().numpy(), "g": gamma.detach().numpy(),
                  "b": beta.detach().numpy(), "dy": dy.numpy()})
    close(out[gy], y, "y")
    close(out[gdx], x.grad, "dx")
    close(out[gdg], gamma.grad, "dgamma")
    close(out[gdb], beta.grad, "dbeta")


def test_relu_backward_matches_autograd():
    r = rng(3)
    x = torch.tensor(r.standard_normal((2, 3, 4, 4)), requires_grad=True)
    y = torch.relu(x)
    dy = torch.tensor(r.standard_normal(tuple(y.shape)))
    y.backward(dy)
    g = sg.Graph()
    gx, gdy = g.add_input("x", x.shape), g.add_input("dy", x.shape)
    gy = sg.relu(g, gx)
    gdx = sg.relu_backward(g, gy, gdy)
    out = run(g, {"x": x.detach().numpy(), "dy": dy.numpy()})
    close(out[gy], y, "y")
    close(out[gdx], x.grad, "dx")


@pytest.mark.parametrize("after_relu", [False, True])
def test_maxpool_backward_matches_autograd(after_relu):
    r = rng(4)
    x0 = torch.tensor(r.standard_normal((2, 3, 8, 6)), requires_grad=True)
    x = torch.relu(x0) if after_relu else x0
    y = torch.nn.functional.max_pool2d(x, 2, 2)
    dy = torch.tensor(r.standard_normal(tuple(y.shape)))
    y.backward(dy)
    g = sg.Graph()
    gx0, gdy = g.add_input("x", x0.shape), g.add_input("dy", y.shape)
    gx = sg.relu(g, gx0) if after_relu else gx0
    gy = sg.maxpool(g, gx, 2)
    gdx = sg.maxpool_backward(g, gx, gy, gdy, 2)
    if after_relu:  # tied zero windows: the relu backward removes the duplicates
        gdx = sg.relu_backward(g, gx, gdx)
    out = run(g, {"x": x0.detach().numpy(), "dy": dy.numpy()})
    close(out[gy], y, "y")
    close(out[gdx], x0.grad, "dx")


def test_classifier_and_loss_backward_match_autograd():
    r = rng(5)
    n, c, k = 5, 7, 4
    x = torch.tensor(r.standard_normal((n, c)), requires_grad=True)
    w = torch.tensor(r.standard_normal((k, c)), requires_grad=True)
    b = torch.tensor(r.standard_normal(k), requires_grad=True)
    labels = r.integers(0, k, n)
    loss = torch.nn.functional.cross_entropy(torch.nn.functional.linear(x, w, b),
                                             torch.tensor(labels))
    loss.backward()
    g = sg.Graph()
    gx, gw, gb = g.add_input("x", (n, c)), g.add_input("w", (k, c)), g.add_input("b", (k,))
    gy = g.add_input("y", (n, k))
    z = sg.linear_forward(g, gx, gw, gb)
    gl, dz = sg.softmax_cross_entropy(g, z, gy)
    dx, dw, db = sg.linear_backward(g, gx, gw, dz)
    out = run(g, {"x": x.detach().numpy(), "w": w.detach().numpy(), "b": b.detach().numpy(),
                  "y": ref.one_hot(labels, k, np.float64)})
    close(out[gl], loss, "loss")
    close(out[dx], x.grad, "dx")
    close(out[dw], w.grad, "dw")
    close(out[db], b.grad, "db")


@pytest.mark.parametrize("momentum,wd", [(0.0, 0.0), (0.0, 5e-4), (0.9, 5e-4), (0.5, 0.0)])
def test_sgd_update_matches_torch_over_three_steps(momentum, wd):
    r = rng(6)
    w0 = r.standard_normal((3, 4))
    grads = [r.standard_normal((3, 4)) for _ in range(3)]
    p = torch.nn.Parameter(torch.tensor(w0))
    opt = torch.optim.SGD([p], lr=0.1, momentum=momentum, weight_decay=wd)
    g = sg.Graph()
    gw, gg, glr = g.add_input("w", (3, 4)), g.add_input("g", (3, 4)), g.add_input("lr", (1,))
    gbuf = g.add_input("buf", (3, 4)) if momentum else None
    new, new_buf = sg.sgd_update(g, gw, gg, sg._Ranked(g, glr), wd, momentum, gbuf)
    w, buf = w0, np.zeros((3, 4))
    for grad in grads:
        p.grad = torch.tensor(grad)
        opt.step()
        feeds = {"w": w, "g": grad, "lr": np.array([0.1])}
        if momentum:
            feeds["buf"] = buf
        out = run(g, feeds)
        w = out[new]
        if momentum:
            buf = out[new_buf]
        close(w, p, "w")


# -- the whole VGG-16 step ----------------------------------------------------------------------

def _torch_reference(freeze, momentum, wd, lr, x, labels, seed=0):
    from toolkit.device.models import build_model, full_widths
    from toolkit.device.training.freeze import freeze_spec

    net = build_model("vgg16", full_widths("vgg16"), 10, seed).double()
    spec = freeze_spec("vgg16", freeze)
    r = rng(11)
    with torch.no_grad():  # non-trivial BN statistics and biases, so folding is really tested
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(torch.tensor(r.standard_normal(module.num_features)
                                                       * 0.1))
                module.running_var.copy_(torch.tensor(r.uniform(0.5, 2.0, module.num_features)))
                module.bias.copy_(torch.tensor(r.standard_normal(module.num_features) * 0.1))
            if isinstance(module, torch.nn.Conv2d):
                module.bias.copy_(torch.tensor(r.standard_normal(module.out_channels) * 0.1))
    before = {k: v.detach().clone().numpy() for k, v in net.state_dict().items()}
    net.train()
    modules = dict(net.named_modules())
    for name in spec["eval_modules"]:
        modules[name].eval()
    params = dict(net.named_parameters())
    for name in spec["frozen"]:
        params[name].requires_grad_(False)
    trainable = [params[n] for n in spec["trainable"]]
    opt = torch.optim.SGD(trainable, lr=lr, momentum=momentum, weight_decay=wd)
    loss = torch.nn.functional.cross_entropy(net(torch.tensor(x)), torch.tensor(labels))
    loss.backward()
    grads = {n: params[n].grad.detach().clone() for n in spec["trainable"]}
    opt.step()
    after = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return before, float(loss.detach()), grads, after, spec


@pytest.mark.parametrize("freeze,momentum", [(0, 0.9), (5, 0.0)])
def test_vgg16_step_matches_pytorch_autograd_and_sgd(freeze, momentum):
    """VGG-16, batch 4, 32x32, BN in training mode: loss, every gradient, every updated
    parameter and the running statistics; freeze=5 makes the first 5 conv blocks constants."""
    r = rng(10)
    x = r.standard_normal((4, 3, 32, 32))
    labels = r.integers(0, 10, 4)
    lr, wd = 0.05, 5e-4
    before, loss, grads, after, spec = _torch_reference(freeze, momentum, wd, lr, x, labels)

    cfg = sg.StepConfig("vgg16", None, 10, 4, 32, freeze, wd, momentum, expose_grads=True)
    frozen = {n: before[n] for n in sg.frozen_value_names(cfg)}
    g = sg.build_vgg_step(cfg, frozen)
    assert g.meta["trainable"] == spec["trainable"]
    state = ref.initial_state(g, before, np.float64)
    feeds = dict(state, x=x, onehot=ref.one_hot(labels, 10, np.float64), lr=np.array([lr]))
    out = ref.execute(g, feeds, np.float64)
    close(out["loss"], np.array(loss), "loss")
    for name in spec["trainable"]:
        close(out["grad:" + name], grads[name], "grad " + name)
        close(out["new:" + name], after[name], "new " + name)
    for name, produced in g.meta["state"]:
        if ".running_" in name:
            close(out[produced], after[name], "running " + name)
    # frozen blocks: constants in the graph, untouched by torch
    for name in spec["frozen"]:
        assert name not in g.inputs
        close(after[name], before[name], "frozen " + name)
    if freeze:
        assert sum(1 for n in g.nodes if n.op == "conv") == 13
        assert sum(1 for n in g.nodes if n.op == "deconv") == 13 - freeze - 1


def test_freeze_all_trains_the_classifier_only():
    cfg = sg.StepConfig("vgg11", None, 10, 2, 32, freeze=8)
    shapes = {n: s for n, s, _ in sg.parameter_shapes(cfg)}
    frozen = {n: np.ones(shapes.get(n, (shapes[n.rsplit(".", 1)[0] + ".weight"][0],)))
              for n in sg.frozen_value_names(cfg)}
    g = sg.build_vgg_step(cfg, frozen)
    assert g.meta["trainable"] == ["classifier.weight", "classifier.bias"]
    assert not any(n.op in ("deconv", "slice") for n in g.nodes)


def test_missing_frozen_values_are_an_error():
    from toolkit.errors import UserError

    with pytest.raises(UserError, match="frozen values missing"):
        sg.build_vgg_step(sg.StepConfig("vgg16", freeze=2))


def test_float32_step_runs_and_loss_decreases_on_a_fixed_batch():
    """The float32 default path, a few steps of plain SGD on one batch of a narrow VGG-11."""
    cfg = sg.StepConfig("vgg11", [8, 16, 16, 16, 16, 16, 16, 16], 10, 8, 32, 0, 0.0, 0.9)
    g = sg.build_vgg_step(cfg)
    r = rng(0)
    params = {n: r.standard_normal(s) * (0.3 if len(s) > 1 else 0.0) + (1.0 if ".weight" in n
              and len(s) == 1 else 0.0) for n, s, _ in sg.parameter_shapes(cfg)}
    state = ref.initial_state(g, params)
    x = r.standard_normal((8, 3, 32, 32)).astype(np.float32)
    onehot = ref.one_hot(r.integers(0, 10, 8), 10)
    losses = []
    for _ in range(6):
        loss, state = ref.sgd_step(g, state, x, onehot, 0.05)
        losses.append(loss)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert all(v.dtype == np.float32 for v in state.values())
