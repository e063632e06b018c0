"""NeuralScale: power-law fit, solver, gates and Taylor importance, pruning, descent, artifact."""

import io
import json
import time

import numpy as np
import pytest
from conftest import synthetic_neuralscale_fit

from toolkit.device import models
from toolkit.device.scaling import neuralscale as ns
from toolkit.errors import UserError

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
    # the same least squares on the same values (relative tolerance: see
    # test_published_neuralscale.FIT_RTOL, float64 on ln tau with a well-conditioned design)
    assert fit["alpha"] == pytest.approx(direct["alpha"], rel=1e-9)
    assert fit["beta"] == pytest.approx(direct["beta"], rel=1e-9)
    assert fit["tau_range"] == [min(taus), max(taus)]
    # layers that shrink faster get larger exponents
    assert np.corrcoef(powers, fit["beta"])[0, 1] > 0.9


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
    out = torch.nn.functional.cross_entropy(net(x), y)
    loss = float(out.detach())
    out.backward()
    terms = [(o * o.grad).detach() for o in saved]
    hand = [t.sum(dim=(0, 2, 3)).numpy() for t in terms]  # dL/dg_c at g = 1
    for h in handles:
        h.remove()
    net.zero_grad()

    g = gates.Gates("vgg11", net)
    torch.nn.functional.cross_entropy(net(x), y).backward()
    got = [c.numpy() for c in g.batch_importance()]
    for a, s, t in zip(got, hand, terms, strict=True):
        # Both sum the same n products per channel, perhaps in another order (the CPU's
        # kernels pick it): each sum is within n * eps * sum|products| of the exact one, so
        # the squares differ by at most 2 |s| * 2 n eps * sum|products|.
        n = t.shape[0] * t.shape[2] * t.shape[3]
        spread = t.abs().sum(dim=(0, 2, 3)).numpy()
        bound = 4 * np.abs(s) * n * np.finfo(np.float64).eps * spread
        assert np.all(np.abs(a - s ** 2) <= bound + 1e-300), (a, s ** 2, bound)

    # and by central differences of the loss in the gate: their error is the truncation, ~h^2,
    # so |fd(h) - fd(h/2)| (3/4 of fd(h)'s) bounds fd(h/2)'s, plus the rounding of the two
    # losses, a few ulps of the loss over h
    def loss_at(layer, channel, value):
        with torch.no_grad():
            g.gates[layer][channel] = value
            out = float(torch.nn.functional.cross_entropy(net(x), y))
            g.gates[layer][channel] = 1.0
        return out

    def central(layer, channel, h):
        return (loss_at(layer, channel, 1 + h) - loss_at(layer, channel, 1 - h)) / (2 * h)

    for layer, channel in ((0, 1), (3, 2), (7, 0)):
        h = 1e-3
        coarse, fine = central(layer, channel, h), central(layer, channel, h / 2)
        bound = abs(coarse - fine) + 16 * np.spacing(loss) / (h / 2)
        assert abs(fine - hand[layer][channel]) <= bound, (fine, hand[layer][channel], bound)
        assert bound < 1e-3 * abs(fine)  # a check that can fail: the derivative to 0.1 %

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


@pytest.mark.parametrize("rule, stop", [("one_channel", "layer 0 has one live channel"),
                                        ("empty_layer", "layer 0 would lose its last channel")])
