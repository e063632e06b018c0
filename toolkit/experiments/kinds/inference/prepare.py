"""What an inference cell consumes, in order: the NeuralScale search (method neuralscale: its
JSON artifact gives the widths; or a kept one), the accuracy training of the cell's
architecture (when the experiment asks for accuracy) and the ONNX export (frameworks that read
ONNX). Each is a cached preparation job (toolkit/artifacts.py)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from toolkit import frameworks
from toolkit.artifacts import JobRunner, PreparationFailed, cached_job, ensure
from toolkit.experiments.cells import Cell
from toolkit.experiments.kinds.base import Prepared


def search_job(cell: Cell, cache_root: Path) -> dict[str, Any]:
    settings = {name: cell.settings[name] for name in ("model", "classes", "dataset", "seed",
                                                       "neuralscale")}
    # "published" plus search options: the options are the search (published_or_search)
    settings["neuralscale"] = {k: v for k, v in settings["neuralscale"].items()
                               if k not in ("artifact", "published")}
    return cached_job("neuralscale_search", settings, {"framework": "pytorch"}, "neuralscale",
                      cache_root, ".json")


def accuracy_job(cell: Cell, widths: list[int], cache_root: Path) -> dict[str, Any]:
    settings = {name: cell.settings[name] for name in ("model", "classes", "dataset", "seed",
                                                       "accuracy_training")}
    return cached_job("train_accuracy", settings | {"widths": widths}, {"framework": "pytorch"},
                      "accuracy", cache_root, ".json")


def onnx_export_job(cell: Cell, widths: list[int], cache_root: Path) -> dict[str, Any]:
    settings = {name: cell.settings[name] for name in ("model", "classes", "seed", "opset")}
    return cached_job("export_onnx", settings | {"widths": widths},
                      {"framework": "pytorch", "batch": cell.coords["batch"]}, "onnx",
                      cache_root, ".onnx")


def kept_search(path: Path, cell: Cell) -> Path:
    """The search artifact of the cell's model and class count: `path` itself, the one in the
    directory `path` (another run's results/<run>/neuralscale/), or with Path("published") the
    paper's searches shipped in toolkit/device/scaling/published/. Where several match, the one
    searched on the cell's data set (else the first by name)."""
    model, classes = cell.settings["model"], cell.settings["classes"]
    if path == Path("published"):  # the word the spec keeps (a real path is absolute there)
        from toolkit.device.scaling import published

        reason = published.unavailable(model, classes)
        if reason is not None:
            raise PreparationFailed(f"no published NeuralScale search of {model} ({classes} "
                                    f"classes): {reason}")
        path = Path(published.PUBLISHED_DIR)
    candidates = sorted(path.glob("*.json")) if path.is_dir() else [path]
    found, matches = [], []
    for candidate in candidates:
        try:
            artifact = json.loads(candidate.read_text())
        except (OSError, ValueError) as error:
            raise PreparationFailed(f"cannot read NeuralScale artifact {candidate}: "
                                    f"{error}") from None
        if (artifact.get("model"), artifact.get("classes")) == (model, classes):
            dataset = artifact.get("dataset")
            matches.append((candidate, dataset.get("name") if isinstance(dataset, dict)
                            else dataset))
        found.append(f"{artifact.get('model')} ({artifact.get('classes')} classes)")
    for candidate, dataset in matches:
        if dataset == cell.settings.get("dataset"):
            return candidate
    if matches:
        return matches[0][0]
    raise PreparationFailed(f"no NeuralScale search of {model} ({classes} classes) in {path}; "
                            f"it holds: {', '.join(found) or 'no .json file'}")


def uses_published(model: str, method: str, classes: int, options: dict[str, Any]) -> bool:
    """Whether a cell solves its widths from a shipped published search."""
    if method != "neuralscale" or options.get("artifact") != "published":
        return False
    from toolkit.device.scaling import published

    return published.unavailable(model, classes) is None


def _search_instead(cell: Cell) -> bool:
    """A "published" spec with search options, for a model the public code never searched."""
    options = cell.settings["neuralscale"]
    if options.get("artifact") != "published" or len(options) == 1:
        return False
    from toolkit.device.scaling import published

    return published.unavailable(cell.settings["model"], cell.settings["classes"]) is not None


def neuralscale_solution(artifact_path: Path, cell: Cell) -> dict[str, Any]:
    """The cell's NeuralScale architecture solved from the search artifact: its widths,
    parameter count, target, tau and the fit's kind (a power law, or a fallback: the public
    code's constant architecture or uniform scaling), where the search came from, and which
    fit solved it ("fit_source": "public", the public code's fit and solver, or "refit", ours
    of its records, for a published search; "search" for a search of this toolkit)."""
    from toolkit.device.scaling.neuralscale import load_artifact, widths_for_ratio

    artifact = load_artifact(str(artifact_path))
    source = (artifact.get("provenance") or {}).get("source") or "searched"
    # Only artifact = "published" chooses (a kept copy of a shipped file keeps its refit).
    fit_source = cell.settings["neuralscale"].get("published", "refit") \
        if source == "published" else "search"
    solved = widths_for_ratio(artifact, cell.coords["scale"], cell.settings["scaling_mode"],
                              published="public" if fit_source == "public" else "refit")
    return {"artifact": artifact_path.name, "widths": list(solved["widths"]),
            "params": int(solved["params"]), "target": int(solved["target"]),
            "error": float(solved["error"]), "tau": float(solved["tau"]),
            "fit": solved["kind"], "mode": solved["mode"], "source": source,
            "fit_source": fit_source,
            "searched_on": (artifact.get("dataset") or {}).get("name", "")}


def prepare(cell: Cell, cache_root: Path, run: JobRunner) -> Prepared:
    """(the cell's settings with its widths, artifact paths for the job, records made here)."""
    settings, paths, records = dict(cell.settings), {}, []
    timeout = cell.settings["prepare_timeout_seconds"]
    if settings.get("widths") is None:  # NeuralScale: the search decides the widths
        given = cell.settings["neuralscale"].get("artifact")
        artifact = (kept_search(Path(str(given)), cell) if given and not _search_instead(cell)
                    else ensure(search_job(cell, cache_root), run, timeout))
        solution = neuralscale_solution(artifact, cell)
        settings["widths"] = solution.pop("widths")
        settings["neuralscale_solution"] = solution
        paths["neuralscale"] = str(artifact)
    if settings.get("accuracy_training"):
        result_path = ensure(accuracy_job(cell, settings["widths"], cache_root), run, timeout)
        trained = json.loads(result_path.read_text())
        records.append(("accuracy", float(trained["max_test_acc"]), "ratio"))
        records.append(("accuracy_final", float(trained["final_test_acc"]), "ratio"))
    if frameworks.reads_onnx(cell.coords["framework"]):
        paths["onnx"] = str(ensure(onnx_export_job(cell, settings["widths"], cache_root), run,
                                   timeout))
    return settings, paths, records
