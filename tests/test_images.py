"""Real images on a real Docker engine (CI starts one): the amd64 chain from a bootstrapped base.

Never a mocked client: these tests run `invoke build` as a user would and look into the images
it made. Without an engine they are skipped with the reason.
"""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

from toolkit.errors import UserError
from toolkit.images import build as builder
from toolkit.images import matrix, smoke

pytestmark = [pytest.mark.docker, pytest.mark.slow]

AMD64 = ("pytorch", "onnxruntime", "onnxruntime-training")
SIZE_LIMIT_MB = {"onnxruntime": 400, "pytorch": 1500}


def invoke(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout, env=dict(os.environ))


@pytest.mark.parametrize("framework", AMD64)
def test_labels_equal_the_matrix(client, built, framework):
    loaded = matrix.load()
    entry, platform = loaded.framework("amd64", framework), loaded.platform("amd64")
    found = client.images.get(built[framework]).labels
    pins = {key.removeprefix("io.edgerepro.pin."): value for key, value in found.items()
            if key.startswith("io.edgerepro.pin.")}
    assert pins == entry.packages
    assert found["io.edgerepro.python"] == platform.python
    assert found["io.edgerepro.matrix-hash"] == loaded.entry_hash("amd64", framework)
    oci = "org.opencontainers.image"
    assert found[f"{oci}.version"] == entry.version
    assert found[f"{oci}.base.name"] == platform.base.ref
    assert found[f"{oci}.base.digest"] == client.images.get(platform.base.ref).id
    # The commit the image was last built at (not in the no-op key: see toolkit/images/build.py).
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", found[f"{oci}.revision"])
    for key in ("created", "source"):
        assert found[f"{oci}.{key}"]


@pytest.mark.parametrize("framework", AMD64)
def test_the_manifest_in_the_image_equals_the_matrix(client, built, framework):
    loaded = matrix.load()
    entry = loaded.framework("amd64", framework)
    manifest = smoke.image_manifest(client, built[framework])
    assert manifest["packages"] == entry.packages
    installed = manifest["installed"]["distributions"]
    assert {name: installed.get(name) for name in entry.packages} == entry.packages
    assert set(installed) == set(entry.packages), "nothing installed beyond the pins"
    assert manifest["installed"]["python"].startswith(loaded.platform("amd64").python + ".")
    assert manifest["matrix_hash"] == loaded.entry_hash("amd64", framework)


def test_the_image_runs_jobs_as_a_non_root_user_without_network(client, built):
    code, out, err = smoke.run_in_image(client, built["onnxruntime"], [
        "sh", "-c", "id -u && python3 -c 'import toolkit.device.job, onnxruntime' && "
        "cat /proc/net/dev | grep -c ':'"])
    assert code == 0, err
    uid, interfaces = out.split()
    assert uid == "1000" and interfaces == "1"  # the loopback only


def test_a_second_build_is_a_no_op_under_10_s(client, built):
    started = time.monotonic()
    done = invoke("build", "--platform", "amd64")
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count(": up to date in") == len(AMD64), done.stderr
    assert elapsed < 10, f"second build took {elapsed:.1f} s"


@pytest.mark.parametrize("framework", ["onnxruntime", "pytorch"])
def test_image_sizes_meet_their_targets(client, built, framework):
    size_mb = client.images.get(built[framework]).attrs["Size"] / 1e6
    assert size_mb <= SIZE_LIMIT_MB[framework], f"{framework}: {size_mb:.0f} MB"


def _filesystem_contains(client, tag, needle: bytes) -> list[str]:
    """Paths of files in the image whose bytes contain `needle` (exported, not trusted)."""
    import tarfile
    import tempfile

    container = client.containers.create(tag, ["true"], network_mode="none")
    hits = []
    try:
        with tempfile.TemporaryFile(dir="/var/tmp") as handle:
            for chunk in container.export():
                handle.write(chunk)
            handle.seek(0)
            with tarfile.open(fileobj=handle) as archive:
                for member in archive:
                    if member.isfile() and member.size < 50_000_000:
                        data = archive.extractfile(member).read()
                        if needle in data:
                            hits.append(member.name)
    finally:
        container.remove(force=True)
    return hits


