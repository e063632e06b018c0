"""Rounds: a cell measured several times, each in a fresh process or container, the rounds of
all cells interleaved (round 1 of every cell, then round 2, ...) so a slow period of the machine
hits the cells compared with each other alike.

A cell's figure is the median over its rounds; the per-round figures stay in the cell's file
(payload "rounds") and in rounds.parquet, for intervals (toolkit/intervals.py) and for drift:
how far the machine's speed moved from one round to the next.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Any

# A round counts as done with these statuses (a failed round is measured again on resume).
DONE = ("ok", "invalid", "not run")
MEASURED = ("ok", "invalid")
# A round payload's field: records measured once per cell and copied into every round.
ONCE = "once"
# The timing figure of each kind of cell: what drift is judged on.
TIMING_METRICS = ("latency_p50", "step_time_p50")
# Machine speed moving by more than this between rounds is reported.
DRIFT_THRESHOLD = 0.10
# One cell's timing rounds spreading by more than this (largest ÷ smallest − 1) are reported
# beside the cell: its median then rests on rounds that disagree, whatever the machine did.
SPREAD_THRESHOLD = 0.20


def combine(rounds: list[dict[str, Any]], planned: int) -> dict[str, Any]:
    """One cell's payload from its round payloads (in round order): the last round's fields,
    every record as the median over the measured rounds, samples concatenated, and a summary
    of each round with its own figures.

    Status: failed if a round failed (a re-run measures that round again), not run if the
    first round was not run, invalid if at least half the measured rounds were invalid, else
    ok: one disturbed round of three cannot carry the median, and rounds exist to outvote it
    (its reason stays in the round's summary)."""
    last = rounds[-1]
    payload = dict(last)
    failed = [r for r in rounds if r["status"] == "failed"]
    invalid = [r for r in rounds if r["status"] == "invalid"]
    if failed:
        payload["status"], payload["reason"] = "failed", failed[0].get("reason") or "failed"
    elif rounds[0]["status"] == "not run":
        payload["status"], payload["reason"] = "not run", rounds[0]["reason"]
    elif 2 * len(invalid) >= sum(1 for r in rounds if r["status"] in MEASURED):
        payload["status"], payload["reason"] = "invalid", "; ".join(map(_round_reason, invalid))
    else:
        payload["status"], payload["reason"] = "ok", ""
    measured = [r for r in rounds if r["status"] in MEASURED]
    payload["records"] = _median_records(measured)
    samples: dict[str, dict[str, Any]] = {}
    for r in measured:
        for metric, series in (r.get("samples") or {}).items():
            samples.setdefault(metric, {"unit": series["unit"], "values": []})
            samples[metric]["values"] += list(series["values"])
    payload["samples"] = samples
    payload["wall_s"] = sum(float(r.get("wall_s") or 0.0) for r in rounds)
    payload["started_at"] = rounds[0].get("started_at", "")
    payload["rounds_planned"] = planned
    payload["rounds"] = [
        {"round": r["round"], "status": r["status"], "reason": r.get("reason") or "",
         "started_at": r.get("started_at", ""), "wall_s": float(r.get("wall_s") or 0.0),
         "pass": r.get("pass", ""), "values": per_round_values(r)}
        for r in rounds]
    return payload


def per_round_values(payload: dict[str, Any]) -> dict[str, float]:
    """A round's own figures: not those measured once per cell and copied into every round
    (ONCE: accuracy from the preparation's training), which have no spread over rounds, and
    not a non-finite value (a diverged loss in an invalid round is a reason, not a figure)."""
    once = set(payload.get(ONCE) or ())
    return {metric: float(value) for metric, value, _ in payload.get("records", [])
            if metric not in once and math.isfinite(float(value))}


def non_finite(payload: dict[str, Any]) -> list[str]:
    """Metrics of a round's records whose value is NaN or infinite."""
    return [metric for metric, value, _ in payload.get("records", [])
            if not math.isfinite(float(value))]


def round_key(summary: dict[str, Any]) -> str:
    """What pairs rounds of different cells: the pass (one sweep of the scheduler over round
    k) a round was measured in; a run from before passes were recorded pairs by round index."""
    return str(summary.get("pass") or f"round {summary['round']}")


def keyed_values(payload: dict[str, Any], metric: str) -> dict[str, float]:
    """A metric's value in each measured round, in round order, keyed by round_key
    (intervals.py pairs cells on it); the combined value where the cell has no rounds."""
    if "rounds" not in payload:
        found = [float(v) for m, v, _ in payload.get("records", []) if m == metric]
        return {"round 0": found[0]} if found else {}
    return {round_key(r): r["values"][metric] for r in payload["rounds"]
            if r["status"] in MEASURED and metric in r["values"]}


def _round_reason(payload: dict[str, Any]) -> str:
    return f"round {payload['round'] + 1}: {payload.get('reason') or payload['status']}"


def _median_records(measured: list[dict[str, Any]]) -> list[list[Any]]:
    order: list[str] = []
    values: dict[str, list[float]] = {}
    units: dict[str, str] = {}
    for payload in measured:
        for metric, value, unit in payload.get("records", []):
            if metric not in values:
                order.append(metric)
                values[metric] = []
            if math.isfinite(float(value)):
                values[metric].append(float(value))
            units[metric] = unit
    return [[metric, statistics.median(values[metric]) if values[metric] else float("nan"),
             units[metric]] for metric in order]


def rounds_done(payload: dict[str, Any]) -> int:
    """Rounds of a cell's payload that need no measuring again (a run from before rounds: 1)."""
    if "rounds" not in payload:
        return 1 if payload["status"] in DONE else 0
    return sum(1 for r in payload["rounds"] if r["status"] in DONE)


def is_finished(payload: dict[str, Any], planned: int | None = None) -> bool:
    """Done with every planned round (a cell not run in its first round is done)."""
    if payload["status"] not in DONE:
        return False
    if payload["status"] == "not run":
        return True
    wanted = planned if planned is not None else int(payload.get("rounds_planned", 1))
    return rounds_done(payload) >= wanted


def round_values(payload: dict[str, Any], metric: str) -> list[float]:
    """A metric's value in each measured round, in round order (the combined value where the
    cell has no rounds)."""
    return list(keyed_values(payload, metric).values())


def in_round_order(values: Mapping[str, float] | list[float]) -> list[float]:
    """A cell's per-round values as a list: values keyed by pass are kept in round order
    (keyed_values and render.load_rounds insert them so)."""
    return list(values.values()) if isinstance(values, Mapping) else list(values)


def speed_by_round(cells: list[dict[str, Any]]) -> list[float]:
    """How slow the machine was in each round, relative to the cells' medians: for round k,
    the median over cells of (timing in round k ÷ the cell's median timing). 1.0 = typical;
    1.2 = the cells took about 20 % longer in that round. `cells`: per cell, metric -> its value
    in each round (round_values)."""
    factors: dict[int, list[float]] = {}
    for by_metric in cells:
        for metric in TIMING_METRICS:
            values = in_round_order(by_metric.get(metric) or [])
            if len(values) < 2:
                continue
            middle = statistics.median(values)
            if middle > 0:
                for index, value in enumerate(values):
                    factors.setdefault(index, []).append(value / middle)
            break
    return [statistics.median(factors[k]) for k in sorted(factors)]


def drift(speeds: list[float]) -> float | None:
    """The largest move of the machine's speed between rounds, as a fraction (None with fewer
    than two rounds)."""
    if len(speeds) < 2:
        return None
    return max(speeds) / min(speeds) - 1.0


def drift_text(speeds: list[float]) -> tuple[str, bool]:
    """"speed by round a · b; moved x %" for the console and the report, and whether the move
    exceeds what a fair comparison allows ("" and False with fewer than two rounds)."""
    moved = drift(speeds)
    if moved is None:
        return "", False
    return (" · ".join(f"{s:.2f}" for s in speeds) + f"; moved {moved:.0%}",
            moved > DRIFT_THRESHOLD)


def timings(payloads: list[dict[str, Any]]) -> list[dict[str, list[float]]]:
    """speed_by_round's input from cell payloads."""
    return [{metric: round_values(payload, metric) for metric in TIMING_METRICS}
            for payload in payloads]


def timing_spread(by_metric: Mapping[str, Any]) -> tuple[str, float, float, int] | None:
    """(timing metric, smallest, largest, rounds) of a cell whose timing rounds spread beyond
    SPREAD_THRESHOLD, else None. `by_metric`: metric -> the cell's values by round."""
    for metric in TIMING_METRICS:
        values = in_round_order(by_metric.get(metric) or [])
        if len(values) < 2:
            continue
        low, high = min(values), max(values)
        if low > 0 and high / low - 1.0 > SPREAD_THRESHOLD:
            return metric, low, high, len(values)
        return None
    return None
