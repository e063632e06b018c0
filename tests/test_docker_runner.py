"""Cells in containers: a real engine, real images, real containers (never a mocked client)."""
import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import IMAGE_DIGEST, ROOT, TINY_SPEC

from toolkit import bench_files, pipeline
from toolkit.images.naming import tag_for
from toolkit.results import RunStore, list_runs, record_values
from toolkit.runners.docker_runner import OWNER_LABEL, DockerRunner
from toolkit.runners.host import HostRunner
from toolkit.scheduler import run_cells

pytestmark = [pytest.mark.docker, pytest.mark.slow]
MEASURED = ("ok", "invalid")  # invalid: measured, but the samples missed the validity limits


def _cells(results) -> dict[str, dict]:
    return {json.loads(p.read_text())["cell_id"]: json.loads(p.read_text())
            for p in results.glob("*/cells/*.json")}


def _selftest_runner(client, tmp_path, **options) -> DockerRunner:
    return DockerRunner(client, lambda framework: tag_for("onnxruntime"), tmp_path,
                        **options)


def _p50s(store: RunStore) -> dict[str, float]:
    return {cell_id: record_values(cell["records"])["latency_p50"]
            for cell_id, cell in store.cell_results().items()}


def test_latencies_in_a_container_and_on_the_host_agree(client, built, tmp_path):
    """Same onnxruntime build on both sides (the training image carries the host's wheel), both
    pinned to one CPU, runs interleaved; per cell the fastest of the runs' medians is compared,
    which drops one-off slow processes (placement, a busy neighbour) on either side."""
    spec = tmp_path / "spec.toml"
    spec.write_text(TINY_SPEC.read_text().replace("min_count = 20", "min_count = 300")
                    .replace("min_seconds = 0.05", "min_seconds = 1.0"))
    _, cells = pipeline.select([str(spec)], "smoke", {})
    cpu = max(os.sched_getaffinity(0))
    tag = built["onnxruntime-training"]
    runners = {"docker": DockerRunner(client, lambda framework: tag, tmp_path, cpuset=str(cpu)),
               "host": HostRunner(cpus=[cpu])}
    best: dict[str, dict[str, float]] = {name: {} for name in runners}
    for round_index in range(4):
        for name, runner in runners.items():
            store = RunStore.create(tmp_path, f"{name}{round_index}",
                                    {"cell_ids": [cell.id for cell in cells]})
            summary = run_cells(cells, store, runner, tmp_path / "cache",
                                prepare_with=HostRunner())
            assert summary.counts.get("ok") == len(cells), summary.line()
            for cell_id, p50 in _p50s(store).items():
                best[name][cell_id] = min(best[name].get(cell_id, math.inf), p50)
        ratios = [best["docker"][cell_id] / best["host"][cell_id] for cell_id in best["host"]]
        geomean = math.exp(sum(map(math.log, ratios)) / len(ratios))
        if round_index >= 1 and 1 / 1.15 <= geomean <= 1.15:
            break
    assert 1 / 1.15 <= geomean <= 1.15, ratios


def test_smoke_profiles_give_the_same_cells_in_containers_and_on_the_host(invoke_cmd, built,
                                                                        tmp_path):
    """Both experiments' smoke profiles, as the README runs them, through both runners (one
    round each: which cells run is the point here; rounds have tests of their own)."""
    for runner in ("docker", "host"):
        done = invoke_cmd("run", "--runner", runner, "--new", "--rounds", "1", results=tmp_path,
                          timeout=1800)
        assert done.returncode == 0, done.stderr[-3000:]
    runs = {store.manifest["runner"]: store.cell_results() for store in list_runs(tmp_path)}
    docker, host = runs["docker"], runs["host"]
    assert set(docker) == set(host) and len(docker) > 20
    # ok and invalid are both measured: which one a noisy 2-core machine gives is not the point
    def outcome(cell: dict) -> str:
        return "measured" if cell["status"] in MEASURED else cell["status"]

    assert {k: outcome(c) for k, c in docker.items()} == {k: outcome(c) for k, c in host.items()}
    measured = [cell for cell in docker.values() if cell["status"] in MEASURED]
    assert {cell["experiment"] for cell in measured} == {"scaling-inference", "training"}
    for cell in measured:
        assert cell["runner"] == "docker" and re.fullmatch(IMAGE_DIGEST, cell["image_digest"])
        assert cell["image"] in built.values()
    for cells in (docker, host):  # the smoke training learns on digits, in both frameworks
        accuracy = {cell["coords"]["framework"]: record_values(cell["records"])
                    ["accuracy"] for cell in cells.values() if cell["status"] in MEASURED
                    and cell["kind"] == "training" and cell["coords"]["freeze"] == 0}
        assert set(accuracy) == {"pytorch", "onnxruntime-training"}
        assert min(accuracy.values()) > 0.5, accuracy


