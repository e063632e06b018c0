"""Experiment kinds as plugins of the report: one module per kind (its columns, extra tables,
charts), registered here by the kind an experiment's spec records (toolkit/experiments/*.toml,
copied into the run's manifest). docs/adding-an-experiment.md says how to add one."""
from __future__ import annotations

from typing import Any

from toolkit.report.kinds import scaling, training
from toolkit.report.kinds.base import Column, Kind, Row

# In reading order: where one experiment's cells look like several kinds (a run whose manifest
# does not record the kind), their tables and charts follow this order.
KINDS: dict[str, Kind] = {kind.name: kind for kind in (scaling.KIND, training.KIND)}


def for_experiment(spec: dict[str, Any], rows: list[Row]) -> list[Kind]:
    """The kinds whose sections an experiment gets: the one its spec records, else (a run from
    before the manifest recorded it) every kind whose marking coordinate its cells carry; in
    either case only where some cell carries it (an experiment without cells gets none)."""
    recorded = KINDS.get(str(spec.get("kind")))
    candidates = [recorded] if recorded else list(KINDS.values())
    return [kind for kind in candidates if kind.applies(rows)]


def no_section_reason() -> str:
    """Why an experiment has no kind's charts: none of its cells carries a kind's marker."""
    return "no cell has " + " or ".join(kind.marker_text for kind in KINDS.values())


def columns() -> tuple[Column, ...]:
    """Every kind's own metric columns, in registry order."""
    return tuple(column for kind in KINDS.values() for column in kind.columns)


def hidden() -> tuple[frozenset[str], tuple[str, ...]]:
    """Every kind's metrics (and metric-name prefixes) kept out of the results table."""
    names = frozenset().union(*(kind.hidden for kind in KINDS.values()))
    return names, tuple(p for kind in KINDS.values() for p in kind.hidden_prefixes)
