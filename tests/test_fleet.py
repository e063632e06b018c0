"""A study on two devices through their engines' remote API: this machine's engine (`local`) and a
second dockerd started here on 127.0.0.1 that is told it does not share our filesystem, so job,
artifact and result files travel through put_archive/get_archive. Real engines, real containers.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from conftest import IMAGE_DIGEST, ROOT, TINY_SPEC
from engines import second_engine

from toolkit.images import naming
from toolkit.images.engine import find_image

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CELLS = 4  # tests/data/tiny_inference.toml: VGG-11 at four scales, onnxruntime


@pytest.fixture(scope="module")
def images_here(client, request):
    """The onnxruntime image on this machine's engine; built (as CI does) only when missing."""
    tag = naming.tag_for("onnxruntime")
    image = find_image(client, tag)
    if image is None or not image.labels:
        request.getfixturevalue("built")
    return tag


@pytest.fixture(scope="module")
def second(client, images_here):
    with second_engine() as engine:
        yield engine


@pytest.fixture(scope="module")
def fleet_results(tmp_path_factory, second):
    """One results directory for the module: the ONNX exports are made once."""
    results = tmp_path_factory.mktemp("fleet-results")
    inventory = results / "fleet.toml"
    inventory.write_text(f'[devices.second]\nengine = "{second.url}"\nplatform = "amd64"\n'
                         'device_type = "x86-second"\nshares_filesystem = false\n')
    return results, inventory


def _command(inventory: Path, *extra: str) -> list[str]:
    return ["run", "--hosts", "local,second", "--inventory", str(inventory), "--experiment",
            str(TINY_SPEC), "--profile", "smoke", *extra]


def _cells(run_dir: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in (run_dir / "cells").glob("*.json")}


def test_a_study_runs_on_two_engines_with_each_device_identified(invoke_cmd, second,
                                                                fleet_results):
    results, inventory = fleet_results
    done = invoke_cmd(*_command(inventory), results=results, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "transferring edgerepro/onnxruntime" in done.stderr  # the fresh engine got the image
    fleet_dir, = (path.parent for path in results.glob("*/fleet.json"))
    fleet = json.loads((fleet_dir / "fleet.json").read_text())
    assert fleet["hosts"] == ["local", "second"]
    assert {name: entry["status"] for name, entry in fleet["devices"].items()} == {
        "local": "done", "second": "done"}
    engines = set()
    for name in ("local", "second"):
        run_dir = results / f"{fleet_dir.name}-{name}"
        manifest = json.loads((run_dir / "manifest.json").read_text())
        assert manifest["fleet"] == fleet_dir.name
        cells = [json.loads(text) for text in _cells(run_dir).values()]
        assert len(cells) == CELLS and {cell["status"] for cell in cells} == {"ok"}
        for cell in cells:
            host = cell["host"]
            assert host["name"] == name and host["platform"] == "amd64"
            assert host["arch"] == "x86_64" and host["hostname"] and host["engine"]
            assert host["device_type"] == ("x86-second" if name == "second"
                                           else manifest["environment"]["device_type"])
            assert re.fullmatch(IMAGE_DIGEST, cell["image_digest"])
            engines.add(host["engine_root"])
        records = pl.read_parquet(run_dir / "records.parquet")
        assert set(records["host"].unique()) == {name}
        files = manifest["runner_details"]["files"]
        assert files == ("Engine API archives" if name == "second" else "bind mounts")
    assert len(engines) == 2  # two daemons measured, not one twice
    assert second.url in json.dumps(fleet["devices"]["second"])

    report = invoke_cmd("report", results=results)
    assert report.returncode == 0, report.stderr[-3000:]
    text = (results / "reports" / fleet_dir.name / "report.md").read_text()
    assert "local p50 (ms)" in text and "second p50 (ms)" in text and "p50 ÷ local" in text
    for name in ("local", "second"):
        assert (results / "reports" / fleet_dir.name / name / "report.html").is_file()


def test_a_device_lost_mid_run_is_reported_and_resumes_alone(second, fleet_results):
    results, inventory = fleet_results
    earlier = {path.parent.name for path in results.glob("*/fleet.json")}
    env = dict(os.environ, EDGEREPRO_RESULTS=str(results))
    command = [sys.executable, "-m", "invoke", *_command(inventory, "--new")]
    running = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and running.poll() is None:
            fleets = [path.parent.name for path in results.glob("*/fleet.json")
                      if path.parent.name not in earlier]
            if fleets and _cells(results / f"{fleets[0]}-second"):
                break
            time.sleep(0.1)
        second.kill()  # after the second device's first cell: it drops off mid-run
        _, stderr = running.communicate(timeout=300)
    finally:
        if running.poll() is None:
            os.killpg(running.pid, signal.SIGKILL)
    assert running.returncode == 1, stderr[-4000:]
    fleet_id, = fleets
    lost = [line for line in stderr.splitlines() if line.startswith("[second] unreachable")]
    assert len(lost) == 1 and "stopped answering" in lost[0], stderr[-4000:]
    assert "local: done" in stderr and "second: unreachable" in stderr
    local_run, second_run = (results / f"{fleet_id}-{name}" for name in ("local", "second"))
    local_before, before = _cells(local_run), _cells(second_run)
    assert len(local_before) == CELLS
    assert 1 <= len(before) < CELLS

    second.start()
    again = subprocess.run([sys.executable, "-m", "invoke", *_command(inventory)], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-4000:]
    assert f"resuming fleet run {fleet_id}" in again.stderr
    assert "transferring" not in again.stderr  # the image stayed on the device
    after = _cells(second_run)
    assert len(after) == CELLS and all(after[name] == text for name, text in before.items())
    assert _cells(local_run) == local_before  # local had nothing left to measure
    assert "[local] [ok]" not in again.stderr
    fleet = json.loads((results / fleet_id / "fleet.json").read_text())
    assert {entry["status"] for entry in fleet["devices"].values()} == {"done"}


def test_an_image_with_older_device_code_is_replaced_or_refused(client, second, images_here):
    """A device's image built from other device code than this checkout would measure other
    code: replaced from this machine's current image, refused (one line) when none is."""
    import io

    from toolkit.fleet import engines
    from toolkit.fleet.inventory import Device
    from toolkit.images import matrix

    device = Device(name="second", engine=second.url, platform="amd64", device_type="x86-second",
                    shares_filesystem=False)
    remote = engines.connect(device)
    engines.ensure_images(device, remote, client, ["onnxruntime"], matrix.load(), print)
    label = f"{naming.LABEL}.device-code"
    remote.images.build(fileobj=io.BytesIO(f"FROM {images_here}\nLABEL {label}=0ld\n".encode()),
                        tag=images_here, rm=True)
    assert remote.images.get(images_here).labels[label] == "0ld"
    said = []
    with pytest.raises(engines.DeviceFailed, match=(
            f"image {re.escape(images_here)} on device second holds older device code than "
            "this checkout: invoke build")):
        engines.ensure_images(device, remote, None, ["onnxruntime"], matrix.load(), said.append)
    engines.ensure_images(device, remote, client, ["onnxruntime"], matrix.load(), said.append)
    assert any(line.startswith(f"transferring {images_here}") for line in said), said
    assert remote.images.get(images_here).labels[label] == naming.device_code_digest()
