"""Training cells (issue 4): freezing, FLOP accounting, PyTorch and ONNX Runtime Training trainers,
their equivalence, the peak-FLOP job and the "not run" reasons."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numerics
import numpy as np
import pytest

from toolkit.device import job as device_job
from toolkit.device.backends.onnxruntime_training import trainer as ort_trainer
from toolkit.device.backends.pytorch import trainer as torch_trainer
from toolkit.device.models import build_model, count_macs, full_widths
from toolkit.device.results import NotRun
from toolkit.device.training import common, peak
from toolkit.device.training.flops import conv_shapes, conv_taps, layer_macs, training_flops
from toolkit.device.training.freeze import conv_blocks, freeze_spec

ROOT = Path(__file__).resolve().parents[1]
SMALL = [max(1, w // 8) for w in full_widths("vgg16")]  # VGG-16 at 1/8 width
PROTOCOL = {"warmup_count": 1, "warmup_seconds": 0.0, "min_count": 3, "min_seconds": 0.0,
            "max_seconds": 30.0, "max_cv": 10.0}


def class_batches(n_batches, batch, seed=0, classes=10):
    """Deterministic class-dependent float32 batches (a per-class mean image plus noise)."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((classes, 3, 32, 32)).astype(np.float32)
    out = []
    for _ in range(n_batches):
        y = rng.integers(0, classes, batch).astype(np.int64)
        x = means[y] + 0.5 * rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
        out.append((x, y))
    return out


def sgd(lr=0.01, momentum=0.0, weight_decay=0.0):
    return {"optimizer": "sgd", "lr": lr, "momentum": momentum, "weight_decay": weight_decay}


# ------------------------------------------------------------------------------------ freezing


@pytest.mark.parametrize("freeze", [0, 1, 2, 5, 7, 12, 13])
def test_freeze_spec_partitions_the_models_parameters(freeze):
    net = build_model("vgg16", SMALL, 10, 0)
    spec = freeze_spec("vgg16", freeze)
    names = [n for n, _ in net.named_parameters()]
    assert sorted(spec["trainable"] + spec["frozen"]) == sorted(names)
    assert not set(spec["trainable"]) & set(spec["frozen"])
    assert len(spec["frozen"]) == 4 * freeze
    assert spec["trainable"][-2:] == ["classifier.weight", "classifier.bias"]
    prefix = net.features[:spec["split"]]
    prefix_params = {"features.{}".format(n) for n, _ in prefix.named_parameters()}
    assert prefix_params == set(spec["frozen"])
    assert sum(1 for m in prefix if type(m).__name__ == "Conv2d") == freeze
    buffers = {n for n, _ in net.named_buffers()}
    assert set(spec["frozen_buffers"]) <= buffers


def test_freeze_rejects_out_of_range():
    from toolkit.errors import UserError

    assert len(conv_blocks("vgg16")) == 13 and len(conv_blocks("vgg11")) == 8
    for bad in (-1, 14, 1.5, True):
        with pytest.raises(UserError):
            freeze_spec("vgg16", bad)
    with pytest.raises(UserError):
        freeze_spec("resnet50", 1)


# ------------------------------------------------------------------------------------- FLOPs


@pytest.mark.parametrize("widths", [full_widths("vgg16"), SMALL, list(range(1, 14))])
def test_layer_macs_sum_to_count_macs(widths):
    assert sum(m for _, m in layer_macs("vgg16", widths)) == count_macs("vgg16", widths)
    assert sum(m for _, m in layer_macs("vgg16", widths, 100)) == count_macs("vgg16", widths, 100)


@pytest.mark.parametrize("side", [1, 2, 4, 7, 32])
def test_conv_taps_without_padding_count_the_taps_on_the_input(side):
    # Brute force: every (output position, kernel tap) pair whose input position is inside.
    inside = sum(1 for y in range(side) for x in range(side) for dy in (-1, 0, 1)
                 for dx in (-1, 0, 1) if 0 <= y + dy < side and 0 <= x + dx < side)
    assert conv_taps(side, padding_taps=False) == inside
    assert conv_taps(side) == 9 * side * side


def test_conv_shapes_follow_the_layout():
    shapes = conv_shapes("vgg16", full_widths("vgg16"))
    assert shapes[0] == (3, 64, 32) and shapes[-1] == (512, 512, 2) and len(shapes) == 13


