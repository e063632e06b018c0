"""Published claims against synthetic records with known values."""
import re
import statistics

import polars as pl
import pytest

from toolkit.report.claims import (
    INCONCLUSIVE,
    NOT_COMPARABLE,
    NOT_REPRODUCED,
    ONCE,
    REPRODUCED,
    ROUNDS,
    Claim,
    Publication,
    Source,
    evaluate,
    evaluate_all,
    load_publications,
    run_rows,
)

SOURCE = Source(key="test", citation="A test source.")


# Five rounds: the fewest whose interval reaches the 90 % a verdict needs.
VERDICT_ROUNDS = 5


def steady(row: dict, rounds: int = VERDICT_ROUNDS) -> dict:
    """The row measured in `rounds` rounds that each gave its figures (a zero-width interval:
    these tests are about the claims' logic, test_intervals about the spread)."""
    metrics = {k: v for k, v in row.items() if isinstance(v, float) and k != "scale"}
    return row | {ROUNDS: {m: {f"pass/{k}": v for k in range(rounds)} for m, v in metrics.items()}}


def _cell(method: str, model: str, scale: float, status: str = "ok", reason: str = "",
          fit: str = "power_law", **metrics: float) -> dict:
    row = {"experiment": "scaling-inference", "cell_id": f"{model}-{method}-{scale}",
           "model": model, "method": method, "scale": scale, "framework": "onnxruntime",
           "device": "cpu", "precision": "fp32", "batch": 1, "status": status,
           "reason": reason, **metrics,
           **({"fit": fit, "search": "published"} if method == "neuralscale" else {})}
    return steady(row) if status == "ok" else row


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
            "min_profile": "smoke", "search_data": {"dataset": "cifar10", "classes": 10}}
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
    assert hardware.reason == "needs jetson-tx2 (this run: x86_64-generic)"
    assert hardware.observed == pytest.approx(3.0)
    profile = _verdict(_claim(min_profile="paper"), profile="smoke")
    assert profile.reason == "needs the paper profile (this run: smoke)"
    framework = _verdict(_claim(filter={"framework": "tensorrt"}))
    assert framework.verdict == NOT_COMPARABLE and framework.observed is None
    assert framework.reason == "no ok cells with framework=tensorrt"
    not_run = _verdict(_claim(comparison="value", metric="accuracy", operator="approx",
                              expected=0.9, filter={"scale": 1.0}))
    # each cell reason is a reason of its own (several never run together into one line)
    assert not_run.reasons == ("no ok cells with scale=1.0", "scale=1.0: TensorRT not installed")
    two = CELLS + [_cell("neuralscale", "vgg11", 1.0, status="not run", reason="no GPU")]
    assert evaluate(_claim(comparison="value", metric="accuracy", operator="approx",
                           expected=0.9, filter={"scale": 1.0}), SOURCE, ROWS, two, "paper",
                    "raspberry-pi-4").reasons == ("no ok cells with scale=1.0",
                                                  "scale=1.0: TensorRT not installed",
                                                  "scale=1.0: no GPU")
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


MODELS = ["vgg11", "mobilenetv2", "preact_resnet18", "resnet50"]
SCALES = [0.25, 0.5, 0.75, 1.0]


def _grid(latency_ratio: float = 3.0, fit: str = "power_law", models=MODELS, scales=SCALES,
          ) -> list[dict]:
    """Every model x scale pair, NeuralScale `latency_ratio` x slower, same memory per param."""
    cells = []
    for model in models:
        for scale in scales:
            cells.append(_cell("uniform", model, scale, latency_p50=0.001, model_memory=10e6,
                               params=1e6))
            cells.append(_cell("neuralscale", model, scale, fit=fit,
                               latency_p50=0.001 * latency_ratio, model_memory=10e6, params=1e6))
    return cells


def _shipped(claim_id: str) -> Claim:
    return next(c for p in load_publications() for c in p.claims if c.id == claim_id)


