"""The comparison a fleet run exists for: each cell's main figures on every device, side by side.

Devices measure the same cells (same ids), so rows join on the cell id; each device contributes a
column group (p50, images/s, matmul peak: whichever the cells have) and every device after the
first a ratio of its p50 to the first device's, the figure the studies compare boards by. Values
come from each device run's records.parquet and are formatted through toolkit.units only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from toolkit import units
from toolkit.experiments.cells import COORDINATES
from toolkit.fleet.manifest import FleetRun

# (header, metrics in order of preference, display unit): a cell's main figures by kind.
MAIN_METRICS = (("p50 (ms)", ("latency_p50", "step_time_p50"), "ms"),
                ("images/s", ("throughput",), "1/s"),
                ("matmul peak (GFLOP/s)", ("peak_flops_fp32",), "GFLOP/s"))
MEASURED = ("ok", "invalid")


def _read(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, tuple[float, str]]]]:
    """(cells rows, cell id -> metric -> (value, unit)) of one device run; empty before any."""
    if not (run_dir / "cells.parquet").is_file():
        return [], {}
    cells = pl.read_parquet(run_dir / "cells.parquet").to_dicts()
    metrics: dict[str, dict[str, tuple[float, str]]] = {}
    if (run_dir / "records.parquet").is_file():
        records = pl.read_parquet(run_dir / "records.parquet",
                                  columns=["cell_id", "metric", "value", "unit"])
        for cell_id, metric, value, unit in records.iter_rows():
            metrics.setdefault(cell_id, {})[metric] = (value, unit)
    return cells, metrics


Value = tuple[float, str]  # a record's value and SI unit


def _main(metrics: dict[str, Value], names: tuple[str, ...]) -> Value | None:
    return next((metrics[name] for name in names if name in metrics), None)


def _text(value: tuple[float, str] | None, unit: str) -> str:
    return units.MISSING if value is None else units.fmt(units.convert(value[0], value[1], unit))


def _coord(value: Any) -> str:
    if value is None:
        return units.MISSING
    return f"{value:g}" if isinstance(value, float) else str(value)


def device_table(fleet: FleetRun) -> dict[str, Any]:
    """Headers (a group per device), rows of preformatted strings, and which are numeric."""
    stores = fleet.device_stores()
    names = list(stores)
    read = {name: _read(store.path) for name, store in stores.items()}
    rows: dict[str, dict[str, Any]] = {}
    for cells, _ in read.values():
        for row in cells:
            rows.setdefault(row["cell_id"], row)
    present = [(label, wanted, unit) for label, wanted, unit in MAIN_METRICS
               if any(_main(metrics, wanted) for _, by_cell in read.values()
                      for metrics in by_cell.values())]
    # Coordinates that tell the cells apart (the model always, so a row is never unlabelled).
    coords = [c for c in COORDINATES
              if c == "model" or len({_coord(r.get(c)) for r in rows.values()}) > 1]
    coords = [c for c in coords if any(r.get(c) is not None for r in rows.values())]
    several = len({r["experiment"] for r in rows.values()}) > 1
    labels = (["experiment"] if several else []) + coords
    ratio = bool(present) and present[0][1] == MAIN_METRICS[0][1] and len(names) > 1
    groups = [{"name": name, "span": len(present) + int(ratio and i > 0)}
              for i, name in enumerate(names)] if present else []
    headers = list(labels)
    for i, name in enumerate(names):
        headers += [f"{name} {label}" for label, _, _ in present]
        if ratio and i > 0:
            headers.append(f"{name} p50 ÷ {names[0]}")
    status = {name: {row["cell_id"]: row for row in read[name][0]} for name in names}
    body = []
    order = ("experiment", *COORDINATES)
    for row in sorted(rows.values(), key=lambda r: tuple(
            (r.get(c) is None, r.get(c) if r.get(c) is not None else 0) for c in order)):
        cell_id, values = row["cell_id"], [_coord(row.get(c)) for c in labels]
        first = None
        for i, name in enumerate(names):
            measured = status[name].get(cell_id)
            metrics = read[name][1].get(cell_id, {})
            for _, metric_names, unit in present:
                if measured is None:
                    values.append(units.MISSING)
                elif measured["status"] not in MEASURED:
                    values.append(str(measured["status"]))
                else:
                    text = _text(_main(metrics, metric_names), unit)
                    values.append(text + (" (invalid)" if measured["status"] == "invalid"
                                          else ""))
            p50 = _main(metrics, MAIN_METRICS[0][1]) if measured and \
                measured["status"] in MEASURED else None
            if i == 0:
                first = p50
            elif ratio:
                values.append(units.fmt(p50[0] / first[0]) + "×" if p50 and first and first[0]
                              else units.MISSING)
        body.append(values)
    return {"labels": labels, "groups": groups, "headers": headers,
            "metric_headers": [label for label, _, _ in present], "ratio_header": (
                f"p50 ÷ {names[0]}" if ratio else ""),
            "numeric": [False] * len(labels) + [True] * (len(headers) - len(labels)),
            "rows": body}


def fleet_context(fleet: FleetRun) -> dict[str, Any]:
    """Everything the fleet report shows besides the per-device reports it links to."""
    manifest = fleet.manifest
    stores = fleet.device_stores()
    devices = []
    for name in manifest["hosts"]:
        entry = manifest["devices"].get(name, {})
        host = entry.get("host") or {}
        store = stores.get(name)
        counts: dict[str, int] = {}
        if store is not None:
            for payload in store.cell_results().values():
                counts[payload["status"]] = counts.get(payload["status"], 0) + 1
        devices.append({
            "name": name, "device_type": host.get("device_type") or entry.get(
                "inventory", {}).get("device_type", units.MISSING),
            "platform": host.get("platform", units.MISSING),
            "engine": host.get("engine") or entry.get("inventory", {}).get("engine", ""),
            "hostname": host.get("hostname") or units.MISSING,
            "arch": host.get("arch") or units.MISSING,
            "status": entry.get("status", "pending"), "detail": entry.get("detail", ""),
            "run_id": store.run_id if store else "",
            "cells": ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no cells",
            "report": f"{name}/report" if store and (store.path / "cells.parquet").is_file()
            else ""})
    selection = manifest["selection"]
    return {"fleet_id": fleet.fleet_id, "created": manifest.get("created", ""),
            "experiments": ", ".join(selection["experiments"]), "profile": selection["profile"],
            "devices": devices, "table": device_table(fleet)}