def test_a_killed_run_resumes_without_remeasuring_and_leaves_no_containers(client, built,
                                                                         tmp_path):
    command = [sys.executable, "-m", "invoke", "run", "--experiment", str(TINY_SPEC),
               "--runner", "docker"]
    env = dict(os.environ, EDGEREPRO_RESULTS=str(tmp_path))
    killed = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob("*/cells/*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(killed.pid, signal.SIGKILL)  # no chance to clean up: as a power cut or kill -9
    killed.wait()
    before = {path.name: path.read_text() for path in tmp_path.glob("*/cells/*.json")}
    assert 1 <= len(before) < 4
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming run" in again.stderr
    after = {path.name: path.read_text() for path in tmp_path.glob("*/cells/*.json")}
    assert len(after) == 4 and all(after[name] == text for name, text in before.items())
    owner = f"{os.uname().nodename}:{killed.pid}"
    assert not client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={owner}"})


def test_a_run_over_a_memory_limit_records_oom_kills_and_completes(invoke_cmd, built, tmp_path):
    done = invoke_cmd("run", "--experiment", str(TINY_SPEC), "--runner", "docker",
                      "--memory", "32m", results=tmp_path)  # cells peak at 40-80 MB
    assert "Traceback" not in done.stderr
    cells = _cells(tmp_path)
    assert len(cells) == 4  # every cell has its outcome; the run went on past the kills
    reasons = [cell["reason"] for cell in cells.values() if cell["status"] == "failed"]
    assert any("OOM-killed" in reason for reason in reasons), reasons
    assert done.returncode == 1, done.stderr  # failed cells: non-zero, not a user error (2)


def test_gpus_without_an_nvidia_runtime_is_one_line_before_any_cell(invoke_cmd, built, client,
                                                                    tmp_path):
    if "nvidia" in (client.info().get("Runtimes") or {}):
        pytest.skip("this engine has the NVIDIA runtime")
    done = invoke_cmd("run", "--experiment", str(TINY_SPEC), "--runner", "docker", "--gpus",
                      results=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--gpus: the Docker engine has no NVIDIA runtime" in lines[0]
    assert not _cells(tmp_path)


def test_bench_records_the_container_overhead(invoke_cmd, built, tmp_path):
    done = invoke_cmd("bench", "--name", "container_overhead", results=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    machine, figures = bench_files.read(next((tmp_path / "bench").glob("*.json")))
    assert machine["cores"] >= 1 and machine["versions"]["docker"]
    overhead = figures["container_overhead"]
    assert 0 < overhead["host_launch_s"] < overhead["docker_launch_s"]
    assert overhead["container_overhead_s"] == pytest.approx(
        overhead["docker_launch_s"] - overhead["host_launch_s"])


def test_a_cell_over_its_memory_limit_is_recorded_as_oom_killed(client, built, tmp_path):
    runner = _selftest_runner(client, tmp_path, memory_limit="96m")
    job = {"kind": "selftest", "coords": {"framework": "python"},
           "settings": {"allocate_mib": 400}}
    outcome = runner.run_job(job, tmp_path / "job", tmp_path / "job.log", timeout=300)
    assert outcome.result is None and outcome.oom_killed
    assert outcome.failure_reason() == "OOM-killed: over its memory limit"
    fine = runner.run_job(job | {"settings": {"allocate_mib": 8}}, tmp_path / "ok",
                          tmp_path / "ok.log", timeout=300)
    assert fine.result["status"] == "ok" and not fine.oom_killed


def test_timeout_and_crash_in_a_container(client, built, tmp_path):
    runner = _selftest_runner(client, tmp_path)
    slow = runner.run_job({"kind": "selftest", "coords": {"framework": "python"},
                           "settings": {"sleep_s": 60}}, tmp_path / "s", tmp_path / "s.log",
                          timeout=3)
    assert slow.result is None and slow.timed_out
    crash = runner.run_job({"kind": "selftest", "coords": {"framework": "python"},
                            "settings": {"crash": 7}}, tmp_path / "c", tmp_path / "c.log",
                           timeout=120)
    assert crash.result is None and crash.exit_code == 7
    assert not client.containers.list(all=True, filters={"ancestor": built["onnxruntime"],
                                                         "status": "exited"})


def test_a_running_containers_progress_can_be_followed(client, built, tmp_path):
    """The container's output reaches its log file while it runs (the progress bar shows a
    search's or a training's newest line), and the whole of it is there at the end."""
    from toolkit.runners.follow import LogFollower

    runner = _selftest_runner(client, tmp_path)
    seen = []
    lines = ["epoch 1/2 loss 2.30", "epoch 2/2 loss 1.70"]

    def show(line):
        seen.append((line, (tmp_path / "job" / "result.json").exists()))

    with LogFollower(tmp_path / "job.log", show, interval=0.1):
        outcome = runner.run_job({"kind": "selftest", "coords": {"framework": "python"},
                                  "settings": {"progress": lines, "progress_every_s": 1.5}},
                                 tmp_path / "job", tmp_path / "job.log", timeout=120)
    assert outcome.result["status"] == "ok"
    assert (lines[0], False) in seen
    assert (tmp_path / "job.log").read_text().splitlines()[:2] == lines


def test_the_data_directory_is_mounted_read_only(client, built, tmp_path, monkeypatch):
    """$EDGEREPRO_DATA (invoke run --data) reaches the cells in containers (CIFAR in the
    paper profiles), read-only."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "cifar-10-python.tar.gz").write_bytes(b"x" * 1234)
    monkeypatch.setenv("EDGEREPRO_DATA", str(data))
    runner = _selftest_runner(client, tmp_path)
    assert runner.data_dir == data
    outcome = runner.run_job({"kind": "selftest", "coords": {"framework": "python"},
                              "settings": {"data_file": "cifar-10-python.tar.gz"}},
                             tmp_path / "job", tmp_path / "job.log", timeout=120)
    assert outcome.result["status"] == "ok", outcome.log_tail
    assert record_values(outcome.result["records"])["data_file_bytes"] == 1234
    assert runner._run_options()["volumes"][str(data)] == {"bind": "/data", "mode": "ro"}