def test_training_flops_of_full_vgg16():
    widths = full_widths("vgg16")
    full = training_flops("vgg16", widths, 0)
    # 0.49 GFLOP per image: the 0.63 of the usual count less the taps on the zero padding
    assert full["forward"] == 2 * 247_314_176
    first_conv = layer_macs("vgg16", widths, padding_taps=False)[0][1]
    assert full["train"] == 3 * full["forward"] - 2 * first_conv
    assert 2.98 < full["train"] / full["forward"] <= 3.0
    assert full["train_ratio"] == 1.0
    ratios = [training_flops("vgg16", widths, k)["train_ratio"] for k in range(14)]
    assert all(a > b for a, b in zip(ratios, ratios[1:], strict=False))
    last = training_flops("vgg16", widths, 13)
    classifier = layer_macs("vgg16", widths, padding_taps=False)[-1][1]
    assert last["train"] == last["forward"] + 2 * classifier  # weight gradient of the head only
    assert last["train_ratio"] == pytest.approx(1 / 3, abs=0.01)
    # Freezing the 2 first blocks (at 32x32) removes their weight grads and conv2's input grad.
    two = training_flops("vgg16", widths, 2)
    macs = dict(layer_macs("vgg16", widths, padding_taps=False))
    assert full["train"] - two["train"] == 2 * (macs["conv1"] + 2 * macs["conv2"]
                                                + macs["conv3"])


# ------------------------------------------------------------------------ PyTorch trainer


def test_torch_freezing_gives_no_gradients_and_keeps_frozen_state():
    import torch

    spec = freeze_spec("vgg16", 5)
    net = build_model("vgg16", SMALL, 10, 0)
    before = {k: v.detach().clone() for k, v in net.state_dict().items()}
    trainer = torch_trainer.TorchTrainer(net, spec, sgd(0.05, 0.9, 5e-4))
    for x, y in class_batches(3, 16):
        trainer.step(x, y)
    params = dict(net.named_parameters())
    for name in spec["frozen"]:
        assert params[name].grad is None and not params[name].requires_grad
        assert torch.equal(params[name].detach(), before[name]), name
    for name in spec["frozen_buffers"]:
        assert torch.equal(net.state_dict()[name], before[name]), name
    for name in spec["trainable"]:
        assert not torch.equal(params[name].detach(), before[name]), name
    assert [p for g in trainer.optimizer.param_groups for p in g["params"]] == \
        [params[n] for n in spec["trainable"]]
    modules = dict(net.named_modules())
    assert all(not modules[m].training for m in spec["eval_modules"])
    assert modules["features.{}".format(conv_blocks("vgg16")[5]["bn"])].training


def test_torch_trainer_is_deterministic_and_supports_adamw_and_channels_last():
    batches = class_batches(2, 8)
    runs = []
    for channels_last in (False, True):
        trainer = torch_trainer.TorchTrainer(
            build_model("vgg16", SMALL, 10, 3), freeze_spec("vgg16", 0),
            common.opt_settings({"optimizer": "adamw"}), channels_last=channels_last)
        runs.append([float(trainer.step(x, y)) for x, y in batches])
    # The first step starts from the same weights in both memory formats (other kernels): each
    # loss is within float32's forward rounding bound of the exact one (tests/numerics.py, as
    # assert_same_steps). Later losses have no such bound: AdamW's first update is about
    # lr * sign(gradient) per element, so an element whose tiny gradient rounds to the other
    # sign in the other kernels moves by 2 lr; they are only checked to be finite.
    bound = numerics.forward_bound(build_model("vgg16", SMALL, 10, 3)) * max(1.0, runs[0][0])
    assert abs(runs[0][0] - runs[1][0]) <= 2 * bound, (runs, bound)
    assert np.all(np.isfinite(runs)), runs


def job_dict(framework="pytorch", device="cpu", precision="fp32", freeze=0, batch=8, **settings):
    base = {"model": "vgg16", "widths": SMALL, "seed": 0, "optimizer": "sgd", "lr": 0.01,
            "threads": 2, "data": {"name": "synthetic", "n_train": 64, "n_test": 32}}
    base.update(settings)
    return {"kind": "training",
            "coords": {"framework": framework, "device": device, "precision": precision,
                       "freeze": freeze, "batch": batch},
            "settings": base, "protocol": dict(PROTOCOL), "artifacts": {}}


@pytest.mark.parametrize("device,precision,reason", [
    ("cuda", "fp32", "CUDA is not available"),
    ("cpu", "fp16", "fp16 training runs on CUDA only"),
])
def test_torch_not_run_reasons(device, precision, reason):
    with pytest.raises(NotRun, match=reason):
        torch_trainer.run(job_dict(device=device, precision=precision))


