"""Tolerances for comparing two float32 implementations, derived from the network, not tuned.

Two float32 libraries (PyTorch's oneDNN/ATen kernels, ONNX Runtime's MLAS) sum in different
orders, and which kernels run depends on the CPU (AVX2, AVX-512, AMX...). Neither is "the"
answer: both are compared with a float64 computation of the same step, and each must lie within
the rounding error float32 can make on this network.

The bound is the probabilistic rounding-error bound for inner products (Higham and Mary, "A New
Approach to Probabilistic Rounding Error Analysis", SIAM J. Sci. Comput. 41(5), 2019): a dot
product of length n computed in precision u has a relative error of at most lambda * sqrt(n) * u
with probability at least 1 - 2 exp(-lambda^2 (1 - u)^2 / 2). With lambda = 6 the chance that one
inner product exceeds it is about 3e-8. A network's output carries the errors of every layer it
passed through, so the per-layer terms add up.
"""
from __future__ import annotations

import math

import numpy as np

UNIT_ROUNDOFF_FP32 = 2.0 ** -24
LAMBDA = 6.0


def layer_fan_ins(net) -> list[int]:
    """The inner-product length of every convolution and linear layer of a torch module."""
    import torch

    fan_ins = []
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            fan_ins.append(module.in_channels // module.groups * kh * kw)
        elif isinstance(module, torch.nn.Linear):
            fan_ins.append(module.in_features)
    return fan_ins


def forward_bound(net) -> float:
    """Relative float32 rounding error a forward pass through `net` can carry."""
    return LAMBDA * UNIT_ROUNDOFF_FP32 * sum(math.sqrt(n) for n in layer_fan_ins(net))


def training_step_bound(net) -> float:
    """Relative (normwise, per parameter tensor) float32 error of one step's gradient: the
    forward pass, then the backward pass through the same layers (data and weight gradients)."""
    return 3.0 * forward_bound(net)


def normwise_error(got: np.ndarray, exact: np.ndarray) -> float:
    """||got - exact|| / ||exact|| (0 when both are zero)."""
    scale = float(np.linalg.norm(exact))
    diff = float(np.linalg.norm(np.asarray(got, np.float64) - exact))
    return diff / scale if scale else diff

