import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolkit.device.measure.stats import nearest_rank, summarize


def test_nearest_rank_picks_observed_values():
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert nearest_rank(values, 50) == 50.0
    assert nearest_rank(values, 90) == 90.0
    assert nearest_rank(values, 99) == 99.0
    assert nearest_rank(values, 100) == 100.0
    assert nearest_rank(values, 0) == 1.0
    assert nearest_rank([3.0, 7.0], 50) == 3.0  # rank ceil(0.5 * 2) = 1


def test_summary_of_known_samples():
    summary = summarize([4.0, 1.0, 3.0, 2.0])
    assert summary["min"] == 1.0 and summary["max"] == 4.0
    assert summary["p50"] == 2.0 and summary["n"] == 4
    assert summary["mean"] == pytest.approx(2.5)
    assert summary["std"] == pytest.approx(math.sqrt(5 / 3))
    assert summary["cv"] == pytest.approx(math.sqrt(5 / 3) / 2.5)
    assert summary["iqr"] == 3.0 - 1.0  # p75 = 3 (rank 3), p25 = 1 (rank 1)
    assert summary["rcv"] == pytest.approx(2.0 / (1.349 * 2.0))


def test_no_samples_is_an_error():
    with pytest.raises(ValueError):
        summarize([])


@given(st.lists(st.floats(min_value=1e-6, max_value=10.0), min_size=1, max_size=200))
def test_percentiles_are_ordered_and_observed(samples):
    summary = summarize(samples)
    assert summary["min"] <= summary["p50"] <= summary["p90"] <= summary["p99"] <= summary["max"]
    for key in ("p50", "p90", "p99"):
        assert summary[key] in samples
