"""The public NeuralScale code's own solver: the architecture its paper runs trained at a ratio.

eugenelet/NeuralScale ratio_swipe.py builds each network with the final fit of a descent
(prune_record/<name>.pk, param[14]) through the model's prepare_filters, which finds tau with
its own parameter count (utils.py compute_params) and its own iteration, then truncates
alpha_i * tau ** beta_i. Each model file iterates differently (at commit 67ddedc):

  model/VGG.py prepare_filters (lines 74-91): the target counts the FRACTIONAL widths
      cfg * ratio; 2000 steps of tau -= 50 * (count(int widths) - target) * d/dtau;
  model/mobilenetv2.py prepare_filters (lines 161-216): the target counts int(cfg * ratio);
      until |count - target| <= int(0.0005 * target), count on FRACTIONAL widths, a step larger
      than tau halves tau instead;
  model/preact_resnet.py prepare_filters (lines 141-192): the target counts cfg * ratio; until
      |count - target| <= int(0.007 * target) (0.009 for descent_idx 0), count on int widths.

This is ported line for line (`solve`), so that a spec can ask for the public architectures
(`published = "public"`) beside ours (neuralscale.solve_widths: our exact count, within 1 %).
The public count differs from ours (its MobileNetV2 stem has no 3x3 kernel, every block an
expansion conv), so the public architectures miss our target by a few per cent: "error" keeps
that miss. A parameter ratio (mode "params") is not in the public code: there the target is
ratio x the public count of the full network. Stdlib only (device side, Python 3.6).
"""

from typing import Any, Dict, List, Sequence

from toolkit.errors import UserError

from .. import models
from .fit import target_params

# The models the public code has, and the name its compute_params knows them by.
PUBLIC_NAMES = {"vgg11": "vgg", "mobilenetv2": "mobilenetv2", "preact_resnet18": "resnet18"}
MAX_STEPS = 100000  # the public while loops have no bound; a fit that never converges is an error
_MOBILENETV2_BLOCKS = [[32], [16], [24, 24], [32, 32, 32], [64, 64, 64, 64], [96, 96, 96],
                       [160, 160, 160], [320], [1280]]
_MOBILENETV2_EXPAND = [0, 1, 6, 6, 6, 6, 6, 6, 0]


def public_params(model: str, config: Sequence[float], classes: int) -> float:
    """utils.py compute_params(config, classes, model, in_channel=3, kernel=3, last=True) of
    eugenelet/NeuralScale for our model name; `config` may hold fractional widths, as there."""
    name = _public_name(model)
    count = 0.0
    if name == "vgg":
        prev = 3
        for cfg in config:  # weight + bias + BN
            count += prev * cfg * 9 + cfg + cfg * 2
            prev = cfg
        return count + prev * classes + classes
    if name == "resnet18":
        prev = 3
        for cfg in config:  # weight + BN
            count += prev * cfg * 9 + cfg * 2
            prev = cfg
        count += prev * classes + classes
        for i in range(2, len(config), 2):  # a projection where the two widths differ
            if config[i - 2] != config[i]:
                count += config[i - 2] * config[i]
        return count
    k = 0  # mobilenetv2, last=True
    prev = 0.0
    for block, expand in zip(_MOBILENETV2_BLOCKS, _MOBILENETV2_EXPAND):  # noqa: B905 (3.6)
        if k == 0:  # the stem, counted without its kernel as there
            count = 3 * config[0] + config[0] + config[0] * 2
            prev = config[0]
            k += 1
        elif expand == 0:  # the last 1x1 conv (k is not advanced there either)
            count += prev * config[k] + config[k] + config[k] * 2
            prev = config[k]
        else:
            for _ in block:
                if prev != config[k]:  # shortcut
                    count += prev * config[k] + config[k] + config[k] * 2
                mid = prev * expand
                count += prev * mid + mid * 2 + mid  # expansion
                count += mid * 9 + mid * 2 + mid  # depthwise
                count += mid * config[k] + config[k] + config[k] * 2  # conv
                prev = config[k]
                k += 1
    return count + prev * classes + classes


