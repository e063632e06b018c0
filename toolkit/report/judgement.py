"""A claim's verdict from its figure in each round (docs/statistics.md).

claims.py says what a claim compares and computes its figure from a run's rows; this module
decides what that figure, computed once per round, lets the report say: reproduced, not
reproduced or inconclusive, with the interval and its level, and what a reader must know
about the rounds behind it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from toolkit import intervals
from toolkit.derived import derived_inputs

REPRODUCED, NOT_REPRODUCED, NOT_COMPARABLE = "reproduced", "not reproduced", "not comparable"
INCONCLUSIVE = "inconclusive"  # the interval straddles the bound, or too few rounds
ROUNDS = "_rounds"  # row field: metric -> the cell's value in each round (toolkit/rounds.py)
ONCE = "_once"  # row field: metrics measured once per cell, not per round (rounds.ONCE)


@dataclass(frozen=True)
class Judgement:
    verdict: str
    reasons: tuple[str, ...] = ()
    interval: intervals.Interval | None = None
    rounds: int = 1
    agreement: float | None = None
    notes: tuple[str, ...] = ()


def judge(claim: Any, observed: float | str | None, used: list[dict[str, Any]],
          observe: Callable[[list[dict[str, Any]]], float | str | None]) -> Judgement:
    """The verdict from the claim's figure in each round (docs/statistics.md).

    The observed figure is the run's own (per-cell medians); the interval is the
    order-statistic interval of the figure computed round by round, pairing only rounds of one
    pass. A verdict needs an interval of at least intervals.VERDICT_LEVEL: fewer rounds give
    *inconclusive: too few rounds*. Reproduced when the whole interval holds the claim, not
    reproduced when none of it does, else inconclusive. A figure whose inputs were all measured
    once per cell (accuracy: one training) has no spread over rounds: its point decides, and the
    verdict says it rests on one measurement. A "best" claim is reproduced when every round
    picks the claim's group (as sure as an interval of that many rounds)."""
    if observed is None:
        return Judgement(NOT_COMPARABLE)
    figures, dropped, unpaired, rounds = _per_round(used, observe)
    once = _measured_once(claim, used)
    notes = [f"{', '.join(once)} measured once per cell (no spread over rounds)"] if once else []
    if once and len(once) == len(_inputs(claim.metric, used)):
        verdict = REPRODUCED if _holds(claim, observed) else NOT_REPRODUCED
        return Judgement(verdict, (), None, rounds, None,
                          (f"{', '.join(once)} measured once per cell: no interval",))
    if isinstance(observed, str):
        agreement = (sum(f == observed for f in figures) / len(figures)) if figures else None
        level = intervals.coverage(len(figures), 1) if len(figures) >= 2 else None
        if level is None or level < intervals.VERDICT_LEVEL:
            short = intervals.too_few(level, len(figures) if figures else rounds)
            return Judgement(INCONCLUSIVE, (short,), None, rounds, agreement)
        if agreement != 1.0:
            return Judgement(INCONCLUSIVE, ("the rounds disagree on the best",), None, rounds,
                              agreement)
        return Judgement(REPRODUCED if _holds(claim, observed) else NOT_REPRODUCED, (), None,
                          rounds, agreement)
    interval = intervals.order_interval([float(f) for f in figures], dropped, unpaired)
    notes += interval.notes() if interval else []
    if interval is not None and intervals.outside(float(observed), interval):
        notes.append("the run's figure lies outside its rounds' interval (the per-cell "
                     "medians and the per-round figures disagree)")
    short = intervals.too_few(interval and interval.level,
                              interval.n if interval else rounds)
    if short:
        return Judgement(INCONCLUSIVE, (short,), interval, rounds, None, tuple(notes))
    holding = [_holds(claim, interval.low), _holds(claim, interval.high)]
    if all(holding):
        verdict = REPRODUCED
    elif any(holding) or _straddles(claim, interval.low, interval.high):
        verdict = INCONCLUSIVE
    else:
        verdict = NOT_REPRODUCED
    return Judgement(verdict, (), interval, rounds, None, tuple(notes))


def _inputs(metric: str, rows: list[dict[str, Any]]) -> list[str]:
    """The measured metrics a claim's figure is computed from, among those the rows have."""
    return [m for m in derived_inputs(metric) if any(m in r for r in rows)]


def _measured_once(claim: Any, used: list[dict[str, Any]]) -> list[str]:
    """Inputs of the claim's figure that were measured once per cell and copied into every
    round (ONCE: accuracy from the preparation's training), whatever the rounds."""
    once = {m for r in used for m in r.get(ONCE) or ()}
    return [m for m in _inputs(claim.metric, used) if m in once]


def _per_round(used: list[dict[str, Any]],
               observe: Callable[[list[dict[str, Any]]], float | str | None],
               ) -> tuple[list[float | str], int, int, int]:
    """(the claim's figure in each pass every row it used was measured in, passes whose
    figure was undefined, rounds of those rows left unpaired, the most rounds of a row)."""
    unique = list({id(r): r for r in used}.values())
    by_pass = [_by_pass(r) for r in unique]
    rounds = max((len(p) for p in by_pass), default=1) or 1
    if not unique or not all(by_pass):
        return [], 0, 0, rounds
    figures, dropped, unpaired = intervals.per_round(
        by_pass, lambda drawn: observe([r | metrics for r, metrics in
                                        zip(unique, drawn, strict=True)]))
    return figures, dropped, unpaired, rounds


def _by_pass(row: dict[str, Any]) -> dict[str, dict[str, float]]:
    """A row's per-round figures as pass -> metric -> value."""
    out: dict[str, dict[str, float]] = {}
    for metric, values in (row.get(ROUNDS) or {}).items():
        for key, value in intervals.keyed(values).items():
            out.setdefault(key, {})[metric] = value
    return out


def _straddles(claim: Any, low: float, high: float) -> bool:
    """Whether an interval with both ends outside a bounded claim covers it (e.g. 2.0–3.5
    against 2.4–3.0): neither reproduced nor refuted."""
    if claim.operator == "between":
        return low < float(claim.expected) and high > float(claim.upper or claim.expected)
    if claim.operator == "approx":
        return low < float(claim.expected) - claim.tolerance < high
    return False


def _holds(claim: Any, observed: float | str) -> bool:
    if claim.operator == "equals":
        return str(observed) == str(claim.expected)
    expected, value = float(claim.expected), float(observed)
    if claim.operator == "approx":
        return abs(value - expected) <= claim.tolerance
    if claim.operator == "between":
        return expected <= value <= float(claim.upper or expected)
    return value >= expected if claim.operator == "at_least" else value <= expected
