"""NeuralScale: power-law fit, solver, gates and Taylor importance, pruning, descent, artifact."""

import io
import json
import time

import numpy as np
import pytest
from conftest import synthetic_neuralscale_fit

from toolkit.device import models
from toolkit.device.errors import UserError
from toolkit.device.scaling import neuralscale as ns

GEALY_MODELS = ("vgg11", "mobilenetv2", "preact_resnet18", "resnet50")


# ------------------------------------------------------------------------------------------ fit


def test_fit_recovers_known_power_laws():
    rng = np.random.default_rng(1)
    alpha, beta = rng.uniform(0.01, 2.0, 7), rng.uniform(0.2, 0.9, 7)
    taus = np.geomspace(1e4, 1e7, 12)
    widths = alpha[None, :] * taus[:, None] ** beta[None, :]
    fit = ns.fit_records(taus, widths)
    assert fit["kind"] == "power_law" and fit["fallback"] is None
    assert fit["alpha"] == pytest.approx(alpha.tolist(), rel=1e-9)
    assert fit["beta"] == pytest.approx(beta.tolist(), rel=1e-9)
    assert fit["r2"] == pytest.approx([1.0] * 7, abs=1e-12)


def test_fit_uses_the_parameter_count_of_each_record():
    fit = synthetic_neuralscale_fit("mobilenetv2", 100)
    assert fit["n_records"] == 25 and len(fit["r2"]) == 19 and min(fit["r2"]) > 0.8
    rng = np.random.default_rng(0)
    full = models.full_widths("mobilenetv2")
    powers = rng.uniform(0.5, 1.5, len(full))
    records = [[max(1, int(w * m ** p)) for w, p in zip(full, powers, strict=True)]
               for m in np.linspace(0.05, 1.0, 25)]
    taus = [models.count_params("mobilenetv2", r, 100) for r in records]
    direct = ns.fit_records(taus, records)
    assert fit["alpha"] == direct["alpha"] and fit["beta"] == direct["beta"]
    assert fit["tau_range"] == [min(taus), max(taus)]
    # layers that shrink faster get larger exponents
    assert np.corrcoef(powers, fit["beta"])[0, 1] > 0.9


def test_fewer_than_six_records_fall_back_to_uniform():
    ref = models.scale_widths("vgg11", 0.5)
    records = [models.scale_widths("vgg11", m) for m in (0.4, 0.3, 0.2, 0.1, 0.05)]
    fit = ns.fit_power_law("vgg11", records, reference=ref)
    assert fit["kind"] == "uniform" and "5 width records < 6" in fit["fallback"]
    assert fit["reference"] == ref
    # the uniform fit reproduces the reference at its own size and scales it uniformly
    assert ns.widths_at(fit, models.count_params("vgg11", ref)) == ref
    solved = ns.solve_widths("vgg11", fit, ns.target_params("vgg11", 0.25))
    assert abs(solved["error"]) < 0.01
    assert solved["widths"] == pytest.approx([w / 2 for w in ref], abs=1.5)
    with pytest.raises(UserError, match="no reference"):
        ns.fit_power_law("vgg11", records)


# --------------------------------------------------------------------------------------- solver


@pytest.mark.parametrize("model", GEALY_MODELS)
@pytest.mark.parametrize("classes", (10, 100))
def test_solver_hits_targets_within_one_percent(model, classes):
    fit = synthetic_neuralscale_fit(model, classes)
    for ratio in (0.25, 0.5, 0.75, 1.0):
        for mode in ns.TARGET_MODES:
            target = ns.target_params(model, ratio, classes, mode)
            out = ns.solve_widths(model, fit, target, classes)
            assert abs(out["params"] - target) <= 0.01 * target, (ratio, mode)
            assert out["params"] == models.count_params(model, out["widths"], classes)
            assert out["widths"] == ns.widths_at(fit, out["tau"])


def test_target_modes():
    full = models.count_params("vgg11", models.full_widths("vgg11"))
    assert full == 9231114
    assert ns.target_params("vgg11", 0.5, mode="width") == models.count_params(
        "vgg11", models.scale_widths("vgg11", 0.5))
    assert ns.target_params("vgg11", 0.5, mode="params") == round(0.5 * full)
    assert ns.target_params("vgg11", 1.0) == full
    with pytest.raises(UserError, match="target mode"):
        ns.target_params("vgg11", 0.5, mode="flops")


