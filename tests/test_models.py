"""Model zoo: closed-form counts against instantiated modules, scaling rules, device-side rules."""

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.device import models
from toolkit.errors import UserError

REPO = Path(__file__).resolve().parents[1]
RATIOS = (0.25, 0.5, 0.75, 1.0)
GEALY_MODELS = ("vgg11", "mobilenetv2", "preact_resnet18", "resnet50")

# Exact counts at ratio 1.0 for 10 classes: the VGG ones are the published CIFAR VGG counts;
# the others are what the spec'd architectures give (PreAct-ResNet-18 has the NeuralScale
# final BN, hence 1,024 more than pytorch-cifar's 11,171,146; ResNet-50 equals pytorch-cifar's).
FULL_PARAMS = {
    "mobilenetv2": 2_333_410,
    "preact_resnet18": 11_172_170,
    "resnet50": 23_520_842,
    "vgg11": 9_231_114,
    "vgg16": 14_728_266,
}
FULL_MACS = {
    "mobilenetv2": 26_578_944,
    "preact_resnet18": 555_422_720,
    "resnet50": 1_297_829_888,
    "vgg11": 152_769_536,
    "vgg16": 313_201_664,  # about 313 M (padding taps counted, as inference MAC counts do)
}
WIDTH_COUNTS = {"mobilenetv2": 19, "preact_resnet18": 17, "resnet50": 49, "vgg11": 8, "vgg16": 13}


def instantiated_params(net):
    return sum(p.numel() for p in net.parameters())


def hooked_macs(net, image_size=32):
    """Independent MAC count: forward hooks on every Conv2d and Linear of one image's pass."""
    import torch
    from torch import nn

    total = [0]

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total[0] += output.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            total[0] += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    net.eval()
    with torch.no_grad():
        net(torch.zeros(1, 3, image_size, image_size))
    for h in handles:
        h.remove()
    return total[0]


def test_model_names():
    assert models.MODEL_NAMES == ("mobilenetv2", "preact_resnet18", "resnet50", "vgg11", "vgg16")


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_full_counts_exact(name):
    widths = models.full_widths(name)
    assert len(widths) == WIDTH_COUNTS[name]
    net = models.build_model(name, widths)
    assert models.count_params(name, widths) == FULL_PARAMS[name] == instantiated_params(net)
    assert models.count_macs(name, widths) == FULL_MACS[name] == hooked_macs(net)


@pytest.mark.parametrize("classes", (10, 100))
@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_params_closed_form_matches_module(name, ratio, classes):
    widths = models.scale_widths(name, ratio)
    net = models.build_model(name, widths, classes=classes)
    assert models.count_params(name, widths, classes) == instantiated_params(net)


@pytest.mark.parametrize("ratio", (0.25, 1.0))
@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_macs_closed_form_matches_hooks(name, ratio):
    widths = models.scale_widths(name, ratio)
    net = models.build_model(name, widths)
    assert models.count_macs(name, widths) == hooked_macs(net)


