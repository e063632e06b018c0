"""Pure-python helpers shared by the model definitions (stdlib only: device side, Python 3.6)."""

from typing import List, Sequence

from toolkit.errors import UserError


def conv_out(size: int, stride: int) -> int:
    """Spatial size after a 3x3/pad-1 or 1x1/pad-0 conv: both give floor((size - 1) / s) + 1."""
    return (size - 1) // stride + 1


def check_widths(model: str, widths: Sequence[int], expected: int) -> List[int]:
    """Validate a width list once, so every count and builder sees plain positive ints."""
    widths = list(widths)
    if len(widths) != expected:
        raise UserError(f"{model}: expected {expected} widths, got {len(widths)}")
    return [check_positive(f"{model} width", w) for w in widths]


def check_positive(what: str, value: int) -> int:
    """Classes and image sizes must be positive integers."""
    try:
        ok = int(value) == value and value >= 1 and not isinstance(value, bool)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise UserError(f"{what} must be a positive integer, got {value!r}")
    return int(value)
