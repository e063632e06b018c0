"""Sharing images (issue 9) without an engine: registry names, the lock file, archive checks
and verify's rows, on the real matrix. The engine round trips are in test_distribution.py."""
import hashlib
import json

import pytest

from toolkit.errors import UserError
from toolkit.images import matrix, naming
from toolkit.images.share import archive, registry, verify

LOADED = matrix.load()
PLATFORM, FRAMEWORK = "amd64", "onnxruntime"


@pytest.mark.parametrize("value", ["127.0.0.1:5000/mylab", "localhost:5000", "localhost/a/b",
                                   "registry.example.org/my-lab", "host:443/lab/sub/"])
def test_registry_names_that_name_a_host_are_accepted(value):
    assert registry.parse_registry(value) == value.rstrip("/")


@pytest.mark.parametrize("value", ["mylab", "mylab/images", "127.0.0.1:5000/MyLab", "",
                                   "host:5000/lab:tag", "https://127.0.0.1:5000/lab"])
def test_other_registry_names_are_one_line_and_never_docker_hub(value):
    with pytest.raises(UserError, match=r"is not HOST\[:PORT\]/NAMESPACE"):
        registry.parse_registry(value)


def test_remote_names_reuse_the_local_tag_scheme():
    tag = LOADED.tag(PLATFORM, FRAMEWORK)
    repository, remote_tag = registry.remote_name("127.0.0.1:5000/lab", tag)
    assert repository == "127.0.0.1:5000/lab/onnxruntime"
    assert remote_tag == f"amd64-{LOADED.entry_hash(PLATFORM, FRAMEWORK)}"


def test_the_lock_round_trips_and_guards_pull(tmp_path):
    path = tmp_path / "images.lock.json"
    assert registry.read_lock(path) == {}
    digest = "sha256:" + "ab" * 32
    entry = registry.lock_entry(LOADED, PLATFORM, FRAMEWORK, "127.0.0.1:5000/lab",
                                "127.0.0.1:5000/lab/onnxruntime", "amd64-x", digest, "sha256:1")
    registry.write_lock({PLATFORM: {FRAMEWORK: entry}}, path)
    assert registry.read_lock(path) == {PLATFORM: {FRAMEWORK: entry}}
    assert entry["pinned"] == f"127.0.0.1:5000/lab/onnxruntime@{digest}"
    locked = registry.read_lock(path)
    selection = LOADED.selection(PLATFORM, FRAMEWORK)
    registry._check_locked(LOADED, selection, locked)  # fine
    with pytest.raises(UserError, match="locks no image for amd64/pytorch"):
        registry._check_locked(LOADED, LOADED.selection(PLATFORM, "pytorch"), locked)
    locked[PLATFORM][FRAMEWORK]["matrix_hash"] = "0123456789ab"
    with pytest.raises(UserError, match="built from matrix entry 0123456789ab"):
        registry._check_locked(LOADED, selection, locked)
    path.write_text("{not json")
    with pytest.raises(UserError, match="unreadable image lock"):
        registry.read_lock(path)


@pytest.mark.parametrize("message, expected", [
    ('Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused',
     "registry 127.0.0.1:1 cannot be reached"),
    ("unauthorized: authentication required", "`docker login 127.0.0.1:1`"),
    ("manifest for x not found: manifest unknown", "is not in registry 127.0.0.1:1"),
    ("something\nelse", "push of x failed: something else"),
])
def test_engine_errors_become_one_line_saying_what_to_do(message, expected):
    error = registry.explain("push", "x", "127.0.0.1:1/lab", message)
    assert expected in str(error) and "\n" not in str(error)


def test_the_engine_stream_error_is_raised_and_progress_shown():
    from rich.console import Console

    console = Console(record=True, width=200)
    aux = registry.follow([{"status": "Preparing", "id": "abc"},
                           {"status": "Pushed", "id": "abc"},
                           {"aux": {"Digest": "sha256:1"}}], "pushing", console)
    assert aux == {"Digest": "sha256:1"} and "abc: Pushed" in console.export_text()
    with pytest.raises(registry._EngineError, match="connection refused"):
        registry.follow([{"errorDetail": {"message": "connection refused"}, "error": "x"}],
                        "pushing", console)


