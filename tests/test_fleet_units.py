"""The fleet's inventory, manifest and side-by-side report without any engine (fast)."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT

from toolkit import pipeline
from toolkit.errors import UserError
from toolkit.fleet import inventory
from toolkit.fleet import manifest as fleets
from toolkit.fleet.compare import device_table
from toolkit.results import RunStore

PLATFORMS = ["amd64", "arm64"]
GOOD = '[devices.orin]\nengine = "ssh://ubuntu@orin.lab"\nplatform = "arm64"\n' \
       'device_type = "jetson-orin"\n'


def _load(tmp_path: Path, text: str) -> inventory.Inventory:
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    return inventory.load(path, PLATFORMS)


def test_the_example_inventory_is_valid_and_remote_engines_do_not_share_files():
    loaded = inventory.load(ROOT / "fleet.example.toml", PLATFORMS)
    assert set(loaded.devices) == {"orin", "rpi4"}
    assert not loaded.devices["orin"].shared and not loaded.devices["rpi4"].shared
    assert loaded.devices["rpi4"].public()["tls"]


@pytest.mark.parametrize(("text", "expected"), [
    (GOOD.replace('"arm64"', '"l4t-r99"'),
     "fleet.toml: devices.orin.platform: unknown platform 'l4t-r99'; valid: amd64, arm64"),
    (GOOD + "enigne = 1\n", "fleet.toml: unknown key 'devices.orin.enigne'; valid: engine, "
                            "platform, device_type, shares_filesystem, tls_ca_cert"),
    ("[device.orin]\n", "fleet.toml: unknown key 'device'; valid: devices"),
    (GOOD.replace("ssh://", "http://"), "devices.orin.engine: engine URL must start with "
                                        "ssh://, tcp://, unix://"),
    (GOOD + 'tls_ca_cert = "ca.pem"\n', "tls_* certificates apply to tcp:// engines only"),
    (GOOD.replace("ssh://ubuntu@orin.lab", "tcp://orin:2376") + 'tls_client_cert = "c.pem"\n',
     "give tls_client_cert and tls_client_key together"),
])
def test_inventory_mistakes_are_one_line_naming_the_value_and_what_is_valid(tmp_path, text,
                                                                           expected):
    with pytest.raises(UserError) as error:
        _load(tmp_path, text)
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_local_is_implicit_and_names_are_checked(tmp_path):
    loaded = _load(tmp_path, GOOD)
    local, orin = inventory.choose(loaded, ["local", "orin"], tmp_path / "fleet.toml")
    assert local.name == "local" and local.shared and local.platform in PLATFORMS
    assert orin.engine == "ssh://ubuntu@orin.lab"
    with pytest.raises(UserError, match="unknown device 'nano' in fleet.toml; valid: local, "
                                        "orin"):
        inventory.choose(loaded, ["nano"], tmp_path / "fleet.toml")
    with pytest.raises(UserError, match="names a device twice"):
        inventory.choose(loaded, ["orin", "orin"], tmp_path / "fleet.toml")


@pytest.mark.parametrize(("engine", "override", "shared"), [
    ("unix:///run/docker.sock", None, True), ("tcp://127.0.0.1:2375", None, True),
    ("tcp://10.0.0.5:2376", None, False), ("ssh://pi@rpi4", None, False),
    ("tcp://127.0.0.1:2375", False, False), ("ssh://pi@rpi4", True, True),
])
def test_shares_filesystem_defaults_to_engines_on_this_machine(engine, override, shared):
    device = inventory.Device(name="d", engine=engine, platform="amd64", device_type="x86",
                              shares_filesystem=override)
    assert device.shared is shared


def test_tls_certificates_become_a_tls_config(tmp_path):
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("not checked here")
    device = inventory.Device(name="d", engine="tcp://h:2376", platform="amd64",
                              device_type="x86", tls_ca_cert=str(tmp_path / "ca.pem"),
                              tls_client_cert=str(tmp_path / "cert.pem"),
                              tls_client_key=str(tmp_path / "key.pem"))
    tls = device.tls_config()
    assert tls.cert == (str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    assert tls.verify == str(tmp_path / "ca.pem")
    missing = device.model_copy(update={"tls_ca_cert": str(tmp_path / "nope.pem")})
    with pytest.raises(UserError, match="nope.pem does not exist"):
        missing.tls_config()


def test_an_unknown_host_stops_the_run_in_one_line(invoke_cmd, tmp_path):
    inventory_file = tmp_path / "fleet.toml"
    inventory_file.write_text(GOOD)
    done = invoke_cmd("run", "--hosts", "local,nano", "--inventory", str(inventory_file),
                      results=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: unknown device 'nano' in fleet.toml; valid: local, "
                                   "orin")


# -- the fleet manifest and the side-by-side report ---------------------------------------------

SELECTION = {"experiments": ["tiny"], "profile": "smoke", "overrides": {}}
SCALES = (0.25, 0.5)


def _device_run(root: Path, fleet: fleets.FleetRun, name: str, p50s: dict[float, float | None],
                ) -> RunStore:
    """A device run as a fleet run leaves it: cells with host identity and records."""
    cell_ids = [f"cell{scale}" for scale in SCALES]
    store = RunStore.create(root, fleet.device_run_id(name), {
        "experiments": ["tiny"], "profile": "smoke", "selection": SELECTION, "runner": "docker",
        "fleet": fleet.fleet_id, "cell_ids": cell_ids, "spec": {}, "environment": {}})
    for scale, p50 in p50s.items():
        measured = p50 is not None
        store.save_cell({
            "cell_id": f"cell{scale}", "experiment": "tiny", "kind": "inference",
            "coords": {"model": "vgg11", "method": "uniform", "scale": scale,
                       "framework": "onnxruntime", "device": "cpu", "precision": "fp32",
                       "batch": 1},
            "status": "ok" if measured else "failed", "reason": "" if measured else "boom",
            "runner": "docker", "started_at": "", "wall_s": 1.0, "image": "", "image_digest": "",
            "samples": {}, "host": {"name": name, "device_type": f"{name}-type"},
            "records": [["latency_p50", p50, "s"], ["throughput", 1 / p50, "1/s"]]
            if measured else []})
    store.rebuild_tables()
    return store


def test_the_fleet_report_sets_devices_side_by_side(tmp_path):
    from rich.console import Console

    fleet = fleets.open_or_create(tmp_path, None, False, SELECTION, ["orin", "rpi4"],
                                  Console(quiet=True))
    _device_run(tmp_path, fleet, "orin", {0.25: 0.002, 0.5: 0.004})
    _device_run(tmp_path, fleet, "rpi4", {0.25: 0.005, 0.5: None})
    fleet.record("rpi4", {"status": "failed", "detail": "1 ok, 1 failed"})
    table = device_table(fleet)
    assert table["headers"] == ["model", "scale", "orin p50 (ms)", "orin images/s",
                                "rpi4 p50 (ms)", "rpi4 images/s", "rpi4 p50 ÷ orin"]
    assert table["rows"] == [["vgg11", "0.25", "2.00", "500", "5.00", "200", "2.50×"],
                             ["vgg11", "0.5", "4.00", "250", "failed", "failed", "–"]]
    assert [group["span"] for group in table["groups"]] == [2, 3]
    # The records carry the device, so device runs stack into one table.
    import polars as pl

    assert pl.read_parquet(tmp_path / fleet.device_run_id("rpi4") / "records.parquet")[
        "host"].unique().to_list() == ["rpi4"]

    for run_id in (fleet.fleet_id, None):  # by its id, and as the latest run
        paths = pipeline.report(run_id, tmp_path, tmp_path / "reports")
        text = paths["md"].read_text()
        assert paths["md"] == tmp_path / "reports" / fleet.fleet_id / "report.md"
        assert "| vgg11 | 0.25 | 2.00 | 500 | 5.00 | 200 | 2.50× |" in text
        assert "**failed**: 1 ok, 1 failed" in text
        assert 'colspan="3">rpi4</th>' in paths["html"].read_text()
        for name in ("orin", "rpi4"):
            assert (paths["md"].parent / name / "report.html").is_file()
    # A device run named on its own renders alone.
    alone = pipeline.report(fleet.device_run_id("orin"), tmp_path, tmp_path / "reports")
    assert alone["md"].parent.name == fleet.device_run_id("orin")


def test_an_unfinished_fleet_run_is_resumed_and_a_finished_one_is_not(tmp_path):
    from rich.console import Console

    console = Console(quiet=True)
    first = fleets.open_or_create(tmp_path, "f1", False, SELECTION, ["orin"], console)
    _device_run(tmp_path, first, "orin", {0.25: 0.002})  # cell0.5 never measured
    again = fleets.open_or_create(tmp_path, None, False, SELECTION, ["orin"], console)
    assert again.fleet_id == "f1"
    with pytest.raises(UserError, match="measured another selection or other devices"):
        fleets.open_or_create(tmp_path, "f1", False, SELECTION, ["orin", "rpi4"], console)
    assert fleets.open_or_create(tmp_path, None, True, SELECTION, ["orin"],
                                 console).fleet_id != "f1"
