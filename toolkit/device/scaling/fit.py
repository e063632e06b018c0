"""NeuralScale's steps 2 and 3 (neuralscale.py): the per-layer power-law fit of the width
records (or its constant and uniform fallbacks), and the architecture of a fit at a target
size: the target parameter count at ratio r (shared with the port of the public solver,
public_solver.py), the widths of a fit at tau, and the tau whose architecture has the target
count. Pure arithmetic (stdlib and numpy): the host calls it too."""
import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from toolkit.errors import UserError

from .. import models

TARGET_MODES = ("width", "params")
MIN_RECORDS = 6  # fewer records: a constant architecture (eugenelet/NeuralScale fit_params.py)
FEW_RECORDS_FITS = ("constant", "uniform")  # see fit_power_law
RESIDUAL_MODELS = ("mobilenetv2", "preact_resnet18", "resnet50")
SOLVE_TOLERANCE = 0.01  # relative, of the target parameter count
_TRUNCATION_GUARD = 1e-12  # int(x * (1 + guard)): exact products like 64/tau*tau stay 64


def target_params(model: str, ratio: float, classes: int = 10, mode: str = "width") -> int:
    """Target size at ratio r: mode "width" (NeuralScale): parameters of the uniformly
    width-scaled network (scale_widths, int truncation); mode "params" (Gealy's thesis):
    r x the full network's parameters, rounded."""
    if mode not in TARGET_MODES:
        raise UserError("target mode must be one of {}, got {!r}".format(TARGET_MODES, mode))
    if mode == "width":
        return models.count_params(model, models.scale_widths(model, ratio), classes)
    full = models.count_params(model, models.full_widths(model), classes)
    return int(round(float(ratio) * full))




