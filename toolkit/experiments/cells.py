"""Expansion of a resolved experiment into cells with stable ids."""
from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from typing import Any

from toolkit.device import models
from toolkit.experiments.spec import ResolvedExperiment

# Every coordinate any experiment kind has, with its type, in display order: one place for these.
COORDINATES: dict[str, type] = {"model": str, "method": str, "scale": float, "scaling_mode": str,
                                "framework": str, "device": str, "precision": str, "freeze": int,
                                "batch": int}


def stable_hash(payload: Any, length: int = 16) -> str:
    """Hash of a JSON-able value, independent of key order."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class Cell:
    """One measured combination; `id` is the hash of everything that defines the measurement."""

    experiment: str
    kind: str
    coords: dict[str, Any]
    settings: dict[str, Any]
    protocol: dict[str, Any]
    # Times the cell is measured, each in a fresh process (toolkit/rounds.py): how often, not
    # what, so it is not part of the id.
    rounds: int = 1
    id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", stable_hash(self.definition()))

    def definition(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "kind": self.kind, "coords": self.coords,
                "settings": self.settings, "protocol": self.protocol}

    def label(self) -> str:
        parts = []
        for name, value in self.coords.items():
            if name == "batch":
                parts.append(f"b{value}")
            elif name == "freeze":
                parts.append(f"freeze{value}")
            else:
                parts.append(f"{value:g}" if isinstance(value, float) else str(value))
        return " ".join(parts)


def resolve_widths(model: str, method: str, scale: float, mode: str, classes: int,
                   ) -> list[int] | None:
    """The per-layer widths a cell's model is built with; None where a NeuralScale search must
    run first (the widths then come from its artifact, see toolkit/artifacts.py)."""
    if method == "neuralscale":
        return None
    if mode == "params":
        return models.scale_widths(model, models.params_ratio_multiplier(model, scale, classes))
    return models.scale_widths(model, scale)


def _cell_settings(kind: str, base: dict[str, Any], coords: dict[str, Any]) -> dict[str, Any]:
    """The settings one cell runs with, including the width list of its model."""
    if kind == "inference":
        if "scaling_mode" in coords:  # the grid axis overrides the setting
            base = base | {"scaling_mode": coords["scaling_mode"]}
        widths = resolve_widths(coords["model"], coords["method"], coords["scale"],
                                base["scaling_mode"], base["classes"])
    else:  # training retrains the full-width model on the experiment's data set
        widths = models.full_widths(coords["model"])
        base = base | {"data": {"name": base["dataset"]}}
    return dict(base, model=coords["model"], widths=widths)


def expand(experiment: ResolvedExperiment) -> list[Cell]:
    """Every grid combination as a cell, settings resolved for this machine."""
    grid = {axis: values for axis, values in experiment.grid.model_dump().items()
            if values is not None}  # an optional axis left out is no axis
    base = experiment.settings.model_dump(mode="json")
    base["threads"] = base["threads"] or os.cpu_count() or 1
    axes = list(grid)
    unknown = [axis for axis in axes if axis not in COORDINATES]
    if unknown:
        raise ValueError(f"grid axes without a declared coordinate type: {unknown}")
    cells = []
    if experiment.kind == "training":  # the machine's own matmul peak, for utilisation
        cells += [Cell(experiment.name, "peak", {"model": "matmul", "framework": "pytorch",
                                                 "device": device, "precision": "fp32",
                                                 "freeze": 0, "batch": 0},
                       {"threads": base["threads"], "seed": base["seed"],
                        "sizes": base["peak_sizes"], "timeout_seconds": base["timeout_seconds"],
                        # the training cells' own convolutions: the library path they take
                        "conv_models": list(grid["model"]), "conv_batches": list(grid["batch"]),
                        "prepare_timeout_seconds": base["prepare_timeout_seconds"]},
                       experiment.measure.model_dump(), experiment.rounds)
                  for device in grid["device"]]
    for values in itertools.product(*(grid[name] for name in axes)):
        coords = dict(zip(axes, values, strict=True))
        if any(all(coords[k] == v for k, v in rule.items()) for rule in experiment.exclude):
            continue
        cells.append(Cell(experiment.name, experiment.kind, coords,
                          _cell_settings(experiment.kind, base, coords),
                          experiment.measure.model_dump(), experiment.rounds))
    return cells
