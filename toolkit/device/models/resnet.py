"""ResNet-50, CIFAR bottleneck variant (not in the NeuralScale code).

3x3 stem (64, no bias) + BN + ReLU; bottleneck blocks [3, 4, 6, 3] with strides 1, 2, 2, 2 on
the first block of each stage; global avg-pool; Linear. A block is 1x1 conv, BN, ReLU, 3x3 conv
(stride s), BN, ReLU, 1x1 conv, BN, add, ReLU (stride on the 3x3 as in pytorch-cifar and
torchvision). Convs have no bias. Free-width and projection rules follow PreAct-ResNet-18: every
conv's width is free, and the shortcut is a 1x1 conv (stride s, no bias) + BN wherever s != 1 or
the block's input and output widths differ.

Width list (49): [stem, then per block (1x1 width, 3x3 width, output 1x1 width) for the 16 blocks
in forward order]. Full: [64] + 3x[64, 64, 256] + 4x[128, 128, 512] + 6x[256, 256, 1024]
+ 3x[512, 512, 2048] (expansion 4 at full width only; scaled lists need not keep it).
"""

from typing import TYPE_CHECKING, List, Sequence, Tuple

from ._common import check_positive, check_widths, conv_out

if TYPE_CHECKING:  # annotations only: torch is imported lazily by build()
    import torch

NAME = "resnet50"
STAGES = ((3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2))  # (blocks, planes, first stride)
EXPANSION = 4
FULL_WIDTHS: List[int] = [64]
for _n, _planes, _stride in STAGES:
    FULL_WIDTHS += [_planes, _planes, _planes * EXPANSION] * _n


def blocks(widths: Sequence[int]) -> List[Tuple[int, int, int, int, int]]:
    """(in, mid1, mid2, out, stride) for every block: the one place the layout is decoded."""
    out, cin, i = [], widths[0], 1
    for n, _, first_stride in STAGES:
        for k in range(n):
            a, b, cout = widths[i], widths[i + 1], widths[i + 2]
            out.append((cin, a, b, cout, first_stride if k == 0 else 1))
            cin, i = cout, i + 3
    return out


def count_params(widths: Sequence[int], classes: int = 10) -> int:
    """Convs (no bias), BN affine, projection conv + BN, Linear weight + bias."""
    w = check_widths(NAME, widths, len(FULL_WIDTHS))
    classes = check_positive("classes", classes)
    total = 3 * w[0] * 9 + 2 * w[0]
    for cin, a, b, cout, stride in blocks(w):
        total += cin * a + 2 * a + a * b * 9 + 2 * b + b * cout + 2 * cout
        if stride != 1 or cin != cout:
            total += cin * cout + 2 * cout
    return total + w[-1] * classes + classes


def count_macs(widths: Sequence[int], classes: int = 10, image_size: int = 32) -> int:
    """Conv, projection and Linear multiply-adds for one image."""
    w = check_widths(NAME, widths, len(FULL_WIDTHS))
    classes = check_positive("classes", classes)
    size = check_positive("image_size", image_size)
    total = w[0] * size * size * 3 * 9
    for cin, a, b, cout, stride in blocks(w):
        total += a * size * size * cin
        size = conv_out(size, stride)
        hw = size * size
        total += b * hw * a * 9 + cout * hw * b
        if stride != 1 or cin != cout:
            total += cout * hw * cin
    return total + w[-1] * classes


def build(widths: Sequence[int], classes: int = 10) -> "torch.nn.Module":
    """torch.nn.Module with PyTorch's default init (as pytorch-cifar's ResNet)."""
    w = check_widths(NAME, widths, len(FULL_WIDTHS))
    classes = check_positive("classes", classes)
    from . import torch_modules

    return torch_modules.ResNet(w[0], blocks(w), classes)
