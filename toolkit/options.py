"""Numeric command-line options, parsed in one place: the tasks take them as text, so an option
not given ('') is never read as 0, and every bad value is one line naming the option, the value
and what is valid."""
from __future__ import annotations

import math

from toolkit.errors import UserError


def number(option: str, text: str | float | None, *, whole: bool = False,
           minimum: float | None = None, maximum: float | None = None) -> int | float | None:
    """The value of `option` given as `text` (None when not given), or a UserError."""
    if text is None or str(text).strip() == "":
        return None
    valid = "a whole number" if whole else "a number"
    if minimum is not None and maximum is not None:
        valid += f" from {minimum} to {maximum}"
    elif minimum is not None:
        valid += f" >= {minimum}"
    elif maximum is not None:
        valid += f" <= {maximum}"
    try:
        value = int(str(text)) if whole else float(str(text))
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or (minimum is not None and value < minimum) \
            or (maximum is not None and value > maximum):
        raise UserError(f"{option} takes {valid}, got '{text}'")
    return value
