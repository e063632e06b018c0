"""Cells in containers: a real engine, real images, real containers (never a mocked client)."""
import json
import math

import pytest
from conftest import TINY_SPEC

from toolkit import images
from toolkit.runners.docker_runner import DockerRunner

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _cells(results) -> dict[str, dict]:
    return {json.loads(p.read_text())["cell_id"]: json.loads(p.read_text())
            for p in results.glob("*/cells/*.json")}


def _selftest_runner(client, tmp_path, **options) -> DockerRunner:
    return DockerRunner(client, lambda framework: images.tag_for("onnxruntime"), tmp_path,
                        **options)


def test_docker_and_host_runs_give_the_same_cells_and_agree(invoke_cmd, built, tmp_path):
    spec = tmp_path / "spec.toml"  # a steadier protocol than the tiny one: latencies compared
    spec.write_text(TINY_SPEC.read_text().replace("min_count = 20", "min_count = 300")
                    .replace("min_seconds = 0.05", "min_seconds = 1.5"))
    for runner in ("docker", "host"):
        done = invoke_cmd("run", "--experiment", str(spec), "--runner", runner,
                          results=tmp_path / runner)
        assert done.returncode == 0, done.stderr
    docker, host = _cells(tmp_path / "docker"), _cells(tmp_path / "host")
    assert set(docker) == set(host) and len(docker) == 4
    ratios = []
    for cell_id, cell in docker.items():
        assert cell["status"] == "ok" and cell["runner"] == "docker"
        assert cell["image"] == built["onnxruntime"]
        assert cell["image_digest"].startswith("sha256:")
        in_container = {m: v for m, v, _ in cell["records"]}
        on_host = {m: v for m, v, _ in host[cell_id]["records"]}
        assert in_container["cgroup_memory_peak"] > 0  # the container's own accounting
        ratios.append(in_container["latency_p50"] / on_host["latency_p50"])
    geomean = math.exp(sum(map(math.log, ratios)) / len(ratios))
    assert 1 / 1.15 <= geomean <= 1.15, ratios


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