@pytest.mark.gpu
@pytest.mark.parametrize("precision, freeze", [("fp32", 0), ("fp16", 0), ("fp16", 5)])
def test_cuda_training_cells_record_device_memory(precision, freeze):
    """On a GPU the cell's runtime memory is device-side (cudaMemGetInfo), not RSS: on a Jetson
    CUDA allocations never show in the process's RSS."""
    import torch

    from toolkit import derived

    if not torch.cuda.is_available():
        pytest.skip(f"no CUDA GPU (torch {torch.__version__}, CUDA {torch.version.cuda})")
    result = torch_trainer.run(job_dict(device="cuda", precision=precision, freeze=freeze,
                                        widths=full_widths("vgg16"), batch=64,
                                        data={"name": "synthetic", "n_train": 512,
                                              "n_test": 64}))
    values = {name: value for name, value, _ in result["records"]}
    # VGG-16's fp32 weights alone are 59 MB; activations at batch 64 add more.
    assert values["gpu_memory_peak_delta"] >= values["gpu_max_allocated"] > 59e6
    assert derived.runtime_memory(values) == values["gpu_memory_peak_delta"]
    assert all(np.isfinite(result["samples"]["loss"]["values"]))


def test_torch_job_through_the_entry_point(tmp_path):
    result = device_job.execute(job_dict(freeze=3, train_size=50000))
    json.dumps(result)  # the result file must be plain JSON
    assert result["status"] == "ok", result["reason"]
    records = {name: (value, unit) for name, value, unit in result["records"]}
    for name, unit in [("step_time_p50", "s"), ("throughput", "1/s"), ("rss_peak", "B"),
                       ("rss_baseline", "B"), ("epoch_time_estimate", "s"),
                       ("train_flops_per_image", "FLOP"), ("achieved_flops", "FLOP/s"),
                       ("loss_first", "nat")]:
        assert records[name][1] == unit and records[name][0] > 0, name
    assert records["epoch_time_estimate"][0] == pytest.approx(
        6250 * records["step_time_p50"][0])
    losses = result["samples"]["loss"]["values"]
    assert len(losses) == records["steps"][0] >= 1 + PROTOCOL["min_count"]
    assert result["settings"]["trainable_params"] == freeze_spec("vgg16", 3)["trainable"]

    cuda = device_job.execute(job_dict(device="cuda"))
    assert cuda["status"] == "not run" and "CUDA" in cuda["reason"]


def test_bf16_autocast_step_on_cpu():
    trainer = torch_trainer.TorchTrainer(build_model("vgg16", SMALL, 10, 0),
                                         freeze_spec("vgg16", 0), sgd(), precision="bf16")
    losses = [float(trainer.step(x, y)) for x, y in class_batches(2, 4)]
    assert all(np.isfinite(losses))


# ----------------------------------------------------------------- ONNX Runtime Training


@pytest.fixture(scope="module")
def ort_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ort-cache")


def make_artifacts(cache, freeze, widths=SMALL, optimizer="sgd"):
    from toolkit.device.backends.onnxruntime_training import artifacts as ort_artifacts

    job = {"kind": "ort_training_artifacts", "coords": {"framework": "pytorch", "freeze": freeze},
           "settings": {"model": "vgg16", "widths": widths, "seed": 0, "optimizer": optimizer},
           "artifacts": {"cache_dir": str(cache)}}
    return ort_artifacts.generate(job)