def test_pruning_stops_before_a_layer_loses_its_last_channel(rule, stop):
    from toolkit.device.scaling import gates

    net = models.build_model("vgg11", [1, 2, 2, 2, 2, 2, 2, 2], classes=3)
    g = gates.Gates("vgg11", net)
    g._sum = [None] * 8  # all importances zero: ties broken by position -> layer 0 first
    out = g.prune_least_important(2, rule)
    assert out["removed"] == 0 and stop in out["stop"]
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
    assert (cfg["prune_stop"], cfg["few_records_fit"], cfg["search_width_bump"],
            cfg["search_width_bump_models"]) == (
        "one_channel", "constant", 10, ["mobilenetv2", "preact_resnet18", "resnet50"])
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
    assert len(art["iterations"]) == 2
    first, second = art["iterations"]
    assert first["start_widths"] == models.scale_widths("vgg11", 0.125)
    # How many records each iteration makes and how its pruning ends depend on training numerics
    # (the CPU's kernels): every outcome is accepted, and each checked for what it must be.
    for iteration in art["iterations"]:
        records, start = iteration["records"], iteration["start_widths"]
        assert all(len(r) == 8 and min(r) >= 1 for r in records)
        # records are taken once every layer lost a channel and shrink step by step; pruning
        # ends at the first step after a layer is down to one channel
        assert all(w < s for r in records for w, s in zip(r, start, strict=True))
        assert all(sum(a) > sum(b) for a, b in zip(records, records[1:], strict=False))
        assert all(min(r) > 1 for r in records[:-1])
        if "one live channel" in iteration["stop_reason"]:
            assert iteration["pruning_stopped"] and min(iteration["final_widths"]) == 1
        _check_fit("vgg11", iteration)
    # the second iteration starts from the first fit solved at the base size (smoke: no bump),
    # whatever that solution's miss
    base = models.count_params("vgg11", first["start_widths"])
    assert second["start_widths"] == ns.solve_widths("vgg11", first["fit"], base,
                                                     strict=False)["widths"]
    fit = art["final_fit"]
    assert fit == second["fit"] and len(fit["alpha"]) == len(fit["beta"]) == 8
    if fit["kind"] == "power_law":
        assert all(np.isfinite(fit["beta"])) and len(fit["r2"]) == 8
    for entry in art["architectures"]:
        _check_architecture("vgg11", fit, entry)
    path = ns.save_artifact(art, str(tmp_path / "vgg11.json"))
    loaded = ns.load_artifact(path)
    assert ns.widths_for_ratio(loaded, 0.5)["widths"] == ns.widths_for_ratio(art, 0.5)["widths"]
    assert "neuralscale vgg11 epoch" in log.getvalue()
    assert seconds < 300, seconds  # last: a busy shared machine can miss it, the rest must hold


# ------------------------------------------------- the public code's rules (eugenelet/NeuralScale)


def _gates(widths, importance):
    """vgg11 gates on `widths` with a given window importance per channel."""
    import torch

    from toolkit.device.scaling import gates

    g = gates.Gates("vgg11", models.build_model("vgg11", widths, classes=3))
    g._sum = [torch.tensor(v, dtype=torch.float64) for v in importance]
    g.batches = 1
    return g


def test_pruning_stops_at_the_first_step_that_finds_a_layer_with_one_channel():
    """prune.py compute_saliency: before zeroing each selected channel of a layer (in layer order,
    a layer's pruned channels first) it stops if that layer has one live channel left; the step
    that brought it there completed, removals of earlier layers in the stopping step stay."""
    importance = [[5, 5, 5], [0.5, 5, 5], [0.1, 0.2, 5], [5, 5], [5, 5], [1, 5], [5, 5], [5, 5]]
    g = _gates([3, 3, 3, 2, 2, 2, 2, 2], importance)
    assert g.prune_least_important(2) == {"removed": 2, "stop": None}  # layer 2 down to 1
    assert g.widths() == [3, 3, 1, 2, 2, 2, 2, 2]
    out = g.prune_least_important(1)  # layer 1 comes before layer 2: removed, then the stop
    assert out["removed"] == 1 and "layer 2 has one live channel" in out["stop"]
    assert g.widths() == [3, 2, 1, 2, 2, 2, 2, 2]
    out = g.prune_least_important(1)  # layer 5 comes after layer 2: nothing removed
    assert out["removed"] == 0 and "layer 2 has one live channel" in out["stop"]
    assert g.widths() == [3, 2, 1, 2, 2, 2, 2, 2]
    # a step selecting every live channel of a layer removes all but one, then stops
    g = _gates([3, 3, 3, 2, 2, 2, 2, 2], importance[:3] + [[0.01, 0.02]] + importance[4:])
    out = g.prune_least_important(2)
    assert out["removed"] == 1 and "layer 3" in out["stop"]
    assert g.widths() == [3, 3, 3, 1, 2, 2, 2, 2]


