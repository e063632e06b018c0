"""MobileNetV2, CIFAR variant as in the NeuralScale code (eugenelet/NeuralScale).

Stride-1 3x3 stem with bias + BN + ReLU6; 17 inverted-residual blocks; a 1x1 conv + BN + ReLU6,
global avg-pool and a 1x1-conv classifier. Every conv has a bias. A block with input width c,
expansion t and output width o is: 1x1 conv c->c*t, BN, ReLU6, 3x3 depthwise (stride s), BN,
ReLU6, 1x1 conv ->o, BN (linear bottleneck: no activation after the add). Its shortcut is the
identity, or a 1x1 conv (stride s, bias) + BN wherever s != 1 or c != o. The expanded width c*t
follows the input width, so it is not free.

Width list (19): [stem, stage1 (1 block, t=1), stage2 (2, t=6, s2), stage3 (3, s2), stage4 (4, s2),
stage5 (3, s1), stage6 (3, s2), stage7 (1, t=6, s1), last 1x1 conv]; a stage's stride applies to its
first block. Full: [32, 16, 24,24, 32,32,32, 64,64,64,64, 96,96,96, 160,160,160, 320, 1280].
"""

from typing import TYPE_CHECKING, List, Sequence, Tuple

from ._common import check_positive, check_widths, conv_out

if TYPE_CHECKING:  # annotations only: torch is imported lazily by build()
    import torch

NAME = "mobilenetv2"
# (blocks, expansion t, stride of the first block) per stage, as in the public CIFAR code.
STAGES = ((1, 1, 1), (2, 6, 2), (3, 6, 2), (4, 6, 2), (3, 6, 1), (3, 6, 2), (1, 6, 1))
FULL_WIDTHS = [32, 16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320, 1280]


def blocks(widths: Sequence[int]) -> List[Tuple[int, int, int, int]]:
    """(in, expanded, out, stride) for every block: the one place the layout is decoded."""
    out, cin, i = [], widths[0], 1
    for n, t, first_stride in STAGES:
        for k in range(n):
            cout = widths[i]
            out.append((cin, cin * t, cout, first_stride if k == 0 else 1))
            cin, i = cout, i + 1
    return out


def count_params(widths: Sequence[int], classes: int = 10) -> int:
    """Conv weights + biases, BN affine, shortcut conv + BN, 1x1-conv classifier + bias."""
    w = check_widths(NAME, widths, len(FULL_WIDTHS))
    classes = check_positive("classes", classes)
    total = 3 * w[0] * 9 + w[0] + 2 * w[0]
    for cin, exp, cout, stride in blocks(w):
        total += cin * exp + exp + 2 * exp  # expand
        total += exp * 9 + exp + 2 * exp  # depthwise
        total += exp * cout + cout + 2 * cout  # project
        if stride != 1 or cin != cout:
            total += cin * cout + cout + 2 * cout
    total += w[-2] * w[-1] + w[-1] + 2 * w[-1]
    return total + w[-1] * classes + classes


def count_macs(widths: Sequence[int], classes: int = 10, image_size: int = 32) -> int:
    """Conv (incl. depthwise and shortcut) and classifier multiply-adds for one image."""
    w = check_widths(NAME, widths, len(FULL_WIDTHS))
    classes = check_positive("classes", classes)
    size = check_positive("image_size", image_size)
    total = w[0] * size * size * 3 * 9
    for cin, exp, cout, stride in blocks(w):
        total += exp * size * size * cin
        size = conv_out(size, stride)
        hw = size * size
        total += exp * hw * 9 + cout * hw * exp
        if stride != 1 or cin != cout:
            total += cout * hw * cin
    total += w[-1] * size * size * w[-2]
    return total + classes * w[-1]


def build(widths: Sequence[int], classes: int = 10) -> "torch.nn.Module":
    """torch.nn.Module with PyTorch's default init (the public code sets none)."""
    w = check_widths(NAME, widths, len(FULL_WIDTHS))
    classes = check_positive("classes", classes)
    from . import torch_modules

    return torch_modules.MobileNetV2(w[0], blocks(w), w[-1], classes)
