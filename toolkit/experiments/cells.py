"""A cell: one measured combination of an experiment's coordinates, with a stable id
(toolkit/experiments/expansion.py makes them from a resolved experiment)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

# Every coordinate any experiment kind has, with its type, in display order: one place for these.
COORDINATES: dict[str, type] = {"model": str, "method": str, "scale": float, "scaling_mode": str,
                                "framework": str, "device": str, "precision": str, "freeze": int,
                                "batch": int}


def stable_hash(payload: Any, length: int = 16) -> str:
    """Hash of a JSON-able value, independent of key order."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class Cell:
    """One measured combination; `id` is the hash of everything that defines the measurement."""

    experiment: str
    kind: str
    coords: dict[str, Any]
    settings: dict[str, Any]
    protocol: dict[str, Any]
    # Times the cell is measured, each in a fresh process (toolkit/rounds.py): how often, not
    # what, so it is not part of the id.
    rounds: int = 1
    id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", stable_hash(self.definition()))

    def definition(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "kind": self.kind, "coords": self.coords,
                "settings": self.settings, "protocol": self.protocol}

    def label(self) -> str:
        parts = []
        for name, value in self.coords.items():
            if name == "batch":
                parts.append(f"b{value}")
            elif name == "freeze":
                parts.append(f"freeze{value}")
            else:
                parts.append(f"{value:g}" if isinstance(value, float) else str(value))
        return " ".join(parts)