def test_the_earlier_stop_rule_is_a_named_setting():
    importance = [[5, 5, 5], [0.5, 5, 5], [0.1, 0.2, 5], [5, 5], [5, 5], [1, 5], [5, 5], [5, 5]]
    g = _gates([3, 3, 3, 2, 2, 2, 2, 2], importance)
    g.prune_least_important(2, stop_rule="empty_layer")
    assert g.prune_least_important(1, stop_rule="empty_layer") == {"removed": 1, "stop": None}
    g = _gates([3, 3, 3, 2, 2, 2, 2, 2], importance[:3] + [[0.01, 0.02]] + importance[4:])
    out = g.prune_least_important(2, stop_rule="empty_layer")
    assert out["removed"] == 0 and "layer 3 would lose its last channel" in out["stop"]
    assert ns.search_config()["prune_stop"] == "one_channel"
    assert ns.search_config(prune_stop="empty_layer")["prune_stop"] == "empty_layer"
    with pytest.raises(UserError, match="prune_stop"):
        ns.search_config(prune_stop="never")


def test_prune_search_ends_one_step_after_a_layer_reaches_one_channel():
    from toolkit.device import data
    from toolkit.device.scaling import gates

    per = 4
    # exactly `per` channels a step (ties at the threshold would take more: tested above)
    cfg = ns.search_config("smoke", epochs=20, warmup_epochs=0, window=1, prune_per_step=per,
                           batch=16, max_batches_per_epoch=4, augment=False, prune_ties="exact")
    start = [8] * 8
    out = gates.prune_search("vgg11", start, data.synthetic(64, 16, classes=3), cfg,
                             log=io.StringIO())
    # 64 channels, at most 56 removable before a layer has one: that stop comes first
    assert "one live channel" in out["stop_reason"] and out["pruning_stopped"]
    assert min(out["final_widths"]) == 1
    # the stopping step keeps what it removed before reaching that layer
    removed = sum(start) - sum(out["final_widths"])
    steps = out["removal_steps"]
    assert steps * per <= removed < (steps + 1) * per
    # Which channels go depends on training numerics (the CPU's kernels): whether every layer
    # lost one before a layer was down to one (records at all), and whether a completed step or
    # the stopping one took it there. Each outcome is checked for what it must be.
    records = out["records"]
    assert all(min(r) > 1 for r in records[:-1])
    if records:  # the last completed step is recorded, and nothing after a layer reached one
        assert sum(start) - sum(records[-1]) == steps * per
        assert min(records[-1]) == 1 or removed > steps * per
        assert all(f <= r for f, r in zip(out["final_widths"], records[-1], strict=True))