def _judge(claim: Claim, cells: list[dict], device: str = "x86_64-generic",
           profile: str = "quick"):
    rows = [c | {"scaling_mode": c.get("scaling_mode", "params")} for c in cells
            if c["status"] == "ok"]
    notes = next(p.hardware for p in load_publications() if claim in p.claims)
    return evaluate(claim, SOURCE, rows, cells, profile, device,
                    {"machine": "x86_64", "cpu": "Test CPU", "cores_usable": 2,
                     "packages": {"onnxruntime": "1.20.1"}}, notes)


def test_lee_claims_match_on_the_cells_data_set_from_their_settings():
    """Defect 1: the data set is a cell setting, not a grid coordinate; before, no row carried
    it and every Lee claim said "no ok cells with dataset=cifar10" even for a paper run."""
    claim = _shipped("lee-vgg11-c10-uniform-0.25")
    cell = _cell("uniform", "vgg11", 0.25) | {"run_id": "r"}
    cells = pl.DataFrame([{k: v for k, v in cell.items()}])
    records = pl.DataFrame({"cell_id": [cell["cell_id"]], "metric": ["accuracy"],
                            "value": [0.885]})
    ran_with = {"dataset": "cifar10", "classes": 10, "scaling_mode": "width"}
    once = ["accuracy"]  # from the preparation's training, copied into every round
    rows, all_cells = run_rows(cells, records, {cell["cell_id"]: {"settings": ran_with,
                                                                  "once": once}})
    verdict = evaluate(claim, SOURCE, rows, all_cells, "paper", "x86_64-generic")
    assert verdict.verdict == REPRODUCED, verdict.reason
    rows, all_cells = run_rows(cells, records, {
        cell["cell_id"]: {"settings": ran_with | {"dataset": "digits"}, "once": once}})
    verdict = evaluate(claim, SOURCE, rows, all_cells, "paper", "x86_64-generic")
    assert verdict.verdict == NOT_COMPARABLE
    assert verdict.reason.startswith("no ok cells with dataset=cifar10")


def test_claims_refuse_cells_of_the_other_scaling_convention():
    """Defect 2: Lee's r is a width ratio, Gealy's a parameter ratio; params-mode cells at
    scale 0.25 are width 0.5 networks and must not be compared with Lee's width-0.25 numbers."""
    claim = _shipped("lee-vgg11-c10-uniform-0.25")
    row = _cell("uniform", "vgg11", 0.25, accuracy=0.8818) | {"dataset": "cifar10",
                                                                "scaling_mode": "params"}
    verdict = evaluate(claim, SOURCE, [row], [row], "paper", "x86_64-generic")
    assert verdict.verdict == NOT_COMPARABLE
    assert verdict.reason == ("cells scaled by params ratio; the claim's scales are width "
                              "ratios")
    gealy = _shipped("gealy-cpu-latency")
    width_cells = [c | {"scaling_mode": "width"} for c in _grid()]
    verdict = evaluate(gealy, SOURCE, width_cells, width_cells, "quick", "x86_64-generic")
    assert verdict.verdict == NOT_COMPARABLE and "params ratios" in verdict.reason
    every = {c.convention for p in load_publications() for c in p.claims
             if c.experiment == "scaling-inference"}
    assert "" not in every  # every scaling claim states its convention


def test_a_neuralscale_fallback_is_never_a_verdict():
    """Defect 3: when the search fell back to uniform scaling, the 'NeuralScale' cells are the
    uniform networks: memory per parameter comes out at exactly 1.0, which used to be
    'reproduced'."""
    claim = _shipped("gealy-cpu-memory-per-parameter")
    assert _judge(claim, _grid()).verdict == REPRODUCED
    fallback = _grid(latency_ratio=1.0, fit="uniform")
    verdict = _judge(claim, fallback)
    assert verdict.verdict == NOT_COMPARABLE and verdict.observed == pytest.approx(1.0)
    assert verdict.reason.startswith("NeuralScale architectures not from a power-law fit: "
                                     "mobilenetv2 (uniform)")
    one_model = [c | {"fit": "constant"} if c["model"] == "resnet50" and "fit" in c else c
                 for c in _grid()]
    assert _judge(claim, one_model).reason == ("NeuralScale architectures not from a "
                                               "power-law fit: resnet50 (constant)")


