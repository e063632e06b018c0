"""The NeuralScale searches published with the paper (Lee & Lee, CVPR 2020) as shipped artifacts.

The public repository eugenelet/NeuralScale keeps the width records of its architecture descents
in prune_record/<name>_<iteration>.csv (written by eugenelet/NeuralScale prune.py, `pruner`) and
the per-iteration fits in prune_record/<name>.pk (eugenelet/NeuralScale fit_params.py). This
module converts the record sets behind the paper's results into our artifact format
("edgerepro.neuralscale/1", see neuralscale.build_artifact), so that an experiment can say
`neuralscale = { artifact = "published" }` and get the paper's architectures without searching.

What the public code does, and what the conversion keeps of it:

* A CSV row is one width record: the number of live channels of every gate, in the order of
  `prepare_pruning_list` (eugenelet/NeuralScale prune.py: the GateLayers in model.modules()
  order), written after each removal step once every gate has lost a channel. It holds widths
  only, no parameter count. The column order is the flattened channel config of the model file
  (fit_params.py fits column k, prepare_filters assigns alpha[k], beta[k] to flattened entry k):
    - VGG-11 (eugenelet/NeuralScale model/VGG.py, a gate after every BatchNorm2d): the 8 convs in
      forward order;
    - MobileNetV2 (model/mobilenetv2.py): gate_pre (stem), one gate_residual per bottleneck
      (17, after the residual add), gate_conv1 (the last 1x1 conv): 19;
    - PreAct-ResNet-18 (model/preact_resnet.py): per block gate1 (on bn1, i.e. the block's
      input width: the stem for block 1, else the previous block's output) and gate2 (on bn2, the
      block's conv1 width), then gate_out (the last block's output): 17.
  That is our width-list order for vgg11, mobilenetv2 and preact_resnet18 (toolkit.device.models)
  column for column, so the mapping is the identity; the converter checks it against the full
  widths it reads from the public model files and against iteration 0's records.
* Each descent iteration i is fitted on its own records (fit_params.py, least squares of
  ln width on ln tau, tau = utils.compute_params of the record); ratio_swipe.py (the paper's
  training runs, --descent_idx 14) and plot_ratio.py ("NeuralScale (Iteration=15)") use the fit
  of the last iteration, 14. We refit every iteration with our fit code (fit_power_law: tau is
  our exact parameter count) and take iteration 14's as the final fit: the "refit".
* The public fit itself (prune_record/<name>.pk, param[14]: alpha and beta as numpy arrays) is
  kept beside it as "public": its tau is the public count, which differs from ours for
  MobileNetV2 and the ResNets (alpha up to 1.8 % apart), and the architectures the public
  solver (public_solver.py, each model file's prepare_filters) gives at RATIOS, which are 1-3
  channels narrower than our solver's for those models. A spec chooses (`published = "public"`,
  the default, or "refit"); for VGG-11 both give the same widths.

ResNet-50 and VGG-16 are not in the public code, and it has no MobileNetV2 CIFAR-10 search
(`unavailable` says so). Everything here is stdlib + numpy; reading the repository needs git.
"""

import ast
import csv
import importlib
import io
import json
import os
import pickle
import re
import subprocess
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence

from toolkit.errors import UserError

from .. import models
from . import neuralscale as ns
from . import public_solver

REPOSITORY = "eugenelet/NeuralScale"
COMMIT = "67ddedc19880d8e2e93304b07305e6ede8d76212"
PUBLISHED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "published")
CONVERTED_BY = "toolkit/device/scaling/published.py"
ITERATIONS = 15  # architecture_descent.py: total_iter = 15
FINAL_ITERATION = 14  # ratio_swipe.py --descent_idx default; plot_ratio.py "Iteration=15"
RATIOS = (0.25, 0.5, 0.75, 1.0)

