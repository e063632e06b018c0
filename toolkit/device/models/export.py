"""ONNX export of zoo models, for the onnxruntime and TensorRT runs."""

import inspect
import os
import warnings
from typing import Sequence

from . import build_model, count_params

MAX_IR_VERSION = 10  # onnxruntime 1.19.2, the pinned runtime, reads IR versions up to 10


def export_onnx(
    model: str,
    widths: Sequence[int],
    path: str,
    classes: int = 10,
    batch: int = 1,
    seed: int = 0,
    opset: int = 17,
) -> dict:
    """Export the eval-mode model with input "input" [batch, 3, 32, 32] and output "logits".

    Uses the TorchScript-based exporter: it is the one the device images' old torch has, and
    recent torch's default (dynamo) needs onnxscript. The file is checked with onnx.checker.
    Returns {"opset", "ir_version", "params", "onnx_bytes"}.
    """
    import onnx
    import torch

    net = build_model(model, widths, classes=classes, seed=seed)
    net.eval()
    dummy = torch.zeros(int(batch), 3, 32, 32)
    kwargs = dict(input_names=["input"], output_names=["logits"], opset_version=int(opset),
                  do_constant_folding=True)
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        os.makedirs(parent)
    with torch.no_grad(), warnings.catch_warnings():
        # Newer torch announces the TorchScript exporter's deprecation; not actionable here.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(net, (dummy,), path, **kwargs)

    proto = onnx.load(path)
    if proto.ir_version > MAX_IR_VERSION:
        # The graph only uses the requested opset, which older IR versions express fully.
        proto.ir_version = MAX_IR_VERSION
        onnx.save(proto, path)
    onnx.checker.check_model(proto)
    opsets = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    return {
        "opset": opsets[0] if opsets else int(opset),
        "ir_version": int(proto.ir_version),
        "params": count_params(model, widths, classes),
        "onnx_bytes": os.path.getsize(path),
    }
