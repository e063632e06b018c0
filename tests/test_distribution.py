"""Sharing images (issue 9) on a real engine with real images: a real registry on 127.0.0.1
(Debian's docker-registry, started per module), docker-save archives, `invoke verify`.

Never a mocked client. The tests remove and restore the onnxruntime image (the small one) and
leave its local tag on the same image id at the end, since other tests use it. Nothing talks to
any address but 127.0.0.1.
"""
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, TINY_SPEC
from engines import second_engine

from toolkit.images import matrix
from toolkit.images.engine import find_image

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REGISTRY_BINARY = Path("/usr/bin/docker-registry")
FRAMEWORK = "onnxruntime"
# No proxy, whatever the environment says: the registry is on the loopback.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def invoke(*args: str, lock: Path | None = None, timeout: float = 900, engine: str = ""):
    env = dict(os.environ)
    if lock is not None:
        env["EDGEREPRO_IMAGES_LOCK"] = str(lock)
    if engine:  # another engine than the default one, as a user would point at it
        env["DOCKER_HOST"] = engine
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The user-error contract: exit 2, no traceback, exactly one `error:` line, the last."""
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and done.stderr.strip().splitlines()[-1] == errors[0], done.stderr
    return errors[0]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A registry of our own on 127.0.0.1:<free port>, filesystem storage in a temp dir."""
    if not REGISTRY_BINARY.exists():
        pytest.skip("docker-registry is not installed (CI installs it: .ci/setup --docker)")
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = root / "config.yml"
    config.write_text(f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root / "storage"}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: edgerepro-test-only
""")
    log = (root / "registry.log").open("w")
    process = subprocess.Popen([str(REGISTRY_BINARY), "serve", str(config)], stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with DIRECT.open(f"{url}/v2/", timeout=2) as answer:
                    assert answer.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("registry did not answer: "
                                         + (root / "registry.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        yield {"host": f"127.0.0.1:{port}", "url": url}
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def references(client, image_id: str) -> list[str]:
    image = client.images.get(image_id)
    return list(image.tags) + list(image.attrs.get("RepoDigests") or [])


def drop(client, image_id: str, keep: str = "") -> None:
    """Remove every name of the image but `keep` (force: a running container may use it; the
    engine then keeps the content, untagged). noprune: the build cache's parents stay."""
    from docker.errors import ImageNotFound

    for name in references(client, image_id):
        if name != keep:
            with contextlib.suppress(ImageNotFound):  # went with a tag of its repository
                client.images.remove(name, force=True, noprune=True)


def present(client, reference: str) -> bool:
    return find_image(client, reference) is not None


def test_push_pull_by_digest_and_verify(client, built, registry, tmp_path):
    tag = built[FRAMEWORK]
    original = client.images.get(tag).id
    namespace = f"{registry['host']}/edgerepro-test"
    lock = tmp_path / "images.lock.json"
    started = time.monotonic()
    pushed = invoke("push", "--registry", namespace, "--framework", FRAMEWORK, lock=lock)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    push_seconds = time.monotonic() - started
    entry = json.loads(lock.read_text())["images"]["amd64"][FRAMEWORK]
    repository = f"{namespace}/{FRAMEWORK}"
    assert entry["pinned"] == f"{repository}@{entry['digest']}"
    assert entry["ref"] == f"{repository}:{tag.rsplit(':', 1)[1]}"  # the local tag scheme
    assert entry["image_id"] == original
    assert entry["matrix_hash"] == tag.rsplit("-", 1)[1]
    assert f"pushed {entry['pinned']}" in pushed.stderr
    # The registry itself serves that digest.
    request = urllib.request.Request(
        f"{registry['url']}/v2/edgerepro-test/{FRAMEWORK}/manifests/{entry['digest']}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    with DIRECT.open(request, timeout=10) as answer:
        assert answer.headers["Docker-Content-Digest"] == entry["digest"]

    try:
        drop(client, original)
        assert not present(client, tag)
        started = time.monotonic()
        pulled = invoke("pull", "--framework", FRAMEWORK, lock=lock)  # no --registry: the lock
        pull_seconds = time.monotonic() - started
        assert pulled.returncode == 0, pulled.stderr[-3000:]
        assert f"pulled {entry['pinned']} as {tag}" in pulled.stderr
        image = client.images.get(tag)
        assert image.id == original
        assert entry["pinned"] in image.attrs["RepoDigests"]

        checked = invoke("verify", entry["pinned"])
        assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-2000:]
        assert f"{entry['pinned']}: all " in checked.stdout
        assert "FAIL" not in checked.stdout

        # --registry pulls the matrix tag and locks what it got: the same digest.
        other_lock = tmp_path / "other.lock.json"
        by_tag = invoke("pull", "--registry", namespace, "--framework", FRAMEWORK,
                        lock=other_lock)
        assert by_tag.returncode == 0, by_tag.stderr[-3000:]
        again = json.loads(other_lock.read_text())["images"]["amd64"][FRAMEWORK]
        assert again["pinned"] == entry["pinned"]
    finally:
        if not present(client, tag):  # whatever failed above: the tag other tests use comes back
            client.images.pull(entry["pinned"]).tag(*tag.rsplit(":", 1))
        drop(client, original, keep=tag)
    assert client.images.get(tag).id == original
    assert not [name for name in references(client, original) if namespace in name]
    print(f"push {push_seconds:.1f} s, pull {pull_seconds:.1f} s")


