"""The smoke test after every build: import the framework in a container without network and
fail the build when any version differs from the matrix.

A pass is kept in a ledger by image id (a content hash, so it holds for good): an image found up
to date is not started again. Under emulation a framework may crash on instructions qemu lacks;
that is reported as skipped, since the pinned files were verified by sha256 before the build.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from toolkit.errors import UserError
from toolkit.images import bases
from toolkit.images.matrix import ARCHES, Matrix, version_matches
from toolkit.images.naming import MANIFEST

LEDGER = "smoke-passed.json"  # in the wheelhouse root
# Exit statuses of a process killed by a signal inside a container (128 + signal number).
_CRASHES = {132: "SIGILL", 133: "SIGTRAP", 134: "SIGABRT", 135: "SIGBUS", 139: "SIGSEGV"}


def smoke_ledger(root: Path, add: dict[str, str] | None = None) -> dict[str, str]:
    """Image id -> smoke-test verdict, so an up-to-date image is not started again."""
    path = root / LEDGER
    try:
        ledger = json.loads(path.read_text())
    except (OSError, ValueError):
        ledger = {}
    if add:
        ledger.update(add)
        root.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(ledger, indent=1, sort_keys=True) + "\n")
    return ledger


def run_in_image(client: Any, tag: str, command: list[str], nvidia_runtime: bool = False,
                 timeout: float = 600) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of a command in a fresh container without network."""
    options: dict[str, Any] = {"network_mode": "none", "detach": True}
    if nvidia_runtime:
        options["runtime"] = "nvidia"
    container = client.containers.run(tag, command, **options)
    try:
        status = container.wait(timeout=timeout)
        out = container.logs(stdout=True, stderr=False).decode(errors="replace")
        err = container.logs(stdout=False, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    return int(status.get("StatusCode", -1)), out, err


def smoke_test(client: Any, matrix: Matrix, platform: str, framework: str, tag: str) -> str:
    """Import the framework in the new image and compare every version with the matrix."""
    chosen, entry = matrix.platform(platform), matrix.framework(platform, framework)
    modules = [entry.import_ or "", *entry.also_import]
    code, out, err = run_in_image(client, tag, ["python3", "-m", "toolkit.device.versions",
                                                *modules], chosen.nvidia_runtime)
    emulated = chosen.arch != bases.HOST_ARCH
    if code != 0:
        last = (err.strip().splitlines() or ["no output"])[-1]
        if emulated and code in _CRASHES:
            return (f"skipped: {modules[0]} crashed under {chosen.arch} emulation "
                    f"({_CRASHES[code]}); pinned files were verified by sha256 instead")
        raise UserError(f"{tag}: smoke test failed (exit {code}): {last}")
    found = json.loads(out)
    mismatches = compare(matrix, platform, framework, found)
    if mismatches:
        raise UserError(f"{tag}: smoke test: {mismatches[0]}"
                        + (f" (and {len(mismatches) - 1} more)" if len(mismatches) > 1 else ""))
    versions = ", ".join(f"{name} {version}" for name, version in found["modules"].items()
                         if version)
    return f"passed: Python {found['python']}, {versions}" + (" (emulated)" if emulated else "")


def compare(matrix: Matrix, platform: str, framework: str, found: dict[str, Any]) -> list[str]:
    """Every way the image differs from the matrix, each naming both versions."""
    chosen, entry = matrix.platform(platform), matrix.framework(platform, framework)
    where = f"{platform}/{framework}"
    problems = []

    def differ(what: str, have: str | None, pinned: str) -> None:
        problems.append(f"{what} is {have or 'missing'} in the image but "
                        f"containers/matrix.toml pins {pinned} ({where})")

    if not version_matches(chosen.python, found["python"]):
        differ("python", found["python"], chosen.python)
    if found["machine"] != ARCHES[chosen.arch]:
        differ("the machine", found["machine"], ARCHES[chosen.arch])
    module = entry.import_ or ""
    if not version_matches(entry.version or "", found["modules"].get(module, "")):
        differ(f"{module}.__version__", found["modules"].get(module), entry.version or "")
    installed = found["distributions"]
    for name, version in entry.packages.items():
        if installed.get(name) != version:
            differ(name, installed.get(name), version)
    for name, version in entry.provided.items():
        have = installed.get(name) or found["modules"].get(name)
        if have is None or not version_matches(version, have):
            differ(f"{name} (from the base)", have, version)
    return problems


def image_manifest(client: Any, tag: str) -> dict[str, Any]:
    """The version manifest inside an image (/opt/edgerepro/versions.json)."""
    code, out, err = run_in_image(client, tag, ["cat", MANIFEST])
    if code != 0:
        raise UserError(f"{tag} has no readable {MANIFEST}: {err.strip()}")
    return json.loads(out)
