"""The architectures a scaling run measured: each model's layer widths per method and scale, and
the NeuralScale fit behind them (per layer alpha, beta and R² of w = alpha * tau^beta) from the
search artifacts the run keeps in results/<run>/neuralscale/. A published search is solved with
the public code's fit or with our refit of its records (settings `published`): a refit says so,
in the method column and in its fit's caption."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from toolkit import units
from toolkit.device import models
from toolkit.device.scaling.neuralscale import PUBLISHED_FITS
from toolkit.report.summary import plural
from toolkit.results import RunStore


def architectures(run_dir: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model with scaled cells: a widths table (method, scale, parameters, widths) and the
    fits of the NeuralScale searches of that model."""
    by_model: dict[str, dict[tuple[str, float], list[int]]] = {}
    classes: dict[str, int] = {}  # per model: the class count its cells were built with
    fits_used: dict[str, set[str]] = {}  # per model: which fits of a published search solved it
    ran_with = {cell_id: payload.get("settings") or {}
                for cell_id, payload in RunStore(run_dir).cell_results().items()}
    for row in rows:
        widths = json.loads(row.get("widths") or "[]")
        if row.get("method") and row.get("scale") is not None and widths:
            settings = ran_with.get(row.get("cell_id"), {})
            solution = settings.get("neuralscale_solution") or {}
            # a published search solved before the choice existed was solved with the refit
            fit_source = solution.get("fit_source") or (
                "refit" if solution.get("source") == "published" else None)
            method = f"{row['method']} (refit)" if fit_source == "refit" else row["method"]
            by_model.setdefault(row["model"], {})[(method, row["scale"])] = widths
            classes[row["model"]] = int(settings.get("classes", 10))
            if fit_source in PUBLISHED_FITS:
                fits_used.setdefault(row["model"], set()).add(fit_source)
    searches = _searches(run_dir)
    out = []
    for model, resolved in sorted(by_model.items()):
        out.append({
            "model": model,
            "layers": len(models.full_widths(model)),
            "widths": [[method, f"{scale:g}",
                        f"{models.count_params(model, widths, classes[model]):,}",
                        " ".join(map(str, widths))]
                       for (method, scale), widths in sorted(resolved.items())],
            "fits": [_fit(artifact, fit_source) for artifact in searches
                     if artifact["model"] == model
                     for fit_source in _fits_shown(artifact, fits_used.get(model, set()))],
        })
    return out


def _fits_shown(artifact: dict[str, Any], used: set[str]) -> list[str | None]:
    """A published search: the fits its cells were solved with (runs made before the choice
    existed used the refit); any other search: its own fit."""
    if (artifact.get("provenance") or {}).get("source") != "published":
        return [None]
    return sorted(used & set(PUBLISHED_FITS) if artifact.get("public") else {"refit"}) or \
        ["refit"]


def _searches(run_dir: Path) -> list[dict[str, Any]]:
    artifacts = []
    for path in sorted((run_dir / "neuralscale").glob("*.json")):
        artifact = json.loads(path.read_text(encoding="utf-8"))
        artifacts.append(artifact | {"file": f"neuralscale/{path.name}"})
    return artifacts


def _fit(artifact: dict[str, Any], fit_source: str | None = None) -> dict[str, Any]:
    """One search: where it came from and its final fit (of a published search: the public fit
    or our refit, as `fit_source` says), a row per layer."""
    fit = artifact["public"]["fit"] if fit_source == "public" else artifact["final_fit"]
    r2 = fit.get("r2") or [None] * len(fit["alpha"])
    seconds = artifact.get("provenance", {}).get("seconds")  # a search's own duration
    dataset = artifact.get("dataset") or {}
    iterations = artifact.get("iterations", [])
    provenance = artifact.get("provenance", {})
    source = (f"published: {provenance.get('repository')}@{str(provenance.get('commit'))[:7]} "
              f"{provenance.get('record_set', '')}".rstrip()
              if provenance.get("source") == "published" else "searched by this toolkit")
    if fit_source == "public":
        source += f", the public fit ({fit.get('source')}, τ its own count) and solver"
    elif fit_source == "refit":
        source += ", refit: our least squares of its last iteration's records, our solver"
    about = [source, f"data {dataset.get('name', '?')}", f"profile {artifact.get('profile', '?')}",
             plural(len(iterations), "descent iteration"),
             plural(sum(len(it.get("records", [])) for it in iterations), "width record")]
    if seconds is not None:
        about.append(f"search {seconds / 60:.1f} min")
    return {
        "file": artifact["file"],
        "about": ", ".join(about),
        "fallback": fit.get("fallback") or "",
        "rows": [[str(i), str(full), f"{alpha:.4g}", f"{beta:.4f}",
                  units.MISSING if r is None else f"{r:.3f}"]
                 for i, (full, alpha, beta, r) in enumerate(zip(
                     artifact["full_widths"], fit["alpha"], fit["beta"], r2, strict=True))],
    }
