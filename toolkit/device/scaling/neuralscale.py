"""NeuralScale (Lee & Lee, CVPR 2020) as its public code, eugenelet/NeuralScale, implements it.

Pipeline:
  1. prune:  train the network with fixed channel gates, remove the globally least important
             channels (Taylor-FO on the gates) window by window, record every layer's width after
             each removal step once every layer has lost a channel (`gates.prune_search`);
  2. fit:    per layer phi_i(tau) = alpha_i * tau ** beta_i, least squares on ln phi vs ln tau,
             tau = parameter count of the recorded architecture (`fit_power_law`); with fewer
             than 6 records a constant architecture (beta = 0), as the public fit_params.py;
  3. solve:  the tau whose architecture max(1, int(alpha_i * tau ** beta_i)) has the target
             parameter count (`solve_widths`, bisection on ln tau, within 1 %);
  4. descent: repeat 1-2 `iterations` times, each from the previous fit solved at the search's full
             size (`architecture_descent`); the last fit is the result.

The artifact (`save_artifact` / `load_artifact`) is plain JSON with the fits, R^2, the width
records and provenance; `widths_for_ratio(artifact, r)` re-solves from the stored floats, which
is pure arithmetic, so the same artifact always gives the same architecture without any search.

Everything above the "architecture descent" section needs only the stdlib and numpy (the host can
call it); the descent imports torch lazily.
"""

import json
import math
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from toolkit.errors import UserError

from .. import models
from . import PRUNE_STOPS

ARTIFACT_FORMAT = "edgerepro.neuralscale/1"
TARGET_MODES = ("width", "params")
SOLVE_TOLERANCE = 0.01  # relative, of the target parameter count
MIN_RECORDS = 6  # fewer records: a constant architecture (eugenelet/NeuralScale fit_params.py)
FEW_RECORDS_FITS = ("constant", "uniform")  # see fit_power_law
# The models whose public prepare_filters (eugenelet/NeuralScale model/mobilenetv2.py,
# model/preact_resnet.py) add 10 to solved widths below 10 during the search and scale a beta = 0
# fit uniformly to the target; model/VGG.py does neither. resnet50 is not in the public code: it
# follows the ResNet rule.
RESIDUAL_MODELS = ("mobilenetv2", "preact_resnet18", "resnet50")
_TRUNCATION_GUARD = 1e-12  # int(x * (1 + guard)): exact products like 64/tau*tau stay 64


# ----------------------------------------------------------------------------------------- fit


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


# --------------------------------------------------------------------------------------- solve


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


def widths_for_ratio(artifact_or_fit: Dict[str, Any], ratio: float, mode: str = "width",
                     tolerance: float = SOLVE_TOLERANCE) -> Dict[str, Any]:
    """The NeuralScale architecture at ratio r from an artifact (its final fit) or a bare fit
    with "model" and "classes" keys. Returns solve_widths' dict plus "ratio", "mode", "kind"."""
    art = artifact_or_fit
    fit = art.get("final_fit", art)
    model, classes = art["model"], int(art["classes"])
    solved = solve_widths(model, fit, target_params(model, ratio, classes, mode), classes,
                          tolerance)
    solved.update({"ratio": float(ratio), "mode": mode, "kind": fit["kind"]})
    return solved


# ------------------------------------------------------------------------------------ artifact


