"""Experiment specs: TOML files validated into typed objects; profiles scale one experiment.

Each experiment kind (inference, training) has its own grid (the coordinates of its cells) and
settings; both are validated strictly so a typo is an error naming the bad key or value.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from toolkit import frameworks
from toolkit.device.models import MODEL_NAMES
from toolkit.errors import UserError
from toolkit.tomlfiles import read_toml

SPEC_DIR = Path(__file__).parent
PROFILES = ("smoke", "quick", "paper")

Framework = Literal[frameworks.NAMES]  # type: ignore[valid-type]  # toolkit/frameworks.py
Precision = Literal["fp32", "fp16", "bf16"]
Device = Literal["cpu", "cuda"]
ScalingMode = Literal["width", "params"]
PositiveInts = list[Annotated[int, Field(ge=1)]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MeasureProtocol(_Strict):
    """Warm-up and sampling bounds (README: How a cell is measured); every cell records the one
    it ran with."""

    warmup_count: int = Field(10, ge=0)
    warmup_seconds: float = Field(0.5, ge=0)
    min_count: int = Field(50, ge=1)
    min_seconds: float = Field(2.0, ge=0)
    max_seconds: float = Field(60.0, gt=0)
    max_cv: float = Field(0.25, gt=0)


class _Grid(_Strict):
    """The axes a cell is a point of; every combination becomes one cell, in field order."""

    @field_validator("model", check_fields=False)
    @classmethod
    def _known_models(cls, models: list[str]) -> list[str]:
        for name in models:
            if name not in MODEL_NAMES:
                raise ValueError(f"unknown model '{name}'; valid: {', '.join(MODEL_NAMES)}")
        return models


class InferenceGrid(_Grid):
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


class TrainingGrid(_Grid):
    model: list[str] = Field(min_length=1)
    framework: list[Framework] = Field(min_length=1)
    device: list[Device] = Field(min_length=1)
    precision: list[Precision] = Field(min_length=1)
    freeze: list[Annotated[int, Field(ge=0)]] = Field(min_length=1)
    batch: PositiveInts = Field(min_length=1)


Dataset = Literal["synthetic", "digits", "cifar10", "cifar100"]


class _Settings(_Strict):
    classes: Literal[10, 100] = 10
    threads: int = Field(0, ge=0, description="intra-op threads; 0 = every core of the machine")
    seed: int = 0
    timeout_seconds: float = Field(600.0, gt=0, description="per measured cell")
    prepare_timeout_seconds: float = Field(
        86400.0, gt=0, description="per preparation job (search, accuracy training, export)")


class InferenceSettings(_Settings):
    """Fixed parameters of an inference experiment, recorded with every cell."""

    scaling_mode: ScalingMode = "width"
    dataset: Dataset = Field("digits", description="for the search and the accuracy training")
    accuracy_training: dict[str, object] = Field(
        {}, description="training_config overrides; empty: accuracy is not measured")
    neuralscale: dict[str, object] = Field(
        {"profile": "paper"}, description="search_config profile and overrides; or `artifact`: "
        "a kept search (JSON) or a directory of them (results/<run>/neuralscale/) to use "
        "instead of searching, or \"published\": the paper's searches (eugenelet/NeuralScale) "
        "shipped in toolkit/device/scaling/published/; with search options beside it, models "
        "the public code has no search of are searched with them")
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
        from toolkit.device.scaling.neuralscale import search_config

        options = dict(config)
        artifact = options.pop("artifact", None)
        if artifact == "published":  # the paper's searches, shipped (artifacts.kept_search)
            if not options:
                return {"artifact": "published"}
            # With search options: models the public code never searched are searched here.
            try:
                search_config(str(options.get("profile", "paper")),
                              **{k: v for k, v in options.items() if k != "profile"})
            except UserError as error:
                raise ValueError(str(error)) from None
            return {"artifact": "published", **options}
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


class TrainingSettings(_Settings):
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


KINDS: dict[str, tuple[type[_Grid], type[_Settings]]] = {
    "inference": (InferenceGrid, InferenceSettings),
    "training": (TrainingGrid, TrainingSettings),
}


# Rounds per cell by profile, where a profile does not set its own (toolkit/rounds.py): two
# rounds are the fewest that show drift, five give a 95 % interval from order statistics.
DEFAULT_ROUNDS = {"smoke": 2, "quick": 3, "paper": 5}


class Profile(_Strict):
    """A profile overrides grid axes and settings and sets the measurement protocol and the
    number of rounds each cell is measured in."""

    measure: MeasureProtocol = MeasureProtocol()
    rounds: int | None = Field(None, ge=1, le=100)
    grid: dict[str, list] = {}
    settings: dict[str, object] = {}


class ExperimentSpec(_Strict):
    name: str
    description: str
    kind: Literal["inference", "training"]
    reproduces: str = ""
    grid: dict[str, list]
    # Combinations that are not cells, e.g. {framework = "tensorrt", device = "cpu"}.
    exclude: list[dict[str, object]] = []
    settings: dict[str, object] = {}
    profiles: dict[Literal["smoke", "quick", "paper"], Profile]

    @field_validator("profiles")
    @classmethod
    def _all_profiles(cls, profiles: dict[str, Profile]) -> dict[str, Profile]:
        missing = [name for name in PROFILES if name not in profiles]
        if missing:
            raise ValueError(f"missing profiles {', '.join(missing)}; every spec defines "
                             f"{', '.join(PROFILES)}")
        return profiles


class ResolvedExperiment(_Strict):
    """One experiment under one profile: what expands into cells."""

    name: str
    description: str
    kind: str
    reproduces: str
    profile: str
    grid: InferenceGrid | TrainingGrid
    settings: InferenceSettings | TrainingSettings
    measure: MeasureProtocol
    rounds: int = 1
    exclude: list[dict[str, object]] = []


def describe_validation_error(error: ValidationError, source: str, prefix: str = "") -> str:
    """The first problem as one line: where, what, the bad value, and what is valid."""
    first = error.errors()[0]
    where = prefix + ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    bad = first.get("input")
    got = "" if isinstance(bad, dict) else f" (got {bad!r})"
    return f"{source}: {where}: {message}{got}{more}"


def _validated(spec: ExperimentSpec, profile: str, grid: dict, settings: dict, source: str,
               ) -> dict[str, _Strict]:
    grid_model, settings_model = KINDS[spec.kind]
    validated = {}
    for part, model, values in (("grid", grid_model, grid), ("settings", settings_model,
                                                              settings)):
        try:
            validated[part] = model.model_validate(values)
        except ValidationError as error:
            raise UserError(describe_validation_error(error, source, prefix=f"{part}.")) from None
    return validated


def load_spec(path: Path) -> ExperimentSpec:
    data = read_toml(path, "experiment spec")
    try:
        spec = ExperimentSpec.model_validate(data)
    except ValidationError as error:
        raise UserError(describe_validation_error(error, path.name)) from None
    _validated(spec, "base", spec.grid, spec.settings, path.name)  # the base spec alone is valid
    for index, rule in enumerate(spec.exclude):
        unknown = sorted(set(rule) - set(spec.grid))
        if unknown:
            raise UserError(f"{path.name}: exclude.{index}: {', '.join(unknown)} is not a grid "
                            f"axis; valid: {', '.join(spec.grid)}")
    return spec


def available_experiments() -> dict[str, Path]:
    """Experiment name -> spec file, for the specs shipped with the toolkit."""
    return {path.stem.replace("_", "-"): path for path in sorted(SPEC_DIR.glob("*.toml"))}


def find_spec(name: str) -> ExperimentSpec:
    """A shipped experiment by name, or a spec file given by path."""
    if name.endswith(".toml"):
        return load_spec(Path(name))
    specs = available_experiments()
    if name not in specs:
        raise UserError(f"unknown experiment '{name}'; valid: {', '.join(specs)} "
                        "(or a path to a .toml spec)")
    return load_spec(specs[name])


def resolve(spec: ExperimentSpec, profile: str, overrides: dict[str, list] | None = None,
            ) -> ResolvedExperiment:
    """Apply a profile (and command-line grid overrides) to a spec; validates the result.

    Overrides of axes this experiment does not have are ignored, so `--batch 1` can restrict
    several experiments at once.
    """
    if profile not in PROFILES:
        raise UserError(f"unknown profile '{profile}'; valid: {', '.join(PROFILES)}")
    chosen = spec.profiles[profile]
    axes = KINDS[spec.kind][0].model_fields
    relevant = {key: value for key, value in (overrides or {}).items() if key in axes}
    grid = spec.grid | chosen.grid | relevant
    settings = spec.settings | chosen.settings
    validated = _validated(spec, profile, grid, settings, f"{spec.name} (profile {profile})")
    return ResolvedExperiment(
        name=spec.name, description=spec.description, kind=spec.kind, reproduces=spec.reproduces,
        profile=profile, measure=chosen.measure, exclude=spec.exclude,
        rounds=chosen.rounds or DEFAULT_ROUNDS[profile], **validated)