def test_a_verdict_needs_every_pair_or_framework_the_claim_speaks_about():
    """Defect 4: an average over four networks judged from one, or a 'best framework' with one
    framework missing, is not comparable and names what is missing."""
    claim = _shipped("gealy-cpu-latency")
    verdict = _judge(claim, _grid(models=["vgg11"]))
    assert verdict.verdict == NOT_COMPARABLE and verdict.observed == pytest.approx(3.0)
    assert verdict.covers == (4, 16)  # shown beside the partial observation
    assert verdict.reason == ("covers 4 of 16 model × scale; missing: mobilenetv2 0.25, "
                              "mobilenetv2 0.5, mobilenetv2 0.75, mobilenetv2 1, "
                              "preact_resnet18 0.25, preact_resnet18 0.5 and 6 more")
    best = next(c for p in load_publications() for c in p.claims
                if c.id == "meissl-pytorch-most-efficient-gpu")
    rows = [steady({"experiment": "training", "cell_id": f, "model": "vgg16", "framework": f,
                    "device": "cuda", "precision": "fp32", "freeze": 0, "batch": 32,
                    "status": "ok", "reason": "", "throughput": t})
            for f, t in (("pytorch", 300.0), ("onnxruntime-training", 200.0))]
    verdict = evaluate(best, SOURCE, rows, rows, "paper", "jetson-orin")
    assert verdict.verdict == NOT_COMPARABLE and verdict.observed == "pytorch"
    assert verdict.reason == "covers 2 of 3 framework; missing: tensorrt"
    rows.append(steady(rows[0] | {"cell_id": "t", "framework": "tensorrt", "throughput": 100.0}))
    assert evaluate(best, SOURCE, rows, rows, "paper", "jetson-orin").verdict == REPRODUCED


def test_the_sources_gpu_claims_and_bounds_are_all_there():
    """Defect 5: Gealy's GPU accuracy, latency and absolute memory claims exist; Meissl's
    'nearly a factor of three' does not accept 3.6; interpretations are marked."""
    ids = {c.id for p in load_publications() for c in p.claims}
    assert {"gealy-gpu-accuracy", "gealy-gpu-latency", "gealy-gpu-runtime-memory"} <= ids
    speedup = _shipped("meissl-freeze-plus-precision-speedup")
    rows = [steady({"experiment": "training", "cell_id": f"{freeze}{precision}",
                    "model": "vgg16", "framework": "pytorch", "device": "cuda",
                    "precision": precision, "freeze": freeze, "batch": 32, "status": "ok",
                    "reason": "", "throughput": t})
            for freeze, precision, t in ((0, "fp32", 100.0), (10, "fp16", 360.0))]
    verdict = evaluate(speedup, SOURCE, rows, rows, "paper", "jetson-orin")
    assert verdict.observed == pytest.approx(3.6) and verdict.verdict == NOT_REPRODUCED
    assert verdict.expected_text() == "2.4–3"
    rows[1] = steady(rows[1] | {"throughput": 280.0})
    assert evaluate(speedup, SOURCE, rows, rows, "paper", "jetson-orin").verdict == REPRODUCED
    best = _shipped("meissl-pytorch-most-efficient-gpu")
    assert "project's reading" in best.interpretation
    with pytest.raises(ValueError):
        _claim(operator="between", expected=3.0, upper=2.0)


def test_cpu_claims_on_another_cpu_are_stand_in_verdicts_gpu_claims_are_not():
    claim = _shipped("gealy-cpu-latency")
    verdict = _judge(claim, _grid(latency_ratio=3.0))
    assert verdict.verdict == REPRODUCED and verdict.stand_in
    assert verdict.label == "reproduced on stand-in hardware (x86_64, 2 cores)"
    assert verdict.stand_in == ("x86_64 Test CPU, 2 cores, ONNX Runtime 1.20.1 (x86_64 CPU "
                                "build)")
    measured_by = [c | {"onnxruntime_version": "1.19.2"} for c in _grid()]
    assert _judge(claim, measured_by).stand_in.endswith("ONNX Runtime 1.19.2 (x86_64 CPU build)")
    assert "Cortex-A72" in verdict.named_hardware
    assert _judge(claim, _grid(latency_ratio=2.0)).label.startswith(
        "not reproduced on stand-in hardware")
    on_a_pi = _judge(claim, _grid(latency_ratio=3.0), device="raspberry-pi-4")
    assert on_a_pi.label == REPRODUCED and not on_a_pi.stand_in
    gpu = _judge(_shipped("gealy-gpu-latency"), _grid())
    assert gpu.verdict == NOT_COMPARABLE and not gpu.stand_in
    assert gpu.reasons[0] == "needs jetson-tx2 or jetson-agx-xavier (this run: x86_64-generic)"