def test_fewer_than_six_records_keep_the_first_record_as_a_constant_architecture():
    """fit_params.py: with fewer than 6 records alpha = the first record, beta = 0."""
    ref = models.scale_widths("vgg11", 0.5)
    records = [models.scale_widths("vgg11", m) for m in (0.4, 0.3, 0.2, 0.1, 0.05)]
    fit = ns.fit_power_law("vgg11", records, reference=ref)
    assert fit["kind"] == "constant" and "5 width records < 6" in fit["fallback"]
    assert fit["alpha"] == records[0] and fit["beta"] == [0.0] * 8
    assert fit["widths"] == records[0] and fit["n_records"] == 5
    assert ns.widths_at(fit, 1.0) == ns.widths_at(fit, 1e9) == records[0]
    # VGG (beta = 0 leaves the public solver's tau where it starts): the first record at any
    # target, the miss recorded
    for ratio in (0.25, 1.0):
        target = ns.target_params("vgg11", ratio)
        solved = ns.solve_widths("vgg11", fit, target)
        assert solved["widths"] == records[0] and solved["target"] == target
        assert solved["error"] == pytest.approx(
            models.count_params("vgg11", records[0]) / target - 1)
    art = {"model": "vgg11", "classes": 10, "final_fit": fit}
    assert ns.widths_for_ratio(art, 0.5)["kind"] == "constant"
    # MobileNetV2 and the ResNets (their np.sum(beta) == 0 branch): the first record scaled
    # uniformly to the target
    first = models.scale_widths("mobilenetv2", 0.3)
    mfit = ns.fit_power_law("mobilenetv2", [first, models.scale_widths("mobilenetv2", 0.2)])
    assert mfit["kind"] == "constant" and mfit["widths"] == first
    solved = ns.solve_widths("mobilenetv2", mfit, ns.target_params("mobilenetv2", 0.6))
    assert abs(solved["error"]) <= 0.01
    assert solved["widths"] == pytest.approx([2 * w for w in first], rel=0.1, abs=1.5)


def test_no_records_fit_the_widths_at_the_stop_else_uniform():
    """architecture_descent.py train(): no record -> the widths when pruning stopped are saved
    (force_save) and fit_params.py keeps them, beta = 0; without them there is no public answer
    and the start architecture is scaled uniformly."""
    ref = models.scale_widths("vgg11", 0.5)
    stop = models.scale_widths("vgg11", 0.3)
    fit = ns.fit_power_law("vgg11", [], reference=ref, stop_widths=stop)
    assert fit["kind"] == "constant" and fit["widths"] == stop and fit["n_records"] == 0
    fit = ns.fit_power_law("vgg11", [], reference=ref)
    assert fit["kind"] == "uniform" and "no public" in fit["fallback"]
    assert ns.widths_at(fit, models.count_params("vgg11", ref)) == ref
    with pytest.raises(UserError, match="no reference"):
        ns.fit_power_law("vgg11", [])


def test_the_earlier_uniform_fallback_is_a_named_setting():
    ref = models.scale_widths("vgg11", 0.5)
    records = [models.scale_widths("vgg11", m) for m in (0.4, 0.3, 0.2, 0.1, 0.05)]
    fit = ns.fit_power_law("vgg11", records, reference=ref, few_records="uniform")
    assert fit["kind"] == "uniform" and "5 width records < 6" in fit["fallback"]
    assert fit["reference"] == ref
    solved = ns.solve_widths("vgg11", fit, ns.target_params("vgg11", 0.25))
    assert abs(solved["error"]) < 0.01
    assert solved["widths"] == pytest.approx([w / 2 for w in ref], abs=1.5)
    assert ns.search_config()["few_records_fit"] == "constant"
    with pytest.raises(UserError, match="few_records_fit"):
        ns.search_config(few_records_fit="linear")


def _tiny_layer_fit(model, classes=10):
    """A fit whose solution at the search base keeps layer 1 below 10 channels."""
    base = models.scale_widths(model, 1.0)
    ref = base[:1] + [4] + base[2:]
    fit = ns.uniform_fit(model, ref, classes)
    fit["kind"] = "power_law"
    return fit


@pytest.mark.parametrize("model, bumped", [("vgg11", False), ("vgg16", False),
                                           ("mobilenetv2", True), ("preact_resnet18", True),
                                           ("resnet50", True)])
