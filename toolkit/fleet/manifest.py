"""The fleet manifest: results/<fleet-id>/fleet.json links one ordinary run per device.

Each device's cells live in its own run (results/<fleet-id>-<device>/, a RunStore like any
other), so resuming, reporting and comparing work per device unchanged, and a device that went
away resumes on its own. The fleet directory holds no manifest.json, so it is not mistaken for a
run; fleet.json says which runs belong together and how each device's last attempt ended.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from toolkit.errors import UserError
from toolkit.results import RunStore, new_run_id, write_json_atomically

FLEET_FILE = "fleet.json"


class FleetRun:
    """One fleet run's directory and the device runs it links."""

    def __init__(self, root: Path, fleet_id: str) -> None:
        self.root = root
        self.fleet_id = fleet_id
        self.path = root / fleet_id
        self._lock = threading.Lock()  # device threads record their outcomes concurrently

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.path / FLEET_FILE).read_text())

    def device_run_id(self, name: str) -> str:
        return f"{self.fleet_id}-{name}"

    def device_stores(self) -> dict[str, RunStore]:
        """The device runs that exist so far, in the order of --hosts."""
        stores = {}
        for name in self.manifest["hosts"]:
            store = RunStore(self.root / self.device_run_id(name))
            if (store.path / "manifest.json").is_file():
                stores[name] = store
        return stores

    def is_complete(self) -> bool:
        stores = self.device_stores()
        return len(stores) == len(self.manifest["hosts"]) and all(
            store.is_complete() for store in stores.values())

    def record(self, name: str, outcome: dict[str, Any]) -> None:
        with self._lock:
            manifest = self.manifest
            manifest["devices"][name] = manifest["devices"].get(name, {}) | outcome
            write_json_atomically(self.path / FLEET_FILE, manifest)


def is_fleet(root: Path, fleet_id: str) -> bool:
    return (root / fleet_id / FLEET_FILE).is_file()


def list_fleets(root: Path) -> list[FleetRun]:
    """Fleet runs under root, oldest first (ids start with their creation time)."""
    if not root.is_dir():
        return []
    return [FleetRun(root, path.parent.name) for path in sorted(root.glob(f"*/{FLEET_FILE}"))]


def fleet_of(store: RunStore) -> FleetRun | None:
    """The fleet run a device run belongs to, if any."""
    fleet_id = store.manifest.get("fleet")
    if fleet_id and is_fleet(store.path.parent, fleet_id):
        return FleetRun(store.path.parent, fleet_id)
    return None


def open_or_create(root: Path, fleet_id: str | None, new: bool, selection: dict[str, Any],
                   hosts: list[str], console: Console) -> FleetRun:
    """Like a single run: the given id, else the last unfinished fleet run of the same selection
    and devices unless `new`, else a new one."""
    if fleet_id and is_fleet(root, fleet_id):
        fleet = FleetRun(root, fleet_id)
        found = fleet.manifest
        if found["selection"] != selection or sorted(found["hosts"]) != sorted(hosts):
            raise UserError(f"fleet run '{fleet_id}' measured another selection or other "
                            f"devices ({found['selection']}, {','.join(found['hosts'])}); start "
                            "a new one without --run-id")
        console.print(f"resuming fleet run {fleet_id}")
        return fleet
    if fleet_id and (root / fleet_id / "manifest.json").is_file():
        raise UserError(f"'{fleet_id}' is a single-device run, not a fleet run; pass another "
                        "--run-id")
    if not new and not fleet_id:
        previous = [fleet for fleet in list_fleets(root)
                    if fleet.manifest["selection"] == selection
                    and sorted(fleet.manifest["hosts"]) == sorted(hosts)]
        if previous and not previous[-1].is_complete():
            console.print(f"resuming fleet run {previous[-1].fleet_id} (--new starts a fresh "
                          "one)")
            return previous[-1]
    fleet = FleetRun(root, fleet_id or new_run_id(selection["profile"]))
    try:
        fleet.path.mkdir(parents=True)
    except FileExistsError:
        raise UserError(f"'{fleet.fleet_id}' already exists in {root}; pass another --run-id"
                        ) from None
    write_json_atomically(fleet.path / FLEET_FILE, {
        "fleet_id": fleet.fleet_id, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "selection": selection, "hosts": hosts,
        "devices": {name: {"run_id": fleet.device_run_id(name), "status": "pending"}
                    for name in hosts}})
    return fleet