def _public_name(model: str) -> str:
    if model not in PUBLIC_NAMES:
        raise UserError("{} is not in the public NeuralScale code (it has {})".format(
            model, ", ".join(sorted(PUBLIC_NAMES))))
    return PUBLIC_NAMES[model]


def public_target(model: str, ratio: float, classes: int, mode: str = "width") -> float:
    """The parameter count the public solver aims at: at a width ratio that of the model's full
    widths times ratio (int-truncated only for MobileNetV2, as there); at a parameter ratio
    (not in the public code) ratio times the full network's count."""
    full = models.full_widths(model)
    if mode == "params":
        return float(ratio) * public_params(model, full, classes)
    if mode != "width":
        raise UserError("target mode must be width or params, got {!r}".format(mode))
    if model == "mobilenetv2":
        return public_params(model, [int(w * ratio) for w in full], classes)
    return public_params(model, [w * ratio for w in full], classes)


def solve(model: str, alpha: Sequence[float], beta: Sequence[float], target: float,
          classes: int) -> Dict[str, Any]:
    """The public prepare_filters of `model` for a power-law fit (alpha, beta) and a target in
    the public count: {"widths", "tau", "public_params" (of the widths), "steps"}."""
    name = _public_name(model)
    if sum(beta) == 0:  # the public uniform fallback: a constant fit is solved elsewhere
        raise UserError("the public solver of {} needs a power-law fit (sum of beta is 0)".format(
            model))

    def widths(tau: float, truncate: bool) -> List[float]:
        return [int(a * tau ** b) if truncate else a * tau ** b
                for a, b in zip(alpha, beta)]  # noqa: B905 (Python 3.6)

    def slope(tau: float) -> float:
        return sum(a * tau ** b * b / tau for a, b in zip(alpha, beta))  # noqa: B905

    tau = float(target)
    steps = 0
    if name == "vgg":
        for _ in range(2000):
            approx = public_params(model, widths(tau, True), classes)
            tau = tau - 50.0 * ((approx - target) * slope(tau))
        steps = 2000
    else:
        within = int((0.0005 if name == "mobilenetv2" else 0.007) * target)
        approx = 0.0
        while abs(approx - target) > within:
            steps += 1
            if steps > MAX_STEPS:
                raise UserError("the public solver of {} did not converge on {} parameters in "
                                "{} steps".format(model, target, MAX_STEPS))
            if name == "mobilenetv2":
                approx = public_params(model, widths(tau, False), classes)
                step = (approx - target) * slope(tau)
                tau = tau * 0.5 if step > tau else tau - step
            else:
                approx = public_params(model, widths(tau, True), classes)
                tau = tau - 1.0 * ((approx - target) * slope(tau))
    solved = [int(w) for w in widths(tau, True)]
    if min(solved) < 1:
        raise UserError("the public solver of {} gave a layer no channel at {} parameters: "
                        "{}".format(model, target, solved))
    return {"widths": solved, "tau": tau, "public_params": public_params(model, solved, classes),
            "steps": steps}


def widths_for_ratio(model: str, fit: Dict[str, Any], ratio: float, classes: int,
                     mode: str = "width") -> Dict[str, Any]:
    """The public architecture at ratio r, in neuralscale.widths_for_ratio's terms: "widths",
    "params" and "target" (our count), "error" (relative, not bounded), "tau", "ratio", "mode",
    "kind", plus the public solver's own "public_target" and "public_params"."""
    aim = public_target(model, ratio, classes, mode)
    solved = solve(model, fit["alpha"], fit["beta"], aim, classes)
    target = target_params(model, ratio, classes, mode)
    params = models.count_params(model, solved["widths"], classes)
    return {"widths": solved["widths"], "params": params, "target": target,
            "error": (params - target) / float(target), "tau": solved["tau"],
            "ratio": float(ratio), "mode": mode, "kind": fit.get("kind", "power_law"),
            "public_target": aim, "public_params": solved["public_params"]}
