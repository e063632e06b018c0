"""Derived figures: the one place that defines metrics computed from measured ones.

Units follow the studies: accuracy per MB uses 10^6 bytes of runtime memory (model memory:
peak RSS minus the import baseline); memory per parameter is in bytes per parameter.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

RUNTIME_MEMORY = "model_memory"


def _ratio(numerator: float | None, denominator: float | None, scale: float = 1.0,
           ) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / (denominator * scale)


DERIVED: dict[str, tuple[str, Callable[[dict[str, Any]], float | None]]] = {
    "accuracy_per_mb": ("1/MB", lambda m: _ratio(m.get("accuracy"), m.get(RUNTIME_MEMORY), 1e-6)),
    "memory_per_param": ("B", lambda m: _ratio(m.get(RUNTIME_MEMORY), m.get("params"))),
}


def metric_value(metrics: dict[str, Any], name: str) -> float | None:
    """A measured metric, or a derived one computed from the measured ones."""
    if name in DERIVED:
        return DERIVED[name][1](metrics)
    value = metrics.get(name)
    return None if value is None else float(value)
