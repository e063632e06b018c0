"""Published claims as data (reports/published/*.toml) and their verdicts against a run.

A claim names a metric, a comparison (a ratio between two groups of cells, a single value, or
which group is best), an operator with its tolerance, the hardware it holds for and the smallest
profile that can test it. Its verdict is "reproduced", "not reproduced" or "not comparable" with
the reason; the observed number is shown beside the expected one whenever it can be computed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolkit.derived import metric_value
from toolkit.device.errors import UserError
from toolkit.experiments.spec import PROFILES, describe_validation_error
from toolkit.tomlfiles import read_toml

PUBLISHED_DIR = Path(__file__).resolve().parents[2] / "reports" / "published"
REPRODUCED, NOT_REPRODUCED, NOT_COMPARABLE = "reproduced", "not reproduced", "not comparable"
DEFAULT_PAIR_ON = ["model", "scale", "framework", "device", "precision", "batch"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    key: str
    citation: str
    url: str = ""
    notes: str = ""


class Claim(_Strict):
    id: str
    statement: str
    experiment: str
    metric: str
    comparison: Literal["ratio", "value", "best"]
    filter: dict[str, Any] = {}
    numerator: dict[str, Any] = {}
    denominator: dict[str, Any] = {}
    pair_on: list[str] = DEFAULT_PAIR_ON
    best_of: str = ""
    higher_is_better: bool = True
    operator: Literal["approx", "at_least", "at_most", "equals"]
    expected: float | str
    tolerance: float = Field(0.0, ge=0)
    hardware: list[str] = []  # device types; empty: any hardware
    min_profile: Literal["smoke", "quick", "paper"] = "paper"


class Publication(_Strict):
    source: Source
    claims: list[Claim]


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict on one run. `reasons` are short canonical phrases (the same words for
    the same cause across claims, so a report can group them); `stand_in` is empty when the
    claim was judged on the hardware it names, else what the measuring machine is and how it
    differs (such verdicts are never counted with those on the named hardware)."""

    claim: Claim
    source: Source
    verdict: str
    observed: float | str | None
    reasons: tuple[str, ...]
    n: int  # cells (value/best) or cell pairs (ratio) behind the observed number
    stand_in: str = ""

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    @property
    def label(self) -> str:
        """The verdict as a reader sees it, the hardware class included."""
        if self.stand_in and self.verdict != NOT_COMPARABLE:
            return f"{self.verdict} on stand-in hardware ({self.stand_in})"
        return self.verdict

    def expected_text(self) -> str:
        c = self.claim
        if c.operator == "approx":
            return f"{c.expected:g} ± {c.tolerance:g}"
        symbol = {"at_least": "≥", "at_most": "≤", "equals": "="}[c.operator]
        return f"{symbol} {c.expected if isinstance(c.expected, str) else format(c.expected, 'g')}"

    def observed_text(self) -> str:
        if self.observed is None:
            return "–"
        if isinstance(self.observed, str):
            return self.observed
        return f"{self.observed:.3g}"


def load_publications(directory: Path = PUBLISHED_DIR) -> list[Publication]:
    publications = []
    for path in sorted(directory.glob("*.toml")):
        try:
            publications.append(Publication.model_validate(read_toml(path, "published claims")))
        except ValidationError as error:
            raise UserError(describe_validation_error(error, path.name)) from None
    return publications


def _matches(row: dict[str, Any], conditions: dict[str, Any]) -> bool:
    return all(key in row and row[key] == value for key, value in conditions.items())


def _missing(rows: list[dict[str, Any]], cells: list[dict[str, Any]], experiment: str,
             conditions: dict[str, Any]) -> str:
    """Why no ok cell matches: the first condition nothing satisfies, with not-run reasons."""
    if not any(c["experiment"] == experiment for c in cells):
        return f"experiment {experiment} not in this run"
    for key, value in conditions.items():
        if not any(_matches(r, {key: value}) for r in rows):
            skipped = sorted({c["reason"] for c in cells if c["status"] != "ok"
                              and _matches(c, {key: value}) and c["reason"]})
            why = f" ({'; '.join(skipped)})" if skipped else ""
            return f"no ok cells with {key}={value}{why}"
    return "no ok cells match " + ", ".join(f"{k}={v}" for k, v in conditions.items())