def test_no_claim_is_reproduced_from_a_smoke_run_of_fallbacks():
    """A whole smoke-like run (one model, uniform fallback fits, params convention) gives no
    verdict but 'not comparable' for every shipped claim."""
    cells = [c | {"scaling_mode": "params", "dataset": "digits", "accuracy": 0.3}
             for c in _grid(latency_ratio=1.0, fit="uniform", models=["vgg11"])]
    verdicts = evaluate_all(load_publications(), cells, cells, "paper",
                            {"device_type": "x86_64-generic", "machine": "x86_64"})
    assert {v.verdict for v in verdicts} == {NOT_COMPARABLE}
    # ... but what it measured is observed beside Gealy's CPU claims, with its coverage (the
    # report shows these apart, muted, never as verdicts)
    latency = next(v for v in verdicts if v.claim.id == "gealy-cpu-latency")
    assert latency.observed == pytest.approx(1.0) and latency.covers == (4, 16)


def test_meissl_combined_speedup_on_a_cpu_is_a_stand_in_verdict_with_bf16():
    claim = _shipped("meissl-freeze-plus-precision-speedup-cpu")
    rows = [steady({"experiment": "training", "cell_id": f"{freeze}{precision}",
                    "model": "vgg16", "framework": "pytorch", "device": "cpu",
                    "precision": precision, "freeze": freeze, "batch": 64, "status": "ok",
                    "reason": "", "throughput": t, "torch_version": "2.5.1"})
            for freeze, precision, t in ((0, "fp32", 90.0), (10, "bf16", 250.0),
                                         (10, "fp32", 200.0))]
    environment = {"machine": "x86_64", "cpu": "Test CPU", "cores_usable": 2,
                   "packages": {"onnxruntime": "1.20.1"}}
    verdict = evaluate(claim, SOURCE, rows, rows, "quick", "x86_64-generic", environment)
    assert verdict.observed == pytest.approx(250 / 90) and verdict.verdict == REPRODUCED
    assert verdict.label == "reproduced on stand-in hardware (x86_64, 2 cores)"
    assert verdict.stand_in == "x86_64 Test CPU, 2 cores, PyTorch 2.5.1"
    rows[1] = steady(rows[1] | {"throughput": 370.0})  # 4.1x: more than "nearly three"
    assert evaluate(claim, SOURCE, rows, rows, "quick", "x86_64-generic",
                    environment).verdict == NOT_REPRODUCED
    smoke = evaluate(claim, SOURCE, rows, rows, "smoke", "x86_64-generic", environment)
    assert smoke.verdict == NOT_COMPARABLE and smoke.observed == pytest.approx(370 / 90)
    without_bf16 = evaluate(claim, SOURCE, rows[::2], rows, "quick", "x86_64-generic",
                            environment)
    assert without_bf16.verdict == NOT_COMPARABLE


def _rounds_grid(ratios_by_round: list[float]) -> list[dict]:
    """VGG-11 at one scale: NeuralScale's latency in round k is ratios_by_round[k] x uniform's,
    and the machine is 40 % slower in the last round (both cells alike). Each cell's figure is
    the median of its rounds, as the run records it."""
    slow = [1.0] * (len(ratios_by_round) - 1) + [1.4]
    uniform = [0.001 * s for s in slow]
    neural = [u * r for u, r in zip(uniform, ratios_by_round, strict=True)]
    rows = []
    for method, values in (("uniform", uniform), ("neuralscale", neural)):
        row = _cell(method, "vgg11", 0.5, latency_p50=statistics.median(values))
        rows.append(row | {ROUNDS: {"latency_p50": {f"p/{k}": v for k, v in enumerate(values)}}})
    return rows