def test_solver_copes_with_a_negative_exponent_and_floors_at_one():
    fit = {"kind": "power_law", "alpha": [5e4, 0.02, 0.05, 0.05, 0.1, 0.1, 0.1, 0.1],
           "beta": [-0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]}
    target = ns.target_params("vgg11", 0.5)
    out = ns.solve_widths("vgg11", fit, target)
    assert abs(out["error"]) < 0.01
    assert min(ns.widths_at(fit, 1e30)) == 1
    with pytest.raises(UserError, match="no architecture"):
        ns.solve_widths("vgg11", {"alpha": [1.0] * 8, "beta": [0.0] * 8}, target)


# ---------------------------------------------------------------------------------------- gates


def test_gate_importance_equals_a_hand_computation():
    import torch

    from toolkit.device.scaling import gates

    widths = [2, 3, 2, 3, 2, 2, 3, 2]
    net = models.build_model("vgg11", widths, classes=4, seed=0).double()
    x = torch.randn(5, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3, 1])
    net.eval()  # fixed BN statistics: the loss is a plain function of the gates

    # by hand: dL/dg_c = sum over batch and space of (BN output * dL/d(BN output)) for channel c
    bns = [m for m in net.features if isinstance(m, torch.nn.BatchNorm2d)]
    saved = []
    handles = [bn.register_forward_hook(lambda m, i, o: saved.append(o) or o.retain_grad())
               for bn in bns]
    torch.nn.functional.cross_entropy(net(x), y).backward()
    hand = [((o * o.grad).sum(dim=(0, 2, 3)) ** 2).detach().numpy() for o in saved]
    for h in handles:
        h.remove()
    net.zero_grad()

    g = gates.Gates("vgg11", net)
    torch.nn.functional.cross_entropy(net(x), y).backward()
    got = [c.numpy() for c in g.batch_importance()]
    for a, b in zip(got, hand, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-30)

    # and by finite differences of the loss in the gate
    def loss_at(layer, channel, value):
        with torch.no_grad():
            g.gates[layer][channel] = value
            out = float(torch.nn.functional.cross_entropy(net(x), y))
            g.gates[layer][channel] = 1.0
        return out

    for layer, channel in ((0, 1), (3, 2), (7, 0)):
        eps = 1e-6
        fd = (loss_at(layer, channel, 1 + eps) - loss_at(layer, channel, 1 - eps)) / (2 * eps)
        assert fd ** 2 == pytest.approx(got[layer][channel], rel=1e-5)

    # window = mean over minibatches; pruning removes the globally smallest
    g.accumulate()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    g.accumulate()
    window = g.window_importance()
    for a, b in zip(window, got, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-30)
    flat = sorted((v, layer, c) for layer, vals in enumerate(window) for c, v in enumerate(vals))
    out = g.prune_least_important(3)
    assert out == {"removed": 3, "stop": None}
    for _, layer, c in flat[:3]:
        assert float(g.gates[layer][c].detach()) == 0.0
    assert sum(g.widths()) == sum(widths) - 3


def test_pruning_stops_before_a_layer_loses_its_last_channel():
    from toolkit.device.scaling import gates

    net = models.build_model("vgg11", [1, 2, 2, 2, 2, 2, 2, 2], classes=3)
    g = gates.Gates("vgg11", net)
    g._sum = [None] * 8  # all importances zero: ties broken by position -> layer 0 first
    out = g.prune_least_important(2)
    assert out["removed"] == 0 and "layer 0 would lose its last channel" in out["stop"]
    assert g.widths() == [1, 2, 2, 2, 2, 2, 2, 2]