def test_the_search_width_bump_follows_the_public_per_model_rule(model, bumped):
    """architecture_descent.py builds the next network with search=True: MobileNetV2 and
    PreActResNet18 add 10 to solved widths below 10 then, VGG never does."""
    cfg = ns.search_config()
    fit = _tiny_layer_fit(model)
    target = models.count_params(model, models.scale_widths(model, 1.0))
    solved = ns.solve_widths(model, fit, target)["widths"]
    assert solved[1] < 10
    start = ns.search_start_widths(model, fit, cfg, 10)
    assert start == [w + 10 if bumped and w < 10 else w for w in solved]
    everyone = ns.search_config(search_width_bump_models=list(models.MODEL_NAMES))
    assert ns.search_start_widths(model, fit, everyone, 10)[1] == solved[1] + 10
    with pytest.raises(UserError, match="search_width_bump_models"):
        ns.search_config(search_width_bump_models=["vgg19"])


def test_a_removal_step_takes_every_channel_at_or_below_the_threshold():
    """prune.py compute_saliency: the threshold is the n-th smallest importance and every channel
    whose importance is <= it goes, so ties at the threshold go together."""
    importance = [[5, 5, 5], [0.3, 5, 5], [0.1, 0.3, 5], [5, 5], [0.3, 5], [1, 5], [5, 5], [5, 5]]
    g = _gates([3, 3, 3, 2, 2, 2, 2, 2], importance)
    assert g.prune_least_important(2) == {"removed": 4, "stop": None}  # 0.1 and three 0.3
    assert g.widths() == [3, 2, 1, 2, 1, 2, 2, 2]
    g = _gates([3, 3, 3, 2, 2, 2, 2, 2], importance)
    assert g.prune_least_important(2, ties="exact") == {"removed": 2, "stop": None}
    assert g.widths() == [3, 2, 2, 2, 2, 2, 2, 2]  # 0.1, then the first 0.3 by position


def test_a_removal_step_takes_every_live_channel_of_zero_importance():
    """With more zero-importance live channels than n the threshold is 0: all of them go at
    once (the public code), not n of them (the earlier rule); pruned channels never count."""
    importance = [[0, 0, 5, 5], [0, 5, 5, 5], [0, 5, 5, 5], [5, 5], [5, 0], [5, 5], [5, 5],
                  [0, 5]]
    widths = [4, 4, 4, 2, 2, 2, 2, 2]
    g = _gates(widths, importance)
    assert g.prune_least_important(2) == {"removed": 6, "stop": None}
    assert g.widths() == [2, 3, 3, 2, 1, 2, 2, 1]
    g = _gates(widths, importance)
    assert g.prune_least_important(2, ties="exact") == {"removed": 2, "stop": None}
    assert g.widths() == [2, 4, 4, 2, 2, 2, 2, 2]
    assert ns.search_config()["prune_ties"] == "threshold"
    assert ns.search_config(prune_ties="exact")["prune_ties"] == "exact"
    with pytest.raises(UserError, match="prune_ties must be one of threshold, exact"):
        ns.search_config(prune_ties="lowest")


@pytest.mark.parametrize("extra", [1, 0])
def test_the_first_window_is_one_minibatch_longer_as_in_the_public_code(extra):
    """prune.py do_step counts minibatches from 0 and prunes at niter % 50 == 0, niter != 0: the
    first window holds 51 minibatches, each later one 50. Three steps of exactly 2 channels out
    of 64 (none can take a layer to one channel) end at the 10 % limit: 3 windows."""
    from toolkit.device import data
    from toolkit.device.scaling import gates

    window = 2
    cfg = ns.search_config("smoke", epochs=6, warmup_epochs=0, window=window, prune_per_step=2,
                           batch=16, max_batches_per_epoch=4, augment=False,
                           max_prune_fraction=0.1, prune_ties="exact", first_window_extra=extra)
    out = gates.prune_search("vgg11", [8] * 8, data.synthetic(64, 16, classes=3), cfg,
                             log=io.StringIO())
    assert out["removal_steps"] == 3 and "removed 6 of 64" in out["stop_reason"]
    assert out["minibatches"] == 3 * window + extra
    assert ns.search_config()["first_window_extra"] == 1
    for bad in (-1, 1.5, True):
        with pytest.raises(UserError, match="first_window_extra must be a non-negative"):
            ns.search_config(first_window_extra=bad)


