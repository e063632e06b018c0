"""What an experiment kind declares, and the field types its grid and settings share.

A kind is a package in toolkit/experiments/kinds/ whose `__init__.py` defines `KIND`, an
`ExperimentKind`: the grid (the axes of its cells) and settings (the fixed parameters) a spec of
this kind is validated against, the settings each cell runs with, any auxiliary cells it needs,
the preparation of what its cells consume, and the data set a cell reads. Its `prepare.py` holds
the preparation, its `report.py` the report plugin (toolkit/report/kinds/base.py). Kind packages
import this module, toolkit/experiments/cells.py and toolkit/artifacts.py, never the registry
beside them, so a kind cannot tangle the imports of another.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from toolkit import frameworks
from toolkit.artifacts import JobRunner, Record
from toolkit.device.models import MODEL_NAMES
from toolkit.experiments.cells import Cell

Framework = Literal[frameworks.NAMES]  # type: ignore[valid-type]  # toolkit/frameworks.py
Precision = Literal["fp32", "fp16", "bf16"]
Device = Literal["cpu", "cuda"]
Dataset = Literal["synthetic", "digits", "cifar10", "cifar100"]
PositiveInts = list[Annotated[int, Field(ge=1)]]


class Strict(BaseModel):
    """A spec part: an unknown key or a value of the wrong type (an infinite or NaN number
    included) is an error naming it."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Grid(Strict):
    """The axes a cell is a point of; every combination becomes one cell, in field order. Each
    axis must be a coordinate of toolkit/experiments/cells.py (COORDINATES)."""

    @field_validator("model", check_fields=False)
    @classmethod
    def _known_models(cls, models: list[str]) -> list[str]:
        for name in models:
            if name not in MODEL_NAMES:
                raise ValueError(f"unknown model '{name}'; valid: {', '.join(MODEL_NAMES)}")
        return models


class Settings(Strict):
    """The settings every kind has, recorded with every cell."""

    classes: Literal[10, 100] = 10
    threads: int = Field(0, ge=0, description="intra-op threads; 0 = every core of the machine")
    seed: int = 0
    timeout_seconds: float = Field(600.0, gt=0, description="per measured cell")
    prepare_timeout_seconds: float = Field(
        86400.0, gt=0, description="per preparation job (search, accuracy training, export)")


# (kind, coords, settings) of a cell an experiment needs beside its grid's, e.g. the matmul
# peak its training cells' utilisation is measured against; it shares the experiment's
# protocol and rounds.
AuxiliaryCell = tuple[str, dict[str, Any], dict[str, Any]]
# What preparation gives a cell's job: its settings (widths resolved), artifact paths, and
# records made on the host (e.g. the accuracy of its trained architecture).
Prepared = tuple[dict[str, Any], dict[str, str], list[Record]]


def _no_auxiliary_cells(grid: dict[str, list], base: dict[str, Any]) -> list[AuxiliaryCell]:
    return []


@dataclass(frozen=True)
class ExperimentKind:
    """One experiment kind, as the spec's `kind` names it (see the module docstring).

    cell_settings(base, coords): the settings one cell runs with (base: the experiment's
    settings as JSON, threads resolved), including `model` and its `widths` (None where
    preparation decides them). prepare(cell, cache_root, run): the cached preparation jobs
    (toolkit/artifacts.py) run through `run`. needs_dataset(cell): the data set a cell reads,
    or None.
    """

    name: str
    grid: type[Grid]
    settings: type[Settings]
    cell_settings: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
    prepare: Callable[[Cell, Path, JobRunner], Prepared]
    needs_dataset: Callable[[Cell], str | None]
    auxiliary_cells: Callable[[dict[str, list], dict[str, Any]],
                              list[AuxiliaryCell]] = _no_auxiliary_cells
