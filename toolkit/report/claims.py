"""Published claims as data (reports/published/*.toml) and their verdicts against a run.

A claim names a metric, a comparison (a ratio between two groups of cells, a single value, or
which group is best), an operator with its bound, the hardware it holds for and the smallest
profile that can test it. Its verdict is "reproduced", "not reproduced" or "not comparable" with
the reasons; the observed number is shown beside the expected one whenever it can be computed.

A verdict never rests on less than the claim speaks about:
- its scaling convention (a WIDTH ratio for Lee & Lee, a PARAMETER ratio for Gealy) must be the
  one the cells were scaled in;
- every (model, scale) pair or framework it `covers` must be measured;
- a claim about NeuralScale needs every NeuralScale architecture behind it to come from a
  power-law fit (a search that fell back to another fit measured something else), and from the
  paper's searches: the published record sets, or a search run here on the data set and class
  count the claim's `search_data` names. Any other architecture (quick's ResNet-50, searched on
  synthetic data) makes the verdict "not comparable", naming the model and where it was
  searched; the observed number over all rows is still shown;
- on hardware other than the named one it is judged only where the claim allows a stand-in
  (the same kind of device, e.g. another CPU for a Raspberry Pi's CPU), and that verdict is a
  class of its own, labelled with the machine that measured it; a claim form that no machine
  measures as the source did (`always_stand_in`) is such a verdict on the named hardware too.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from toolkit import intervals
from toolkit import rounds as cell_rounds
from toolkit.derived import metric_value
from toolkit.errors import UserError
from toolkit.experiments.spec import PROFILES, describe_validation_error
from toolkit.report.judgement import (  # noqa: F401 - the verdicts are claims' vocabulary
    INCONCLUSIVE,
    NOT_COMPARABLE,
    NOT_REPRODUCED,
    ONCE,
    REPRODUCED,
    ROUNDS,
    judge,
)
from toolkit.report.machine import (
    VERSION_PACKAGES,
    describe_machine,
    machine_in_short,
    usable_cores,  # noqa: F401 - summary.py reads it here
)
from toolkit.tomlfiles import read_toml

PUBLISHED_DIR = Path(__file__).resolve().parents[2] / "reports" / "published"
DEFAULT_PAIR_ON = ["model", "scale", "framework", "device", "precision", "batch"]
# Cell settings a claim may filter on besides the grid coordinates (from each cell's settings).
SETTING_FIELDS = ("dataset", "classes", "scaling_mode")
FIT = "fit"  # row field: the kind of fit a NeuralScale cell's architecture came from
POWER_LAW = "power_law"
# Row fields: where a NeuralScale cell's search came from ("published": the paper's record
# sets, toolkit/device/scaling/published.py; "searched": run here) and the data set it ran on.
# The search's class count is the cell's (prepare.py finds or runs a search of that count).
SEARCH, SEARCHED_ON = "search", "searched_on"
PUBLISHED = "published"
MISSING_LISTED = 6  # missing pairs named in a coverage reason before "and k more"
PARTS = "\n"  # separates the parts of a missing-cells reason (each becomes a reason)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    key: str
    citation: str
    url: str = ""
    notes: str = ""


class SearchData(_Strict):
    """The data set and class count of a paper's own NeuralScale searches."""

    dataset: str
    classes: int


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
    operator: Literal["approx", "at_least", "at_most", "equals", "between"]
    expected: float | str
    upper: float | None = None  # "between": expected <= observed <= upper
    tolerance: float = Field(0.0, ge=0)
    hardware: list[str] = []  # device types; empty: any hardware
    # Another machine of the same kind may stand in for the named hardware (its verdict is then
    # labelled as measured on stand-in hardware and counted apart).
    stand_in: bool = False
    # A form of the claim that no machine measures as the source did (Meißl's GPU fp16 finding
    # as CPU bf16): a stand-in verdict on every machine, the named hardware's CPU included.
    always_stand_in: bool = False
    min_profile: Literal["smoke", "quick", "paper"] = "paper"
    # "width": the claim's scales are width ratios (Lee & Lee); "params": parameter ratios
    # (Gealy); empty: the claim is not about scaled models.
    convention: Literal["", "width", "params"] = ""
    # Every combination of these values must be measured (e.g. model x scale for an average).
    covers: dict[str, list[Any]] = {}
    interpretation: str = ""  # the project's reading of the source's words, shown as such
    # A claim about NeuralScale: what the paper searched on; a search run here counts only on
    # this data set and class count (the published record sets always count).
    search_data: SearchData | None = None
    # The id of the claim (same source) this one is the project's derivation from: not
    # independent evidence, so the report shows it as derived and never counts its verdict.
    derived_from: str = ""

    @model_validator(mode="after")
    def _bounds(self) -> Claim:
        if self.operator == "between" and (self.upper is None or isinstance(self.expected, str)
                                           or self.upper < float(self.expected)):
            raise ValueError(f"claim {self.id}: 'between' needs a numeric expected <= upper")
        if self.always_stand_in and not (self.stand_in and self.hardware):
            raise ValueError(f"claim {self.id}: always_stand_in needs stand_in and hardware")
        if self.search_data is None and _about_neuralscale(self):
            raise ValueError(f"claim {self.id} is about NeuralScale: search_data must name the "
                             "data set and class count of the paper's searches")
        return self