def fit_power_law(model: str, records: Sequence[Sequence[int]], classes: int = 10,
                  reference: Optional[Sequence[int]] = None,
                  min_records: int = MIN_RECORDS, few_records: str = "constant",
                  stop_widths: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """Least-squares fit of ln(width_i) = ln(alpha_i) + beta_i * ln(tau) per layer over the
    width records, tau = count_params(model, record, classes).

    Returns {"kind": "power_law", "alpha", "beta", "r2" (per layer, in log space; 1.0 for a
    layer whose width never changed), "n_records", "tau_range", "fallback": None}.

    With fewer than `min_records` records, few_records="constant" does what eugenelet/NeuralScale
    fit_params.py does: alpha = the first record's widths, beta = 0, "kind" "constant" (see
    solve_widths). Without any record that code fits the widths at which pruning stopped
    (architecture_descent.py train() saves them when nothing was recorded): pass them as
    `stop_widths`. few_records="uniform" (the toolkit's earlier rule) scales `reference`, the
    architecture the pruning started from, uniformly instead: alpha_i = w_i / tau_ref, beta_i = 1,
    "kind" "uniform". That uniform fit is also the answer where the public code has none: no
    records and no stop widths, or records that all have the same size (its least squares would
    be singular). "fallback" says which and why.
    """
    if few_records not in FEW_RECORDS_FITS:
        raise UserError("few_records must be one of {}, got {!r}".format(FEW_RECORDS_FITS,
                                                                         few_records))
    rows = [_checked_widths(model, r) for r in records]
    taus = [models.count_params(model, r, classes) for r in rows]
    few = len(rows) < max(2, int(min_records))
    if few and few_records == "constant" and rows:
        return constant_fit(model, rows[0], classes, "{} width records < {} required: the first "
                            "record".format(len(rows), min_records), len(rows))
    if few and few_records == "constant" and stop_widths is not None:
        return constant_fit(model, _checked_widths(model, stop_widths), classes,
                            "no width records: the widths at which pruning stopped", 0)
    if few or len(set(taus)) < 2:
        if not few:
            reason = "all records have the same size (no public answer: singular least squares)"
        elif few_records == "constant":
            reason = "no width records and no stop widths (no public answer)"
        else:
            reason = "{} width records < {} required".format(len(rows), min_records)
        if reference is None:
            raise UserError("{}: {}, and no reference architecture for the uniform "
                            "fallback".format(model, reason))
        return uniform_fit(model, reference, classes, reason)
    fit = fit_records(taus, rows)
    fit["tau_range"] = [int(min(taus)), int(max(taus))]
    return fit


def _checked_widths(model: str, widths: Sequence[int]) -> List[int]:
    """`widths` as ints; UserError unless one positive width per layer of `model`."""
    row = [int(w) for w in widths]
    n_layers = len(models.full_widths(model))
    if len(row) != n_layers or min(row) < 1:
        raise UserError("{}: a width record must have {} positive widths, got {}".format(
            model, n_layers, row))
    return row


def fit_records(taus: Sequence[float], widths: Sequence[Sequence[float]]) -> Dict[str, Any]:
    """The least-squares core of fit_power_law for explicit (tau, widths) pairs: per layer,
    ln w = ln alpha + beta ln tau; R^2 in log space (1.0 where a layer's width never changed)."""
    ln_tau = np.log(np.asarray(taus, dtype=np.float64))
    ln_phi = np.log(np.asarray(widths, dtype=np.float64))  # records x layers
    design = np.stack([ln_tau, np.ones_like(ln_tau)], axis=1)
    theta, _, _, _ = np.linalg.lstsq(design, ln_phi, rcond=None)
    predicted = design.dot(theta)
    ss_res = ((ln_phi - predicted) ** 2).sum(axis=0)
    ss_tot = ((ln_phi - ln_phi.mean(axis=0)) ** 2).sum(axis=0)
    r2 = [1.0 if tot <= 1e-300 else float(1.0 - res / tot)
          for res, tot in zip(ss_res, ss_tot)]  # noqa: B905 (Python 3.6)
    return {
        "kind": "power_law",
        "alpha": [float(a) for a in np.exp(theta[1])],
        "beta": [float(b) for b in theta[0]],
        "r2": r2,
        "n_records": int(len(ln_tau)),
        "tau_range": [float(min(taus)), float(max(taus))],
        "fallback": None,
    }


def uniform_fit(model: str, reference: Sequence[int], classes: int = 10,
                reason: str = "requested") -> Dict[str, Any]:
    """The fit that reproduces uniform width scaling of `reference` (see fit_power_law)."""
    ref = [int(w) for w in reference]
    tau_ref = models.count_params(model, ref, classes)
    return {
        "kind": "uniform",
        "alpha": [w / float(tau_ref) for w in ref],
        "beta": [1.0] * len(ref),
        "r2": [None] * len(ref),
        "n_records": 0,
        "tau_range": [int(tau_ref), int(tau_ref)],
        "fallback": "uniform scaling of {} ({})".format(ref, reason),
        "reference": ref,
    }


def constant_fit(model: str, widths: Sequence[int], classes: int = 10, reason: str = "requested",
                 n_records: int = 0) -> Dict[str, Any]:
    """The fit of eugenelet/NeuralScale fit_params.py for too few records: alpha = `widths`,
    beta = 0, i.e. the same architecture at every tau (see fit_power_law, solve_widths)."""
    row = [int(w) for w in widths]
    tau = models.count_params(model, row, classes)
    return {
        "kind": "constant",
        "alpha": [float(w) for w in row],
        "beta": [0.0] * len(row),
        "r2": [None] * len(row),
        "n_records": int(n_records),
        "tau_range": [int(tau), int(tau)],
        "fallback": "constant architecture {}, beta = 0 ({})".format(row, reason),
        "widths": row,
    }


def widths_at(fit: Dict[str, Any], tau: float) -> List[int]:
    """max(1, int(alpha_i * tau ** beta_i)) per layer."""
    return [max(1, int(a * tau ** b * (1.0 + _TRUNCATION_GUARD)))
            for a, b in zip(fit["alpha"], fit["beta"])]  # noqa: B905 (Python 3.6)


def solve_widths(model: str, fit: Dict[str, Any], target: int, classes: int = 10,
                 tolerance: float = SOLVE_TOLERANCE, strict: bool = True) -> Dict[str, Any]:
    """Find tau with count_params(widths_at(fit, tau)) within `tolerance` of `target`.

    The count is a step function of tau, non-decreasing when every beta >= 0 (a noisy fit can
    have a negative beta; the search needs only a bracket, not monotonicity): the bracket
    [lo, hi] with count(lo) < target <= count(hi) is grown geometrically from tau = target, then
    bisected on ln tau to float resolution; the nearer of the two sides wins. Returns {"widths",
    "params", "tau", "target", "error" (relative)}; UserError if that lands outside tolerance,
    unless strict is False (then that architecture all the same, its miss in "error").

    One channel more in one layer can change the count by more than 2 * tolerance (in the
    residual models it widens the next block and, where two equal widths part, adds a
    projection shortcut: up to 2.5-3 % of a MobileNetV2 or PreActResNet18 at width 0.125-0.5),
    so a fit's curve may step over the target: no tau gives an architecture in between.

    A "constant" fit (beta = 0) is solved as the public prepare_filters solve it: for VGG
    (eugenelet/NeuralScale model/VGG.py: beta = 0 makes the tau update 0) its widths whatever
    the target, the miss kept in "error" rather than raised, tau = target as there; for
    RESIDUAL_MODELS (model/mobilenetv2.py, model/preact_resnet.py: np.sum(beta) == 0, "fallback
    to uniform scaling") its widths scaled uniformly to the target. Those two files also add 10
    to scaled widths below 10 outside the search; that is not done here, so the result keeps the
    target size (widths_for_ratio's "kind" marks it as no power-law answer anyway).
    """
    target = int(target)
    if target < 1:
        raise UserError("target parameter count must be positive, got {}".format(target))
    if fit.get("kind") == "constant":
        widths = [max(1, int(round(a))) for a in fit["alpha"]]
        if model in RESIDUAL_MODELS:
            return solve_widths(model, uniform_fit(model, widths, classes), target, classes,
                                tolerance, strict)
        got = models.count_params(model, widths, classes)
        return {"widths": widths, "params": got, "tau": float(target), "target": target,
                "error": (got - target) / float(target)}

    def count(tau):
        return models.count_params(model, widths_at(fit, tau), classes)

    lo = hi = float(target)
    for _ in range(200):
        if count(lo) < target:
            break
        lo /= 2.0
    for _ in range(200):
        if count(hi) >= target:
            break
        hi *= 2.0
    c_lo, c_hi = count(lo), count(hi)
    if not (c_lo < target <= c_hi):
        best = lo if abs(c_lo - target) <= abs(c_hi - target) else hi
    else:
        for _ in range(400):
            mid = math.sqrt(lo * hi)
            if not lo < mid < hi:
                break
            if count(mid) >= target:
                hi = mid
            else:
                lo = mid
        best = lo if abs(count(lo) - target) < abs(count(hi) - target) else hi
    widths = widths_at(fit, best)
    got = models.count_params(model, widths, classes)
    error = (got - target) / float(target)
    if strict and abs(error) > tolerance:
        raise UserError("{}: no architecture of the fit within {:.1%} of {} parameters (nearest "
                        "{} at tau={:.6g}: {})".format(model, tolerance, target, got, best, widths))
    return {"widths": widths, "params": got, "tau": best, "target": target, "error": error}