def test_a_verdict_rests_on_the_interval_over_rounds():
    claim = _claim(operator="at_least", expected=2.5)
    clear = _rounds_grid([3.0, 3.2, 2.9, 3.1, 3.05])
    verdict = evaluate(claim, SOURCE, clear, clear, "quick", "raspberry-pi-4")
    assert verdict.verdict == REPRODUCED and verdict.rounds == 5
    # the rounds' own ratios, paired by pass: drift that hits both cells of a round cancels
    assert (verdict.interval.low, verdict.interval.high) == pytest.approx((2.9, 3.2))
    assert verdict.interval.level == pytest.approx(0.9375)
    assert verdict.observed_text().startswith("3.1 [2.9–3.2; 93.8 %]")
    straddling = _rounds_grid([2.3, 2.7, 2.6, 2.55, 2.65])
    unsure = evaluate(claim, SOURCE, straddling, straddling, "quick", "raspberry-pi-4")
    assert unsure.verdict == INCONCLUSIVE
    below = _rounds_grid([1.9, 2.1, 2.0, 2.05, 1.95])
    assert evaluate(claim, SOURCE, below, below, "quick",
                    "raspberry-pi-4").verdict == NOT_REPRODUCED


def test_the_observed_figure_is_the_runs_own_not_a_median_over_draws():
    """Before: the figure beside the interval was the median over bootstrap draws, so per-cell
    medians giving 0.5 were reported as 1.0. Now the run's own figure (the ratio of the cells'
    medians); where it leaves its rounds' interval, the verdict says so."""
    rows = [_cell("uniform", "vgg11", 0.5, latency_p50=2.0),
            _cell("neuralscale", "vgg11", 0.5, latency_p50=1.0)]
    rows[0][ROUNDS] = {"latency_p50": dict(zip("abcde", [3.0, 2.0, 1.0, 2.5, 1.5], strict=True))}
    rows[1][ROUNDS] = {"latency_p50": dict(zip("abcde", [0.5, 1.0, 1.5, 0.75, 1.25], strict=True))}
    verdict = evaluate(_claim(expected=0.1), SOURCE, rows, rows, "quick", "raspberry-pi-4")
    assert verdict.observed == pytest.approx(0.5)
    per_round = sorted([0.5 / 3, 0.5, 1.5, 0.3, 1.25 / 1.5])
    assert (verdict.interval.low, verdict.interval.high) == pytest.approx(
        (per_round[0], per_round[-1]))
    rows[1][ROUNDS]["latency_p50"] = {k: v * 10 for k, v in rows[1][ROUNDS]["latency_p50"].items()}
    outside = evaluate(_claim(expected=0.1), SOURCE, rows, rows, "quick", "raspberry-pi-4")
    assert any("outside its rounds' interval" in note for note in outside.notes)
    assert "outside its rounds' interval" in outside.observed_text()


def test_too_few_rounds_are_inconclusive_and_say_the_level():
    """Before: 3 rounds gave a "95 %" interval that was their range (75 % coverage) and a
    verdict; now a verdict needs 90 %: n = 3 is inconclusive, and says what would do."""
    three = _rounds_grid([3.0, 3.2, 2.9])
    verdict = evaluate(_claim(), SOURCE, three, three, "quick", "raspberry-pi-4")
    assert verdict.verdict == INCONCLUSIVE
    assert verdict.reasons == ("too few rounds (n = 3 gives 75 %; 5 give 93.8 %)",)
    assert verdict.interval.level == pytest.approx(0.75)
    one = [{k: v for k, v in r.items() if k != ROUNDS} for r in three]
    single = evaluate(_claim(), SOURCE, one, one, "quick", "raspberry-pi-4")
    assert single.verdict == INCONCLUSIVE and single.interval is None
    assert single.reasons[0].startswith("too few rounds (n = 1 gives no interval")


def test_a_round_measured_in_another_pass_is_paired_with_nothing():
    rows = _rounds_grid([3.0, 3.2, 2.9, 3.1, 3.05])
    late = rows[0][ROUNDS]["latency_p50"]
    late["later/2"] = late.pop("p/2")  # round 3 of uniform re-measured hours later
    verdict = evaluate(_claim(), SOURCE, rows, rows, "quick", "raspberry-pi-4")
    assert verdict.interval.n == 4 and verdict.interval.unpaired == 2
    assert verdict.verdict == INCONCLUSIVE  # 4 paired rounds: 87.5 %
    assert any("another pass" in note for note in verdict.notes)