def test_push_to_an_unreachable_registry_is_one_line(client, built, tmp_path):
    port = free_port()  # nothing listens there
    lock = tmp_path / "images.lock.json"
    done = invoke("push", "--registry", f"127.0.0.1:{port}/edgerepro-test", "--framework",
                  FRAMEWORK, lock=lock)
    line = one_error_line(done)
    assert line.startswith(f"error: registry 127.0.0.1:{port} cannot be reached ("), line
    assert "check --registry" in line
    assert not lock.exists()
    names = references(client, built[FRAMEWORK])
    assert built[FRAMEWORK] in names and not [name for name in names if f":{port}/" in name]


def test_pull_without_a_locked_image_and_a_bad_registry_name_are_one_line(client, tmp_path):
    lock = tmp_path / "images.lock.json"
    missing = matrix.load().tag("l4t-r36.4.0", "pytorch")  # only a Jetson can build it
    assert not present(client, missing)
    line = one_error_line(invoke("save", "--out", str(tmp_path), "--platform", "l4t-r36.4.0",
                                 "--framework", "pytorch"))
    assert line == (f"error: {missing} is not on this engine: `invoke build --platform "
                    "l4t-r36.4.0 --framework pytorch` or `invoke pull` it first")
    line = one_error_line(invoke("verify", "all", "--platform", "l4t-r99"))
    assert line.startswith("error: unknown platform 'l4t-r99'; valid: amd64, arm64")
    line = one_error_line(invoke("pull", "--framework", FRAMEWORK, lock=lock))
    assert "locks no image for amd64/onnxruntime" in line and "invoke push --registry" in line
    line = one_error_line(invoke("push", "--registry", "mylab", lock=lock))
    assert line.startswith("error: --registry 'mylab' is not HOST[:PORT]/NAMESPACE")
    line = one_error_line(invoke("push", "--registry", "127.0.0.1:1/x", "--framework", "tf"))
    assert "unknown framework 'tf'; valid: onnxruntime, onnxruntime-training, pytorch" in line


@pytest.fixture(scope="module")
def saved(client, built, tmp_path_factory):
    """`invoke save --framework onnxruntime`: the archive, its manifest and how long it took."""
    out = tmp_path_factory.mktemp("saved")
    started = time.monotonic()
    done = invoke("save", "--out", str(out), "--framework", FRAMEWORK)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    (archive,) = out.glob("*.tar.gz")
    sidecar = archive.with_name(archive.name.removesuffix(".tar.gz") + ".json")
    return {"archive": archive, "sidecar": sidecar, "seconds": seconds}