def _fake_archive(tmp_path, **changes):
    data = b"\x1f\x8b not really an image"
    path = tmp_path / f"edgerepro-{FRAMEWORK}-{PLATFORM}-x{archive.SUFFIX}"
    path.write_bytes(data)
    manifest = {"schema": archive.SCHEMA, "platform": PLATFORM, "framework": FRAMEWORK,
                "matrix_hash": LOADED.entry_hash(PLATFORM, FRAMEWORK),
                "labels": naming.expected_labels(LOADED, PLATFORM, FRAMEWORK),
                "archive": {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}}
    manifest |= changes
    archive.sidecar_of(path).write_text(json.dumps(manifest))
    return path, archive.read_sidecar(path)


def test_archive_checks_pass_on_a_matching_manifest(tmp_path):
    path, manifest = _fake_archive(tmp_path)
    assert archive.sidecar_of(path).name == f"edgerepro-{FRAMEWORK}-{PLATFORM}-x.json"
    archive.check_archive(path, manifest, LOADED)


@pytest.mark.parametrize("changes, message", [
    ({"archive": {"sha256": "0" * 64, "size": 1}}, "is damaged or altered"),
    ({"matrix_hash": "0123456789ab"}, "was built from matrix entry 0123456789ab"),
    ({"framework": "tensorflow"}, "holds amd64/tensorflow, which containers/matrix.toml does "
                                  "not pin"),
    ({"labels": {}}, r"label \S+ is missing but the matrix gives .* more\)"),
])
def test_archive_checks_refuse_in_one_line(tmp_path, changes, message):
    path, manifest = _fake_archive(tmp_path, **changes)
    with pytest.raises(UserError, match=message) as caught:
        archive.check_archive(path, manifest, LOADED)
    assert "\n" not in str(caught.value)


def test_a_missing_sidecar_says_to_copy_both_files(tmp_path):
    path, _ = _fake_archive(tmp_path)
    archive.sidecar_of(path).unlink()
    with pytest.raises(UserError, match="copy both files"):
        archive.read_sidecar(path)


def _manifest() -> dict:
    wanted = naming.expected(LOADED, PLATFORM, FRAMEWORK)
    entry = LOADED.framework(PLATFORM, FRAMEWORK)
    return wanted | {"installed": {"python": "3.11.2", "machine": "x86_64", "modules": {},
                                   "distributions": dict(entry.packages)}}


def test_verify_rows_pass_on_what_the_matrix_pins():
    labels = naming.labels(LOADED, PLATFORM, FRAMEWORK)
    checks = (verify.label_checks(LOADED, PLATFORM, FRAMEWORK, labels)
              + verify.manifest_checks(LOADED, PLATFORM, FRAMEWORK, _manifest()))
    assert [check for check in checks if check.result != verify.PASS] == []
    names = {check.name for check in checks}
    assert {"label io.edgerepro.pin.numpy", "installed numpy", "manifest matrix_hash",
            "installed beyond the pins"} <= names


def test_verify_rows_name_what_differs():
    labels = naming.labels(LOADED, PLATFORM, FRAMEWORK) | {
        "io.edgerepro.pin.numpy": "wrong", "io.edgerepro.pin.extra": "1.0"}
    manifest = _manifest()
    manifest["installed"]["distributions"] |= {"numpy": "2.0.0", "pip": "25.1.1"}
    checks = (verify.label_checks(LOADED, PLATFORM, FRAMEWORK, labels)
              + verify.manifest_checks(LOADED, PLATFORM, FRAMEWORK, manifest))
    failed = {check.name: (check.expected, check.found)
              for check in checks if check.result == verify.FAIL}
    assert failed == {"label io.edgerepro.pin.numpy": ("1.26.4", "wrong"),
                      "label io.edgerepro.pin.extra": ("(not pinned)", "1.0"),
                      "installed numpy": ("1.26.4", "2.0.0"),
                      "installed beyond the pins": ("nothing", "pip")}
    assert verify.manifest_checks(LOADED, PLATFORM, FRAMEWORK, None)[0].result == verify.FAIL


def test_volatile_labels_are_not_matrix_checks():
    wanted = naming.expected_labels(LOADED, PLATFORM, FRAMEWORK)
    assert not set(wanted) & naming.VOLATILE
    assert wanted["io.edgerepro.matrix-hash"] == LOADED.entry_hash(PLATFORM, FRAMEWORK)
    assert "org.opencontainers.image.base.digest" not in wanted  # unpinned: a local id