def test_accuracy_measured_once_carries_no_interval():
    """Before: accuracy was copied into every round, so its interval had zero width."""
    rows = [r | {ONCE: ["accuracy"]} for r in ROWS]
    value = evaluate(_claim(comparison="value", metric="accuracy", operator="approx",
                            expected=0.8, tolerance=0.1), SOURCE, rows, CELLS, "paper",
                     "raspberry-pi-4")
    assert value.verdict == REPRODUCED and value.interval is None
    assert value.notes == ("accuracy measured once per cell: no interval",)
    per_mb = evaluate(_claim(metric="accuracy_per_mb", operator="at_least", expected=0.5),
                      SOURCE, rows, CELLS, "paper", "raspberry-pi-4")
    assert per_mb.interval is not None  # memory varies by round; accuracy does not
    assert "accuracy measured once per cell (no spread over rounds)" in per_mb.notes


def test_a_best_claim_needs_every_round_to_agree():
    best = _claim(comparison="best", best_of="method", metric="latency_p50",
                  higher_is_better=False, operator="equals", expected="uniform")
    rows = _rounds_grid([3.0, 3.2, 0.5, 3.1, 3.05])  # round 3: NeuralScale faster
    verdict = evaluate(best, SOURCE, rows, rows, "quick", "raspberry-pi-4")
    assert verdict.observed == "uniform" and verdict.agreement == pytest.approx(0.8)
    assert verdict.verdict == INCONCLUSIVE and verdict.observed_text() == \
        "uniform (in 80% of 5 rounds)"
    agreeing = _rounds_grid([3.0, 3.2, 2.9, 3.1, 3.05])
    assert evaluate(best, SOURCE, agreeing, agreeing, "quick",
                    "raspberry-pi-4").verdict == REPRODUCED


def test_an_interval_covering_a_whole_band_is_inconclusive():
    claim = _claim(operator="between", expected=2.4, upper=3.0)
    wide = _rounds_grid([2.0, 2.7, 3.5, 2.6, 2.8])
    assert evaluate(claim, SOURCE, wide, wide, "quick", "raspberry-pi-4").verdict == INCONCLUSIVE
    inside = _rounds_grid([2.5, 2.7, 2.9, 2.6, 2.8])
    assert evaluate(claim, SOURCE, inside, inside, "quick",
                    "raspberry-pi-4").verdict == REPRODUCED


def _training_rows(throughputs: dict[tuple[str, int], float]) -> list[dict]:
    """GPU fp32 training cells of VGG-16: (framework, batch) -> throughput."""
    return [steady({"experiment": "training", "cell_id": f"{framework}-{batch}",
                    "model": "vgg16", "framework": framework, "device": "cuda",
                    "precision": "fp32", "freeze": 0, "batch": batch, "status": "ok",
                    "reason": "", "throughput": throughput})
            for (framework, batch), throughput in throughputs.items()]


def test_a_best_claim_compares_only_what_every_group_measured():
    """Item 6: PyTorch at batches 64 and 256, TensorRT only at 64 and faster there. The mean
    over each framework's own batches made PyTorch 'best' from its batch-256 cell alone."""
    claim = _shipped("meissl-pytorch-most-efficient-gpu")
    rows = _training_rows({("pytorch", 64): 300.0, ("pytorch", 256): 600.0,
                           ("tensorrt", 64): 350.0, ("onnxruntime-training", 64): 200.0,
                           ("onnxruntime-training", 256): 250.0})
    verdict = evaluate(claim, SOURCE, rows, rows, "paper", "jetson-orin")
    assert verdict.observed == "tensorrt" and verdict.verdict == NOT_REPRODUCED
    assert verdict.n == 3  # the three batch-64 cells
    apart = _training_rows({("pytorch", 256): 600.0, ("tensorrt", 64): 350.0,
                            ("onnxruntime-training", 64): 200.0})
    verdict = evaluate(claim, SOURCE, apart, apart, "paper", "jetson-orin")
    assert verdict.verdict == NOT_COMPARABLE and verdict.observed is None
    assert verdict.reason == ("no model, scale, device, precision, batch measured by every "
                              "framework")


