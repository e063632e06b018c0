"""VGG-11 and VGG-16, CIFAR variants as in the NeuralScale code (eugenelet/NeuralScale).

Every conv is 3x3/pad 1 with bias, followed by BatchNorm and ReLU; a 2x2 max-pool follows the
convs marked in the layout; the head is one Linear(last width -> classes) on the 1x1 map left
after five pools of a 32x32 image.

Width list: one entry per conv, in forward order (VGG-11: 8, VGG-16: 13). Pooling positions are
architecture, so they live in LAYOUTS ('C' = conv, 'M' = max-pool), never in the width list.
"""

from typing import TYPE_CHECKING, Sequence

from toolkit.errors import UserError

from ._common import check_positive, check_widths

if TYPE_CHECKING:  # annotations only: torch is imported lazily by build()
    import torch

LAYOUTS = {
    "vgg11": "CMCMCCMCCMCCM",
    "vgg16": "CCMCCMCCCMCCCMCCCM",
}

FULL_WIDTHS = {
    "vgg11": [64, 128, 256, 256, 512, 512, 512, 512],
    "vgg16": [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512],
}


def count_params(name: str, widths: Sequence[int], classes: int = 10) -> int:
    """Conv weight + bias, BN affine (2 per channel), Linear weight + bias."""
    w = check_widths(name, widths, len(FULL_WIDTHS[name]))
    classes = check_positive("classes", classes)
    total, cin = 0, 3
    for cout in w:
        total += cin * cout * 9 + cout + 2 * cout
        cin = cout
    return total + cin * classes + classes


def count_macs(
    name: str, widths: Sequence[int], classes: int = 10, image_size: int = 32
) -> int:
    """Conv and Linear multiply-adds for one image."""
    w = check_widths(name, widths, len(FULL_WIDTHS[name]))
    classes = check_positive("classes", classes)
    size = check_positive("image_size", image_size)
    total, cin, i = 0, 3, 0
    for op in LAYOUTS[name]:
        if op == "M":
            size //= 2
            continue
        total += w[i] * size * size * cin * 9
        cin = w[i]
        i += 1
    if size != 1:
        # The head is Linear(last width), as in the public code: it only fits a 1x1 final map.
        raise UserError(f"{name}: image_size must be 32..63 (final map 1x1), got {image_size}")
    return total + cin * classes


def build(name: str, widths: Sequence[int], classes: int = 10) -> "torch.nn.Module":
    """torch.nn.Module with the NeuralScale init: conv kaiming fan_out, bias 0; BN weight 0.5,
    bias 0; head N(0, 0.01), bias 0."""
    w = check_widths(name, widths, len(FULL_WIDTHS[name]))
    classes = check_positive("classes", classes)
    from . import torch_modules

    return torch_modules.VGG(LAYOUTS[name], w, classes)
