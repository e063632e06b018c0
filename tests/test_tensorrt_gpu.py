"""Real TensorRT engines (`pytest -m gpu` on a host with TensorRT, pycuda and an NVIDIA GPU).

Elsewhere every test here is skipped with what is missing ("TensorRT not installed", "pycuda not
installed", "no CUDA GPU"), and the cells' honest gating is checked instead (CPU tests at the end).
"""
import numpy as np
import pytest

from toolkit.device.results import NotRun
from toolkit.device.training import numpy_reference as ref
from toolkit.device.training import step_graph as sg

PROTOCOL = {"warmup_count": 2, "warmup_seconds": 0.0, "min_count": 5, "min_seconds": 0.0,
            "max_seconds": 60.0, "max_cv": 10.0}
NARROW = [8, 8, 16, 16, 16, 16, 16, 32, 32, 32, 32, 32, 32]


def _stack_or_reason():
    from toolkit.device.backends.tensorrt import runtime

    try:
        return runtime.require_stack(), None
    except NotRun as reason:
        return None, str(reason)


@pytest.fixture(scope="module")
def stack():
    found, reason = _stack_or_reason()
    if found is None:
        pytest.skip(reason)
    return found


def _job(precision="fp32", freeze=0, **settings):
    base = {"model": "vgg16", "widths": NARROW, "classes": 10, "seed": 0, "lr": 0.05,
            "momentum": 0.9, "weight_decay": 5e-4, "distinct_batches": 2,
            "data": {"name": "synthetic", "n_train": 64, "n_test": 16, "classes": 10}}
    base.update(settings)
    return {"kind": "training", "coords": {"framework": "tensorrt", "device": "cuda",
                                           "precision": precision, "freeze": freeze, "batch": 8},
            "settings": base, "protocol": PROTOCOL, "artifacts": {}}


def _trainer(stack, cfg, precision="fp32", strongly=False, conv_mode=None):
    from toolkit.device.backends.tensorrt import runtime, training
    from toolkit.device.backends.tensorrt.adapter import Adapter

    trt, cuda = stack
    adapter = Adapter(trt)
    params = training.init_params(cfg, 0)
    graph = sg.build_vgg_step(cfg, {n: params[n] for n in sg.frozen_value_names(cfg)})
    plan, _ = training.build_plan(trt, adapter, runtime.make_logger(trt), graph, precision,
                                  1 << 30, strongly, conv_mode)
    state = ref.initial_state(graph, params)
    return graph, state, lambda: training.TrtTrainer(trt, cuda, adapter, plan, graph, state,
                                                     0.05)


@pytest.mark.gpu
@pytest.mark.parametrize("freeze,conv_mode", [(0, None), (5, None), (0, "im2col")])
def test_engine_steps_match_the_numpy_reference(stack, freeze, conv_mode):
    """Three fp32 steps with buffer swapping: loss and every state tensor as the reference."""
    from toolkit.device.backends.tensorrt import runtime

    cfg = sg.StepConfig("vgg16", NARROW, 10, 8, 32, freeze, 5e-4, 0.9)
    with runtime.CudaContext(stack[1]):
        graph, state, make = _trainer(stack, cfg, conv_mode=conv_mode)
        trainer = make()
        r = np.random.default_rng(0)
        want_state = dict(state)
        for _ in range(3):
            x = r.standard_normal((8, 3, 32, 32)).astype(np.float32)
            onehot = ref.one_hot(r.integers(0, 10, 8), 10)
            loss = trainer.step(x, onehot)
            want_loss, want_state = ref.sgd_step(graph, want_state, x, onehot, 0.05)
            assert abs(loss - want_loss) <= 1e-3 * abs(want_loss)
        got = trainer.state()
        trainer.close()
    for name, value in want_state.items():
        err = np.abs(got[name] - value).max() / (np.abs(value).max() + 1e-6)
        assert err < 2e-3, name


@pytest.mark.gpu
@pytest.mark.parametrize("strongly", [False, True])
def test_fp16_engine_trains(stack, strongly):
    from toolkit.device.backends.tensorrt import runtime
    from toolkit.device.backends.tensorrt.adapter import Adapter

    if strongly and not Adapter(stack[0]).has_strong_typing:
        pytest.skip("strongly typed networks need TensorRT >= 10")
    cfg = sg.StepConfig("vgg16", NARROW, 10, 8, 32, 0, 5e-4, 0.9, loss_scale=1024.0)
    with runtime.CudaContext(stack[1]):
        _, _, make = _trainer(stack, cfg, "fp16", strongly)
        trainer = make()
        r = np.random.default_rng(0)
        x = r.standard_normal((8, 3, 32, 32)).astype(np.float32)
        onehot = ref.one_hot(r.integers(0, 10, 8), 10)
        losses = [trainer.step(x, onehot) for _ in range(8)]
        trainer.close()
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_training_cell_reports_step_time_memory_and_losses(stack, precision, tmp_path):
    from toolkit.device.backends.tensorrt import training

    job = _job(precision)
    job["artifacts"]["engine_cache_dir"] = str(tmp_path)
    result = training.run(job)
    names = {name for name, _, _ in result["records"]}
    assert {"step_time_p50", "gpu_step_time_p50", "throughput", "gpu_memory_peak_delta",
            "engine_build", "loss_first", "rss_peak"} <= names
    assert result["samples"]["loss"]["values"]
    again = training.run(job)  # second run: engine from the cache
    assert dict((n, v) for n, v, _ in again["records"])["engine_from_cache"] == 1.0


@pytest.mark.gpu
def test_inference_cell_times_like_trtexec(stack, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from toolkit.device.backends.tensorrt import inference

    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3],
                           np.random.default_rng(0).standard_normal(108).astype(np.float32))
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["y"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["y"], ["output"])], "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4, 32, 32])], [w])
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    job = {"kind": "inference", "coords": {"framework": "tensorrt", "device": "cuda",
                                           "precision": "fp32", "batch": 4},
           "settings": {"input_shape": [3, 32, 32], "seed": 0},
           "artifacts": {"onnx": str(path), "engine_cache_dir": str(tmp_path / "engines")},
           "protocol": PROTOCOL}
    result = inference.run(job)
    names = {name for name, _, _ in result["records"]}
    assert {"latency_p50", "gpu_compute_p50", "h2d_p50", "d2h_p50", "enqueue_p50",
            "engine_device_memory", "gpu_memory_delta_context", "throughput"} <= names
    assert len(result["samples"]["gpu_compute"]["values"]) == len(
        result["samples"]["latency"]["values"])


# -- honest gating on hosts without the stack (runs everywhere) ------------------------------------

def test_cells_are_not_run_without_tensorrt_or_gpu():
    found, reason = _stack_or_reason()
    if found is not None:
        pytest.skip("TensorRT and a GPU are present: gating is exercised by the gpu tests")
    from toolkit.device.backends.tensorrt import inference, training

    for module, job in ((training, _job()), (inference, {"coords": {"batch": 1}})):
        with pytest.raises(NotRun) as info:
            module.run(job)
        assert str(info.value) == reason
        assert reason.startswith(("TensorRT not installed", "pycuda not installed",
                                  "no CUDA GPU"))
