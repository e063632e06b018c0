"""Model zoo: the CIFAR networks of the NeuralScale study, parameterised by per-layer widths.

Each model has exactly one list of free per-layer widths (layout documented in its module), and
everything else derives from it: closed-form parameter and MAC counts (pure python, so the host
can plan experiments without torch) and the torch module (torch imported only when building).

Rounding rule of uniform width scaling: int(w * ratio), i.e. truncation towards zero, with a floor
of 1 channel. This is what the public NeuralScale code does (its `int(cfg * ratio)`), so our
uniform baselines are the same architectures as theirs; note that float products such as
100 * 0.29 = 28.999... truncate to 28 there too.
"""

import functools
from typing import TYPE_CHECKING, List, Sequence

from toolkit.errors import UserError

from . import mobilenetv2, preact_resnet, resnet, vgg

if TYPE_CHECKING:  # annotations only: torch is imported lazily
    import torch

# Relative, of params_ratio_multiplier: 1 %, as NeuralScale's solver (SOLVE_TOLERANCE);
# one uniform multiplier moves every width at once, so its parameter count steps by ~0.5-1 %.
PARAMS_TOLERANCE = 0.01
_MAX_MULTIPLIER = 1.5
_BISECTIONS = 60


class _Spec(object):
    """The four things a model provides; the registry maps names to these."""

    def __init__(self, widths, count_params, count_macs, build):
        self.widths = widths
        self.count_params = count_params
        self.count_macs = count_macs
        self.build = build


_REGISTRY = {
    "mobilenetv2": _Spec(mobilenetv2.FULL_WIDTHS, mobilenetv2.count_params,
                         mobilenetv2.count_macs, mobilenetv2.build),
    "preact_resnet18": _Spec(preact_resnet.FULL_WIDTHS, preact_resnet.count_params,
                             preact_resnet.count_macs, preact_resnet.build),
    "resnet50": _Spec(resnet.FULL_WIDTHS, resnet.count_params, resnet.count_macs, resnet.build),
}
for _name in ("vgg11", "vgg16"):
    _REGISTRY[_name] = _Spec(vgg.FULL_WIDTHS[_name], functools.partial(vgg.count_params, _name),
                             functools.partial(vgg.count_macs, _name),
                             functools.partial(vgg.build, _name))

MODEL_NAMES = tuple(sorted(_REGISTRY))


def _spec(model: str) -> _Spec:
    try:
        return _REGISTRY[model]
    except (KeyError, TypeError):
        raise UserError(f"unknown model {model!r}; valid: {', '.join(MODEL_NAMES)}") from None


def full_widths(model: str) -> List[int]:
    """The width list at ratio 1.0 (a fresh copy: callers may mutate it)."""
    return list(_spec(model).widths)


def _check_ratio(ratio: float) -> float:
    try:
        ok = float(ratio) > 0 and not isinstance(ratio, bool)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise UserError(f"ratio must be a positive number, got {ratio!r}")
    return float(ratio)


def scale_widths(model: str, ratio: float) -> List[int]:
    """Uniform width scaling: max(1, int(w * ratio)) per width (truncation, as NeuralScale)."""
    ratio = _check_ratio(ratio)
    return [max(1, int(w * ratio)) for w in full_widths(model)]


def count_params(model: str, widths: Sequence[int], classes: int = 10) -> int:
    """Exact number of parameters (sum of numel of the built module's parameters)."""
    return _spec(model).count_params(widths, classes)


def count_macs(
    model: str, widths: Sequence[int], classes: int = 10, image_size: int = 32
) -> int:
    """Multiply-adds of one forward pass of one image: conv (incl. depthwise and shortcut convs)
    and linear weights only; biases, BN, activations, pooling and residual adds are not counted."""
    return _spec(model).count_macs(widths, classes, image_size)


def build_model(
    model: str, widths: Sequence[int], classes: int = 10, seed: int = 0
) -> "torch.nn.Module":
    """torch.nn.Module (train mode) whose init depends only on the arguments: built under
    torch.manual_seed(seed) inside a forked RNG, so the caller's RNG state is left untouched."""
    spec = _spec(model)
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return spec.build(widths, classes)


def params_ratio_multiplier(model: str, ratio: float, classes: int = 10) -> float:
    """Width multiplier m for uniform PARAMS scaling: count_params(scale_widths(model, m)) is within
    PARAMS_TOLERANCE of ratio * full count.

    The count is a non-decreasing step function of m (every width is, and every width adds
    parameters), so bisection over (0, 1.5] finds the step that crosses the target; the nearer of
    the two steps around it is taken. The result is rounded to the shortest decimal that gives
    the same widths, so ratio 1.0 gives exactly 1.0.
    """
    ratio = _check_ratio(ratio)
    spec = _spec(model)
    target = ratio * spec.count_params(spec.widths, classes)

    def params(m: float) -> int:
        return spec.count_params(scale_widths(model, m), classes)

    lo, hi = 0.0, _MAX_MULTIPLIER  # invariant: params(lo) < target <= params(hi); lo = 0 is "-inf"
    if params(hi) >= target:
        for _ in range(_BISECTIONS):
            mid = (lo + hi) / 2
            if params(mid) >= target:
                hi = mid
            else:
                lo = mid
    else:
        lo = hi
    candidates = [m for m in (hi, lo) if m > 0]
    best = min(candidates, key=lambda m: abs(params(m) - target))
    got = params(best)
    if abs(got - target) > PARAMS_TOLERANCE * target:
        raise UserError(
            f"{model}: parameter ratio {ratio:g} not reachable by uniform width scaling within "
            f"{PARAMS_TOLERANCE:.1%} (nearest: {got} vs target {target:.0f}); "
            f"multipliers are searched in (0, {_MAX_MULTIPLIER:g}]"
        )
    for digits in range(1, 17):
        short = round(best, digits)
        if 0 < short <= _MAX_MULTIPLIER and params(short) == got:
            return short
    return best