class Publication(_Strict):
    source: Source
    claims: list[Claim]
    # What each named hardware is (shown beside a stand-in verdict: what differs).
    hardware: dict[str, str] = {}
    # Claim fields every claim of the source shares, stated once (a claim's own value wins).
    defaults: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("defaults"):
            data = data | {"claims": [data["defaults"] | claim if isinstance(claim, dict)
                                      else claim for claim in data.get("claims", [])]}
        return data

    @model_validator(mode="after")
    def _derivations(self) -> Publication:
        ids = {claim.id for claim in self.claims}
        for claim in self.claims:
            if claim.derived_from and (claim.derived_from not in ids
                                       or claim.derived_from == claim.id):
                raise ValueError(f"claim {claim.id} is derived from {claim.derived_from}, "
                                 f"which is not another claim of {self.source.key}")
        return self


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
    named_hardware: str = ""  # what the claim's own hardware is, where the source says
    stand_in_short: str = ""  # ISA and cores: enough for the label on every claim's line
    # The order-statistic interval of the claim's figure computed per round (intervals.py),
    # with its level; None with fewer than two paired rounds or for a figure measured once.
    # For a "best" claim, `agreement` is the share of rounds that picked the observed winner.
    interval: intervals.Interval | None = None
    rounds: int = 1
    agreement: float | None = None
    # What a reader must know about the figure's interval: rounds left out or unpaired, an
    # input measured once (accuracy), the run's figure outside its rounds' interval.
    notes: tuple[str, ...] = ()
    # (measured, named) combinations of the claim's `covers`, for a partial observation.
    covers: tuple[int, int] | None = None

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    @property
    def label(self) -> str:
        """The verdict as a reader sees it, the hardware class included."""
        if self.stand_in and self.verdict != NOT_COMPARABLE:
            return f"{self.verdict} on stand-in hardware ({self.stand_in_short})"
        return self.verdict

    def expected_text(self) -> str:
        c = self.claim
        if c.operator == "between":
            return f"{c.expected:g}–{c.upper:g}"
        if c.operator == "approx":
            return f"{c.expected:g} ± {c.tolerance:g}"
        symbol = {"at_least": "≥", "at_most": "≤", "equals": "="}[c.operator]
        return f"{symbol} {c.expected if isinstance(c.expected, str) else format(c.expected, 'g')}"

    def observed_text(self) -> str:
        if self.observed is None:
            return "–"
        if isinstance(self.observed, str):
            if self.agreement is not None:
                return (f"{self.observed} (in {self.agreement:.0%} of {self.rounds} rounds)")
            return self.observed
        text = f"{self.observed:.3g}"
        if self.interval is not None:
            text += f" {self.interval.text()}"
        return "; ".join([text, *self.notes])


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
            # each cell reason its own numbered reason, never several run into one line
            return PARTS.join([f"no ok cells with {key}={value}"]
                              + [f"{key}={value}: {reason}" for reason in skipped])
    return "no ok cells match " + ", ".join(f"{k}={v}" for k, v in conditions.items())


