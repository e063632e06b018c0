"""Expansion of a resolved experiment into cells: every grid combination not excluded, with
the settings its kind gives it, after the auxiliary cells the kind needs."""
from __future__ import annotations

import itertools
import os

from toolkit.experiments import kinds
from toolkit.experiments.cells import COORDINATES, Cell
from toolkit.experiments.spec import ResolvedExperiment


def expand(experiment: ResolvedExperiment) -> list[Cell]:
    """Every grid combination as a cell, settings resolved for this machine."""
    kind = kinds.get(experiment.kind)
    grid = {axis: values for axis, values in experiment.grid.model_dump().items()
            if values is not None}  # an optional axis left out is no axis
    base = experiment.settings.model_dump(mode="json")
    base["threads"] = base["threads"] or os.cpu_count() or 1
    axes = list(grid)
    unknown = [axis for axis in axes if axis not in COORDINATES]
    if unknown:
        raise ValueError(f"grid axes without a declared coordinate type: {unknown}")
    protocol = experiment.measure.model_dump()
    cells = [Cell(experiment.name, cell_kind, coords, settings, dict(protocol),
                  experiment.rounds)
             for cell_kind, coords, settings in kind.auxiliary_cells(grid, base)]
    for values in itertools.product(*(grid[name] for name in axes)):
        coords = dict(zip(axes, values, strict=True))
        if any(all(coords[k] == v for k, v in rule.items()) for rule in experiment.exclude):
            continue
        cells.append(Cell(experiment.name, experiment.kind, coords,
                          kind.cell_settings(base, coords), dict(protocol), experiment.rounds))
    return cells
