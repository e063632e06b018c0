from toolkit.device.measure.sampling import Protocol, sample, verdict
from toolkit.device.measure.stats import summarize


class FakeClock:
    """Each step advances time by a fixed amount, so the protocol's bounds are exact."""

    def __init__(self, step_seconds: float) -> None:
        self.now = 0.0
        self.step_seconds = step_seconds

    def __call__(self) -> float:
        return self.now

    def step(self) -> None:
        self.now += self.step_seconds


def test_count_bound_dominates_when_steps_are_slow():
    clock = FakeClock(0.1)
    protocol = Protocol(warmup_count=3, warmup_seconds=0.0, min_count=20, min_seconds=0.5)
    result = sample(clock.step, protocol, clock=clock)
    assert result["warmup_count"] == 3
    assert len(result["samples"]) == 20  # 20 samples take 2 s > min_seconds


def test_duration_bound_dominates_when_steps_are_fast():
    clock = FakeClock(0.01)
    protocol = Protocol(warmup_count=1, warmup_seconds=0.5, min_count=5, min_seconds=1.0)
    result = sample(clock.step, protocol, clock=clock)
    assert result["warmup_count"] >= 50  # warm-up also waits for its duration
    assert 100 <= len(result["samples"]) <= 101
    assert all(abs(s - 0.01) < 1e-9 for s in result["samples"])


def test_max_seconds_stops_and_verdict_flags_too_few_samples():
    clock = FakeClock(1.0)
    protocol = Protocol(warmup_count=0, warmup_seconds=0.0, min_count=100, min_seconds=0.0,
                        max_seconds=10.0)
    samples = sample(clock.step, protocol, clock=clock)["samples"]
    assert len(samples) == 10
    reason = verdict(summarize(samples), protocol, len(samples))
    assert reason == "only 10 samples, protocol needs 100"


def test_verdict_flags_high_cv_and_passes_steady_samples():
    protocol = Protocol(min_count=4, max_cv=0.1)
    noisy = [1.0, 2.0, 3.0, 4.0]
    assert "robust CV" in verdict(summarize(noisy), protocol, 4)
    assert verdict(summarize([1.0, 1.01, 0.99, 1.0]), protocol, 4) is None


def test_one_long_stall_does_not_invalidate_a_steady_series():
    samples = [1.0 + 0.001 * (i % 7) for i in range(999)] + [90.0]
    summary = summarize(samples)
    assert summary["cv"] > 2  # std is dominated by the one stall
    assert verdict(summary, Protocol(min_count=10, max_cv=0.1), len(samples)) is None


def test_harness_overhead_job_compares_alternating_blocks_on_one_session(tmp_path):
    """The bench's device job: one ratio per round of two adjacent blocks of calls."""
    import math

    from toolkit.device import models
    from toolkit.device.backends.onnxruntime.inference import harness_overhead
    from toolkit.device.models.export import export_onnx
    from toolkit.results import record_values

    path = str(tmp_path / "vgg11.onnx")
    export_onnx("vgg11", models.scale_widths("vgg11", 0.125), path)
    job = {"coords": {"batch": 1}, "artifacts": {"onnx": path},
           "settings": {"rounds": 3, "threads": 1, "cpu_mem_arena": True, "mem_pattern": True,
                        "input_shape": [3, 32, 32]},
           "protocol": {"warmup_count": 2, "warmup_seconds": 0.0, "min_count": 20,
                        "min_seconds": 0.01, "max_seconds": 5.0, "max_cv": 1.0}}
    values = record_values(harness_overhead(job)["records"])
    assert values["rounds"] == 3
    assert values["harness_n"] >= 60 and values["bare_n"] >= 60
    assert values["harness_p50"] > 0 and values["bare_p50"] > 0
    assert math.isfinite(values["overhead"]) and -0.5 < values["overhead"] < 0.5
