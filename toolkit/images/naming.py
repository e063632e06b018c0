"""What an image is called and what it says about itself: its tag, its labels, its manifest.

The labels carry every pinned version and the digest of the device code the image holds, so a
runner, `invoke verify` and `invoke load` can tell from the image alone whether it measures what
this checkout says. `expected_labels` is the part any build of a matrix entry carries anywhere;
the rest says where and when one build happened.
"""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

from toolkit.images.engine import default_platform, find_image
from toolkit.images.matrix import Matrix, canonical, load

REPO = Path(__file__).resolve().parents[2]
LABEL = "io.edgerepro"
OCI = "org.opencontainers.image"
MANIFEST = "/opt/edgerepro/versions.json"  # the version manifest, at a fixed path in every image
UID = 1000  # the image's user: owns what a cell writes
# Labels that say where and when an image was built, not what is in it: another lab's build of
# the same matrix entry differs in these and is still the same software.
VOLATILE = {f"{OCI}.source", f"{OCI}.revision", f"{OCI}.created", f"{LABEL}.build-key",
            f"{LABEL}.device-code"}


def tag_for(framework: str, platform: str = "", matrix: Matrix | None = None) -> str:
    """The image the docker runner uses for a framework (default: this machine's platform)."""
    return (matrix or load()).tag(platform or default_platform(), framework)


def expected(matrix: Matrix, platform: str, framework: str, base_id: str = "") -> dict[str, Any]:
    """The matrix's view of one image: written into its manifest, compared after the build."""
    chosen, entry = matrix.platform(platform), matrix.framework(platform, framework)
    base = matrix.base_of(platform, framework)
    return {"platform": platform, "framework": framework,
            "matrix_hash": matrix.entry_hash(platform, framework),
            "arch": chosen.arch, "python": chosen.python, "cuda": chosen.cuda,
            "cudnn": chosen.cudnn, "tensorrt": chosen.tensorrt,
            "base": {"name": base.ref, "digest": base.digest or base_id},
            "framework_version": entry.version, "import": entry.import_,
            "packages": dict(entry.packages) | {canonical(sdist.package): sdist.version
                                                for sdist in entry.sdists}
            | ({canonical(entry.source.distribution): entry.version} if entry.source else {}),
            "provided": dict(entry.provided)}


# -- device code ---------------------------------------------------------------------------------

def device_files() -> list[tuple[str, Path]]:
    """The device side of toolkit: all that the image gets of this repository (errors.py is
    shared by both sides)."""
    files = [("app/toolkit/__init__.py", REPO / "toolkit" / "__init__.py"),
             ("app/toolkit/errors.py", REPO / "toolkit" / "errors.py")]
    for path in sorted((REPO / "toolkit" / "device").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files.append((f"app/{path.relative_to(REPO).as_posix()}", path))
    return files


def device_code_digest() -> str:
    """sha256 of the device side as it is in this checkout (a label of every image), so a
    runner can tell an image that holds older device code than the cells it would measure."""
    summary = hashlib.sha256()
    for name, path in device_files():
        summary.update(f"{name}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return summary.hexdigest()[:16]


def holds_older_device_code(labels: dict[str, str]) -> bool:
    """An image (by its labels) built from other device code than this checkout's: its cells
    would not measure what this checkout says."""
    return labels.get(f"{LABEL}.device-code") != device_code_digest()


def stale_images(client: Any, frameworks: list[str], platform: str = "",
                 matrix: Matrix | None = None) -> list[str]:
    """Why the images of these frameworks cannot measure this checkout's cells (empty: fine)."""
    matrix = matrix or load()
    problems = []
    for framework in frameworks:
        tag = tag_for(framework, platform, matrix)
        image = find_image(client, tag)
        found = (image.labels or {}) if image is not None else {}
        if not found:
            problems.append(f"{tag} is missing")
        elif holds_older_device_code(found):
            problems.append(f"{tag} holds older device code")
    return problems


# -- labels --------------------------------------------------------------------------------------

def git_revision() -> str:
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "--no-optional-locks", *args], cwd=REPO,
                                  capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return "unknown"
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def source_url(matrix: Matrix) -> str:
    if matrix.project.source:
        return matrix.project.source
    try:
        done = subprocess.run(["git", "remote", "get-url", "origin"], cwd=REPO,
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def labels(matrix: Matrix, platform: str, framework: str, base_id: str = "") -> dict[str, str]:
    """OCI labels and every pinned version (without `created`, which `build` adds)."""
    facts = expected(matrix, platform, framework, base_id)
    result = {f"{OCI}.title": f"edgerepro {framework} ({platform})",
              f"{OCI}.source": source_url(matrix), f"{OCI}.revision": git_revision(),
              f"{OCI}.version": str(facts["framework_version"]),
              f"{OCI}.base.name": facts["base"]["name"],
              f"{OCI}.base.digest": facts["base"]["digest"],
              f"{LABEL}.platform": platform, f"{LABEL}.framework": framework,
              f"{LABEL}.matrix-hash": facts["matrix_hash"],
              f"{LABEL}.device-code": device_code_digest()}
    for key in ("python", "cuda", "cudnn", "tensorrt"):
        result[f"{LABEL}.{key}"] = facts[key]
    result |= {f"{LABEL}.pin.{name}": version for name, version in facts["packages"].items()}
    result |= {f"{LABEL}.provided.{name}": version
               for name, version in facts["provided"].items()}
    return result


def expected_labels(matrix: Matrix, platform: str, framework: str) -> dict[str, str]:
    """The labels the matrix determines: what any build of this entry carries, anywhere.

    The base digest counts only when the matrix pins it; unpinned it is the id of a base
    bootstrapped on the building machine, which another lab cannot reproduce."""
    wanted = labels(matrix, platform, framework)
    return {key: value for key, value in wanted.items()
            if key not in VOLATILE and not (key == f"{OCI}.base.digest" and not value)}
