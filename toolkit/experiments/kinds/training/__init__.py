"""Kind "training": the timed training step (and optionally accuracy) of a full-width model per
framework, device, precision and frozen layers (the training study), with the machine's matmul
peak as an auxiliary cell for utilisation. Preparation in prepare.py, the report section in
report.py."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from toolkit.device import models
from toolkit.experiments.cells import Cell
from toolkit.experiments.kinds.base import (
    AuxiliaryCell,
    Dataset,
    Device,
    ExperimentKind,
    Framework,
    Grid,
    PositiveInts,
    Precision,
    Settings,
)
from toolkit.experiments.kinds.training import prepare


class TrainingGrid(Grid):
    model: list[str] = Field(min_length=1)
    framework: list[Framework] = Field(min_length=1)
    device: list[Device] = Field(min_length=1)
    precision: list[Precision] = Field(min_length=1)
    freeze: list[Annotated[int, Field(ge=0)]] = Field(min_length=1)
    batch: PositiveInts = Field(min_length=1)


class TrainingSettings(Settings):
    """Fixed parameters of a training experiment, recorded with every cell."""

    dataset: Dataset = "synthetic"
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    epochs: int = Field(0, ge=0, description="0: timing only, no accuracy")
    max_steps: int = Field(0, ge=0, description="cap on the steps of an epochs > 0 run; 0: none")
    train_size: int = Field(50000, ge=1, description="images per epoch, for the epoch estimate")
    distinct_batches: int = Field(4, ge=1, description="batches cycled when timing only")
    augment: bool = False
    bn_eval: Literal["precise", "running"] = "precise"
    channels_last: bool = False
    opset: int = Field(17, ge=7, le=21)
    peak_sizes: list[Annotated[int, Field(ge=64)]] = [1024, 2048]  # matmul sizes of the peak cell


def cell_settings(base: dict[str, Any], coords: dict[str, Any]) -> dict[str, Any]:
    """Training retrains the full-width model on the experiment's data set."""
    return dict(base, data={"name": base["dataset"]}, model=coords["model"],
                widths=models.full_widths(coords["model"]))


def peak_cells(grid: dict[str, list], base: dict[str, Any]) -> list[AuxiliaryCell]:
    """The machine's own matmul peak per device, the denominator of the cells' utilisation."""
    return [("peak", {"model": "matmul", "framework": "pytorch", "device": device,
                      "precision": "fp32", "freeze": 0, "batch": 0},
             {"threads": base["threads"], "seed": base["seed"], "sizes": base["peak_sizes"],
              "timeout_seconds": base["timeout_seconds"],
              # the training cells' own convolutions: the library path they take
              "conv_models": list(grid["model"]), "conv_batches": list(grid["batch"]),
              "prepare_timeout_seconds": base["prepare_timeout_seconds"]})
            for device in grid["device"]]


def needs_dataset(cell: Cell) -> str:
    return cell.settings["dataset"]


KIND = ExperimentKind("training", TrainingGrid, TrainingSettings, cell_settings, prepare.prepare,
                      needs_dataset, auxiliary_cells=peak_cells)
