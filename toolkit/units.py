"""Display units: the one place that turns stored SI values into what people read.

Records store SI base units ("s", "B", "count", "MAC", "ratio", "1/s") so nothing is ever
converted twice; reports convert at the last moment, through this module only.
"""

from __future__ import annotations

import math

# unit -> (dimension, factor to the dimension's base unit). Conversion between units of one
# dimension is exact; across dimensions it is an error, not a silent wrong number.
UNITS: dict[str, tuple[str, float]] = {
    "s": ("time", 1.0),
    "ms": ("time", 1e-3),
    "us": ("time", 1e-6),
    "B": ("bytes", 1.0),
    "1/MB": ("per_megabyte", 1.0),
    "FLOP": ("flop", 1.0),
    "GFLOP": ("flop", 1e9),
    "FLOP/s": ("flop_rate", 1.0),
    "GFLOP/s": ("flop_rate", 1e9),
    "nat": ("loss", 1.0),
    "KiB": ("bytes", 2.0**10),
    "MiB": ("bytes", 2.0**20),
    "GiB": ("bytes", 2.0**30),
    "count": ("count", 1.0),
    "k": ("count", 1e3),
    "M": ("count", 1e6),
    "MAC": ("mac", 1.0),
    "M MACs": ("mac", 1e6),
    "G MACs": ("mac", 1e9),
    "ratio": ("ratio", 1.0),
    "%": ("ratio", 1e-2),
    "1/s": ("rate", 1.0),
}

# The unit each SI base unit is shown in when nothing more specific is asked for.
DISPLAY: dict[str, str] = {
    "s": "ms",
    "B": "MiB",
    "count": "count",
    "MAC": "M MACs",
    "ratio": "%",
    "1/s": "1/s",
    "FLOP": "GFLOP",
    "FLOP/s": "GFLOP/s",
}

MISSING = "–"  # shown for a value that was not measured


def convert(value: float, unit: str, to: str) -> float:
    """Convert `value` from `unit` to `to`; raises ValueError on unknown or mismatched units."""
    try:
        dim_from, f_from = UNITS[unit]
        dim_to, f_to = UNITS[to]
    except KeyError as exc:
        raise ValueError(f"unknown unit {exc.args[0]!r}") from None
    if dim_from != dim_to:
        raise ValueError(f"cannot convert {unit!r} ({dim_from}) to {to!r} ({dim_to})")
    return value * f_from / f_to


def display(value: float, unit: str) -> tuple[float, str]:
    """Value and unit in the default display unit; unknown units pass through unchanged."""
    target = DISPLAY.get(unit)
    if target is None:
        return value, unit
    return convert(value, unit, target), target


def ms(seconds: float) -> float:
    return convert(seconds, "s", "ms")


def mib(nbytes: float) -> float:
    return convert(nbytes, "B", "MiB")


def millions(n: float) -> float:
    return n / 1e6


def percent(ratio: float) -> float:
    return convert(ratio, "ratio", "%")


def fmt(value: float | int | None, digits: int = 3) -> str:
    """`digits` significant digits, never scientific notation, whole digits never rounded away.

    Three digits suit measurement noise of a few percent (12345.6 shows as "12346", 0.01234 as
    "0.0123"); a missing or non-finite value shows "–".
    """
    if value is None or not math.isfinite(value):
        return MISSING
    if isinstance(value, int):
        return str(value)
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    rounded = round(value, decimals)
    if rounded == 0:
        return "0"
    # rounding can carry into a new digit (9.996 -> 10.0): recount the decimals afterwards
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(rounded))))
    return f"{rounded:.{decimals}f}"


def fmt_unit(value: float | None, unit: str, digits: int = 3) -> str:
    """A value with its display unit, e.g. fmt_unit(0.0123, "s") == "12.3 ms"."""
    if value is None:
        return MISSING
    shown, shown_unit = display(value, unit)
    text = fmt(shown, digits)
    return text if text == MISSING else f"{text} {shown_unit}"