# ---------------------------------------- the descent on constructed pruning outcomes (no torch)
# How many width records a pruning run makes, and whether pruning stops, depends on training
# numerics (the CPU's kernels). These tests give architecture_descent every kind of outcome
# gates.prune_search can return and check what each iteration and the artifact make of it.

def _records(start, n):
    """n width records shrinking from `start`, every layer below its start width."""
    return [[max(1, int(w * (0.9 - 0.1 * k))) for w in start] for k in range(n)]


PRUNING_OUTCOMES = {
    # stopped by a layer down to one channel before every layer had lost one: no record
    "none, stopped": lambda start: ([], [1] + [max(1, w - 1) for w in start[1:]], True),
    # the epoch limit ended it before any record
    "none, epoch limit": lambda start: ([], list(start), False),
    "3 records": lambda start: (_records(start, 3), _records(start, 4)[-1], True),
    "8 records": lambda start: (_records(start, 8), _records(start, 8)[-1], True),
}


class _Constructed:
    classes = 10

    def describe(self):
        return {"name": "constructed"}


def _descend(monkeypatch, model, outcomes):
    """architecture_descent with gates.prune_search replaced by the named PRUNING_OUTCOMES."""
    from toolkit.device.scaling import gates

    pending = list(outcomes)

    def prune_search(model_, widths, dataset, cfg, seed=0, log=None):
        records, final, stopped = PRUNING_OUTCOMES[pending.pop(0)](list(widths))
        return {"records": records, "final_widths": final, "pruning_stopped": stopped,
                "stop_reason": "constructed", "removal_steps": len(records), "epochs": 1,
                "minibatches": 1, "channels": sum(widths), "seconds": 0.0}

    monkeypatch.setattr(gates, "prune_search", prune_search)
    return ns.architecture_descent(model, _Constructed(), {"profile": "smoke",
                                                          "iterations": len(outcomes)},
                                   log=io.StringIO())


def _check_fit(model, iteration):
    """The fit of one iteration is the one its outcome calls for (fit_power_law's rule)."""
    fit, records = iteration["fit"], iteration["records"]
    if len(records) >= ns.MIN_RECORDS:
        assert fit["kind"] == "power_law" and fit["n_records"] == len(records)
        taus = [models.count_params(model, r) for r in records]
        direct = ns.fit_records(taus, records)
        assert fit["alpha"] == direct["alpha"] and fit["beta"] == direct["beta"]
    elif records:  # the public fit_params.py: the first record, beta = 0
        assert fit["kind"] == "constant" and fit["widths"] == records[0]
    elif iteration["pruning_stopped"]:  # the public code saves the widths at the stop
        assert fit["kind"] == "constant" and fit["widths"] == iteration["final_widths"]
        assert fit["n_records"] == 0 and "pruning stopped" in fit["fallback"]
    else:  # no public answer: the start architecture scaled uniformly
        assert fit["kind"] == "uniform" and fit["reference"] == iteration["start_widths"]
        assert "no width records and no stop widths" in fit["fallback"]


def _check_architecture(model, fit, entry):
    """A solved architecture is what its fit's kind makes of the target."""
    if fit["kind"] == "constant" and model not in ns.RESIDUAL_MODELS:
        assert entry["widths"] == fit["widths"]  # VGG: the same widths whatever the target
        return
    assert abs(entry["params"] / entry["target"] - 1) <= ns.SOLVE_TOLERANCE
    assert entry["params"] == models.count_params(model, entry["widths"])
    if fit["kind"] == "uniform":  # one factor s for every layer: width_i = floor(s * ref_i)
        ref = fit["reference"]
        scale = entry["tau"] / models.count_params(model, ref)
        assert all(-1e-9 < scale * r - w < 1 for r, w in zip(ref, entry["widths"], strict=True))


