"""ONNX export: the pinned onnxruntime loads every zoo model and agrees with torch."""

import os

import numerics
import numpy as np
import pytest
from conftest import synthetic_neuralscale_fit

from toolkit.device import models
from toolkit.device.scaling import neuralscale as ns

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from toolkit.device.models import export  # noqa: E402
from toolkit.device.models.export import MAX_IR_VERSION, export_onnx  # noqa: E402


def build_calibrated(*args, **kwargs):
    """build_model, then BN running statistics from one seeded batch.

    At init the running stats are mean 0 / var 1, so eval-mode activations shrink layer by layer
    (VGG logits come out near 1e-6) and BN export bugs would hide below any tolerance.
    """
    net = models.build_model(*args, **kwargs)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: exactly this batch's statistics
    net.train()
    with torch.no_grad():
        net(torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2)))
    return net.eval()


@pytest.fixture(autouse=True)
def _calibrated_export(monkeypatch):
    monkeypatch.setattr(export, "build_model", build_calibrated)


def run_both(name, widths, path, batch=1, classes=10, seed=0):
    """(export info, session, PyTorch's logits, ONNX Runtime's logits) for one seeded input.

    PyTorch computes in float64: its own float32 result is off the exact one by up to 8e-5 for
    ResNet-50 (50 layers of rounding), so two float32 implementations can differ by 1e-4 with
    neither wrong; float64 measures the export's error alone, and float32_error bounds it."""
    info = export_onnx(name, widths, path, classes=classes, batch=batch, seed=seed)
    net = build_calibrated(name, widths, classes=classes, seed=seed).double()
    x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net(x.double()).numpy()
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (got,) = session.run(["logits"], {"input": x.numpy()})
    return info, session, expected, got


def float32_error(name, widths, expected, classes=10):
    """What float32 rounding allows ONNX Runtime's logits to differ from the float64 ones: the
    network's forward bound (tests/numerics.py) times the largest logit; not a tuned constant,
    since which MLAS kernels run depends on the CPU."""
    net = models.build_model(name, widths, classes=classes)
    return numerics.forward_bound(net) * float(np.abs(expected).max())


def method_widths(name, method, ratio):
    """The architecture a scaling cell measures: uniform width scaling, or NeuralScale's solved
    from a power-law fit (non-uniform widths; a synthetic fit stands in for a search)."""
    if method == "uniform":
        return models.scale_widths(name, ratio)
    return ns.widths_for_ratio(dict(synthetic_neuralscale_fit(name), model=name, classes=10),
                               ratio)["widths"]


# Full-width exports of the big models take seconds each (10+ on a loaded 2-core runner).
BIG_AT_FULL = ("mobilenetv2", "preact_resnet18", "resnet50", "vgg16")
CASES = [
    pytest.param(name, method, ratio,
                 marks=[pytest.mark.slow] if ratio == 1.0 and name in BIG_AT_FULL else [])
    for name in models.MODEL_NAMES
    for method in ("uniform", "neuralscale")
    for ratio in (0.25, 1.0)
]


@pytest.mark.parametrize(("name", "method", "ratio"), CASES)
def test_onnxruntime_matches_torch(name, method, ratio, tmp_path):
    widths = method_widths(name, method, ratio)
    if method == "neuralscale":
        assert widths != models.scale_widths(name, ratio)
    path = str(tmp_path / f"{name}.onnx")
    info, session, expected, got = run_both(name, widths, path)
    assert got.shape == expected.shape == (1, 10)
    assert np.abs(expected).max() > 1e-2  # not a degenerate near-zero comparison
    assert np.abs(got - expected).max() <= float32_error(name, widths, expected)
    assert info == {
        "opset": 17,
        "ir_version": info["ir_version"],
        "params": models.count_params(name, widths),
        "onnx_bytes": os.path.getsize(path),
    }
    assert info["ir_version"] <= MAX_IR_VERSION


def test_names_shapes_batch_and_classes(tmp_path):
    path = str(tmp_path / "sub" / "m.onnx")  # missing parent directories are created
    widths = models.scale_widths("preact_resnet18", 0.25)
    info, session, expected, got = run_both("preact_resnet18", widths, path, batch=4,
                                            classes=100, seed=3)
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, list(inp.shape)) == ("input", [4, 3, 32, 32])
    assert (out.name, list(out.shape)) == ("logits", [4, 100])
    assert np.abs(got - expected).max() <= float32_error("preact_resnet18", widths, expected,
                                                         classes=100)
    assert info["params"] == models.count_params("preact_resnet18", widths, 100)