@pytest.mark.parametrize("model", models.MODEL_NAMES)
def test_every_width_has_a_live_gate(model):
    import torch

    from toolkit.device.scaling import gates

    widths = [max(2, w // 32) for w in models.full_widths(model)]
    net = models.build_model(model, widths, classes=5, seed=1)
    net.eval()
    g = gates.Gates(model, net)
    assert g.widths() == widths
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    base = net(x)
    base.sum().backward()
    assert all(gate.grad is not None and gate.grad.abs().sum() > 0 for gate in g.gates)
    for layer in range(len(widths)):  # masking a channel of any width changes the output
        c = int(g.gates[layer].grad.abs().argmax())
        with torch.no_grad():
            g.gates[layer][c] = 0.0
            changed = not torch.allclose(net(x), base)
            g.gates[layer][c] = 1.0
        assert changed, layer
    g.remove()
    with torch.no_grad():
        assert torch.equal(net(x), base)
    assert not any(p is gate for p in net.parameters() for gate in g.gates)


def test_search_lr_schedule_of_the_public_code():
    from toolkit.device.scaling import gates

    cfg = ns.search_config()
    assert [gates.search_lr(e, cfg) for e in (1, 9)] == [0.1, 0.1]
    assert gates.search_lr(10, cfg) == pytest.approx(0.01)
    assert gates.search_lr(19, cfg) == pytest.approx(0.01)
    assert gates.search_lr(20, cfg) == pytest.approx(0.01 / 1.5)
    assert gates.search_lr(40, cfg) == pytest.approx(0.01 / 1.5 ** 3)


def test_search_config():
    cfg = ns.search_config()
    assert (cfg["iterations"], cfg["window"], cfg["prune_per_step"], cfg["warmup_epochs"],
            cfg["max_prune_fraction"], cfg["min_records"]) == (15, 50, 10, 10, 0.95, 6)
    assert ns.search_config("smoke", iterations=1)["iterations"] == 1
    with pytest.raises(UserError, match="unknown NeuralScale setting"):
        ns.search_config(windw=3)
    with pytest.raises(UserError, match="profile"):
        ns.search_config("huge")


# ------------------------------------------------------------------------------------- artifact


def _artifact(model="preact_resnet18", classes=100):
    fit = synthetic_neuralscale_fit(model, classes)
    cfg = ns.search_config("smoke")
    return ns.build_artifact(model, classes, {"name": "synthetic", "identity": "x"}, 3, "smoke",
                             cfg, [], fit)


def test_artifact_round_trips_to_identical_widths(tmp_path):
    art = _artifact()
    path = ns.save_artifact(art, str(tmp_path / "ns.json"))
    loaded = ns.load_artifact(path)
    assert loaded["final_fit"] == art["final_fit"]
    for entry in art["architectures"]:
        again = ns.widths_for_ratio(loaded, entry["ratio"], entry["mode"])
        assert again["widths"] == entry["widths"] and again["params"] == entry["params"]
    assert {(a["mode"], a["ratio"]) for a in loaded["architectures"]} == {
        (m, r) for m in ("width", "params") for r in (0.25, 0.5, 0.75, 1.0)}
    assert loaded["provenance"]["toolkit_version"] == "0.1.0"
    assert loaded["seed"] == 3 and loaded["profile"] == "smoke" and loaded["classes"] == 100


def test_loader_rejects_tampering(tmp_path):
    art = _artifact("vgg11", 10)
    art["architectures"][0]["widths"][0] += 1
    path = ns.save_artifact(art, str(tmp_path / "bad.json"))
    with pytest.raises(UserError, match="does not re-solve"):
        ns.load_artifact(path)
    (tmp_path / "other.json").write_text(json.dumps({"format": "something"}))
    with pytest.raises(UserError, match="not a NeuralScale artifact"):
        ns.load_artifact(str(tmp_path / "other.json"))


# ----------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_descent_end_to_end_on_digits(tmp_path):
    from toolkit.device import data

    log = io.StringIO()
    started = time.time()
    art = ns.architecture_descent("vgg11", data.digits(), {"profile": "smoke"}, seed=0, log=log)
    seconds = time.time() - started
    assert seconds < 300, seconds
    assert len(art["iterations"]) == 2
    first = art["iterations"][0]
    assert first["start_widths"] == models.scale_widths("vgg11", 0.125)
    assert len(first["records"]) >= 6 and first["fit"]["kind"] == "power_law"
    assert all(len(r) == 8 and min(r) >= 1 for r in first["records"])
    # records are taken once every layer lost a channel and shrink step by step
    assert all(w < s for w, s in zip(first["records"][0], first["start_widths"], strict=True))
    assert [sum(r) for r in first["records"]] == sorted((sum(r) for r in first["records"]),
                                                        reverse=True)
    # the second iteration starts from the first fit solved at the base size
    base = models.count_params("vgg11", first["start_widths"])
    second = art["iterations"][1]
    assert abs(models.count_params("vgg11", second["start_widths"]) - base) <= 0.01 * base
    fit = art["final_fit"]
    assert len(fit["alpha"]) == len(fit["beta"]) == 8
    if fit["kind"] == "power_law":
        assert all(np.isfinite(fit["beta"])) and len(fit["r2"]) == 8
    for entry in art["architectures"]:
        assert abs(entry["params"] - entry["target"]) <= 0.01 * entry["target"]
    path = ns.save_artifact(art, str(tmp_path / "vgg11.json"))
    loaded = ns.load_artifact(path)
    assert ns.widths_for_ratio(loaded, 0.5)["widths"] == ns.widths_for_ratio(art, 0.5)["widths"]
    assert "neuralscale vgg11 epoch" in log.getvalue()