# The public search protocol (architecture_descent.py, prune.py, utils.adjust_learning_rate), in
# search_config's keys. search_width_bump: the +10 for solved widths below 10 is in the MobileNetV2
# and ResNet prepare_filters only; VGG's has none.
_PROTOCOL = {
    "iterations": ITERATIONS, "base_ratio": 1.0, "epochs": 300, "batch": 256, "lr": 0.1,
    "momentum": 0.5, "weight_decay": 5e-4, "warmup_epochs": 10, "warmup_end_lr": 0.01,
    "lr_decay": 1.5, "lr_decay_every": 10, "window": 50, "first_window_extra": 1,
    "prune_per_step": 10, "prune_ties": "threshold", "max_prune_fraction": 0.95,
    "min_records": 6, "augment": True,
}

# One record set per (model, dataset): the one behind the paper's figures (see "selection").
RECORD_SETS = [
    {"model": "vgg11", "dataset": "cifar10", "classes": 10, "record_set": "vgg_10_eff_c10",
     "model_file": "model/VGG.py",
     "selection": "plot_ratio.py (VGG, CIFAR10) computes the NeuralScale curves from "
                  "prune_fname vgg_10_eff_c10 and reads their accuracies from "
                  "saved_plots/vgg/vgg_10_eff_c10_{early,late}_*; images/"
                  "architecture_vgg_CIFAR10.png (README) is drawn from its fits; '10' is the "
                  "warm-up epochs (runplots.sh --pretrain 10, the default)"},
    {"model": "vgg11", "dataset": "cifar100", "classes": 100, "record_set": "vgg2_10_eff_c100",
     "model_file": "model/VGG.py",
     "selection": "plot_ratio.py (VGG, CIFAR100) computes the NeuralScale parameter counts "
                  "from prune_fname vgg2_10_eff_c100 (vgg_eff_c100 commented out) and "
                  "images/architecture_vgg_CIFAR100.png (README) is drawn from its fits; note "
                  "that the accuracies it plots are read from "
                  "saved_plots/vgg/vgg_10_eff_c100_{early,late}_*, named like the other record "
                  "set vgg_10_eff_c100"},
    {"model": "mobilenetv2", "dataset": "cifar100", "classes": 100,
     "record_set": "mobilenetv2_10_eff_c100", "model_file": "model/mobilenetv2.py",
     "selection": "plot_ratio.py (MobileNetV2, CIFAR100) computes the NeuralScale curves from "
                  "prune_fname mobilenetv2_10_eff_c100 and reads "
                  "saved_plots/mobilenetv2/mobilenetv2_10_eff_c100_{early,late}_*; "
                  "images/architecture_mobilenetv2_CIFAR100.png is drawn from its fits"},
    {"model": "preact_resnet18", "dataset": "cifar100", "classes": 100,
     "record_set": "resnet18_10_eff_c100", "model_file": "model/preact_resnet.py",
     "selection": "plot_ratio.py (ResNet18, CIFAR100) computes the NeuralScale curves from "
                  "prune_fname resnet18_10_eff_c100 and reads "
                  "saved_plots/resnet18/resnet18_10_eff_c100_{early,late}_*; "
                  "images/architecture_resnet18_CIFAR100.png is drawn from its fits"},
    {"model": "preact_resnet18", "dataset": "cifar10", "classes": 10,
     "record_set": "resnet18_eff_c10", "model_file": "model/preact_resnet.py",
     "selection": "the only ResNet-18 CIFAR-10 record set in prune_record; no figure or "
                  "saved_plots result of the paper uses it (the README shows ResNet18 on "
                  "CIFAR100 and TinyImageNet only), and its .pk fits are those of a parameter "
                  "count without the Linear bias, i.e. of an earlier utils.compute_params"},
]

# Why a model / class count has no published search: the message of a cell that asks for one.
_NOT_IN_PUBLIC_CODE = {
    "resnet50": "ResNet-50 is not in the public NeuralScale code (eugenelet/NeuralScale has "
                "VGG-11, MobileNetV2 and PreAct-ResNet-18 only), so it has to be searched: "
                "method neuralscale with a search profile, e.g. neuralscale = "
                "{ profile = \"paper\" }",
    "vgg16": "VGG-16 is not in the public NeuralScale code (eugenelet/NeuralScale model/VGG.py "
             "has VGG-11 only), so it has to be searched: method neuralscale with a search "
             "profile, e.g. neuralscale = { profile = \"paper\" }",
}


