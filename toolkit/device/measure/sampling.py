"""The timing protocol: warm up, then sample until both a minimum count and a minimum duration."""
import time


class Protocol(object):
    """How long to warm up and how much to measure; each bound is explicit and recorded."""

    def __init__(self, warmup_count=10, warmup_seconds=0.5, min_count=50, min_seconds=2.0,
                 max_seconds=60.0, max_cv=0.25):
        # type: (int, float, int, float, float, float) -> None
        if min_count < 1:
            raise ValueError("min_count must be >= 1, got {}".format(min_count))
        self.warmup_count = int(warmup_count)
        self.warmup_seconds = float(warmup_seconds)
        self.min_count = int(min_count)
        self.min_seconds = float(min_seconds)
        self.max_seconds = float(max_seconds)
        self.max_cv = float(max_cv)

    @classmethod
    def from_dict(cls, values):
        # type: (Dict[str, float]) -> Protocol
        return cls(**values)

    def as_dict(self):
        # type: () -> Dict[str, float]
        return dict(vars(self))


def sample(step, protocol, clock=time.perf_counter):
    # type: (Callable[[], object], Protocol, Callable[[], float]) -> Dict[str, object]
    """Time `step()` per the protocol; returns raw samples (seconds) and the warm-up accounting.

    Warm-up ends when BOTH its count and its duration are reached. Measuring stops when both
    min_count and min_seconds are reached, or at max_seconds (the verdict then flags too few
    samples). Only the call itself is inside the timed region.
    """
    warmup_started = clock()
    warmup_done = 0
    while warmup_done < protocol.warmup_count or clock() - warmup_started < protocol.warmup_seconds:
        step()
        warmup_done += 1
        if clock() - warmup_started > protocol.max_seconds:
            break
    warmup_elapsed = clock() - warmup_started

    samples = []  # type: List[float]
    append = samples.append
    started = clock()
    while True:
        t0 = clock()
        step()
        t1 = clock()
        append(t1 - t0)
        elapsed = t1 - started
        if len(samples) >= protocol.min_count and elapsed >= protocol.min_seconds:
            break
        if elapsed >= protocol.max_seconds:
            break
    return {
        "samples": samples,
        "warmup_count": warmup_done,
        "warmup_seconds": warmup_elapsed,
        "measure_seconds": clock() - started,
    }


def verdict(summary, protocol, n_samples):
    # type: (Dict[str, float], Protocol, int) -> Optional[str]
    """None when the protocol was met, else the reason the result is INVALID (kept, not dropped)."""
    if n_samples < protocol.min_count:
        return "only {} samples, protocol needs {}".format(n_samples, protocol.min_count)
    if summary["rcv"] > protocol.max_cv:
        return "robust CV {:.3f} above the limit {:.3f}".format(summary["rcv"], protocol.max_cv)
    return None
