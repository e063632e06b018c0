"""The first-contact kit: `invoke selftest` on this machine (its CPU part) and `invoke pin
--from` with an archive such as a Jetson's selftest writes."""
import json
import tarfile
from pathlib import Path

import pytest
from conftest import ROOT

from toolkit import firstcontact
from toolkit.images import matrix

TORCH_JP6 = "torch-2.5.0a0+872d972e41.nv24.08-cp310-cp310-linux_aarch64.whl"
R32_BASE = "nvcr.io/nvidia/l4t-base"


def archive_of(tmp_path: Path, resolved: dict) -> Path:
    folder = tmp_path / "selftest-x"
    folder.mkdir()
    (folder / firstcontact.RESOLVED).write_text(json.dumps(resolved))
    path = tmp_path / "selftest-x.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return path


def resolved_on(platform: str, **extra) -> dict:
    return {"format": firstcontact.FORMAT, "created": "2026-12-05T12:00:00+0000",
            "platform": platform, "device_type": "jetson-orin", "images": {}, "wheels": {},
            "steps": [{"name": "cells", "status": "ok", "detail": "7 ok"}],
            "cells": {"counts": {"ok": 7, "not run": 1}}} | extra


def test_pin_writes_a_boards_wheel_hashes_and_marks_it_verified(invoke_cmd, tmp_path):
    copy = tmp_path / "matrix.toml"
    copy.write_text(matrix.MATRIX.read_text())
    archive = archive_of(tmp_path, resolved_on("l4t-r36.4.0", wheels={TORCH_JP6: "ab" * 32}))
    done = invoke_cmd("pin", "--from", str(archive), "--matrix", str(copy))
    assert done.returncode == 0, done.stderr
    loaded = matrix.load(copy)
    (wheel,) = loaded.framework("l4t-r36.4.0", "pytorch").wheels
    assert wheel.sha256 == "ab" * 32 and not wheel.unverified
    assert loaded.hardware("l4t-r36.4.0", "pytorch").startswith(
        "verified on jetson-orin (invoke selftest 2026-12-05: 7 cells ok, 1 not run)")
    assert loaded.hardware("l4t-r35.4.1", "pytorch").startswith("unverified on hardware")
    assert loaded.entry_hash("amd64", "onnxruntime") == matrix.load().entry_hash(
        "amd64", "onnxruntime")  # nothing else moved
    assert "pin: l4t-r36.4.0/pytorch: " + TORCH_JP6 in done.stderr


def test_pin_writes_base_digests_and_refuses_to_verify_a_failed_selftest(tmp_path):
    copy = tmp_path / "matrix.toml"
    copy.write_text(matrix.MATRIX.read_text())
    digest = "sha256:" + "cd" * 32
    images = {"tensorrt": {"base": {"ref": f"{R32_BASE}:r32.7.1",
                                    "repo_digests": [f"{R32_BASE}@{digest}"]}}}
    resolved = resolved_on("l4t-r32.7.1", images=images, steps=[
        {"name": "pytest -m gpu", "status": "failed", "detail": "1 failed"}])
    before = matrix.load(copy).platform("l4t-r32.7.1").base
    assert before.name == R32_BASE and before.digest == ""
    changes = firstcontact.pin_task(archive_of(tmp_path, resolved), copy, False,
                                    firstcontact.Console(stderr=True))
    loaded = matrix.load(copy)
    assert loaded.platform("l4t-r32.7.1").base.digest == digest
    assert loaded.hardware("l4t-r32.7.1", "tensorrt").startswith("unverified on hardware")
    assert any("base nvcr.io/nvidia/l4t-base digest" in change for change in changes)


@pytest.mark.parametrize("content, message", [
    (b"not a tarball", "not a readable selftest archive"),
    (None, "no resolved.json inside"),
])
def test_pin_refuses_what_is_not_a_selftest_archive(invoke_cmd, tmp_path, content, message):
    path = tmp_path / "bad.tar.gz"
    if content is None:
        with tarfile.open(path, "w:gz") as tar:
            tar.add(ROOT / "README.md", arcname="x/README.md")
    else:
        path.write_bytes(content)
    done = invoke_cmd("pin", "--from", str(path), "--dry-run")
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.docker
def test_selftest_runs_its_cpu_part_here_and_says_what_it_skipped(invoke_cmd, built, tmp_path):
    done = invoke_cmd("selftest", "--out", str(tmp_path), timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    (archive,) = tmp_path.glob("selftest-amd64-*.tar.gz")
    resolved = firstcontact.read_archive(archive)
    steps = {step["name"]: step for step in resolved["steps"]}
    assert steps["doctor"]["status"] == "ok" and steps["build"]["status"] == "ok"
    assert steps["cells"]["status"] == "ok", steps["cells"]
    assert steps["pytest -m gpu"]["status"] == "skipped", steps["pytest -m gpu"]
    counts = resolved["cells"]["counts"]
    assert counts.get("ok", 0) >= 4  # ORT inference, PyTorch and ORT training, the CPU peak
    assert any("no CUDA" in line or "CUDA" in line for line in resolved["cells"]["not_run"])
    assert set(resolved["images"]) == {"onnxruntime", "onnxruntime-training", "pytorch"}
    assert all(entry.get("id") for entry in resolved["images"].values())
    assert resolved["wheels"] and all(len(v) == 64 for v in resolved["wheels"].values())
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert any(name.endswith("logs/doctor.log") for name in names)
    assert any("/results/" in name and name.endswith("manifest.json") for name in names)
    assert "selftest: not run: " in done.stderr and "send back" in done.stderr
