"""Kind "inference": latency and runtime memory of scaled architectures (the scaling study:
NeuralScale against uniform width scaling). Its grid, settings and cell settings; preparation
in prepare.py, the report section in report.py."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from toolkit.device import models
from toolkit.errors import UserError
from toolkit.experiments.cells import Cell
from toolkit.experiments.kinds.base import (
    Dataset,
    Device,
    ExperimentKind,
    Framework,
    Grid,
    PositiveInts,
    Precision,
    Settings,
)
from toolkit.experiments.kinds.inference import prepare

ScalingMode = Literal["width", "params"]


class InferenceGrid(Grid):
    model: list[str] = Field(min_length=1)
    method: list[Literal["uniform", "neuralscale"]] = Field(min_length=1)
    scale: list[Annotated[float, Field(gt=0, le=1)]] = Field(min_length=1)
    # Optional axis: measure both scaling conventions in one run (a width ratio as Lee & Lee,
    # a parameter ratio as Gealy); absent, every cell uses settings.scaling_mode.
    scaling_mode: list[ScalingMode] | None = Field(None, min_length=1)
    framework: list[Framework] = Field(min_length=1)
    device: list[Device] = Field(min_length=1)
    precision: list[Precision] = Field(min_length=1)
    batch: PositiveInts = Field(min_length=1)


class InferenceSettings(Settings):
    """Fixed parameters of an inference experiment, recorded with every cell."""

    scaling_mode: ScalingMode = "width"
    dataset: Dataset = Field("digits", description="for the search and the accuracy training")
    accuracy_training: dict[str, object] = Field(
        {}, description="training_config overrides; empty: accuracy is not measured")
    neuralscale: dict[str, object] = Field(
        {"profile": "paper"}, description="search_config profile and overrides; or `artifact`: "
        "a kept search (JSON) or a directory of them (results/<run>/neuralscale/) to use "
        "instead of searching, or \"published\": the paper's searches (eugenelet/NeuralScale) "
        "shipped in toolkit/device/scaling/published/, solved with `published` = \"public\" "
        "(default: the public code's own fit and solver) or \"refit\" (our fit of its width "
        "records and our solver); with search options beside it, models the public code has no "
        "search of are searched with them")
    cpu_mem_arena: bool = True
    mem_pattern: bool = True
    opset: int = Field(17, ge=7, le=21)
    input_shape: tuple[int, int, int] = (3, 32, 32)

    @field_validator("accuracy_training")
    @classmethod
    def _training_config(cls, overrides: dict[str, object]) -> dict[str, object]:
        if overrides:
            from toolkit.device.backends.pytorch.accuracy import training_config

            try:
                training_config(**overrides)
            except UserError as error:
                raise ValueError(str(error)) from None
        return overrides

    @field_validator("neuralscale")
    @classmethod
    def _search_config(cls, config: dict[str, object]) -> dict[str, object]:
        from toolkit.device.scaling.neuralscale import PUBLISHED_FITS, search_config

        options = dict(config)
        artifact = options.pop("artifact", None)
        fit = options.pop("published", None)
        if fit is not None and artifact != "published":
            raise ValueError(f"published = {fit!r} chooses the fit of the shipped searches: it "
                             "needs artifact = \"published\"")
        if artifact == "published":  # the paper's searches, shipped (prepare.kept_search)
            fit = "public" if fit is None else fit  # the public code's: what the paper trained
            if fit not in PUBLISHED_FITS:
                raise ValueError(f"published must be one of {', '.join(PUBLISHED_FITS)} (the "
                                 f"public code's fit and solver, or our refit), got {fit!r}")
            if not options:
                return {"artifact": "published", "published": fit}
            # With search options: models the public code never searched are searched here.
            try:
                search_config(str(options.get("profile", "paper")),
                              **{k: v for k, v in options.items() if k != "profile"})
            except UserError as error:
                raise ValueError(str(error)) from None
            return {"artifact": "published", "published": fit, **options}
        if artifact is not None:
            path = Path(str(artifact)).expanduser().resolve()
            if not path.exists():
                raise ValueError(f"no NeuralScale artifact at '{artifact}' (a search's JSON "
                                 "file, or a directory of them such as results/<run>/neuralscale,"
                                 " or \"published\" for the paper's searches)")
            return {"artifact": str(path)}
        try:
            search_config(str(options.pop("profile", "paper")), **options)
        except UserError as error:
            raise ValueError(str(error)) from None
        return config


def resolve_widths(model: str, method: str, scale: float, mode: str, classes: int,
                   ) -> list[int] | None:
    """The per-layer widths a cell's model is built with; None where a NeuralScale search must
    run first (the widths then come from its artifact, see prepare.py)."""
    if method == "neuralscale":
        return None
    if mode == "params":
        return models.scale_widths(model, models.params_ratio_multiplier(model, scale, classes))
    return models.scale_widths(model, scale)


def cell_settings(base: dict[str, Any], coords: dict[str, Any]) -> dict[str, Any]:
    """The settings one cell runs with, including the width list of its scaled model."""
    if "scaling_mode" in coords:  # the grid axis overrides the setting
        base = base | {"scaling_mode": coords["scaling_mode"]}
    options = base.get("neuralscale") or {}
    if "published" in options and not prepare.uses_published(coords["model"], coords["method"],
                                                              base["classes"], options):
        # which fit of a shipped search: no part of a cell that solves none (its id stays)
        base = base | {"neuralscale": {k: v for k, v in options.items() if k != "published"}}
    widths = resolve_widths(coords["model"], coords["method"], coords["scale"],
                            base["scaling_mode"], base["classes"])
    return dict(base, model=coords["model"], widths=widths)


def needs_dataset(cell: Cell) -> str | None:
    """The search and the accuracy training read the data set; timing alone reads none."""
    settings = cell.settings
    searches = cell.coords.get("method") == "neuralscale" and \
        "artifact" not in settings.get("neuralscale", {})
    return settings["dataset"] if searches or settings.get("accuracy_training") else None


KIND = ExperimentKind("inference", InferenceGrid, InferenceSettings, cell_settings,
                      prepare.prepare, needs_dataset)
