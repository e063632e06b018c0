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

Steps 2 and 3 live in fit.py (pure arithmetic); this module re-exports them.

The artifact (`save_artifact` / `load_artifact`) is plain JSON with the fits, R^2, the width
records and provenance; `widths_for_ratio(artifact, r)` re-solves from the stored floats, which
is pure arithmetic, so the same artifact always gives the same architecture without any search.

Everything above the "architecture descent" section needs only the stdlib and numpy (the host can
call it); the descent imports torch lazily.
"""

import json
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from toolkit.errors import UserError

from .. import models
from . import PRUNE_STOPS, PRUNE_TIES, public_solver
from .fit import (  # noqa: F401 - read here by callers
    FEW_RECORDS_FITS,
    MIN_RECORDS,
    RESIDUAL_MODELS,
    SOLVE_TOLERANCE,
    TARGET_MODES,
    constant_fit,
    fit_power_law,
    fit_records,
    solve_widths,
    target_params,
    uniform_fit,
    widths_at,
)

ARTIFACT_FORMAT = "edgerepro.neuralscale/1"
# Which fit a published artifact is solved with (widths_for_ratio): "public", the public code's
# own fit (its .pk) and solver (public_solver.py); "refit", our fit of its records and our solver.
PUBLISHED_FITS = ("public", "refit")
# The models whose public prepare_filters (eugenelet/NeuralScale model/mobilenetv2.py,
# model/preact_resnet.py) add 10 to solved widths below 10 during the search and scale a beta = 0
# fit uniformly to the target; model/VGG.py does neither. resnet50 is not in the public code: it
# follows the ResNet rule.


# ----------------------------------------------------------------------------------- fit, solve
# fit_power_law, constant and uniform fits, widths_at, solve_widths: fit.py.


def widths_for_ratio(artifact_or_fit: Dict[str, Any], ratio: float, mode: str = "width",
                     tolerance: float = SOLVE_TOLERANCE, published: str = "refit",
                     ) -> Dict[str, Any]:
    """The NeuralScale architecture at ratio r from an artifact (its final fit) or a bare fit
    with "model" and "classes" keys. Returns solve_widths' dict plus "ratio", "mode", "kind".
    published="public": a published artifact's public fit solved by the public solver instead
    (public_solver.widths_for_ratio: its miss of our target is not bounded)."""
    art = artifact_or_fit
    model, classes = art["model"], int(art["classes"])
    if published not in PUBLISHED_FITS:
        raise UserError("published must be one of {}, got {!r}".format(
            ", ".join(PUBLISHED_FITS), published))
    if published == "public":
        if not art.get("public"):
            raise UserError("this NeuralScale artifact has no public fit (only the shipped "
                            "published searches do): use published = \"refit\"")
        return public_solver.widths_for_ratio(model, art["public"]["fit"], ratio, classes, mode)
    fit = art.get("final_fit", art)
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
    for entry in (artifact.get("public") or {}).get("architectures", []):
        again = widths_for_ratio(artifact, entry["ratio"], entry["mode"],
                                 published="public")["widths"]
        if again != entry["widths"]:
            raise UserError("{}: stored public architecture at {} ratio {} does not re-solve to "
                            "the same widths ({} vs {})".format(
                                path, entry["mode"], entry["ratio"], entry["widths"], again))
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
    # The first window is longer by this (prune.py do_step: 51 minibatches); 0: the toolkit's
    # earlier rule, every window `window` long.
    "first_window_extra": 1,
    "prune_per_step": 10,  # channels removed per step, globally
    "max_prune_fraction": 0.95,
    "min_records": MIN_RECORDS,
    "few_records_fit": "constant",  # FEW_RECORDS_FITS; "uniform": the toolkit's earlier rule
    "prune_stop": "one_channel",  # PRUNE_STOPS; "empty_layer": the toolkit's earlier rule
    "prune_ties": "threshold",  # PRUNE_TIES; "exact": the toolkit's earlier rule
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
    extra = cfg["first_window_extra"]
    if isinstance(extra, bool) or not isinstance(extra, int) or extra < 0:
        raise UserError("NeuralScale first_window_extra must be a non-negative integer (1: the "
                        "public code's 51-minibatch first window), got {!r}".format(extra))
    if not 0 < float(cfg["max_prune_fraction"]) < 1:
        raise UserError("max_prune_fraction must be in (0, 1)")
    for key, valid in (("few_records_fit", FEW_RECORDS_FITS), ("prune_stop", PRUNE_STOPS),
                       ("prune_ties", PRUNE_TIES)):
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