def _observe(claim: Claim, rows: list[dict[str, Any]], cells: list[dict[str, Any]],
             ) -> tuple[float | str | None, int, str]:
    """The observed figure, how many cells or pairs it rests on, and why not if none."""
    base = [r for r in rows if r["experiment"] == claim.experiment and _matches(r, claim.filter)]

    def values(group: list[dict[str, Any]]) -> list[tuple[dict[str, Any], float]]:
        found = [(r, metric_value(r, claim.metric)) for r in group]
        return [(r, v) for r, v in found if v is not None and math.isfinite(v)]

    if claim.comparison == "value":
        measured = values(base)
        if not measured:
            return None, 0, (f"{claim.metric} not measured" if base
                             else _missing(rows, cells, claim.experiment, claim.filter))
        return sum(v for _, v in measured) / len(measured), len(measured), ""
    if claim.comparison == "best":
        groups: dict[Any, list[float]] = {}
        for row, value in values(base):
            groups.setdefault(row.get(claim.best_of), []).append(value)
        if len(groups) < 2:
            return None, 0, (f"fewer than two {claim.best_of} values measured"
                             if base else _missing(rows, cells, claim.experiment, claim.filter))
        means = {key: sum(v) / len(v) for key, v in groups.items()}
        pick = max if claim.higher_is_better else min
        return str(pick(means, key=means.__getitem__)), sum(map(len, groups.values())), ""
    numerator = values([r for r in base if _matches(r, claim.numerator)])
    denominator = {tuple(r.get(k) for k in claim.pair_on): v
                   for r, v in values([r for r in base if _matches(r, claim.denominator)])}
    ratios = [v / denominator[key] for r, v in numerator
              if (key := tuple(r.get(k) for k in claim.pair_on)) in denominator
              and denominator[key] > 0 and v > 0]
    if not ratios:
        for side in (claim.numerator, claim.denominator):
            group = [r for r in base if _matches(r, side)]
            if not group:
                return None, 0, _missing(rows, cells, claim.experiment, claim.filter | side)
            if not values(group):
                return None, 0, f"{claim.metric} not measured"
        return None, 0, f"no pairs of cells that agree on {', '.join(claim.pair_on)}"
    geomean = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
    return geomean, len(ratios), ""


def _holds(claim: Claim, observed: float | str) -> bool:
    if claim.operator == "equals":
        return str(observed) == str(claim.expected)
    expected, value = float(claim.expected), float(observed)
    if claim.operator == "approx":
        return abs(value - expected) <= claim.tolerance
    return value >= expected if claim.operator == "at_least" else value <= expected


def evaluate(claim: Claim, source: Source, rows: list[dict[str, Any]],
             cells: list[dict[str, Any]], profile: str, device_type: str) -> Verdict:
    """One claim against one run: rows are ok cells with coordinates and metrics."""
    observed, n, missing = _observe(claim, rows, cells)
    reasons = []
    if claim.hardware and device_type not in claim.hardware:
        reasons.append(f"measured on {device_type}; the claim holds for "
                       f"{', '.join(claim.hardware)}")
    if PROFILES.index(profile) < PROFILES.index(claim.min_profile):
        reasons.append(f"profile {profile} is smaller than the {claim.min_profile} profile "
                       "the claim needs")
    if missing:
        reasons.append(missing)
    if reasons:
        return Verdict(claim, source, NOT_COMPARABLE, observed, tuple(reasons), n)
    verdict = REPRODUCED if _holds(claim, observed) else NOT_REPRODUCED
    return Verdict(claim, source, verdict, observed, (), n)


def run_rows(cells: pl.DataFrame, records: pl.DataFrame,
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(ok cells with their metrics as columns, every cell) from a run's tables."""
    all_cells = cells.to_dicts()
    metrics: dict[str, dict[str, float]] = {}
    for cell_id, metric, value in records.select("cell_id", "metric", "value").iter_rows():
        metrics.setdefault(cell_id, {})[metric] = value
    rows = [c | metrics.get(c["cell_id"], {}) for c in all_cells if c["status"] == "ok"]
    return rows, all_cells


def evaluate_all(publications: list[Publication], rows: list[dict[str, Any]],
                 cells: list[dict[str, Any]], profile: str, environment: dict[str, Any],
                 ) -> list[Verdict]:
    """Every claim against one run; `environment` is the run manifest's host description."""
    device_type = str(environment.get("device_type", "unknown"))
    return [evaluate(claim, publication.source, rows, cells, profile, device_type)
            for publication in publications for claim in publication.claims]
