"""The experiment kinds, one package each: `kinds/<kind>/` (toolkit/experiments/kinds/base.py
says what a package declares). The spec's `kind` names one; cells of a kind no package declares
(a training experiment's matmul peak) are auxiliary: nothing to prepare, no data set.
docs/adding-an-experiment.md says how to add a kind.
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
from pathlib import Path

from toolkit.artifacts import JobRunner
from toolkit.errors import UserError
from toolkit.experiments.cells import Cell
from toolkit.experiments.kinds.base import ExperimentKind, Prepared


@functools.cache
def registered() -> dict[str, ExperimentKind]:
    """Every kind in this folder, by name, in folder order (imported on first use, not when
    this module is)."""
    found: dict[str, ExperimentKind] = {}
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not module.ispkg:
            continue
        kind = importlib.import_module(f"{__name__}.{module.name}").KIND
        if kind.name != module.name:
            raise TypeError(f"{__name__}.{module.name} declares kind '{kind.name}'; a kind's "
                            "package is named after it")
        found[kind.name] = kind
    return found


def names() -> tuple[str, ...]:
    return tuple(registered())


def get(name: str) -> ExperimentKind:
    """The kind a spec names, or a UserError listing the valid ones."""
    kind = registered().get(name)
    if kind is None:
        raise UserError(f"unknown experiment kind '{name}'; valid: {', '.join(registered())}")
    return kind


def is_experiment_cell(cell: Cell) -> bool:
    """Whether the cell is one of an experiment's own (not an auxiliary one such as the peak)."""
    return cell.kind in registered()


def prepare(cell: Cell, cache_root: Path, run: JobRunner) -> Prepared:
    """(the cell's settings with its widths, artifact paths for its job, records made here):
    the cell's kind's preparation; an auxiliary cell's settings as they are."""
    kind = registered().get(cell.kind)
    if kind is None:
        return dict(cell.settings), {}, []
    return kind.prepare(cell, cache_root, run)


def needs_dataset(cell: Cell) -> str | None:
    """The data set a cell reads, or None."""
    kind = registered().get(cell.kind)
    return None if kind is None else kind.needs_dataset(cell)