@pytest.mark.parametrize("first, last", [
    ("none, stopped", "none, stopped"), ("none, stopped", "none, epoch limit"),
    ("none, stopped", "3 records"), ("none, stopped", "8 records"),
    ("none, epoch limit", "none, stopped"), ("3 records", "none, epoch limit"),
    ("8 records", "none, stopped")])
def test_the_descent_copes_with_every_pruning_outcome(monkeypatch, first, last):
    model = "vgg11"
    art = _descend(monkeypatch, model, [first, last])
    one, two = art["iterations"]
    assert one["start_widths"] == models.scale_widths(model, 0.125)
    for iteration in (one, two):
        _check_fit(model, iteration)
    # the second iteration starts from the first fit solved at the base size: VGG's constant fit
    # is its widths at any size; VGG's other fits land within 1 % (a channel is < 1 % of it)
    base = models.count_params(model, one["start_widths"])
    if one["fit"]["kind"] == "constant":
        assert two["start_widths"] == one["fit"]["widths"]
    else:
        assert abs(models.count_params(model, two["start_widths"]) / base - 1) <= 0.01
    assert art["final_fit"] == two["fit"]
    assert len(art["architectures"]) == 8
    for entry in art["architectures"]:
        _check_architecture(model, art["final_fit"], entry)


def test_a_fit_that_steps_over_the_target_still_gives_the_next_start():
    """One more channel in MobileNetV2's stage-6 blocks costs 2-3 % of the smoke search's base
    network: a fit whose curve crosses the base size on such a step has no architecture within
    1 %. The next pruning run starts from the nearest one (the public code checks no size there);
    a result still has to be within 1 %."""
    model = "mobilenetv2"
    cfg = ns.search_config("smoke")
    base = models.scale_widths(model, cfg["base_ratio"])
    target = models.count_params(model, base)

    def count(layer15, layer18):
        return models.count_params(model, base[:15] + [layer15] + base[16:18] + [layer18])

    # the fit: every layer constant but layer 15 (width 20 at the base), and the last layer
    # (~50 parameters a channel) as wide as keeps every architecture on the curve furthest
    # from the target; count_params is integer arithmetic, the same on every CPU
    curve = range(1, 60)  # layer 15's widths for tau from ~0 to ~3 x target
    last = max(range(base[18] // 2, 2 * base[18]),
               key=lambda w: min(abs(count(k, w) - target) for k in curve))
    assert min(abs(count(k, last) - target) for k in curve) > ns.SOLVE_TOLERANCE * target
    fit = {"kind": "power_law", "alpha": [float(w) for w in base[:18]] + [float(last)],
           "beta": [0.0] * 19}
    fit["alpha"][15], fit["beta"][15] = 20.5 / target, 1.0  # 20 channels at tau = target
    with pytest.raises(UserError, match=r"no architecture of the fit within 1\.0% of {}".format(
            target)):
        ns.solve_widths(model, fit, target)
    nearest = ns.solve_widths(model, fit, target, strict=False)
    k = nearest["widths"][15]
    assert nearest["widths"] == base[:15] + [k] + base[16:18] + [last]
    assert nearest["params"] == count(k, last)
    assert nearest["error"] == pytest.approx((count(k, last) - target) / target)
    # the nearer side of a step of the curve over the target
    steps = [(j, j + 1) for j in curve if count(j, last) < target <= count(j + 1, last)]
    assert any(k in step and abs(nearest["params"] - target) == min(
        abs(count(j, last) - target) for j in step) for step in steps), (k, steps)
    # the search's next start is that architecture (smoke: no width bump)
    assert cfg["search_width_bump"] == 0
    assert ns.search_start_widths(model, fit, cfg, 10) == nearest["widths"]
