"""Summary statistics of raw samples (all samples are kept; these only summarise them)."""
import math
from typing import Dict, Sequence


def nearest_rank(sorted_values: Sequence[float], percentile: float) -> float:
    """Nearest-rank percentile (as MLPerf LoadGen and trtexec report): a value that was observed."""
    if not sorted_values:
        raise ValueError("no samples")
    if not 0 <= percentile <= 100:
        raise ValueError("percentile must be in [0, 100], got {}".format(percentile))
    rank = max(1, math.ceil(percentile / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(samples: Sequence[float]) -> Dict[str, float]:
    """min, p50, p90, p99, mean, std (sample), cv, iqr, robust cv, n of the samples.

    `rcv` = IQR / (1.349 * median) equals the CV for normal data but ignores the rare long
    stalls (page faults, preemption) that dominate std on a shared machine.
    """
    values = sorted(samples)
    n = len(values)
    if n == 0:
        raise ValueError("no samples")
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    iqr = nearest_rank(values, 75) - nearest_rank(values, 25)
    median = nearest_rank(values, 50)
    return {
        "min": values[0],
        "p50": nearest_rank(values, 50),
        "p90": nearest_rank(values, 90),
        "p99": nearest_rank(values, 99),
        "max": values[-1],
        "mean": mean,
        "std": std,
        "cv": std / mean if mean > 0 else 0.0,
        "iqr": iqr,
        "rcv": iqr / (1.349 * median) if median > 0 else 0.0,
        "n": float(n),
    }