def test_the_cpu_bf16_form_of_meissls_claim_is_a_stand_in_on_an_orins_cpu_too():
    """Item 7: Meißl measured fp16 on the Orin's GPU; measured on the Orin's own CPU with bf16,
    the claim stands in for the mechanism just as on any other CPU, and says so."""
    claim = _shipped("meissl-freeze-plus-precision-speedup-cpu")
    rows = [steady({"experiment": "training", "cell_id": f"{freeze}{precision}",
                    "model": "vgg16", "framework": "pytorch", "device": "cpu",
                    "precision": precision, "freeze": freeze, "batch": 64, "status": "ok",
                    "reason": "", "throughput": t, "torch_version": "2.1.0"})
            for freeze, precision, t in ((0, "fp32", 90.0), (10, "bf16", 250.0))]
    orin = {"machine": "aarch64", "cpu": "Cortex-A78AE", "cores_usable": 12}
    verdict = evaluate(claim, SOURCE, rows, rows, "quick", "jetson-orin", orin)
    assert verdict.verdict == REPRODUCED
    assert verdict.label == "reproduced on stand-in hardware (aarch64, 12 cores)"
    assert verdict.stand_in == "aarch64 Cortex-A78AE, 12 cores, PyTorch 2.1.0"
    gpu = _shipped("meissl-freeze-plus-precision-speedup")
    assert not gpu.always_stand_in  # the GPU form on an Orin is judged on its own hardware


def _searched(cells: list[dict], model: str, dataset: str, classes: int) -> list[dict]:
    """The grid with `model`'s NeuralScale architectures from a search run here."""
    return [c | {"search": "searched", "searched_on": dataset, "classes": classes}
            if c["model"] == model and c["method"] == "neuralscale" else c for c in cells]


def test_a_neuralscale_architecture_counts_only_from_the_papers_searches():
    """Item 5: Quick's ResNet-50 comes from a one-iteration search on a synthetic 100-class set;
    Gealy's verdicts must not rest on it. An architecture counts when it came from the
    published record sets or from a search on the claim's data set and class count."""
    claim = _shipped("gealy-cpu-latency")
    assert _judge(claim, _grid()).verdict == REPRODUCED  # the published record sets count
    quick = _searched(_grid(), "resnet50", "synthetic", 100)
    verdict = _judge(claim, quick)
    assert verdict.verdict == NOT_COMPARABLE and verdict.observed == pytest.approx(3.0)
    assert verdict.reason == ("NeuralScale architectures neither from the published searches "
                              "nor searched on cifar10 with 10 classes: resnet50 searched "
                              "here on synthetic data (100 classes)")
    on_cifar10 = _searched(_grid(), "resnet50", "cifar10", 10)
    assert _judge(claim, on_cifar10).verdict == REPRODUCED
    wrong_classes = _searched(_grid(), "resnet50", "cifar10", 100)
    assert "resnet50 searched here on cifar10 data (100 classes)" in _judge(
        claim, wrong_classes).reason
    unrecorded = [{k: v for k, v in c.items() if k != "search"} for c in _grid()]
    assert _judge(claim, unrecorded).reason.endswith(
        "mobilenetv2 (search not recorded), preact_resnet18 (search not recorded), resnet50 "
        "(search not recorded), vgg11 (search not recorded)")
    uniform_only = _judge(_shipped("lee-vgg11-c10-uniform-0.25"), quick)
    assert "NeuralScale" not in uniform_only.reason  # a claim about uniform scaling


