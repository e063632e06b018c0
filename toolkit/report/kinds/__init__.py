"""The report's side of the experiment kinds: each kind's report plugin is the `report.py` of
its package (toolkit/experiments/kinds/<kind>/), keyed by the kind an experiment's spec records
(copied into the run's manifest). docs/adding-an-experiment.md says how to add one."""
from __future__ import annotations

import functools
import importlib
from typing import Any

from toolkit.experiments import kinds as experiment_kinds
from toolkit.report.kinds.base import Column, Kind, Row


@functools.cache
def registered() -> dict[str, Kind]:
    """Every kind's report plugin, in the kinds' folder order: where one experiment's cells look
    like several kinds (a run whose manifest does not record the kind), their tables and charts
    follow this order. Imported on first use: the plugins import this package's base module."""
    plugins = {}
    for name in experiment_kinds.names():
        plugin = importlib.import_module(f"{experiment_kinds.__name__}.{name}.report").KIND
        if plugin.name != name:
            raise TypeError(f"the report plugin of kind '{name}' names itself '{plugin.name}'")
        plugins[name] = plugin
    return plugins


def for_experiment(spec: dict[str, Any], rows: list[Row]) -> list[Kind]:
    """The kinds whose sections an experiment gets: the one its spec records, else (a run from
    before the manifest recorded it) every kind whose marking coordinate its cells carry; in
    either case only where some cell carries it (an experiment without cells gets none)."""
    recorded = registered().get(str(spec.get("kind")))
    candidates = [recorded] if recorded else list(registered().values())
    return [kind for kind in candidates if kind.applies(rows)]


def no_section_reason() -> str:
    """Why an experiment has no kind's charts: none of its cells carries a kind's marker."""
    return "no cell has " + " or ".join(kind.marker_text for kind in registered().values())


def columns() -> tuple[Column, ...]:
    """Every kind's own metric columns, in registry order."""
    return tuple(column for kind in registered().values() for column in kind.columns)


def hidden() -> tuple[frozenset[str], tuple[str, ...]]:
    """Every kind's metrics (and metric-name prefixes) kept out of the results table."""
    plugins = registered().values()
    names = frozenset().union(*(kind.hidden for kind in plugins))
    return names, tuple(p for kind in plugins for p in kind.hidden_prefixes)
