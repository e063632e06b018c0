"""Results store: results/<run-id>/ with one atomically written JSON per finished cell round
(rounds/<cell>/<k>.json) and per cell (cells/<cell>.json: its rounds combined, toolkit/rounds.py).

The Parquet tables (cells, records, samples, rounds) are rebuilt from those files after every
round, so an interrupted run loses at most the round that was measuring, and a re-run resumes
from the files, keeping finished rounds.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from toolkit import rounds as cell_rounds
from toolkit.errors import UserError
from toolkit.experiments.cells import COORDINATES

# Per-cell fields of cells.parquet besides the coordinates (and `widths`: the model's layer
# widths as a JSON list, the architecture a scaled cell measured).
CELL_FIELDS = ("status", "reason", "runner", "started_at", "wall_s", "image", "image_id",
               "image_digest")


# The layout of a run directory. 1: cells only (runs from before rounds, no "format" field);
# 2: rounds/ and rounds.parquet, "format" in manifest.json and in every Parquet table's metadata.
# An older run is migrated in place when it is opened (RunStore.migrate), never inside a reader.
FORMAT = 2
FORMAT_KEY = "edgerepro.format"  # Parquet key-value metadata


def record_values(records: list[list[Any]] | list[tuple[str, float, str]]) -> dict[str, float]:
    """metric -> value of a cell's (metric, value, unit) records."""
    return {metric: value for metric, value, _ in records}


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """SIGINT during the block is raised as KeyboardInterrupt when the block is done (only the
    main thread can handle signals; elsewhere the block runs as it is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)
    if received:
        raise KeyboardInterrupt


def write_json_atomically(path: Path, payload: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    with tmp.open("w") as handle:
        json.dump(payload, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _write_table_atomically(frame: pl.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    if path.suffix == ".csv":
        frame.write_csv(tmp)
    else:
        frame.write_parquet(tmp, metadata={FORMAT_KEY: str(FORMAT)})
    os.replace(tmp, path)


def new_run_id(profile: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{profile}"


class RunStore:
    """One run's directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cells_dir = path / "cells"
        self.rounds_dir = path / "rounds"
        self.logs_dir = path / "logs"
        self.jobs_dir = path / "jobs"

    @property
    def run_id(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, root: Path, run_id: str, manifest: dict[str, Any]) -> RunStore:
        store = cls(root / run_id)
        if store.path.exists():
            raise UserError(f"run '{run_id}' already exists in {root}; pass another --run-id")
        for directory in (store.cells_dir, store.logs_dir, store.jobs_dir):
            directory.mkdir(parents=True)
        write_json_atomically(store.path / "manifest.json",
                              dict(manifest, run_id=run_id, format=FORMAT))
        return store

    @classmethod
    def open(cls, root: Path, run_id: str) -> RunStore:
        store = cls(root / run_id)
        if not (store.path / "manifest.json").is_file():
            runs = ", ".join(r.run_id for r in list_runs(root)[-5:]) or "none yet"
            raise UserError(f"no run '{run_id}' in {root}; recent runs: {runs}")
        store.migrate()
        return store

    def migrate(self) -> bool:
        """Bring a run written in an older format up to FORMAT, in place; True if it changed.

        1 -> 2: each finished cell's file becomes its round 1, the cell is combined from it
        (gaining its rounds summary) and the tables are rebuilt (the cells table then has every
        current column, e.g. the image id runs before it lacked)."""
        found = int(self.manifest.get("format", 1))
        if found > FORMAT:
            raise UserError(f"run '{self.run_id}' was written in results format {found} by a "
                            f"newer edgerepro; this one reads up to format {FORMAT}: update it")
        if found == FORMAT or not any(self.cells_dir.glob("*.json")):
            return False
        self.adopt_single_rounds()
        with interrupts_deferred():
            for cell_id in self.cell_results():
                done = self.round_results(cell_id)
                if done:
                    self.save_cell(cell_rounds.combine(done, max(len(done), 1)))
            self.rebuild_tables()
            self.update_manifest(format=FORMAT)
        return True

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.path / "manifest.json").read_text())

    def update_manifest(self, **changes: Any) -> None:
        write_json_atomically(self.path / "manifest.json", self.manifest | changes)

    def cell_results(self) -> dict[str, dict[str, Any]]:
        results = {}
        for path in sorted(self.cells_dir.glob("*.json")):
            payload = json.loads(path.read_text())
            results[payload["cell_id"]] = payload
        return results

    def finished_ids(self) -> set[str]:
        """Cells done with every round planned for them."""
        return {cell_id for cell_id, payload in self.cell_results().items()
                if cell_rounds.is_finished(payload)}

    def round_results(self, cell_id: str) -> list[dict[str, Any]]:
        """A cell's round payloads in round order."""
        paths = (self.rounds_dir / cell_id).glob("*.json")
        return sorted((json.loads(path.read_text()) for path in paths),
                      key=lambda payload: payload["round"])

    def done_rounds(self, cell_id: str) -> set[int]:
        """Round indices of a cell that need no measuring again."""
        return {payload["round"] for payload in self.round_results(cell_id)
                if payload["status"] in cell_rounds.DONE}

    def adopt_single_rounds(self) -> None:
        """A run from before rounds: each finished cell's file becomes its round 1, so a resume
        with more rounds keeps it."""
        for cell_id, payload in self.cell_results().items():
            first = self.rounds_dir / cell_id / "0.json"
            if "rounds" not in payload and payload["status"] in cell_rounds.DONE \
                    and not first.is_file():
                first.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomically(first, dict(payload, round=0))

    def forget_rounds(self, cell_id: str) -> None:
        """--force: the cell's earlier rounds are measured again, not combined with new ones."""
        shutil.rmtree(self.rounds_dir / cell_id, ignore_errors=True)

    def record_round(self, payload: dict[str, Any], index: int, planned: int) -> dict[str, Any]:
        """Save one round of a cell, the cell's rounds combined, and the tables (Ctrl-C held
        until all are written); returns the combined payload."""
        with interrupts_deferred():
            directory = self.rounds_dir / payload["cell_id"]
            directory.mkdir(parents=True, exist_ok=True)
            write_json_atomically(directory / f"{index}.json", dict(payload, round=index))
            combined = cell_rounds.combine(self.round_results(payload["cell_id"]), planned)
            self.save_cell(combined)
            self.rebuild_tables()
        return combined

    def is_complete(self) -> bool:
        return set(self.manifest.get("cell_ids", [])) <= self.finished_ids()

    def save_cell(self, payload: dict[str, Any]) -> None:
        write_json_atomically(self.cells_dir / f"{payload['cell_id']}.json", payload)

    def record_cell(self, payload: dict[str, Any]) -> None:
        """Save a finished cell and rebuild the tables, with Ctrl-C held until both are done:
        polars, interrupted inside its native code, raises an unrelated error instead of
        KeyboardInterrupt and can leave the tables behind the cell files."""
        with interrupts_deferred():
            self.save_cell(payload)
            self.rebuild_tables()

    def keep_artifact(self, source: Path, folder: str) -> Path:
        """A copy of a cached artifact the run's results depend on (a NeuralScale search: its
        fit and records), so the run directory alone documents and reproduces them."""
        target = self.path / folder / source.name
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp.{os.getpid()}")
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        return target

    def rebuild_tables(self) -> None:
        """cells, records (Parquet and CSV) and samples (Parquet) from the per-cell files."""
        cells, records, samples, round_rows = [], [], [], []
        results = self.cell_results()
        present = {name for payload in results.values() for name in payload["coords"]}
        coordinates = [name for name in COORDINATES if name in present]
        # Fleet runs: the device (inventory name) that measured each cell, so tables of several
        # devices' runs can be stacked and told apart (the coordinate `device` is cpu/cuda).
        hosts = any("host" in payload for payload in results.values())
        for cell_id, payload in results.items():
            key = {"run_id": self.run_id, "cell_id": cell_id, "experiment": payload["experiment"]}
            key |= {name: payload["coords"].get(name) for name in coordinates}
            if hosts:
                key["host"] = (payload.get("host") or {}).get("name")
            cells.append(key | {name: payload.get(name, "") for name in CELL_FIELDS} | {
                "widths": json.dumps((payload.get("settings") or {}).get("widths") or [])})
            records += [key | {"metric": m, "value": float(v), "unit": u}
                        for m, v, u in payload["records"]]
            for summary in payload.get("rounds", []):
                round_rows += [{"run_id": self.run_id, "cell_id": cell_id,
                                "round": summary["round"], "status": summary["status"],
                                "pass": cell_rounds.round_key(summary),
                                "metric": metric, "value": float(value)}
                               for metric, value in summary["values"].items()]
            for metric, series in payload.get("samples", {}).items():
                samples += [{"run_id": self.run_id, "cell_id": cell_id, "metric": metric,
                             "i": i, "value": float(v), "unit": series["unit"]}
                            for i, v in enumerate(series["values"])]
        polars_types = {str: pl.String, float: pl.Float64, int: pl.Int64}
        schema_keys = {"run_id": pl.String, "cell_id": pl.String, "experiment": pl.String}
        schema_keys |= {name: polars_types[COORDINATES[name]] for name in coordinates}
        if hosts:
            schema_keys["host"] = pl.String
        tables = {
            "cells": (cells, schema_keys | {name: pl.Float64 if name == "wall_s" else pl.String
                                            for name in (*CELL_FIELDS, "widths")}),
            "records": (records, schema_keys | {"metric": pl.String, "value": pl.Float64,
                                                "unit": pl.String}),
            "samples": (samples, {"run_id": pl.String, "cell_id": pl.String,
                                  "metric": pl.String, "i": pl.Int64, "value": pl.Float64,
                                  "unit": pl.String}),
            # each round's own figures (records hold their medians over the rounds)
            "rounds": (round_rows, {"run_id": pl.String, "cell_id": pl.String,
                                    "round": pl.Int64, "status": pl.String, "metric": pl.String,
                                    "value": pl.Float64}),
        }
        for name, (rows, schema) in tables.items():
            frame = pl.DataFrame(rows, schema=schema)
            _write_table_atomically(frame, self.path / f"{name}.parquet")
            if name not in ("samples", "rounds"):  # CSV copies of the tables people open
                _write_table_atomically(frame, self.path / f"{name}.csv")


def list_runs(root: Path) -> list[RunStore]:
    """Runs under root, oldest first (run ids start with their creation time)."""
    if not root.is_dir():
        return []
    return [RunStore(p.parent) for p in sorted(root.glob("*/manifest.json"))]


def latest_run(root: Path) -> RunStore:
    runs = list_runs(root)
    if not runs:
        raise UserError(f"no runs in {root}; start one with `invoke run`")
    runs[-1].migrate()
    return runs[-1]