def test_the_saved_manifest_describes_the_archive(client, built, saved):
    import hashlib

    manifest = json.loads(saved["sidecar"].read_text())
    image = client.images.get(built[FRAMEWORK])
    assert manifest["image_id"] == image.id and manifest["tag"] == built[FRAMEWORK]
    assert manifest["labels"] == image.labels
    assert manifest["matrix_hash"] == built[FRAMEWORK].rsplit("-", 1)[1]
    data = saved["archive"].read_bytes()
    assert manifest["archive"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["archive"]["size"] == len(data)
    assert data[:2] == b"\x1f\x8b"  # gzip, which `docker load` reads as it is


def test_a_corrupted_or_foreign_archive_is_refused(client, built, saved, tmp_path):
    before = client.images.get(built[FRAMEWORK]).id
    bad = tmp_path / saved["archive"].name
    shutil.copyfile(saved["archive"], bad)
    shutil.copyfile(saved["sidecar"], tmp_path / saved["sidecar"].name)
    with bad.open("r+b") as handle:  # one byte in the middle
        handle.seek(bad.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    line = one_error_line(invoke("load", str(bad)))
    assert line.startswith(f"error: {bad.name} is damaged or altered: sha256 "), line

    # Intact bytes, but a manifest for another matrix entry, or with a label the matrix differs on.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    os.link(saved["archive"], foreign / saved["archive"].name)
    manifest = json.loads(saved["sidecar"].read_text())
    sidecar = foreign / saved["sidecar"].name
    sidecar.write_text(json.dumps(manifest | {"matrix_hash": "0123456789ab"}))
    line = one_error_line(invoke("load", str(foreign / saved["archive"].name)))
    assert "was built from matrix entry 0123456789ab, but containers/matrix.toml gives" in line
    labels = manifest["labels"] | {"io.edgerepro.pin.numpy": "1.0.0"}
    sidecar.write_text(json.dumps(manifest | {"labels": labels}))
    line = one_error_line(invoke("load", str(foreign / saved["archive"].name)))
    assert "label io.edgerepro.pin.numpy is 1.0.0 but the matrix gives 1.26.4" in line
    assert client.images.get(built[FRAMEWORK]).id == before  # nothing was loaded


def test_save_remove_load_then_verify(client, built, saved):
    tag = built[FRAMEWORK]
    original = client.images.get(tag).id
    try:
        drop(client, original)
        assert not present(client, tag)
        started = time.monotonic()
        done = invoke("load", str(saved["archive"]))
        load_seconds = time.monotonic() - started
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"as {tag}" in done.stderr
        assert client.images.get(tag).id == original
        checked = invoke("verify", tag)
        assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-2000:]
        assert f"{tag}: all " in checked.stdout
    finally:
        if not present(client, tag):
            with saved["archive"].open("rb") as handle:
                client.images.load(handle)
    assert client.images.get(tag).id == original
    print(f"save {saved['seconds']:.1f} s, load {load_seconds:.1f} s, "
          f"{saved['archive'].stat().st_size / 1e6:.0f} MB")


def test_load_on_a_clean_engine_then_verify(saved):
    """A second engine with an empty data root stands for the air-gapped device."""
    with second_engine() as engine:
        done = invoke("load", str(saved["archive"]), engine=engine.url)
        assert done.returncode == 0, done.stderr[-3000:]
        tag = json.loads(saved["sidecar"].read_text())["tag"]
        checked = invoke("verify", tag, engine=engine.url)
        assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-2000:]
        assert f"{tag}: all " in checked.stdout


def test_verify_fails_on_a_changed_label(client, built, tmp_path):
    (tmp_path / "Dockerfile").write_text(
        f"FROM {built[FRAMEWORK]}\nLABEL io.edgerepro.pin.numpy=wrong\n")
    wrong = f"edgerepro-test/wrong-label:{os.getpid()}"
    client.images.build(path=str(tmp_path), tag=wrong, rm=True, pull=False)
    try:
        done = invoke("verify", wrong)
    finally:
        client.images.remove(wrong, force=True)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if "io.edgerepro.pin.numpy" in line]
    assert len(rows) == 1, done.stdout
    assert "1.26.4" in rows[0] and "wrong" in rows[0] and "FAIL" in rows[0]
    failing = [line for line in done.stdout.splitlines() if "FAIL" in line]
    assert failing == rows, "only the changed label fails; the manifest inside is untouched"
    assert re.fullmatch(rf"verify failed: {re.escape(wrong)}: 1 of \d+ checks failed: "
                        r"label io\.edgerepro\.pin\.numpy", done.stderr.strip()), done.stderr


def test_verify_of_every_local_matrix_image_passes(client, built):
    done = invoke("verify", "all")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    for tag in built.values():
        assert f"{tag}: all " in done.stdout


def test_a_device_pulls_its_image_by_the_locked_digest(client, built, registry, tmp_path):
    """`invoke run --hosts` on a fresh engine: the image comes from the registry, not sent."""
    lock = tmp_path / "images.lock.json"
    pushed = invoke("push", "--registry", f"{registry['host']}/edgerepro-fleet", "--framework",
                    FRAMEWORK, lock=lock)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    with second_engine() as engine:
        inventory = tmp_path / "fleet.toml"
        inventory.write_text(f'[devices.second]\nengine = "{engine.url}"\nplatform = "amd64"\n'
                             'device_type = "x86-second"\nshares_filesystem = false\n')
        env = dict(os.environ, EDGEREPRO_IMAGES_LOCK=str(lock),
                   EDGEREPRO_RESULTS=str(tmp_path / "results"))
        done = subprocess.run([sys.executable, "-m", "invoke", "run", "--hosts", "second",
                               "--inventory", str(inventory), "--experiment", str(TINY_SPEC)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "from the registry (images.lock.json)" in done.stderr
        assert "transferring" not in done.stderr
    cells = [json.loads(path.read_text())
             for path in (tmp_path / "results").glob("*-second/cells/*.json")]
    assert len(cells) == 4 and all(cell["status"] == "ok" for cell in cells)