def test_run_rows_carry_where_a_neuralscale_architecture_came_from():
    """The cell's NeuralScale solution (prepare.py) names the search's source and data set."""
    cells = [_cell("neuralscale", model, 0.5) | {"run_id": "r"}
             for model in ("vgg11", "resnet50")]
    records = pl.DataFrame({"cell_id": [c["cell_id"] for c in cells],
                            "metric": ["latency_p50"] * 2, "value": [0.003, 0.004]})
    frame = pl.DataFrame([{k: v for k, v in c.items() if k not in ("fit", "search")}
                          for c in cells])
    settings = {"dataset": "synthetic", "classes": 100, "scaling_mode": "params"}
    solutions = {"vgg11": {"fit": "power_law", "source": "published", "searched_on": "cifar100"},
                 "resnet50": {"fit": "power_law", "source": "searched",
                              "searched_on": "synthetic"}}
    rows, _ = run_rows(frame, records, {
        c["cell_id"]: {"settings": settings | {"neuralscale_solution": solutions[c["model"]]}}
        for c in cells})
    found = {r["model"]: (r["search"], r["searched_on"], r["classes"]) for r in rows}
    assert found == {"vgg11": ("published", "cifar100", 100),
                     "resnet50": ("searched", "synthetic", 100)}


def test_every_shipped_neuralscale_claim_names_its_papers_search_data():
    from toolkit.report.claims import _about_neuralscale

    about = [c for p in load_publications() for c in p.claims if _about_neuralscale(c)]
    assert len(about) == 14
    gealy = {(c.search_data.dataset, c.search_data.classes) for c in about
             if c.id.startswith("gealy")}
    assert gealy == {("cifar10", 10)}
    assert _shipped("lee-mobilenetv2-c100-neuralscale-0.25").search_data.classes == 100
    with pytest.raises(ValueError, match="search_data"):
        _claim(search_data=None)


def _stated(number: float, text: str) -> bool:
    """Whether text states the number: 0.4 as "0.4", "0.40" or "40 %"; 3.0 as "3" or "3x"."""
    def digits(x: float) -> str:  # with any trailing zeros
        shown = f"{x:g}"
        return re.escape(shown) + ("0*" if "." in shown else r"(?:\.0+)?")

    forms = [digits(number), digits(number * 100) + r"\s*%"]
    return any(re.search(rf"(?<![\d.]){form}(?!\.?\d)", text) for form in forms)


def _numbers(claim: Claim) -> list[float]:
    """Every number a claim's verdict rests on: its bound and the coordinates it compares."""
    bound = [claim.expected, claim.upper, claim.tolerance or None]
    sides = [v for side in (claim.filter, claim.numerator, claim.denominator)
             for v in side.values()]
    return [float(v) for v in bound + sides
            if isinstance(v, int | float) and not isinstance(v, bool)]


def test_every_number_the_source_does_not_state_is_the_projects_reading():
    """Item 8: bands, bounds and settings the source gives no figure for (±0.10 around 0.40,
    ±0.5 around 2.7, "slightly more" as >= 1, freeze = 10) are labelled as readings, and each
    reading names its numbers."""
    for claim in (c for p in load_publications() for c in p.claims):
        unstated = [x for x in _numbers(claim) if not _stated(x, claim.statement)]
        if unstated:
            assert "project's reading" in claim.interpretation, claim.id
            assert all(_stated(x, claim.interpretation) for x in unstated), (claim.id, unstated)
    assert not _stated(0.1, _shipped("gealy-gpu-accuracy-per-mb").statement)
    assert "freeze = 10" in _shipped("meissl-freeze-plus-precision-speedup").interpretation


def test_statements_quote_the_source_and_a_derived_claim_says_so():
    """Item 8: Meißl wrote "highly efficient" (the reading as the highest throughput goes in
    the footnote); Gealy's absolute runtime memory claim is the project's derivation from his
    2.7x memory per parameter, marked derived so it never counts as a second confirmation."""
    best = _shipped("meissl-pytorch-most-efficient-gpu")
    assert "highly efficient" in best.statement and "most efficient" not in best.statement
    assert "highest training throughput" in best.interpretation
    assert "slower than PyTorch" not in _shipped("meissl-tensorrt-parameters-as-inputs").statement
    derived = _shipped("gealy-gpu-runtime-memory")
    assert derived.derived_from == "gealy-gpu-memory-per-parameter"
    assert derived.statement.startswith("Derived from")
    assert [c.id for p in load_publications() for c in p.claims if c.derived_from] == [
        "gealy-gpu-runtime-memory"]
    source = {"key": "k", "citation": "c"}
    with pytest.raises(ValueError, match="derived from nothing"):
        Publication.model_validate({"source": source, "claims": [
            _claim().model_dump() | {"derived_from": "nothing"}]})
