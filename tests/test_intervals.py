"""Intervals over rounds: the stated level is the real coverage (toolkit/intervals.py)."""
from __future__ import annotations

import math
import random
import statistics

import pytest

from toolkit import intervals


def test_the_range_of_n_rounds_states_its_real_level():
    # Before: a bootstrap's 2.5/97.5 % percentiles of 2, 3 or 5 rounds were their range, called
    # 95 %; the range covers the median with probability 1 - 2^(1-n).
    for n, level in ((2, 0.5), (3, 0.75), (4, 0.875), (5, 0.9375), (6, 0.96875)):
        found = intervals.order_interval([float(v) for v in range(1, n + 1)])
        assert (found.low, found.high, found.n) == (1.0, float(n), n)
        assert found.level == pytest.approx(level) == pytest.approx(1 - 2 ** (1 - n))
    nine = intervals.order_interval([float(v) for v in range(1, 10)])
    # 9 rounds: the 2nd and 8th order statistics already cover 96.1 %, so they are taken
    assert (nine.low, nine.high) == (2.0, 8.0) and nine.level == pytest.approx(1 - 20 / 512)
    assert intervals.order_interval([1.0]) is None
    assert intervals.rounds_for(0.90) == 5 and intervals.rounds_for(0.95) == 6
    assert intervals.level_text(0.9375) == "93.8 %" and intervals.level_text(0.75) == "75 %"


@pytest.mark.parametrize("n", [3, 5, 9])
def test_the_stated_level_is_the_coverage_on_a_skewed_distribution(n):
    """Seeded draws from a lognormal (timings are skewed): the share of intervals that cover
    the true median matches the stated level within the binomial noise of the trials."""
    generator = random.Random(n)
    trials, covered, level = 4000, 0, None
    for _ in range(trials):
        values = [generator.lognormvariate(0.0, 0.5) for _ in range(n)]
        found = intervals.order_interval(values)
        level = found.level
        covered += found.low <= 1.0 <= found.high  # the lognormal's median is e^0 = 1
    noise = 4 * math.sqrt(level * (1 - level) / trials)
    assert abs(covered / trials - level) <= noise


def test_a_non_finite_round_is_an_error_not_a_figure():
    with pytest.raises(ValueError, match="non-finite"):
        intervals.order_interval([1.0, float("nan"), 1.2])


def test_ratios_pair_rounds_of_one_pass_and_count_what_they_leave_out():
    slow = {"p1/1": 1.0, "p1/2": 1.5, "p1/3": 0.8, "p1/4": 1.1, "p1/5": 0.9}
    a = {k: 2.0 * s for k, s in slow.items()}
    b = dict(slow)
    paired = intervals.ratio_interval(a, b)
    assert (paired.low, paired.high, paired.n) == pytest.approx((2.0, 2.0, 5))
    # round 3 of b measured again in a later pass: paired with nothing, and said so
    b_again = {k: v for k, v in b.items() if k != "p1/3"} | {"p2/3": 0.8}
    found = intervals.ratio_interval(a, b_again)
    assert found.n == 4 and found.unpaired == 2 and found.level == pytest.approx(0.875)
    assert any("another pass" in note for note in found.notes())
    # a zero denominator leaves its round out, counted
    zero = dict(b) | {"p1/2": 0.0}
    dropped = intervals.ratio_interval(a, zero)
    assert dropped.n == 4 and dropped.dropped == 1
    assert any("zero denominator" in note for note in dropped.notes())
    # lists (runs from before passes were recorded) pair by round index
    assert intervals.ratio_interval([2.0, 3.0], [1.0, 1.5]).n == 2
    assert intervals.ratio_interval(a, [1.0]) is None


def test_the_plain_ratio_is_the_run_figure_not_a_median_over_draws():
    # Per-cell medians 1 and 2: the run's figure is 0.5, whatever the rounds' pairing gives.
    from toolkit.report.kinds.base import ratio_text

    numerator, denominator = [0.5, 1.0, 1.5], [3.0, 2.0, 1.0]
    medians = {"n": {"latency_p50": (1.0, "s")}, "d": {"latency_p50": (2.0, "s")}}
    rounds = {"n": {"latency_p50": numerator}, "d": {"latency_p50": denominator}}
    assert ratio_text("n", "d", "latency_p50", medians, rounds).startswith("0.500 [")
    found = intervals.ratio_interval(numerator, denominator)
    assert (found.low, found.high) == pytest.approx((1 / 6, 1.5))
    assert not intervals.outside(0.5, found) and intervals.outside(2.0, found)
    assert statistics.median([0.5, 1.0, 1.5]) == 1.0


def test_too_few_rounds_says_how_many_would_do():
    assert intervals.too_few(0.75, 3) == "too few rounds (n = 3 gives 75 %; 5 give 93.8 %)"
    assert intervals.too_few(None, 1).startswith("too few rounds (n = 1 gives no interval")
    assert intervals.too_few(0.9375, 5) == ""