def save_artifact(artifact: Dict[str, Any], path: str) -> str:
    """Write the artifact as JSON atomically (tmp + rename); returns the path."""
    if artifact.get("format") != ARTIFACT_FORMAT:
        raise UserError("not a NeuralScale artifact (format {!r})".format(artifact.get("format")))
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        os.makedirs(parent)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(artifact, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return path


def load_artifact(path: str) -> Dict[str, Any]:
    """Read and check an artifact; its stored architectures must re-solve identically."""
    try:
        with open(path) as f:
            artifact = json.load(f)
    except (OSError, ValueError) as exc:
        raise UserError("cannot read NeuralScale artifact {}: {}".format(path, exc)) from None
    if artifact.get("format") != ARTIFACT_FORMAT:
        raise UserError("{} is not a NeuralScale artifact (format {!r}, expected {!r})".format(
            path, artifact.get("format"), ARTIFACT_FORMAT))
    n = len(models.full_widths(artifact["model"]))
    fit = artifact["final_fit"]
    if len(fit["alpha"]) != n or len(fit["beta"]) != n:
        raise UserError("{}: final fit has {} layers, {} has {}".format(
            path, len(fit["alpha"]), artifact["model"], n))
    for entry in artifact.get("architectures", []):
        again = widths_for_ratio(artifact, entry["ratio"], entry["mode"])["widths"]
        if again != entry["widths"]:
            raise UserError("{}: stored architecture at {} ratio {} does not re-solve to the same "
                            "widths ({} vs {})".format(path, entry["mode"], entry["ratio"],
                                                       entry["widths"], again))
    return artifact


def toolkit_version() -> str:
    """Version of the project (pyproject.toml beside the package, when present)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    try:
        with open(os.path.join(root, "pyproject.toml")) as f:
            for line in f:
                if line.startswith("version"):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "unknown"


# -------------------------------------------------------------------------- architecture descent

# Architecture-search protocol of the public code (architecture_descent.py, prune.py, utils.py).
SEARCH_DEFAULTS = {
    "iterations": 15,
    "base_ratio": 1.0,  # the search's "full size": scale_widths(model, base_ratio)
    "epochs": 300,  # upper bound; pruning normally ends the iteration long before
    "batch": 256,  # architecture_descent.py default (training uses 128)
    "lr": 0.1,
    "momentum": 0.5,
    "weight_decay": 5e-4,
    "warmup_epochs": 10,  # pruning starts after these epochs
    "warmup_end_lr": 0.01,  # lr from epoch == warmup_epochs on ...
    "lr_decay": 1.5,  # ... divided by 1.5 every 10 epochs after the warm-up
    "lr_decay_every": 10,
    "window": 50,  # minibatches of importance accumulated per removal step (CIFAR)
    "prune_per_step": 10,  # channels removed per step, globally
    "max_prune_fraction": 0.95,
    "min_records": MIN_RECORDS,
    "few_records_fit": "constant",  # FEW_RECORDS_FITS; "uniform": the toolkit's earlier rule
    "prune_stop": "one_channel",  # PRUNE_STOPS; "empty_layer": the toolkit's earlier rule
    # During descent, solved widths below 10 get + search_width_bump for these models only
    # (public code: see RESIDUAL_MODELS); list every model for the toolkit's earlier rule.
    "search_width_bump": 10,
    "search_width_bump_models": list(RESIDUAL_MODELS),
    "augment": True,
    "log_every": 50,  # progress line every N minibatches (0: per epoch only)
    "max_batches_per_epoch": 0,  # 0 = full epochs; >0 caps them (smoke profiles)
}

PROFILES = {
    "paper": {},
    # Minutes on 2 CPU cores with a small data set: a narrow base network, short windows.
    "smoke": {"iterations": 2, "base_ratio": 0.125, "epochs": 15, "batch": 64, "warmup_epochs": 3,
              "window": 3, "prune_per_step": 5, "log_every": 0, "search_width_bump": 0},
}


def search_config(profile: str = "paper", **overrides) -> Dict[str, Any]:
    """A complete, validated search configuration: defaults < profile < overrides."""
    if profile not in PROFILES:
        raise UserError("unknown NeuralScale profile {!r}; valid: {}".format(
            profile, ", ".join(sorted(PROFILES))))
    cfg = dict(SEARCH_DEFAULTS)
    cfg.update(PROFILES[profile])
    unknown = sorted(set(overrides) - set(cfg))
    if unknown:
        raise UserError("unknown NeuralScale setting(s): {}; valid: {}".format(
            ", ".join(unknown), ", ".join(sorted(cfg))))
    cfg.update(overrides)
    for key in ("iterations", "epochs", "batch", "window", "prune_per_step", "min_records"):
        if int(cfg[key]) != cfg[key] or cfg[key] < 1:
            raise UserError("NeuralScale {} must be a positive integer, got {!r}".format(
                key, cfg[key]))
    if not 0 < float(cfg["max_prune_fraction"]) < 1:
        raise UserError("max_prune_fraction must be in (0, 1)")
    for key, valid in (("few_records_fit", FEW_RECORDS_FITS), ("prune_stop", PRUNE_STOPS)):
        if cfg[key] not in valid:
            raise UserError("NeuralScale {} must be one of {}, got {!r}".format(
                key, ", ".join(valid), cfg[key]))
    bumped = cfg["search_width_bump_models"]
    if not isinstance(bumped, (list, tuple)) or not all(m in models.MODEL_NAMES for m in bumped):
        raise UserError("NeuralScale search_width_bump_models must be a list of models ({}), got "
                        "{!r}".format(", ".join(models.MODEL_NAMES), bumped))
    cfg["search_width_bump_models"] = list(bumped)
    return cfg


def search_start_widths(model: str, fit: Optional[Dict[str, Any]], cfg: Dict[str, Any],
                        classes: int) -> List[int]:
    """The architecture an iteration prunes from: the base for the first, else the previous fit
    solved at the base's parameter count, for the models in search_width_bump_models widths
    below 10 bumped by search_width_bump (eugenelet/NeuralScale architecture_descent.py builds
    the next network with search=True, and only MobileNetV2 and PreActResNet18 then add 10).

    The solution is solve_widths' answer at the base's size even when it misses it by more
    than SOLVE_TOLERANCE (strict=False): it is where the next pruning run starts, not a result,
    and a tiny search's fit can step over the target (see solve_widths). The public code does
    not check that size either (model/mobilenetv2.py solves on fractional widths, then
    truncates them and adds 10). Each iteration's log line gives its start's size."""
    base = models.scale_widths(model, cfg["base_ratio"])
    if fit is None:
        return base
    target = models.count_params(model, base, classes)
    widths = solve_widths(model, fit, target, classes, strict=False)["widths"]
    bump = int(cfg["search_width_bump"]) if model in cfg["search_width_bump_models"] else 0
    return [w + bump if w < 10 else w for w in widths]


def architecture_descent(model: str, dataset, config: Optional[Dict[str, Any]] = None,
                         seed: int = 0, ratios: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
                         log=None) -> Dict[str, Any]:
    """Run the full NeuralScale search on `dataset` (a data.DataSet) and return the artifact
    (save it with save_artifact). Iteration i builds the network with seed + i, prunes it with
    gates.prune_search and fits; the final fit is the last iteration's. The artifact also stores
    the solved architectures at `ratios` in both target modes (a check for load_artifact)."""
    from . import gates

    overrides = dict(config or {})
    profile = overrides.pop("profile", "paper")
    cfg = search_config(profile, **overrides)
    log = sys.stderr if log is None else log
    classes = dataset.classes
    started = time.time()
    iterations: List[Dict[str, Any]] = []
    fit: Optional[Dict[str, Any]] = None
    for index in range(int(cfg["iterations"])):
        start = search_start_widths(model, fit, cfg, classes)
        log.write("neuralscale {} iteration {}/{}: start widths {} ({} params)\n".format(
            model, index + 1, cfg["iterations"], start, models.count_params(model, start, classes)))
        log.flush()
        outcome = gates.prune_search(model, start, dataset, cfg, seed=int(seed) + index, log=log)
        # Without records the public code fits the widths at which pruning stopped. At the epoch
        # limit it writes nothing, not even its records (fit_params.py then fails); here the
        # records are fitted as usual, and without any the start architecture scales uniformly.
        stop_widths = outcome["final_widths"] if outcome["pruning_stopped"] else None
        fit = fit_power_law(model, outcome["records"], classes, reference=start,
                            min_records=cfg["min_records"], few_records=cfg["few_records_fit"],
                            stop_widths=stop_widths)
        outcome.update({"index": index, "seed": int(seed) + index, "start_widths": start,
                        "fit": fit,
                        "record_params": [models.count_params(model, r, classes)
                                          for r in outcome["records"]]})
        iterations.append(outcome)
        log.write("neuralscale {} iteration {}: {} records, stop: {}, {}\n".format(
            model, index + 1, len(outcome["records"]), outcome["stop_reason"],
            fit["fallback"] or "fit R2 min {:.3f}".format(min(fit["r2"]))))
        log.flush()
    return build_artifact(model, classes, dataset.describe(), seed, profile, cfg, iterations,
                          fit, ratios, started)


def build_artifact(model: str, classes: int, dataset: Dict[str, Any], seed: int, profile: str,
                   cfg: Dict[str, Any], iterations: List[Dict[str, Any]], fit: Dict[str, Any],
                   ratios: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
                   started: Optional[float] = None) -> Dict[str, Any]:
    """Assemble the JSON artifact: provenance, every iteration (start widths, width records,
    their parameter counts, stop reason, fit), the final fit, and the architectures it solves to
    at `ratios` in both target modes (load_artifact re-solves and compares them)."""
    artifact = {
        "format": ARTIFACT_FORMAT,
        "model": model,
        "classes": int(classes),
        "full_widths": models.full_widths(model),
        "search_base_widths": models.scale_widths(model, cfg["base_ratio"]),
        "dataset": dataset,
        "seed": int(seed),
        "profile": profile,
        "config": cfg,
        "iterations": iterations,
        "final_fit": fit,
        "provenance": _provenance(time.time() if started is None else started),
    }
    artifact["architectures"] = []
    for mode in TARGET_MODES:
        for r in ratios:
            solved = widths_for_ratio(artifact, r, mode)
            artifact["architectures"].append(
                {"ratio": float(r), "mode": mode, "widths": solved["widths"],
                 "params": solved["params"], "target": solved["target"], "tau": solved["tau"]})
    return artifact


def _provenance(started: float) -> Dict[str, Any]:
    import platform

    info = {"toolkit_version": toolkit_version(), "python": platform.python_version(),
            "numpy": np.__version__, "seconds": round(time.time() - started, 3),
            "created_unix": int(time.time())}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info
