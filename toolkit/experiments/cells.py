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

# The coordinates of a cell, in display order: one place for this list.
COORDINATES = ("model", "method", "scale", "framework", "device", "precision", "batch")


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
    id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", stable_hash(self.definition()))

    def definition(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "kind": self.kind, "coords": self.coords,
                "settings": self.settings, "protocol": self.protocol}

    def label(self) -> str:
        c = self.coords
        return (f"{c['model']} {c['method']} {c['scale']:g} {c['framework']} {c['device']} "
                f"{c['precision']} b{c['batch']}")


def resolve_widths(model: str, method: str, scale: float, mode: str, classes: int) -> list[int]:
    """The per-layer widths a cell's model is built with."""
    if method != "uniform":
        raise ValueError(f"no width rule for method '{method}'")
    if mode == "params":
        return models.scale_widths(model, models.params_ratio_multiplier(model, scale, classes))
    return models.scale_widths(model, scale)


def expand(experiment: ResolvedExperiment) -> list[Cell]:
    """Every grid combination as a cell, settings resolved for this machine."""
    grid = experiment.grid.model_dump()
    base = experiment.settings.model_dump()
    base["threads"] = base["threads"] or os.cpu_count() or 1
    base["input_shape"] = list(base["input_shape"])
    cells = []
    for values in itertools.product(*(grid[name] for name in COORDINATES)):
        coords = dict(zip(COORDINATES, values, strict=True))
        settings = dict(base, model=coords["model"], widths=resolve_widths(
            coords["model"], coords["method"], coords["scale"], base["scaling_mode"],
            base["classes"]))
        cells.append(Cell(experiment.name, experiment.kind, coords, settings,
                          experiment.measure.model_dump()))
    return cells
