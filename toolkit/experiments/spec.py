"""Experiment specs: TOML files validated into typed objects; profiles scale one experiment.

Each experiment kind (toolkit/experiments/kinds/) has its own grid (the coordinates of its
cells) and settings; both are validated strictly so a typo is an error naming the bad key or
value.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SerializeAsAny, ValidationError, field_validator

from toolkit.errors import UserError
from toolkit.experiments import kinds
from toolkit.experiments.kinds.base import Grid, Settings, Strict
from toolkit.tomlfiles import read_toml

SPEC_DIR = Path(__file__).parent
PROFILES = ("smoke", "quick", "paper")


class MeasureProtocol(Strict):
    """Warm-up and sampling bounds (README: How a cell is measured); every cell records the one
    it ran with."""

    warmup_count: int = Field(10, ge=0)
    warmup_seconds: float = Field(0.5, ge=0)
    min_count: int = Field(50, ge=1)
    min_seconds: float = Field(2.0, ge=0)
    max_seconds: float = Field(60.0, gt=0)
    max_cv: float = Field(0.25, gt=0)


# Rounds per cell by profile, where a profile does not set its own (toolkit/rounds.py): two
# rounds are the fewest that show drift (smoke checks that everything runs, it judges no
# claim); five are the fewest whose interval reaches the 90 % a verdict needs (93.8 %,
# toolkit/intervals.py), so quick and paper can give verdicts.
DEFAULT_ROUNDS = {"smoke": 2, "quick": 5, "paper": 5}
MIN_ROUNDS, MAX_ROUNDS = 1, 100  # a profile's rounds, and --rounds


class Profile(Strict):
    """A profile overrides grid axes and settings and sets the measurement protocol and the
    number of rounds each cell is measured in."""

    measure: MeasureProtocol = MeasureProtocol()
    rounds: int | None = Field(None, ge=MIN_ROUNDS, le=MAX_ROUNDS)
    grid: dict[str, list] = {}
    settings: dict[str, object] = {}


class ExperimentSpec(Strict):
    name: str
    description: str
    kind: str  # an experiment kind: a package in toolkit/experiments/kinds/
    reproduces: str = ""
    grid: dict[str, list]
    # Combinations that are not cells, e.g. {framework = "tensorrt", device = "cpu"}.
    exclude: list[dict[str, object]] = []
    settings: dict[str, object] = {}
    profiles: dict[Literal["smoke", "quick", "paper"], Profile]

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        try:
            kinds.get(kind)
        except UserError as error:
            raise ValueError(str(error)) from None
        return kind

    @field_validator("profiles")
    @classmethod
    def _all_profiles(cls, profiles: dict[str, Profile]) -> dict[str, Profile]:
        missing = [name for name in PROFILES if name not in profiles]
        if missing:
            raise ValueError(f"missing profiles {', '.join(missing)}; every spec defines "
                             f"{', '.join(PROFILES)}")
        return profiles


class ResolvedExperiment(Strict):
    """One experiment under one profile: what expands into cells."""

    name: str
    description: str
    kind: str
    reproduces: str
    profile: str
    grid: SerializeAsAny[Grid]  # the kind's grid and settings models (kinds.get(kind))
    settings: SerializeAsAny[Settings]
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
               ) -> dict[str, Strict]:
    kind = kinds.get(spec.kind)
    grid_model, settings_model = kind.grid, kind.settings
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
    axes = kinds.get(spec.kind).grid.model_fields
    relevant = {key: value for key, value in (overrides or {}).items() if key in axes}
    grid = spec.grid | chosen.grid | relevant
    settings = spec.settings | chosen.settings
    validated = _validated(spec, profile, grid, settings, f"{spec.name} (profile {profile})")
    return ResolvedExperiment(
        name=spec.name, description=spec.description, kind=spec.kind, reproduces=spec.reproduces,
        profile=profile, measure=chosen.measure, exclude=spec.exclude,
        rounds=chosen.rounds or DEFAULT_ROUNDS[profile], **validated)
