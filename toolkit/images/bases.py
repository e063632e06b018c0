"""Base images without a registry: debootstrap a Debian root file system and import it.

Why: the machines this toolkit targets (CI, air-gapped labs) often cannot pull, yet the whole
image chain must build there. The matrix says which platforms may use such a base (a `bootstrap`
table); a registry base that is missing gives one line saying how to get it.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from toolkit.errors import UserError
from toolkit.images.engine import find_image
from toolkit.images.matrix import Base, Matrix

# Debootstrap's foreign-architecture second stage runs through this binfmt handler.
BINFMT = {"arm64": Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")}
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}[os.uname().machine]


def emulation_ready(arch: str) -> str | None:
    """None when `arch` binaries run here, else what to do about it (one line)."""
    if arch == HOST_ARCH:
        return None
    handler = BINFMT.get(arch)
    if handler is None:
        return f"no emulation known for {arch}"
    try:
        enabled = handler.read_text().splitlines()[0].strip() == "enabled"
    except OSError:
        enabled = False
    if not enabled:
        return (f"{arch} binaries cannot run here: apt-get install qemu-user-static "
                "binfmt-support && update-binfmts --enable qemu-aarch64")
    return None


def ensure(client: Any, matrix: Matrix, platform: str, framework: str,
           console: Console) -> Base:
    """The base of this image, bootstrapped first when the matrix allows it and it is missing."""
    base = matrix.base_of(platform, framework)
    if find_image(client, base.ref) is not None:
        return base
    if base.bootstrap is None:
        raise UserError(f"base image {base.ref} is missing and cannot be pulled here; "
                        f"`docker load` it from a machine that has it ({platform} may not use "
                        "a bootstrapped base)")
    bootstrap(client, matrix, platform, console)
    return base


def bootstrap(client: Any, matrix: Matrix, platform: str, console: Console) -> str:
    """debootstrap the platform's base and import it; returns the new image id."""
    chosen = matrix.platform(platform)
    base, arch = chosen.base, chosen.arch
    if base.bootstrap is None:
        raise UserError(f"{platform}'s base {base.ref} is a registry image, not a bootstrapped "
                        "one; `docker load` it instead")
    recipe = base.bootstrap
    if shutil.which("debootstrap") is None:
        raise UserError("debootstrap is missing: apt-get install debootstrap")
    if os.geteuid() != 0:
        raise UserError("debootstrap needs root: run `sudo invoke base`")
    problem = emulation_ready(arch)
    if problem:
        raise UserError(problem)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edgerepro-base-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "root"
        command = ["debootstrap", f"--variant={recipe.variant}", f"--arch={arch}"]
        if recipe.include:
            command.append("--include=" + ",".join(recipe.include))
        command += [recipe.suite, str(root), recipe.mirror]
        console.print(f"base {base.ref}: {' '.join(command)}")
        log = Path(tmp) / "debootstrap.log"
        with log.open("w") as out:
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            last = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"debootstrap of {base.ref} failed: {last[0]}")
        for junk in ("var/lib/apt/lists", "var/cache/apt/archives", "var/log"):
            for item in (root / junk).glob("*"):
                if item.is_file():
                    item.unlink()
        tarball = Path(tmp) / "root.tar"
        subprocess.run(["tar", "-C", str(root), "--numeric-owner", "--sort=name", "-cf",
                        str(tarball), "."], check=True)
        image_id = import_tarball(client, tarball, base, arch, recipe.suite)
    console.print(f"base {base.ref}: imported {image_id[:19]} in "
                  f"{time.monotonic() - started:.0f} s")
    return image_id


def import_tarball(client: Any, tarball: Path, base: Base, arch: str, suite: str) -> str:
    """Load the root file system as a one-layer image whose config names its architecture.

    Not `docker import`: engines up to 20.10 label an imported image with the host's
    architecture whatever platform they are told, and an arm64 base labelled amd64 is refused
    (or emulated) on a real Raspberry Pi. So the image is written in `docker save` format with
    its own config and loaded.
    """
    import hashlib

    digest = hashlib.sha256()
    with tarball.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    diff_id = f"sha256:{digest.hexdigest()}"
    created = "1970-01-01T00:00:00Z"  # the content is what identifies the base; see its labels
    config = {
        "architecture": arch, "os": "linux", "created": created,
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["/bin/bash"],
                   "Labels": {"io.edgerepro.base.suite": suite, "io.edgerepro.base.arch": arch}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": f"debootstrap {suite} ({arch})"}]}
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [f"{base.name}:{base.tag}"],
                            "Layers": ["layer/layer.tar"]}]).encode()
    archive_path = tarball.with_suffix(".image.tar")
    with tarfile.open(archive_path, "w") as archive:
        for name, data in ((config_name, config_bytes), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        archive.add(str(tarball), arcname="layer/layer.tar")
    with archive_path.open("rb") as data:
        for chunk in client.api.load_image(data):
            if isinstance(chunk, dict) and chunk.get("error"):
                raise UserError(f"docker load of {base.ref} failed: {chunk['error']}")
    return client.images.get(base.ref).id