def _about_neuralscale(claim: Claim) -> bool:
    return any(side.get("method") == "neuralscale"
               for side in (claim.filter, claim.numerator, claim.denominator))


def _convention_rows(claim: Claim, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """The rows scaled in the claim's convention, or why there are none."""
    if not claim.convention:
        return rows, ""
    kept = [r for r in rows if r.get("scaling_mode") == claim.convention]
    if rows and not kept:
        other = sorted({str(r.get("scaling_mode") or "unrecorded") for r in rows})
        return kept, (f"cells scaled by {' and '.join(other)} ratio; the claim's scales are "
                      f"{claim.convention} ratios")
    return kept, ""


def _fallbacks(rows: list[dict[str, Any]]) -> str:
    """Why NeuralScale rows do not stand for NeuralScale: models whose fit was no power law."""
    bad = sorted({f"{r.get('model')} ({r.get(FIT) or 'fit not recorded'})" for r in rows
                  if r.get("method") == "neuralscale" and r.get(FIT) != POWER_LAW})
    return ("NeuralScale architectures not from a power-law fit: " + ", ".join(bad)) if bad else ""


def _searched_elsewhere(claim: Claim, rows: list[dict[str, Any]]) -> str:
    """Why NeuralScale rows do not stand for the paper's NeuralScale: models whose architecture
    came neither from the published record sets nor from a search here on the claim's data set
    and class count (e.g. "resnet50 searched here on synthetic data (100 classes)")."""
    wanted = claim.search_data
    if wanted is None:
        return ""
    bad = set()
    for row in rows:
        if row.get("method") != "neuralscale" or row.get(SEARCH) == PUBLISHED:
            continue
        on = (row.get(SEARCHED_ON), row.get("classes"))
        if row.get(SEARCH) is None:
            bad.add(f"{row.get('model')} (search not recorded)")
        elif on != (wanted.dataset, wanted.classes):
            bad.add(f"{row.get('model')} searched here on {on[0] or 'unrecorded'} data "
                    f"({on[1]} classes)")
    if not bad:
        return ""
    return (f"NeuralScale architectures neither from the published searches nor searched on "
            f"{wanted.dataset} with {wanted.classes} classes: " + ", ".join(sorted(bad)))


def covered(claim: Claim, used: list[dict[str, Any]]) -> tuple[int, int] | None:
    """(combinations the claim covers that the rows measured, combinations it covers); None
    for a claim that names no coverage."""
    if not claim.covers:
        return None
    keys = list(claim.covers)
    wanted = set(itertools.product(*(claim.covers[k] for k in keys)))
    present = {tuple(r.get(k) for k in keys) for r in used}
    return len(wanted & present), len(wanted)


def _coverage(claim: Claim, used: list[dict[str, Any]]) -> str:
    """Empty when every combination the claim covers is among the rows used, else which not."""
    if not claim.covers:
        return ""
    keys = list(claim.covers)
    wanted = list(itertools.product(*(claim.covers[k] for k in keys)))
    present = {tuple(r.get(k) for k in keys) for r in used}
    missing = [combo for combo in wanted if combo not in present]
    if not missing:
        return ""
    named = ", ".join(" ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in combo)
                      for combo in missing[:MISSING_LISTED])
    more = f" and {len(missing) - MISSING_LISTED} more" if len(missing) > MISSING_LISTED else ""
    return (f"covers {len(wanted) - len(missing)} of {len(wanted)} {' × '.join(keys)}; "
            f"missing: {named}{more}")


def _measured_by_all(claim: Claim, measured: list[tuple[dict[str, Any], float]],
                     ) -> tuple[list[tuple[dict[str, Any], float]], list[str]]:
    """For a "best" claim: the (row, value) pairs at the points (the pair_on coordinates other
    than best_of) that every group measured, and those coordinates. A group's mean over points
    another group lacks (a batch only one framework ran) would compare unlike cells."""
    keys = [k for k in claim.pair_on if k != claim.best_of]

    def point(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row.get(k) for k in keys)

    points: dict[Any, set[tuple[Any, ...]]] = {}
    for row, _ in measured:
        points.setdefault(row.get(claim.best_of), set()).add(point(row))
    common = set.intersection(*points.values())
    return [(r, v) for r, v in measured if point(r) in common], keys


@dataclass(frozen=True)
class _Observation:
    value: float | str | None
    n: int
    used: list[dict[str, Any]]  # the rows the value rests on
    missing: str  # why there is no value


def _observe(claim: Claim, rows: list[dict[str, Any]], cells: list[dict[str, Any]],
             ) -> _Observation:
    """The observed figure, the rows it rests on, and why not if none."""
    matching = [r for r in rows if r["experiment"] == claim.experiment
                and _matches(r, claim.filter)]
    base, wrong_convention = _convention_rows(claim, matching)
    if wrong_convention:
        return _Observation(None, 0, [], wrong_convention)

    def values(group: list[dict[str, Any]]) -> list[tuple[dict[str, Any], float]]:
        found = [(r, metric_value(r, claim.metric)) for r in group]
        return [(r, v) for r, v in found if v is not None and math.isfinite(v)]

    if claim.comparison == "value":
        measured = values(base)
        if not measured:
            return _Observation(None, 0, [], f"{claim.metric} not measured" if base
                                else _missing(rows, cells, claim.experiment, claim.filter))
        return _Observation(sum(v for _, v in measured) / len(measured), len(measured),
                            [r for r, _ in measured], "")
    if claim.comparison == "best":
        measured = values(base)
        if len({row.get(claim.best_of) for row, _ in measured}) < 2:
            return _Observation(None, 0, [r for r, _ in measured],
                                f"fewer than two {claim.best_of} values measured" if base
                                else _missing(rows, cells, claim.experiment, claim.filter))
        measured, keys = _measured_by_all(claim, measured)
        if not measured:
            return _Observation(None, 0, [], f"no {', '.join(keys)} measured by every "
                                f"{claim.best_of}")
        groups: dict[Any, list[float]] = {}
        for row, value in measured:
            groups.setdefault(row.get(claim.best_of), []).append(value)
        means = {key: sum(v) / len(v) for key, v in groups.items()}
        pick = max if claim.higher_is_better else min
        return _Observation(str(pick(means, key=means.__getitem__)),
                            sum(map(len, groups.values())), [r for r, _ in measured], "")
    numerator = values([r for r in base if _matches(r, claim.numerator)])
    denominator = {tuple(r.get(k) for k in claim.pair_on): (r, v)
                   for r, v in values([r for r in base if _matches(r, claim.denominator)])}
    ratios, used = [], []
    for row, value in numerator:
        partner = denominator.get(tuple(row.get(k) for k in claim.pair_on))
        if partner is not None and partner[1] > 0 and value > 0:
            ratios.append(value / partner[1])
            used += [row, partner[0]]
    if not ratios:
        for side in (claim.numerator, claim.denominator):
            group = [r for r in base if _matches(r, side)]
            if not group:
                return _Observation(None, 0, [], _missing(rows, cells, claim.experiment,
                                                          claim.filter | side))
            if not values(group):
                return _Observation(None, 0, [], f"{claim.metric} not measured")
        return _Observation(None, 0, [], "no pairs of cells that agree on "
                            + ", ".join(claim.pair_on))
    geomean = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
    return _Observation(geomean, len(ratios), used, "")


def evaluate(claim: Claim, source: Source, rows: list[dict[str, Any]],
             cells: list[dict[str, Any]], profile: str, device_type: str,
             environment: dict[str, Any] | None = None,
             hardware_notes: dict[str, str] | None = None) -> Verdict:
    """One claim against one run: rows are ok cells with coordinates, settings and metrics."""
    observation = _observe(claim, rows, cells)
    reasons, stand_in, short = [], "", ""
    if claim.hardware and (device_type not in claim.hardware or claim.always_stand_in):
        if claim.stand_in:
            stand_in = describe_machine(environment or {"machine": device_type},
                                        observation.used)
            short = machine_in_short(environment or {"machine": device_type})
        else:
            reasons.append(f"needs {' or '.join(claim.hardware)} (this run: {device_type})")
    if PROFILES.index(profile) < PROFILES.index(claim.min_profile):
        reasons.append(f"needs the {claim.min_profile} profile (this run: {profile})")
    if observation.missing:
        reasons += observation.missing.split(PARTS)
    else:
        for problem in (_coverage(claim, observation.used),
                        _fallbacks(observation.used) if _about_neuralscale(claim) else "",
                        _searched_elsewhere(claim, observation.used)):
            if problem:
                reasons.append(problem)
    notes = hardware_notes or {}
    named = "; ".join(notes[h] for h in claim.hardware if h in notes)
    judged = judge(claim, observation.value, observation.used,
                   lambda drawn: _observe(claim, drawn, []).value)
    covers = covered(claim, observation.used)
    if reasons:
        return Verdict(claim, source, NOT_COMPARABLE, observation.value, tuple(reasons),
                       observation.n, stand_in, named, short, judged.interval, judged.rounds,
                       judged.agreement, judged.notes, covers)
    return Verdict(claim, source, judged.verdict, observation.value, judged.reasons,
                   observation.n, stand_in, named, short, judged.interval, judged.rounds,
                   judged.agreement, judged.notes, covers)


def run_rows(cells: pl.DataFrame, records: pl.DataFrame,
             results: dict[str, dict[str, Any]] | None = None,
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(ok cells with their metrics as columns, every cell) from a run's tables.

    `results` (cell id -> the cell's result file: its settings and the versions that measured
    it) adds what claims filter on beyond the grid: the data set, class count, scaling
    convention, for a NeuralScale cell the kind of fit its architecture was solved from and
    where its search came from (published or run here, and on which data set), and
    the ONNX Runtime or PyTorch that measured it (named beside a stand-in verdict)."""
    all_cells = cells.to_dicts()
    metrics: dict[str, dict[str, Any]] = {}
    for cell_id, metric, value in records.select("cell_id", "metric", "value").iter_rows():
        metrics.setdefault(cell_id, {})[metric] = value
    for cell in all_cells:
        result = (results or {}).get(cell["cell_id"]) or {}
        ran_with = result.get("settings") or {}
        cell.update({name: ran_with[name] for name in SETTING_FIELDS if name in ran_with})
        solution = ran_with.get("neuralscale_solution") or {}
        if solution.get("fit"):
            cell[FIT] = solution["fit"]
        cell.update({field: solution[key] for field, key in ((SEARCH, "source"),
                                                             (SEARCHED_ON, "searched_on"))
                     if solution.get(key)})
        measured = [r for r in result.get("rounds", []) if r["status"] in cell_rounds.MEASURED]
        if len(measured) > 1:  # only rows carry them (not the cell list the report shows)
            metrics.setdefault(cell["cell_id"], {})[ROUNDS] = {
                metric: cell_rounds.keyed_values(result, metric)
                for metric in measured[0]["values"]}
        if result.get(cell_rounds.ONCE):
            metrics.setdefault(cell["cell_id"], {})[ONCE] = list(result[cell_rounds.ONCE])
        versions = result.get("versions") or {}
        cell.update({f"{package}_version": versions[package] for package in VERSION_PACKAGES
                     if versions.get(package)})
    rows = [c | metrics.get(c["cell_id"], {}) for c in all_cells if c["status"] == "ok"]
    return rows, all_cells


def evaluate_all(publications: list[Publication], rows: list[dict[str, Any]],
                 cells: list[dict[str, Any]], profile: str, environment: dict[str, Any],
                 ) -> list[Verdict]:
    """Every claim against one run; `environment` is the run manifest's host description."""
    device_type = str(environment.get("device_type", "unknown"))
    return [evaluate(claim, publication.source, rows, cells, profile, device_type, environment,
                     publication.hardware)
            for publication in publications for claim in publication.claims]