@pytest.mark.parametrize("ratio", (0.25, 1.0))
@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_macs_closed_form_matches_the_torch_profiler(name, ratio):
    """PyTorch's own FLOP counter (2 FLOPs per multiply-add of every convolution and matmul)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    widths = models.scale_widths(name, ratio)
    net = models.build_model(name, widths).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, 3, 32, 32))
    assert counter.get_total_flops() == 2 * models.count_macs(name, widths)


@pytest.mark.parametrize("name", ("mobilenetv2", "preact_resnet18", "resnet50"))
def test_macs_other_image_size(name):
    widths = models.scale_widths(name, 0.25)
    net = models.build_model(name, widths)
    assert models.count_macs(name, widths, image_size=48) == hooked_macs(net, 48)


def test_vgg_image_size_must_leave_1x1_map():
    widths = models.full_widths("vgg11")
    assert models.count_macs("vgg11", widths, image_size=40) == hooked_macs(
        models.build_model("vgg11", widths), 40)
    with pytest.raises(UserError, match="image_size"):
        models.count_macs("vgg11", widths, image_size=64)


def _random_widths_case(name):
    return st.tuples(st.lists(st.integers(1, 9), min_size=WIDTH_COUNTS[name],
                              max_size=WIDTH_COUNTS[name]),
                     st.sampled_from((10, 100)))


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_random_widths_counts_match_module(name):
    """Free widths in any combination (projections appear and vanish with them)."""

    @settings(max_examples=8, deadline=None, database=None)
    @given(_random_widths_case(name))
    def check(case):
        widths, classes = case
        net = models.build_model(name, widths, classes=classes)
        assert models.count_params(name, widths, classes) == instantiated_params(net)
        assert models.count_macs(name, widths, classes) == hooked_macs(net)

    check()


def test_scale_widths_truncates_like_neuralscale():
    assert models.scale_widths("vgg11", 0.25) == [16, 32, 64, 64, 128, 128, 128, 128]
    assert models.scale_widths("mobilenetv2", 0.3)[:2] == [9, 4]  # int(9.6), int(4.8)
    assert models.scale_widths("vgg11", 1e-6) == [1] * 8
    assert models.scale_widths("resnet50", 1.0) == models.full_widths("resnet50")


@pytest.mark.parametrize("bad", (0, -0.5, "x", None))
def test_scale_widths_rejects_bad_ratio(bad):
    with pytest.raises(UserError, match="ratio"):
        models.scale_widths("vgg11", bad)


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("name", GEALY_MODELS)
def test_params_mode_within_half_percent(name, ratio):
    full = models.count_params(name, models.full_widths(name))
    m = models.params_ratio_multiplier(name, ratio)
    assert 0 < m <= 1.5
    got = models.count_params(name, models.scale_widths(name, m))
    assert abs(got - ratio * full) <= 0.005 * ratio * full


def test_params_mode_full_is_exactly_one():
    assert models.params_ratio_multiplier("vgg11", 1.0) == 1.0
    assert models.params_ratio_multiplier("preact_resnet18", 0.5, classes=100) > 0


def test_params_mode_unreachable():
    with pytest.raises(UserError, match="not reachable"):
        models.params_ratio_multiplier("vgg11", 3.0)  # beyond the 1.5 multiplier bound
    with pytest.raises(UserError, match="not reachable"):
        models.params_ratio_multiplier("vgg11", 1e-6)  # below the all-ones network


@pytest.mark.parametrize("call", (
    lambda: models.full_widths("vgg12"),
    lambda: models.scale_widths("vgg12", 0.5),
    lambda: models.count_params("vgg12", [1]),
    lambda: models.count_macs("vgg12", [1]),
    lambda: models.build_model("vgg12", [1]),
    lambda: models.params_ratio_multiplier("vgg12", 0.5),
))
def test_unknown_model_is_user_error(call):
    with pytest.raises(UserError) as err:
        call()
    assert str(err.value) == (
        "unknown model 'vgg12'; valid: mobilenetv2, preact_resnet18, resnet50, vgg11, vgg16")


@pytest.mark.parametrize("widths", ([64] * 7, [64] * 7 + [0], [64] * 7 + [2.5], [64] * 7 + ["8"]))
def test_bad_widths_are_user_errors(widths):
    with pytest.raises(UserError, match="vgg11"):
        models.count_params("vgg11", widths)


def test_build_is_deterministic_and_leaves_rng_alone():
    import torch

    widths = models.scale_widths("preact_resnet18", 0.25)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = models.build_model("preact_resnet18", widths, seed=7)
    assert torch.equal(torch.rand(1), before)
    b = models.build_model("preact_resnet18", widths, seed=7)
    c = models.build_model("preact_resnet18", widths, seed=8)
    pa, pb, pc = (list(n.state_dict().values()) for n in (a, b, c))
    assert all(torch.equal(x, y) for x, y in zip(pa, pb, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(pa, pc, strict=True))


def test_counts_need_only_the_stdlib():
    """Host planning imports the zoo without torch or numpy."""
    code = (
        "import sys\n"
        "from toolkit.device import models as m\n"
        "for n in m.MODEL_NAMES:\n"
        "    m.count_macs(n, m.scale_widths(n, m.params_ratio_multiplier(n, 0.5)))\n"
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'heavy import'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=str(REPO), check=True)


def test_device_side_is_python36():
    """vermin 1.9 has no __main__ module, so `-m vermin` fails; call its entry point instead."""
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from vermin import main; sys.exit(main())",
         "-t=3.6-", "--no-tips", "--violations", "toolkit/device"],
        cwd=str(REPO), capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Target versions not met" not in proc.stdout, proc.stdout