def unavailable(model: str, classes: int) -> Optional[str]:
    """Why there is no published search of `model` with `classes` classes, or None if shipped."""
    if model in _NOT_IN_PUBLIC_CODE:
        return _NOT_IN_PUBLIC_CODE[model]
    if any(e["model"] == model and e["classes"] == int(classes) for e in RECORD_SETS):
        return None
    held = sorted(e["dataset"] for e in RECORD_SETS if e["model"] == model)
    return ("eugenelet/NeuralScale has no {} search with {} classes (its searches of {}: {}), so "
            "it has to be searched: method neuralscale with a search profile, e.g. neuralscale "
            "= {{ profile = \"paper\" }}".format(model, classes, model,
                                                  ", ".join(held) or "none"))


def artifact_name(model: str, dataset: str) -> str:
    """File name of a shipped artifact: <model>-<dataset>.json."""
    return "{}-{}.json".format(model, dataset)


# ----------------------------------------------------------------------------- the repository


def repository_reader(source: str, commit: str = COMMIT) -> Callable[[str], bytes]:
    """A function path -> bytes reading `commit` of the public repository at `source`: a bare git
    repository (e.g. a mirror's repo/.git) or a checkout whose .git holds the commit."""
    source = os.path.abspath(os.path.expanduser(source))
    if os.path.exists(os.path.join(source, ".git")):  # a checkout (.git a directory or a file)
        command = ["git", "-C", source]
    elif os.path.isfile(os.path.join(source, "HEAD")) and \
            os.path.isdir(os.path.join(source, "objects")):  # a bare repository
        command = ["git", "--git-dir", source]
    else:
        raise UserError("{} is not a git repository (a bare clone or a checkout of {})".format(
            source, REPOSITORY))

    def git(*args: str) -> bytes:
        try:
            done = subprocess.run(command + list(args),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            raise UserError("cannot run git to read {}: {}".format(source, exc)) from None
        if done.returncode != 0:
            raise UserError("git {} in {}: {}".format(" ".join(args), source,
                                                      done.stderr.decode().strip()))
        return done.stdout

    git("cat-file", "-e", "{}^{{commit}}".format(commit))

    def read(path: str) -> bytes:
        return git("show", "{}:{}".format(commit, path))

    return read


def read_records(data: bytes, model: str, path: str) -> List[List[int]]:
    """The width records of one CSV (rows of positive ints, one per gate, CRLF or LF)."""
    n = len(models.full_widths(model))
    rows = []
    for row in csv.reader(io.StringIO(data.decode("ascii"))):
        if not row:
            continue
        try:
            widths = [int(v) for v in row]
        except ValueError:
            raise UserError("{}: not a width record: {}".format(path, row)) from None
        if len(widths) != n or min(widths) < 1:
            raise UserError("{}: a {} record has {} positive widths, got {}".format(
                path, model, n, widths))
        rows.append(widths)
    if not rows:
        raise UserError("{}: no width records".format(path))
    return rows


# The only globals a public .pk may name: numpy's array reconstruction (numpy 1.x wrote it as
# numpy.core.multiarray or numpy.core._multiarray_umath; numpy 2 keeps it in numpy._core).
# Anything else is refused, not imported.
_PICKLE_GLOBALS = {("numpy", "ndarray"), ("numpy", "dtype")} | {
    (package + module, "_reconstruct") for package in ("numpy.core.", "numpy._core.")
    for module in ("multiarray", "_multiarray_umath")}


class _ArraysOnly(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only (the public fits are nothing else)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError("{}.{} is not a numpy array part".format(module, name))
        if name == "_reconstruct":
            for where in ("numpy._core.multiarray", "numpy.core.multiarray"):
                try:
                    return getattr(importlib.import_module(where), name)
                except ImportError:
                    continue
        return getattr(importlib.import_module(module), name)


def read_public_fits(data: bytes, model: str, path: str) -> List[Dict[str, Any]]:
    """The per-iteration fits of a public .pk (fit_params.py: {"param": [[alpha, beta], ...]}),
    each {"alpha", "beta"} as float lists of one value per width of `model`."""
    try:
        loaded = _ArraysOnly(io.BytesIO(data)).load()
        pairs = loaded["param"]
        fits = [{"alpha": [float(a) for a in alpha], "beta": [float(b) for b in beta]}
                for alpha, beta in pairs]
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as exc:
        raise UserError("{}: not a public fit file ({})".format(path, exc)) from None
    n = len(models.full_widths(model))
    for fit in fits:
        if len(fit["alpha"]) != n or len(fit["beta"]) != n:
            raise UserError("{}: a {} fit has {} alphas and {} betas, expected {}".format(
                path, model, len(fit["alpha"]), len(fit["beta"]), n))
    return fits


def public_section(model: str, classes: int, fit: Dict[str, Any], source: str,
                   model_file: str) -> Dict[str, Any]:
    """The public fit and the architectures the public solver gives at RATIOS in both target
    modes (neuralscale.load_artifact re-solves and compares them)."""
    public_fit = {"kind": "power_law", "alpha": fit["alpha"], "beta": fit["beta"],
                  "source": source, "iteration": FINAL_ITERATION, "fallback": None}
    architectures = []
    for mode in ns.TARGET_MODES:
        for r in RATIOS:
            solved = public_solver.widths_for_ratio(model, public_fit, r, classes, mode)
            architectures.append({key: solved[key] for key in (
                "ratio", "mode", "widths", "params", "target", "tau", "public_target",
                "public_params")})
    return {"fit": public_fit, "solver": "{} prepare_filters (ratio_swipe.py, descent_idx "
            "{})".format(model_file, FINAL_ITERATION), "architectures": architectures}


def public_full_widths(source_text: str, model: str) -> List[int]:
    """The full-size channel config a public model file defines, flattened in gate order:
    VGG.py's cfg['A'] without the 'M' pools, the nested `filters = [[...]]` default of
    mobilenetv2.py and preact_resnet.py."""
    if model == "vgg11":
        match = re.search(r"'A'\s*:\s*(\[[^\]]*\])", source_text)
    else:
        match = re.search(r"filters\s*=\s*(\[\[.*?\]\])", source_text)
    if match is None:
        raise UserError("no full-size config of {} in the public model file".format(model))
    config = ast.literal_eval(match.group(1))
    flat = []  # type: List[Any]
    for entry in config:
        flat.extend(entry if isinstance(entry, list) else [entry])
    return [int(w) for w in flat if w != "M"]


# ------------------------------------------------------------------------------- conversion


def _protocol(model: str) -> Dict[str, Any]:
    cfg = dict(_PROTOCOL)
    cfg["search_width_bump"] = 0 if model.startswith("vgg") else 10
    return cfg


def convert_record_set(read: Callable[[str], bytes], entry: Dict[str, Any]) -> Dict[str, Any]:
    """The artifact of one record set: every iteration's records, their parameter counts (ours)
    and our fit of them; the final fit is iteration FINAL_ITERATION's; provenance names the
    repository, commit and files. Raises UserError where the public data do not fit our model
    (full widths, record length, column order)."""
    model, classes, name = entry["model"], int(entry["classes"]), entry["record_set"]
    full = models.full_widths(model)
    public_full = public_full_widths(read(entry["model_file"]).decode("utf-8"), model)
    if public_full != full:
        raise UserError("{}: full widths of {} are {}, ours are {}".format(
            REPOSITORY, entry["model_file"], public_full, full))
    paths = []  # type: List[str]
    texts = []  # type: List[bytes]
    iterations = []  # type: List[Dict[str, Any]]
    for index in range(ITERATIONS):
        path = "prune_record/{}_{}.csv".format(name, index)
        data = read(path)
        records = read_records(data, model, path)
        fit = ns.fit_power_law(model, records, classes)
        if fit["kind"] != "power_law":
            raise UserError("{}: our fit fell back to {}".format(path, fit["fallback"]))
        iterations.append({
            "index": index,
            "source": path,
            # iteration 0 prunes the full network (architecture_descent.py: ratio=1); later
            # ones start from the previous fit solved by the public solver (not recorded).
            "start_widths": full if index == 0 else None,
            "records": records,
            "record_params": [models.count_params(model, r, classes) for r in records],
            "fit": fit,
        })
        paths.append(path)
        texts.append(data)
    for index, data in enumerate(texts):  # a file copied over an earlier one: the last is kept
        last = max(i for i, other in enumerate(texts) if other == data)
        if last != index:
            iterations[index]["duplicate_of"] = last
            iterations[index]["note"] = "byte-identical to {} in the public repository".format(
                paths[last])
    first = iterations[0]
    grown = [r for r in first["records"]
             if any(w >= f for w, f in zip(r, full))]  # noqa: B905 (Python 3.6)
    if grown and "duplicate_of" in first:
        first["note"] += ("; its records are not below the full widths that iteration 0 "
                          "prunes from, so they are not iteration 0's")
    elif grown:  # pruned from the full network, every gate has lost a channel
        raise UserError("{}: record {} is not below the full widths {}: the column order is "
                        "not ours".format(first["source"], grown[0], full))
    dataset = {"name": entry["dataset"], "classes": classes}
    artifact = ns.build_artifact(model, classes, dataset, 0, "published", _protocol(model),
                                 iterations, iterations[FINAL_ITERATION]["fit"], RATIOS)
    artifact["seed"] = None  # the public searches set no seed
    fits_path = "prune_record/{}.pk".format(name)
    fits = read_public_fits(read(fits_path), model, fits_path)
    if len(fits) != ITERATIONS:
        raise UserError("{}: {} fits, expected one per iteration ({})".format(
            fits_path, len(fits), ITERATIONS))
    artifact["public"] = public_section(model, classes, fits[FINAL_ITERATION],
                                        "{} param[{}]".format(fits_path, FINAL_ITERATION),
                                        entry["model_file"])
    artifact["provenance"] = {
        "source": "published",
        "repository": REPOSITORY,
        "commit": COMMIT,
        "paths": paths + [fits_path, entry["model_file"]],
        "record_set": name,
        "final_iteration": FINAL_ITERATION,
        "selection": entry["selection"],
        "converted_by": CONVERTED_BY,
    }
    return artifact


def dumps(artifact: Dict[str, Any]) -> str:
    """Deterministic JSON text: sorted keys, one key or list item a line, except that a list of
    scalars (a width record, a fit's alphas) is one line without spaces (the records are most of
    the file)."""
    return _dump(artifact, 0) + "\n"


def _dump(value: Any, depth: int) -> str:
    pad, inner = " " * depth, " " * (depth + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = ["{}{}: {}".format(inner, json.dumps(str(k)), _dump(value[k], depth + 1))
                 for k in sorted(value)]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, (list, tuple)):
        if all(not isinstance(v, (dict, list, tuple)) for v in value):
            return "[" + ",".join(json.dumps(v) for v in value) + "]"
        return "[\n" + ",\n".join(inner + _dump(v, depth + 1) for v in value) + "\n" + pad + "]"
    return json.dumps(value)


def convert(source: str, out_dir: str = PUBLISHED_DIR,
            record_sets: Optional[Sequence[Dict[str, Any]]] = None) -> List[str]:
    """Write one artifact per record set (default RECORD_SETS) as <out_dir>/<model>-<dataset>.json
    from the public repository at `source`; each must pass load_artifact. Returns the paths."""
    read = repository_reader(source)
    if not os.path.isdir(out_dir):
        os.makedirs(out_dir)
    written = []
    for entry in record_sets or RECORD_SETS:
        artifact = convert_record_set(read, entry)
        path = os.path.join(out_dir, artifact_name(entry["model"], entry["dataset"]))
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(dumps(artifact))
        os.replace(tmp, path)
        ns.load_artifact(path)
        written.append(path)
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    """python -m toolkit.device.scaling.published SOURCE [OUT_DIR]: convert the public searches."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not 1 <= len(args) <= 2:
        sys.stderr.write("usage: python -m toolkit.device.scaling.published "
                         "<eugenelet/NeuralScale git repository> [out dir]\n")
        return 2
    try:
        for path in convert(*args):
            sys.stdout.write("{} ({} bytes)\n".format(path, os.path.getsize(path)))
    except UserError as exc:
        sys.stderr.write("error: {}\n".format(exc))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