def test_ort_training_imports_no_torch():
    code = ("import sys; from toolkit.device.backends.onnxruntime_training import trainer as t; "
            "t.import_training_api(); import onnxruntime.training.api as a; "
            "assert a.CheckpointState and 'torch' not in sys.modules, sorted(sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def same_step_from_ort_weights(ort, widths, freeze, batches, lr):
    """Every step taken three ways from ONNX Runtime's current weights: by ONNX Runtime, by
    PyTorch in float32 and by PyTorch in float64 (the reference both float32 results are judged
    against, with bounds derived in tests/numerics.py). Starting each step from the same weights
    checks "same weights and data give the same step" at every step; free-running trajectories
    would amplify the float32 differences of earlier steps by an amount that depends on which
    CPU kernels ran.

    Returns one row per step: the three losses and the loss bound, and per framework the error
    of the updated parameters relative to the float64 update (normwise over all trainable
    parameters) and the bound that float32 rounding allows for it."""
    import torch

    spec = freeze_spec("vgg16", freeze)
    steps = []

    def flat(values):
        return np.concatenate([np.ravel(values[k]).astype(np.float64) for k in spec["trainable"]])

    for x, y in batches:
        weights = ort.parameters()
        taken = {}
        for dtype, array_type in ((torch.float32, np.float32), (torch.float64, np.float64)):
            net = build_model("vgg16", widths, 10, 0).to(dtype)
            net.load_state_dict({k: torch.from_numpy(v).to(dtype) for k, v in weights.items()},
                                strict=False)  # BN running statistics: the initial ones
            trainer = torch_trainer.TorchTrainer(net, spec, sgd(lr))
            loss = float(trainer.step(x.astype(array_type), y))
            after = {k: v.detach().numpy() for k, v in trainer.net.named_parameters()}
            taken[dtype] = (loss, after, trainer.net)
        ort_loss = float(ort.step(x, y))
        loss64, exact, net64 = taken[torch.float64]
        bound = numerics.forward_bound(net64)
        reference = flat(exact)
        update = np.linalg.norm(flat(weights) - reference)  # lr * |gradient|
        # The gradient's rounding error, plus storing the new weights in float32.
        allowed = (numerics.training_step_bound(net64) * update
                   + numerics.UNIT_ROUNDOFF_FP32 * np.linalg.norm(reference)) / update
        steps.append({
            "ort": ort_loss, "torch32": taken[torch.float32][0], "torch64": loss64,
            "loss_bound": bound * max(1.0, abs(loss64)), "update_bound": allowed,
            "update_ort": np.linalg.norm(flat(ort.parameters()) - reference) / update,
            "update_torch32": np.linalg.norm(flat(taken[torch.float32][1]) - reference) / update})
    return steps


# An update off by more than this in one step is an error, not a max-pool or ReLU near-tie
# that float32 resolved the other way (those moved single steps by 4e-4 to 8e-3 of the update
# on an AMD EPYC, Zen 4; a 1 % wrong learning rate is 1e-2 at every step).
ROUTING_FLIP_CEILING = 0.05


def assert_same_steps(steps):
    """Losses from the same weights within float32's rounding bound of the float64 loss, at
    every step. Updates: within the rounding bound of the float64 update at the median step.

    Not every step: at a near-tie of a max-pool window or a ReLU input (their gap below
    float32's error) float32 can route a whole gradient element elsewhere than float64 does.
    Both are valid subgradients, and the difference reaches 1e-2 of the update, as large as a
    real error; it is a discrete event of single steps (how often depends on the CPU's
    kernels), while a wrong implementation is off at every step. The message shows the whole
    trajectory."""
    table = "\n".join(
        "step {i}: loss ort {ort:.7f} torch32 {torch32:.7f} torch64 {torch64:.7f} (bound "
        "{loss_bound:.2g}); update error ort {update_ort:.2g} torch32 {update_torch32:.2g} "
        "(rounding bound {update_bound:.2g})".format(i=i, **step) for i, step in enumerate(steps))
    for name in ("ort", "torch32"):
        for step in steps:
            assert abs(step[name] - step["torch64"]) <= step["loss_bound"], table
            assert step["update_" + name] <= ROUTING_FLIP_CEILING, table
        assert np.median([step["update_" + name] / step["update_bound"] for step in steps]
                         ) <= 1.0, table


@pytest.mark.parametrize("freeze", [0, 5])
def test_ort_and_torch_take_the_same_steps(ort_cache, freeze):
    """Same initial weights, same batches, plain SGD: ONNX Runtime Training and PyTorch take
    the same step (losses and updated parameters) within float32's rounding error, at every
    step; frozen parameters never change."""
    result = make_artifacts(ort_cache, freeze)
    assert make_artifacts(ort_cache, freeze)["records"][0] == ("cache_hit", 1.0, "count")
    spec = freeze_spec("vgg16", freeze)
    ort = ort_trainer.OrtTrainer(result["settings"]["artifact_dir"], lr=0.01)
    frozen_before = ort.parameters(spec["frozen"])
    assert_same_steps(same_step_from_ort_weights(ort, SMALL, freeze, class_batches(5, 16, seed=1),
                                                 0.01))
    frozen_after = ort.parameters(spec["frozen"])
    assert all(np.array_equal(frozen_before[k], frozen_after[k]) for k in spec["frozen"])


def test_step_bounds_are_not_vacuous():
    """The bounds catch real errors: a loss off by 1e-3 relative, and an update whose learning
    rate is off by 1 %, both fall outside them."""
    x, y = class_batches(1, 8, seed=3)[0]
    spec = freeze_spec("vgg16", 0)
    assert numerics.forward_bound(build_model("vgg16", full_widths("vgg16"), 10, 0)) < 1e-3
    after = {}
    for lr in (0.01, 0.0101):
        net = build_model("vgg16", SMALL, 10, 0).double()
        torch_trainer.TorchTrainer(net, spec, sgd(lr)).step(x.astype(np.float64), y)
        after[lr] = np.concatenate([p.detach().numpy().ravel() for p in net.parameters()])
    before = np.concatenate([p.detach().double().numpy().ravel()
                             for p in build_model("vgg16", SMALL, 10, 0).parameters()])
    update = np.linalg.norm(before - after[0.01])
    small = build_model("vgg16", SMALL, 10, 0)
    allowed = (numerics.training_step_bound(small) * update
               + numerics.UNIT_ROUNDOFF_FP32 * np.linalg.norm(after[0.01]))
    assert np.linalg.norm(after[0.0101] - after[0.01]) > 10 * allowed


def test_ort_evaluation_matches_torch_with_the_same_statistics(ort_cache):
    """infer.onnx + precise-BN statistics == the torch model with those weights and stats."""
    import torch

    freeze = 5
    result = make_artifacts(ort_cache, freeze)
    ort = ort_trainer.OrtTrainer(result["settings"]["artifact_dir"], lr=0.05)
    batches = class_batches(3, 16, seed=2)
    for x, y in batches:
        ort.step(x, y)
    stats = ort.bn_statistics(batches)
    net = build_model("vgg16", SMALL, 10, 0)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in ort.parameters().items()},
                        strict=False)
    # The statistics themselves: population mean/var of each trainable BN's input in train mode.
    spec = freeze_spec("vgg16", freeze)
    torch_trainer.set_train_mode(net, spec)
    seen = {b["bn"]: [] for b in conv_blocks("vgg16")[freeze:]}
    with torch.no_grad():
        for x, _ in batches:  # batch statistics, as in training and in bnstats.onnx
            h = torch.from_numpy(x)
            for index, module in enumerate(net.features):
                if index in seen:
                    seen[index].append(h.clone())
                h = module(h)
    for index, inputs in seen.items():
        means = torch.stack([t.mean((0, 2, 3)) for t in inputs])
        second = torch.stack([(t ** 2).mean((0, 2, 3)) for t in inputs])
        mean, var = means.mean(0), second.mean(0) - means.mean(0) ** 2
        np.testing.assert_allclose(stats["features.{}.running_mean".format(index)], mean,
                                   rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(stats["features.{}.running_var".format(index)], var,
                                   rtol=1e-3, atol=1e-4)
        net.features[index].running_mean.copy_(torch.from_numpy(
            stats["features.{}.running_mean".format(index)]))
        net.features[index].running_var.copy_(torch.from_numpy(
            stats["features.{}.running_var".format(index)]))
    # PyTorch's precise BN (torch_trainer.recompute_bn) agrees on the means; its variances are
    # averages of unbiased batch variances, so they differ by the batch-size factor only.
    twin = build_model("vgg16", SMALL, 10, 0)
    twin.load_state_dict(net.state_dict())
    torch_trainer.TorchTrainer(twin, spec, sgd()).recompute_bn(batches)
    for index in seen:
        np.testing.assert_allclose(twin.features[index].running_mean.numpy(),
                                   stats["features.{}.running_mean".format(index)],
                                   rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(twin.features[index].running_var.numpy(),
                                   stats["features.{}.running_var".format(index)], rtol=0.1)
    net.eval()
    logits = ort.infer(stats)
    x = batches[0][0]
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    # The same float32 function (weights, statistics) in two libraries whose kernels sum in
    # their own orders: each within the forward rounding bound of the exact logits, normwise
    # (tests/numerics.py), so at most twice that apart.
    error = numerics.normwise_error(logits(x), expected.astype(np.float64))
    assert error <= 2 * numerics.forward_bound(net), error


def test_ort_not_run_reasons(ort_cache):
    with pytest.raises(NotRun, match="segfaults on the CPU"):
        ort_trainer.run(job_dict("onnxruntime-training", precision="fp16"))
    with pytest.raises(NotRun, match="CUDAExecutionProvider"):
        ort_trainer.run(job_dict("onnxruntime-training", device="cuda"))
    job = job_dict("onnxruntime-training", freeze=2)
    job["artifacts"]["cache_dir"] = str(ort_cache / "empty")
    with pytest.raises(NotRun, match="run the ort_training_artifacts job"):
        ort_trainer.run(job)


def test_ort_job_through_the_entry_point(ort_cache):
    make_artifacts(ort_cache, 0)
    job = job_dict("onnxruntime-training")
    job["artifacts"]["cache_dir"] = str(ort_cache)
    result = device_job.execute(job)
    json.dumps(result)
    assert result["status"] == "ok", result["reason"]
    records = {name: (value, unit) for name, value, unit in result["records"]}
    assert records["achieved_flops"][0] > 0 and records["rss_peak"][1] == "B"
    assert result["settings"]["momentum"] == 0.0 and result["settings"]["requested"]["momentum"]
    assert result["settings"]["torch_loaded"] in (True, False)  # True only in this test process


# --------------------------------------------------------------------------------- peak job


def test_peak_jobs_return_positive_flops():
    job = {"kind": "peak", "coords": {"device": "cpu"},
           "settings": {"sizes": [128, 256], "dtypes": ["fp32"], "threads": 2},
           "protocol": {"warmup_count": 1, "warmup_seconds": 0.0, "min_count": 3,
                        "min_seconds": 0.05, "max_seconds": 2.0, "max_cv": 1.0}}
    for run in (peak.run_torch, peak.run_numpy):
        result = run(dict(job, coords={"device": "cpu", "framework": "x"}))
        records = {n: (v, u) for n, v, u in result["records"]}
        assert records["peak_flops_fp32"][0] > 1e8 and records["peak_flops_fp32"][1] == "FLOP/s"
    numpy_bf16 = peak.run_numpy(dict(job, settings=dict(job["settings"], dtypes=["fp32",
                                                                                    "bf16"])))
    assert "bf16" in numpy_bf16["settings"]["unsupported"]
    with pytest.raises(NotRun, match="CUDA"):
        peak.run_torch(dict(job, coords={"device": "cuda"}))


# ------------------------------------------------------------------------------- slow tests


@pytest.mark.slow
def test_ort_and_torch_take_the_same_steps_at_full_width(ort_cache):
    widths = full_widths("vgg16")
    result = make_artifacts(ort_cache, 0, widths)
    ort = ort_trainer.OrtTrainer(result["settings"]["artifact_dir"], lr=0.01)
    assert_same_steps(same_step_from_ort_weights(ort, widths, 0, class_batches(5, 8, seed=3),
                                                 0.01))


@pytest.mark.slow
def test_same_steps_with_other_cpu_kernels():
    """The comparison holds when PyTorch runs other CPU kernels than this CPU's best: ATen's
    generic (non-SIMD) kernels and oneDNN limited to AVX2, as on a CPU without AVX-512 (ONNX
    Runtime's MLAS picks its kernels by CPUID and cannot be forced)."""
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default", ONEDNN_MAX_CPU_ISA="AVX2")
    probe = subprocess.run([sys.executable, "-c", "import torch; "
                            "print(torch.backends.cpu.get_cpu_capability())"],
                           env=env, capture_output=True, text=True, cwd=ROOT)
    assert probe.stdout.strip() == "DEFAULT", probe.stdout + probe.stderr
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_training.py::test_ort_and_torch_take_the_same_steps"],
                          env=env, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:]
    assert "2 passed" in done.stdout, done.stdout[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("framework,freeze", [("pytorch", 0), ("onnxruntime-training", 0),
                                              ("pytorch", 4), ("onnxruntime-training", 4)])
def test_smoke_training_learns(ort_cache, framework, freeze):
    """A short run on the synthetic class-pattern set reaches > 50 % test accuracy (chance 10 %)."""
    widths = [max(1, w // 4) for w in full_widths("vgg16")]
    job = job_dict(framework, freeze=freeze, batch=32, widths=widths, epochs=3, lr=0.05,
                   data={"name": "synthetic", "n_train": 1024, "n_test": 256})
    if framework == "pytorch":
        result = torch_trainer.run(job)
    else:
        make_artifacts(ort_cache, freeze, widths)
        job["artifacts"]["cache_dir"] = str(ort_cache)
        result = ort_trainer.run(job)
    records = {name: value for name, value, _ in result["records"]}
    assert records["accuracy"] > 0.5, (records["accuracy"], result["samples"]["loss"])
    assert records["loss_tail_mean"] < records["loss_first"]
