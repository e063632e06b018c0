"""PreAct-ResNet-18, CIFAR variant as in the NeuralScale code (eugenelet/NeuralScale).

3x3 stem (no bias, no BN: the first block's BN pre-activates it), 4 stages x 2 pre-activation
blocks with strides 1, 2, 2, 2, a final BN (no ReLU after it, as in the public code), global
avg-pool and Linear. A block is BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3; its shortcut is the
identity, or a 1x1 projection conv (no bias, no BN) fed by the pre-activated input wherever the
stride is not 1 or the block's input and output widths differ.

Width list (17): [stem, then per block (conv1 width, conv2 width = block output) for the 8 blocks
in forward order]. Full: [64, 64,64, 64,64, 128,128, 128,128, 256,256, 256,256, 512,512, 512,512].
"""

from typing import TYPE_CHECKING, List, Sequence, Tuple

from ._common import check_positive, check_widths, conv_out

if TYPE_CHECKING:  # annotations only: torch is imported lazily by build()
    import torch

NAME = "preact_resnet18"
STRIDES = (1, 1, 2, 1, 2, 1, 2, 1)  # per block
FULL_WIDTHS = [64, 64, 64, 64, 64, 128, 128, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512]


def blocks(widths: Sequence[int]) -> List[Tuple[int, int, int, int]]:
    """(in, mid, out, stride) for every block: the one place the layout is decoded."""
    out, cin = [], widths[0]
    for b, stride in enumerate(STRIDES):
        mid, cout = widths[1 + 2 * b], widths[2 + 2 * b]
        out.append((cin, mid, cout, stride))
        cin = cout
    return out


def count_params(widths: Sequence[int], classes: int = 10) -> int:
    """Convs (no bias), BN affine, 1x1 projections, final BN, Linear weight + bias."""
    w = check_widths(NAME, widths, len(FULL_WIDTHS))
    classes = check_positive("classes", classes)
    total = 3 * w[0] * 9
    for cin, mid, cout, stride in blocks(w):
        total += 2 * cin + cin * mid * 9 + 2 * mid + mid * cout * 9
        if stride != 1 or cin != cout:
            total += cin * cout
    return total + 2 * w[-1] + w[-1] * classes + classes


def count_macs(widths: Sequence[int], classes: int = 10, image_size: int = 32) -> int:
    """Conv, projection and Linear multiply-adds for one image."""
    w = check_widths(NAME, widths, len(FULL_WIDTHS))
    classes = check_positive("classes", classes)
    size = check_positive("image_size", image_size)
    total = w[0] * size * size * 3 * 9
    for cin, mid, cout, stride in blocks(w):
        size = conv_out(size, stride)
        hw = size * size
        total += mid * hw * cin * 9 + cout * hw * mid * 9
        if stride != 1 or cin != cout:
            total += cout * hw * cin
    return total + w[-1] * classes


def build(widths: Sequence[int], classes: int = 10) -> "torch.nn.Module":
    """torch.nn.Module; NeuralScale init (conv kaiming fan_out/relu, BN bias 0, Linear default)."""
    w = check_widths(NAME, widths, len(FULL_WIDTHS))
    classes = check_positive("classes", classes)
    from . import torch_modules

    return torch_modules.PreActResNet(w[0], blocks(w), classes)
