"""Intervals over rounds whose stated level is their real coverage (docs/statistics.md).

A round measures every cell once, in a fresh process or container, the cells interleaved; a
cell's rounds are independent repetitions. For a figure computed from several cells (a ratio,
a geometric mean of ratios, a claim's observed value) the figure is computed once per round,
from that round's values alone, so a slow period of the machine hits numerator and
denominator alike and cancels. Rounds are paired by their *pass* (toolkit/rounds.py: one sweep
of the scheduler over round k): a round measured again later, after a failure, was not
measured beside the others' and is paired with nothing.

The interval is the distribution-free order-statistic interval for the median of those
per-round figures: with n rounds, [x_(j), x_(n+1-j)] covers the median with probability
1 - 2·P(Binomial(n, 1/2) < j), exactly, whatever the distribution of a round's figure. The
largest j whose coverage reaches TARGET is taken; where even j = 1 (the range) falls short, the
range is returned with its real, lower level: 2 rounds give 50 %, 3 give 75 %, 4 give 87.5 %,
5 give 93.8 %. A verdict needs VERDICT_LEVEL (claims.py).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, TypeVar

TARGET = 0.95  # the level an interval aims for; fewer rounds give less, and say so
VERDICT_LEVEL = 0.90  # a claim is judged only from an interval at least this sure

Keyed = Mapping[str, float]  # a cell's value per round, keyed by the round's pass
T, R = TypeVar("T"), TypeVar("R")


class Interval(NamedTuple):
    """[low, high] covering the median of a round's figure with probability `level`, from
    `n` paired rounds; `dropped`: rounds whose figure was undefined (e.g. a zero denominator);
    `unpaired`: rounds measured in a pass the other cells were not measured in."""

    low: float
    high: float
    level: float
    n: int
    dropped: int = 0
    unpaired: int = 0

    def text(self, fmt: Callable[[float], str] = "{:.3g}".format) -> str:
        """"[1.98–2.31; 94 %]": the bounds and the level, always together."""
        return f"[{fmt(self.low)}–{fmt(self.high)}; {level_text(self.level)}]"

    def notes(self) -> list[str]:
        """What a reader must know about the rounds behind it."""
        out = []
        if self.dropped:
            out.append(f"{self.dropped} round{'s' * (self.dropped > 1)} without a defined "
                       "figure (zero denominator) left out")
        if self.unpaired:
            out.append(f"{self.unpaired} round{'s' * (self.unpaired > 1)} measured in another "
                       "pass (re-measured later) paired with nothing")
        return out


def level_text(level: float) -> str:
    """94 %, 87.5 %, 50 %: enough digits to tell the levels of 2 to 9 rounds apart."""
    return f"{round(level * 100, 1):g} %"


def coverage(n: int, j: int) -> float:
    """Probability that [x_(j), x_(n+1-j)] of n independent draws covers their median."""
    below = sum(math.comb(n, i) for i in range(j))
    return 1.0 - 2.0 * below / 2 ** n


def rounds_for(level: float) -> int:
    """The fewest rounds whose range reaches `level` (5 for 90 %, 6 for 95 %)."""
    n = 2
    while coverage(n, 1) < level:
        n += 1
    return n


def order_interval(values: Sequence[float], dropped: int = 0, unpaired: int = 0,
                   ) -> Interval | None:
    """The order-statistic interval of the values' median (None with fewer than two)."""
    if any(not math.isfinite(v) for v in values):
        raise ValueError(f"non-finite value among rounds {list(values)}: a round that "
                         "produced one is an error of that round, never a figure")
    n = len(values)
    if n < 2:
        return None
    ordered = sorted(values)
    j = 1
    while j + 1 <= n // 2 and coverage(n, j + 1) >= TARGET:
        j += 1
    return Interval(ordered[j - 1], ordered[n - j], coverage(n, j), n, dropped, unpaired)


def keyed(values: Keyed | Sequence[float]) -> dict[str, float]:
    """A cell's rounds keyed by pass; a plain list (a run from before passes were recorded)
    is keyed by round index, as it was measured."""
    if isinstance(values, Mapping):
        return dict(values)
    return {f"round {index}": float(v) for index, v in enumerate(values)}


def median_interval(values: Keyed | Sequence[float]) -> Interval | None:
    """Interval of one cell's median over its rounds."""
    return order_interval(list(keyed(values).values()))


def per_round(series: Sequence[Mapping[str, T]], statistic: Callable[[list[T]], R | None],
              ) -> tuple[list[R], int, int]:
    """(the statistic in each pass every cell was measured in, passes whose statistic was
    undefined, rounds left unpaired): `series` holds each cell's rounds keyed by pass,
    `statistic` gets the cells' rounds of one pass."""
    if not series:
        return [], 0, 0
    shared = set(series[0]).intersection(*series[1:])
    unpaired = sum(len(set(s) - shared) for s in series)
    figures, dropped = [], 0
    for key in sorted(shared):
        value = statistic([s[key] for s in series])
        if value is None:
            dropped += 1
        else:
            figures.append(value)
    return figures, dropped, unpaired


def ratio_interval(numerator: Keyed | Sequence[float], denominator: Keyed | Sequence[float],
                   ) -> Interval | None:
    """Interval of numerator ÷ denominator from the per-pass ratios (None with fewer than two
    paired passes)."""
    figures, dropped, unpaired = per_round([keyed(numerator), keyed(denominator)],
                                           lambda pair: safe_ratio(pair[0], pair[1]))
    return order_interval(figures, dropped, unpaired)


def safe_ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def outside(value: float, interval: Interval | None) -> bool:
    """Whether the run's figure lies outside its rounds' interval: the per-cell medians and
    the per-round figures disagree, which the reader is told (never hidden)."""
    return interval is not None and not interval.low <= value <= interval.high


def overlap(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool | None:
    """Whether two intervals share a point (None when either is missing)."""
    if a is None or b is None:
        return None
    return a[0] <= b[1] and b[0] <= a[1]


def too_few(level: float | None, n: int, needed: float = VERDICT_LEVEL) -> str:
    """Why an interval of this level from n rounds cannot carry a verdict ("too few rounds
    (n = 3 gives 75 %; 5 give 93.8 %)"), or "" when it can; level None: no interval."""
    if level is not None and level >= needed:
        return ""
    enough = rounds_for(needed)
    given = "no interval" if level is None else level_text(level)
    return (f"too few rounds (n = {n} gives {given}; {enough} give "
            f"{level_text(coverage(enough, 1))})")