def test_the_ca_bundle_and_the_wheelhouse_stay_in_the_build_stage(client, built, tmp_path):
    marker = f"EDGEREPRO-TEST-CA-{time.time_ns()}"
    host_ca = Path("/etc/ssl/certs/ca-certificates.crt")
    bundle = tmp_path / "proxy-ca.pem"
    bundle.write_text(f"# {marker}\n" + (host_ca.read_text() if host_ca.exists() else ""))
    tag = built["onnxruntime"]
    try:
        done = invoke("build", "--platform", "amd64", "--framework", "onnxruntime",
                      "--ca-bundle", str(bundle))
        assert done.returncode == 0, done.stderr[-3000:]
        assert "COPY build/ca.crt" in done.stderr  # the build stage did get it
        history = json.dumps(client.api.history(tag))
        for build_only in ("ca.crt", "wheelhouse", "PIP_CERT", "requirements.txt"):
            assert build_only not in history, build_only
        assert _filesystem_contains(client, tag, marker.encode()) == []
        code, out, _ = smoke.run_in_image(client, tag, [
            "sh", "-c", "ls /tmp; find / -xdev -name '*.whl' -o -xdev -name 'ca.crt' | head"])
        assert code == 0 and out.strip() == "", out
    finally:
        restored = invoke("build", "--platform", "amd64", "--framework", "onnxruntime")
        assert restored.returncode == 0, restored.stderr[-2000:]


@pytest.mark.parametrize("old, new, message", [
    ('python = "3.11"\nglibc = "2.36"\npip = "25.1.1"   # run',
     'python = "3.10"\nglibc = "2.36"\npip = "25.1.1"   # run',
     "python is 3.11.2 in the image but containers/matrix.toml pins 3.10"),
    ('version = "1.19.2"\nimport = "onnxruntime"\n# Plain',
     'version = "1.19.3"\nimport = "onnxruntime"\n# Plain',
     "onnxruntime.__version__ is 1.19.2 in the image but containers/matrix.toml pins 1.19.3"),
])
def test_a_pin_that_differs_from_the_image_fails_the_build(client, built, tmp_path, old, new,
                                                           message):
    text = matrix.MATRIX.read_text()
    assert old in text
    path = tmp_path / "matrix.toml"
    path.write_text(text.replace(old, new, 1))
    wrong = matrix.load(path)
    tag = wrong.tag("amd64", "onnxruntime")
    from rich.console import Console

    with pytest.raises(UserError, match=message.replace(".", r"\.")):
        builder.build_image(client, wrong, "amd64", "onnxruntime", Console(stderr=True))
    assert not any(tag in image.tags for image in client.images.list()), "bad image untagged"


def test_a_missing_registry_base_is_one_line(client):
    done = invoke("build", "--platform", "l4t-r36.4.0", "--framework", "pytorch")
    assert done.returncode == 2
    base = matrix.load().base_of("l4t-r36.4.0", "pytorch")
    assert base.ref.startswith("nvcr.io/nvidia/l4t-jetpack")  # by digest once one is pinned
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: base image {base.ref} is missing and cannot be pulled "
        "here; `docker load` it from a machine that has it (l4t-r36.4.0 may not use a "
        "bootstrapped base)")



def test_every_arm64_image_builds_under_emulation_with_its_smoke_test(client):
    """The Raspberry Pi images (`invoke build --platform arm64`): built here under qemu, each
    smoke test importing its framework (emulation builds and smoke-tests, never measures).
    Needs qemu/binfmt (`.ci/setup --arm64`); CI skips it for time, and says so."""
    from toolkit.images import bases

    problem = bases.emulation_ready("arm64")
    if problem:
        pytest.skip(f"arm64 emulation unavailable: {problem} (bash .ci/setup --arm64)")
    for args in (("base", "--platform", "arm64"), ("build", "--platform", "arm64")):
        done = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, text=True,
                              capture_output=True, timeout=3600)
        assert done.returncode == 0, done.stderr[-3000:]
    for framework in ("onnxruntime", "pytorch"):
        assert f"{matrix.load().tag('arm64', framework)}: " in done.stderr
        assert "smoke test passed" in done.stderr
