"""What a device-side job returns: records as (metric, value, unit), SI units only."""
from typing import Tuple

from toolkit.device.measure.sampling import verdict
from toolkit.device.measure.stats import summarize

Record = Tuple[str, float, str]


class NotRun(Exception):
    """The cell cannot run here (framework, device or precision missing): recorded, not faked."""


def latency_records(samples, batch, protocol):
    # type: (Sequence[float], int, Protocol) -> Tuple[List[Record], Optional[str]]
    """Summary of per-call latencies plus throughput, and the INVALID reason if any."""
    summary = summarize(samples)
    records = [("latency_" + key, value, "s") for key, value in sorted(summary.items())
               if key not in ("n", "cv", "rcv")]
    records += [
        ("latency_cv", summary["cv"], "ratio"),
        ("latency_rcv", summary["rcv"], "ratio"),
        ("latency_n", summary["n"], "count"),
        ("throughput", batch / summary["p50"] if summary["p50"] > 0 else 0.0, "1/s"),
    ]
    return records, verdict(summary, protocol, len(samples))


def memory_records(rss_baseline, rss_peak):
    # type: (int, int) -> List[Record]
    """Peak RSS, its import baseline, and the model's share (peak - baseline), in bytes."""
    return [
        ("rss_baseline", float(rss_baseline), "B"),
        ("rss_peak", float(rss_peak), "B"),
        ("model_memory", float(rss_peak - rss_baseline), "B"),
    ]
