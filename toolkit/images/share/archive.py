"""`invoke save` / `invoke load`: images as files, for devices that reach no registry.

A Jetson in a lab without network gets its images on a disk. `save` writes the engine's own
docker-save stream gzip-compressed (what `docker load` reads too) and beside it a JSON manifest:
image id, digest, tag, labels, the matrix entry hash, and the archive's sha256 and size. `load`
refuses, before the engine sees a byte, an archive whose sha256 differs (a bad copy) or whose
image was built from another version matrix than this checkout's, and afterwards checks that
the engine loaded the very image id that was saved.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from rich.console import Console

from toolkit.errors import UserError
from toolkit.images.engine import connect
from toolkit.images.matrix import Matrix, load
from toolkit.images.naming import expected_labels
from toolkit.images.share import local_image, selected_images

SUFFIX = ".tar.gz"
SCHEMA = 1
LEVEL = 2  # gzip: most of level 6's size gain at a fraction of its time


class _Hashing:
    """A write-only file that hashes and counts what goes through it (the compressed bytes)."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle, self.sha256, self.size = handle, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def sidecar_of(archive: Path) -> Path:
    """X.tar.gz -> X.json."""
    return archive.with_name(archive.name.removesuffix(SUFFIX) + ".json")


def file_sha256(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def save_image(client: Any, matrix: Matrix, platform: str, framework: str, out: Path,
               console: Console) -> Path:
    """Write <out>/edgerepro-<framework>-<platform>-<hash>.tar.gz and its .json; the archive."""
    tag = matrix.tag(platform, framework)
    image = local_image(client, matrix, platform, framework)
    out.mkdir(parents=True, exist_ok=True)
    archive = out / f"edgerepro-{framework}-{platform}-{matrix.entry_hash(platform, framework)}"
    archive = archive.with_name(archive.name + SUFFIX)
    partial = archive.with_name(archive.name + ".partial")
    with console.status(f"saving {tag}"), partial.open("wb") as raw:
        hashing = _Hashing(raw)
        # mtime 0: the same image saved twice gives the same bytes.
        with gzip.GzipFile(filename="", mode="wb", fileobj=hashing, compresslevel=LEVEL,
                           mtime=0) as compressed:
            for chunk in image.save(named=tag):  # named: `load` restores the tag
                compressed.write(chunk)
    os.replace(partial, archive)
    repo_digests = image.attrs.get("RepoDigests") or []
    manifest = {
        "schema": SCHEMA, "tag": tag, "image_id": image.id, "platform": platform,
        "framework": framework, "matrix_hash": matrix.entry_hash(platform, framework),
        "digest": repo_digests[0] if repo_digests else "", "repo_digests": repo_digests,
        "labels": image.labels or {},
        "archive": {"name": archive.name, "sha256": hashing.sha256.hexdigest(),
                    "size": hashing.size, "format": "docker save, gzip"},
        "saved": datetime.now(UTC).isoformat(timespec="seconds")}
    sidecar_of(archive).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return archive


def save_task(out: Path, platform: str, framework: str, console: Console) -> list[Path]:
    matrix, client, selection = selected_images(platform, framework)
    written = []
    for chosen_platform, chosen in selection:
        archive = save_image(client, matrix, chosen_platform, chosen, out, console)
        size = archive.stat().st_size / 1e6
        console.print(f"saved {matrix.tag(chosen_platform, chosen)}: {archive} ({size:.0f} MB) "
                      f"and {sidecar_of(archive).name}")
        written.append(archive)
    return written


def read_sidecar(archive: Path) -> dict[str, Any]:
    sidecar = sidecar_of(archive)
    try:
        manifest = json.loads(sidecar.read_text())
    except FileNotFoundError:
        raise UserError(f"{archive.name}: its manifest {sidecar.name} is missing; copy both "
                        "files that `invoke save` wrote") from None
    except (OSError, ValueError) as error:
        raise UserError(f"{sidecar}: unreadable manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise UserError(f"{sidecar}: not an `invoke save` manifest of schema {SCHEMA}")
    return manifest


def check_archive(archive: Path, manifest: dict[str, Any], matrix: Matrix) -> None:
    """Refuse a damaged copy, or an image this checkout's matrix does not describe."""
    recorded = manifest.get("archive") or {}
    sha256, size = file_sha256(archive)
    if sha256 != recorded.get("sha256") or size != recorded.get("size"):
        raise UserError(f"{archive.name} is damaged or altered: sha256 {sha256[:16]}… "
                        f"({size} bytes), its manifest says {str(recorded.get('sha256'))[:16]}… "
                        f"({recorded.get('size')} bytes); copy it again")
    platform, framework = manifest.get("platform", ""), manifest.get("framework", "")
    if not matrix.framework_supported(platform, framework):
        valid = ", ".join(f"{p}/{f}" for p, f in matrix.selection())
        raise UserError(f"{archive.name} holds {platform}/{framework}, which "
                        f"containers/matrix.toml does not pin (valid: {valid})")
    wanted = matrix.entry_hash(platform, framework)
    if manifest.get("matrix_hash") != wanted:
        raise UserError(f"{archive.name} was built from matrix entry "
                        f"{manifest.get('matrix_hash')}, but containers/matrix.toml gives "
                        f"{platform}/{framework} {wanted}: save it from a checkout of the same "
                        "matrix")
    labels = manifest.get("labels") or {}
    wrong = [key for key, value in expected_labels(matrix, platform, framework).items()
             if labels.get(key) != value]
    if wrong:
        key = wrong[0]
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        raise UserError(f"{archive.name}: label {key} is {labels.get(key, 'missing')} but the "
                        f"matrix gives {expected_labels(matrix, platform, framework)[key]}{more}")


def load_archive(client: Any, archive: Path, console: Console) -> str:
    """Check, then load one archive; the local tag it restored."""
    from docker.errors import APIError

    if not archive.is_file():
        raise UserError(f"{archive}: no such archive (`invoke save` writes *{SUFFIX})")
    manifest = read_sidecar(archive)
    matrix = load()
    with console.status(f"checking {archive.name}"):
        check_archive(archive, manifest, matrix)
    tag = matrix.tag(manifest["platform"], manifest["framework"])
    with console.status(f"loading {archive.name}"), archive.open("rb") as handle:
        try:
            loaded = client.images.load(handle)  # the engine reads gzip itself
        except APIError as error:
            raise UserError(f"the engine could not load {archive.name}: "
                            f"{' '.join(str(error).split())}") from None
    ids = {image.id for image in loaded}
    if manifest["image_id"] not in ids:
        for image in loaded:  # do not leave the matrix's tag on an image nobody checked
            if tag in image.tags:
                client.images.remove(tag, noprune=True)
        raise UserError(f"{archive.name} loaded as {', '.join(sorted(ids)) or 'nothing'}, not "
                        f"the saved image {manifest['image_id']}; its manifest is wrong")
    client.images.get(manifest["image_id"]).tag(*tag.rsplit(":", 1))
    return tag


def load_task(archives: list[Path], console: Console) -> list[str]:
    client = connect()
    done = []
    for archive in archives:
        tag = load_archive(client, archive, console)
        done.append(f"loaded {archive.name} as {tag}")
        console.print(done[-1])
    return done
