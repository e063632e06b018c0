"""Published claims against synthetic records with known values."""
import pytest

from toolkit.report.claims import (
    NOT_COMPARABLE,
    NOT_REPRODUCED,
    REPRODUCED,
    Claim,
    Source,
    evaluate,
    load_publications,
)

SOURCE = Source(key="test", citation="A test source.")


def _cell(method: str, model: str, scale: float, status: str = "ok", reason: str = "",
          **metrics: float) -> dict:
    return {"experiment": "scaling-inference", "cell_id": f"{model}-{method}-{scale}",
            "model": model, "method": method, "scale": scale, "framework": "onnxruntime",
            "device": "cpu", "precision": "fp32", "batch": 1, "status": status,
            "reason": reason, **metrics}


# NeuralScale: 3x the latency and 1.1x the memory per parameter of uniform, at every pair.
CELLS = [
    _cell("uniform", "vgg11", 0.25, latency_p50=0.001, model_memory=20e6, params=1e6,
          accuracy=0.88),
    _cell("neuralscale", "vgg11", 0.25, latency_p50=0.003, model_memory=22e6, params=1e6,
          accuracy=0.91),
    _cell("uniform", "mobilenetv2", 0.5, latency_p50=0.002, model_memory=30e6, params=2e6,
          accuracy=0.70),
    _cell("neuralscale", "mobilenetv2", 0.5, latency_p50=0.006, model_memory=33e6, params=2e6,
          accuracy=0.74),
    _cell("uniform", "vgg11", 1.0, status="not run", reason="TensorRT not installed"),
]
ROWS = [c for c in CELLS if c["status"] == "ok"]


def _claim(**fields) -> Claim:
    base = {"id": "c", "statement": "s", "experiment": "scaling-inference",
            "metric": "latency_p50", "comparison": "ratio", "numerator": {"method": "neuralscale"},
            "denominator": {"method": "uniform"}, "operator": "at_least", "expected": 2.5,
            "min_profile": "smoke"}
    return Claim(**(base | fields))


def _verdict(claim: Claim, profile: str = "paper", device: str = "raspberry-pi-4"):
    return evaluate(claim, SOURCE, ROWS, CELLS, profile, device)


def test_ratio_claims_reproduced_and_not():
    latency = _verdict(_claim())
    assert latency.verdict == REPRODUCED and latency.observed == pytest.approx(3.0)
    assert latency.n == 2
    memory = _verdict(_claim(metric="memory_per_param", operator="approx", expected=2.7,
                             tolerance=0.5))
    assert memory.verdict == NOT_REPRODUCED and memory.observed == pytest.approx(1.1)
    assert memory.expected_text() == "2.7 ± 0.5"


def test_derived_accuracy_per_mb_ratio():
    verdict = _verdict(_claim(metric="accuracy_per_mb", operator="at_least", expected=1.0))
    expected = ((0.91 / 22) / (0.88 / 20) * (0.74 / 33) / (0.70 / 30)) ** 0.5
    assert verdict.observed == pytest.approx(expected)
    assert verdict.verdict == NOT_REPRODUCED  # NeuralScale needs 10 % more memory here


def test_value_and_best_comparisons():
    value = _verdict(_claim(comparison="value", metric="accuracy", operator="approx",
                            expected=0.88, tolerance=0.01,
                            filter={"model": "vgg11", "method": "uniform"}))
    assert value.verdict == REPRODUCED and value.observed == pytest.approx(0.88)
    best = _verdict(_claim(comparison="best", best_of="method", metric="accuracy",
                           operator="equals", expected="neuralscale"))
    assert best.verdict == REPRODUCED and best.observed == "neuralscale"


def test_not_comparable_says_why_and_still_shows_the_number():
    hardware = _verdict(_claim(hardware=["jetson-tx2"]), device="x86_64-generic")
    assert hardware.verdict == NOT_COMPARABLE
    assert hardware.reason == "measured on x86_64-generic; the claim holds for jetson-tx2"
    assert hardware.observed == pytest.approx(3.0)
    profile = _verdict(_claim(min_profile="paper"), profile="smoke")
    assert profile.reason == "profile smoke is smaller than the paper profile the claim needs"
    framework = _verdict(_claim(filter={"framework": "tensorrt"}))
    assert framework.verdict == NOT_COMPARABLE and framework.observed is None
    assert framework.reason == "no ok cells with framework=tensorrt"
    not_run = _verdict(_claim(comparison="value", metric="accuracy", operator="approx",
                              expected=0.9, filter={"scale": 1.0}))
    assert not_run.reason == "no ok cells with scale=1.0 (TensorRT not installed)"
    other = _verdict(_claim(experiment="training"))
    assert other.reason == "experiment training not in this run"


def test_shipped_publications_load_and_cover_the_three_studies():
    publications = load_publications()
    keys = {p.source.key for p in publications}
    assert keys == {"gealy2022", "lee2020", "meissl"}
    claims = [c for p in publications for c in p.claims]
    assert len({c.id for c in claims}) == len(claims)
    assert all(c.statement and c.hardware is not None for c in claims)


def test_gpu_cells_use_device_memory_not_rss():
    """A TensorRT cell on a Jetson: its engine lives in nvmap-backed DRAM, outside its RSS; the
    GPU claims' memory per parameter and accuracy per MB use the device-side figure."""
    from toolkit.derived import metric_value

    gpu = {"params": 1e6, "model_memory": 5e6, "gpu_memory_peak_delta": 40e6, "accuracy": 0.9}
    cpu = {"params": 1e6, "model_memory": 5e6, "accuracy": 0.9}
    assert metric_value(gpu, "memory_per_param") == pytest.approx(40.0)
    assert metric_value(gpu, "accuracy_per_mb") == pytest.approx(0.9 / 40)
    assert metric_value(cpu, "memory_per_param") == pytest.approx(5.0)
