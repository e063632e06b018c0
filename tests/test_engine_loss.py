"""The Docker engine goes away in the middle of a run: a real second dockerd (its own socket and
loopback port, stopped by pid) measures the tiny spec and is killed while a cell's container
runs. The run stops with one line (what was kept, how to resume), and the same command resumes
the same run once the engine is back, measuring only what is missing."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, TINY_SPEC
from engines import second_engine

from toolkit.images import matrix, naming
from toolkit.images.engine import find_image

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CELLS = 4  # tests/data/tiny_inference.toml: VGG-11 at four scales, onnxruntime, one round
ENGINE_LOST_EXIT = 3


def _invoke(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=1800, env=dict(os.environ))


@pytest.fixture(scope="module")
def onnxruntime_image(client):
    """This checkout's onnxruntime image on the default engine, built (as CI builds it) when it
    is missing or holds other device code."""
    tag = naming.tag_for("onnxruntime")
    image = find_image(client, tag)
    if image is None or naming.holds_older_device_code(image.labels or {}):
        for args in (["base"], ["build", "--platform", "amd64", "--framework", "onnxruntime"]):
            done = _invoke(*args)
            assert done.returncode == 0, done.stderr[-3000:]
    return tag


@pytest.fixture
def engine(client, onnxruntime_image):
    """A second engine holding the image (moved there as fleet devices get it: save, load)."""
    from toolkit.fleet import engines
    from toolkit.fleet.inventory import Device

    with second_engine() as second:
        device = Device(name="second", engine=second.url, platform="amd64",
                        device_type="x86-second", shares_filesystem=True)
        engines.ensure_images(device, engines.connect(device), client, ["onnxruntime"],
                              matrix.load(), print)
        yield second


def _cells(results: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in results.glob("*/cells/*.json")}


def _wait_for_a_running_cell_container(url: str, results: Path, running: subprocess.Popen
                                       ) -> None:
    """Until a cell has finished and the next cell's container runs."""
    import docker

    probe = docker.DockerClient(base_url=url, timeout=10)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and running.poll() is None:
        if _cells(results) and probe.containers.list(filters={"status": "running"}):
            return
        time.sleep(0.05)
    pytest.fail(f"no cell finished with the next one running (exit {running.poll()})")


# dockerd crashes (SIGKILL: its containers live on), or is stopped (SIGTERM: systemctl stop).
@pytest.mark.parametrize("end", ["kill", "stop"])
def test_a_run_whose_engine_stops_ends_in_one_line_and_resumes(engine, tmp_path, end):
    results = tmp_path / "results"
    env = dict(os.environ, DOCKER_HOST=engine.url, EDGEREPRO_RESULTS=str(results))
    command = [sys.executable, "-m", "invoke", "run", "--experiment", str(TINY_SPEC),
               "--profile", "smoke", "--runner", "docker"]
    running = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_for_a_running_cell_container(engine.url, results, running)
        getattr(engine, end)()  # while a cell's container runs
        stdout, stderr = running.communicate(timeout=300)
    finally:
        if running.poll() is None:
            os.killpg(running.pid, signal.SIGKILL)
    output = stdout + stderr
    assert running.returncode == ENGINE_LOST_EXIT, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    run_dir, = (path.parent for path in results.glob("*/manifest.json"))
    kept = _cells(results)
    assert 1 <= len(kept) < CELLS
    assert {json.loads(text)["status"] for text in kept.values()} == {"ok"}
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: the Docker engine at {engine.url} stopped answering during the run; "
        f"{len(kept)} of {CELLS} cells finished and everything measured is kept in {run_dir}; "
        "start the engine and run the same command again to resume"], output[-4000:]
    assert stderr.rstrip().endswith(errors[0])  # the last thing said

    engine.start()  # the same data root: the image is still there
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-4000:]
    assert f"resuming run {run_dir.name}: {len(kept)}/{CELLS} cells already done" in again.stderr
    assert [path.parent for path in results.glob("*/manifest.json")] == [run_dir]
    after = _cells(results)
    assert len(after) == CELLS
    assert all(after[name] == text for name, text in kept.items())  # not measured again
    assert {json.loads(text)["status"] for text in after.values()} == {"ok"}
    assert again.stderr.count("[ok]") == CELLS - len(kept)
