"""Building one image per (platform, framework) through docker-py's low-level API.

The Dockerfile is rendered from containers/<framework>/; the build context is assembled here, so
the wheelhouse reaches the build stage only and unchanged input gives byte-identical context for
the layer cache. An image whose inputs (context, labels, base) are unchanged is not built again
at all; every image is smoke-tested (smoke.py) before it counts as built.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from rich.console import Console
from rich.text import Text

from toolkit.errors import UserError
from toolkit.images import bases, wheels
from toolkit.images.engine import connect, default_platform, engine_or_none, find_image
from toolkit.images.matrix import CONTAINERS, Matrix, load
from toolkit.images.naming import LABEL, MANIFEST, UID, device_files, expected, labels
from toolkit.images.smoke import smoke_ledger, smoke_test

SITE, LIB = "/opt/edgerepro/site", "/opt/edgerepro/lib"
# Build stage only: the tools that build sdists, the wheels built from them, a source checkout.
BUILD_TOOLS, BUILT, SOURCE = "/tmp/build/tools", "/tmp/build/built", "/tmp/build/src"


# -- the Dockerfile ------------------------------------------------------------------------------

def _label_value(value: str) -> str:
    """A double-quoted Dockerfile LABEL value."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(matrix: Matrix, platform: str, framework: str, pip_wheel: str = "",
           ca_bundle: bool = False, image_labels: dict[str, str] | None = None) -> str:
    """The Dockerfile of one image, from containers/<framework>/Dockerfile.j2."""
    chosen = matrix.platform(platform)
    pip_wheel = pip_wheel or f"pip-{chosen.pip}-py3-none-any.whl"
    environment = Environment(loader=FileSystemLoader(str(CONTAINERS)), undefined=StrictUndefined,
                              keep_trailing_newline=True)
    environment.filters["label"] = _label_value
    template = environment.get_template(f"{framework}/Dockerfile.j2")
    return template.render(
        platform=platform, framework=framework, entry_hash=matrix.entry_hash(platform, framework),
        base_ref=matrix.base_of(platform, framework).ref, pip_wheel=pip_wheel,
        ca_bundle=ca_bundle, site=SITE, lib=LIB, manifest=MANIFEST, uid=UID,
        pip_install=" ".join(wheels.install_arguments(wheels.BUILD_WHEELHOUSE, SITE)),
        sdists=[f"{s.package}=={s.version}" for s in matrix.framework(platform, framework).sdists],
        pip_build_tools=" ".join(wheels.install_arguments(
            wheels.BUILD_WHEELHOUSE, BUILD_TOOLS, wheels.BUILD_REQUIREMENTS)),
        pip_sdists=" ".join(wheels.sdist_build_arguments(wheels.BUILD_WHEELHOUSE, BUILT)),
        build_tools=BUILD_TOOLS, built=BUILT,
        source=source_build_commands(matrix, platform, framework),
        nvidia_runtime=chosen.nvidia_runtime,
        labels=image_labels if image_labels is not None else labels(matrix, platform, framework))


def source_build_commands(matrix: Matrix, platform: str, framework: str,
                          ) -> dict[str, str] | None:
    """Shell words of a framework's source build (matrix `source`), each argument quoted, or
    None: the clone pinned by commit, the fixes, the build script and the built wheel."""
    import shlex

    build = matrix.framework(platform, framework).source
    if build is None:
        return None
    fixes = [f"sed -i {shlex.quote(expression)} {shlex.quote(f'{SOURCE}/{path}')}"
             for path, expressions in build.fixes.items() for expression in expressions]
    return {
        "clone": f"git clone --recursive --branch {shlex.quote(build.tag)} "
                 f"{shlex.quote(build.repository)} {SOURCE}",
        "check": f'test "$(git -C {SOURCE} rev-parse HEAD)" = {build.commit}',
        "fixes": " && ".join(fixes),
        "build": " ".join(shlex.quote(word) for word in [f"{SOURCE}/{build.script}",
                                                          *build.build]),
        "wheel": f"{SOURCE}/{build.wheel_dir}/*.whl",
    }


# -- the build context ---------------------------------------------------------------------------

@dataclass
class Context:
    """The build context: archive name -> bytes or a file; `digest` keys the no-op rebuild."""

    members: dict[str, bytes | Path]
    known_hashes: dict[str, str]  # archive name -> sha256 already verified (the wheels)

    @property
    def digest(self) -> str:
        summary = hashlib.sha256()
        for name in sorted(self.members):
            member = self.members[name]
            if name in self.known_hashes:
                content = self.known_hashes[name]
            else:
                data = member if isinstance(member, bytes) else member.read_bytes()
                content = hashlib.sha256(data).hexdigest()
            summary.update(f"{name}\0{content}\n".encode())
        return summary.hexdigest()

    def write(self, handle: Any) -> None:
        """A tar with fixed owners, modes and times, so unchanged input hits the layer cache."""
        with tarfile.open(fileobj=handle, mode="w") as archive:
            for name in sorted(self.members):
                member = self.members[name]
                info = tarfile.TarInfo(name)
                info.mtime, info.uid, info.gid, info.mode = 0, 0, 0, 0o644
                if isinstance(member, bytes):
                    info.size = len(member)
                    archive.addfile(info, io.BytesIO(member))
                else:
                    info.size = member.stat().st_size
                    with member.open("rb") as data:
                        archive.addfile(info, data)


def build_context(matrix: Matrix, platform: str, framework: str, base_id: str,
                  image_labels: dict[str, str], ca_bundle: Path | None = None,
                  wheel_root: Path = wheels.WHEELHOUSE) -> Context:
    folder = wheels.directory(platform, wheel_root)
    hashes = wheels.record_hashes(matrix, platform, framework, folder)  # verifies every file
    wheel_files = wheels.files(matrix, platform, framework, folder)
    pip_wheel = next(p.name for p in wheel_files if wheels.parse_wheel(p.name)[0] == "pip")
    members: dict[str, bytes | Path] = {
        "Dockerfile": render(matrix, platform, framework, pip_wheel, ca_bundle is not None,
                             image_labels).encode(),
        "build/wheelhouse/requirements.txt":
            wheels.requirements(matrix, platform, framework, folder).encode(),
        "build/expected.json": json.dumps(expected(matrix, platform, framework, base_id),
                                          indent=1, sort_keys=True).encode()}
    if matrix.framework(platform, framework).sdists:
        members[f"build/wheelhouse/{wheels.BUILD_REQUIREMENTS}"] = wheels.requirements(
            matrix, platform, framework, folder, build_tools=True).encode()
        members[f"build/wheelhouse/{wheels.SDISTS}"] = wheels.sdist_requirements(
            matrix, platform, framework, folder).encode()
        wheel_files += wheels.sdist_files(matrix, platform, framework, folder)
    known = {}
    for path in wheel_files:
        members[f"build/wheelhouse/{path.name}"] = path
        known[f"build/wheelhouse/{path.name}"] = hashes[path.name]
    if ca_bundle is not None:
        members["build/ca.crt"] = ca_bundle.read_bytes()
    members.update(device_files())
    return Context(members, known)


# -- build ---------------------------------------------------------------------------------------

@dataclass
class Built:
    tag: str
    image_id: str
    built: bool  # False: the image was already up to date
    seconds: float
    smoke: str  # what the smoke test found, or why it was skipped


def build_image(client: Any, matrix: Matrix, platform: str, framework: str, console: Console,
                ca_bundle: Path | None = None, wheel_root: Path = wheels.WHEELHOUSE) -> Built:
    """Build (or find up to date) one image, then smoke-test it."""
    started = time.monotonic()
    tag = matrix.tag(platform, framework)
    base = bases.ensure(client, matrix, platform, framework, console)
    problem = bases.emulation_ready(matrix.platform(platform).arch)
    if problem:
        raise UserError(f"{platform} images need emulation here: {problem}")
    base_id = client.images.get(base.ref).id
    wheels.fill(matrix, platform, framework, console, wheel_root, verify_later=True)
    wanted = labels(matrix, platform, framework, base_id)
    # Unchanged input (context, labels, base) means nothing to build, not even a new label. The
    # git revision is left out of the key: a commit elsewhere in the tree (or another person's
    # uncommitted edit) does not change what is in the image; the label keeps the revision the
    # image was built at.
    revision = "org.opencontainers.image.revision"
    key = build_context(matrix, platform, framework, base_id, wanted | {revision: ""},
                        ca_bundle, wheel_root).digest[:16]
    existing = find_image(client, tag)
    current = (existing.labels or {}) if existing is not None else {}
    fresh = current.get(f"{LABEL}.build-key") != key
    if fresh:
        wanted |= {f"{LABEL}.build-key": key, "org.opencontainers.image.created":
                   datetime.now(UTC).isoformat(timespec="seconds")}
        context = build_context(matrix, platform, framework, base_id, wanted, ca_bundle,
                                wheel_root)
        _run_build(client, context, tag, console)
    else:
        console.print(f"{tag}: up to date")
    image_id = client.images.get(tag).id
    passed = smoke_ledger(wheel_root)
    if image_id in passed:  # image ids are content hashes: a pass holds for good
        return Built(tag, image_id, fresh, time.monotonic() - started, passed[image_id])
    try:
        smoke = smoke_test(client, matrix, platform, framework, tag)
    except UserError:
        client.images.remove(tag)  # a build whose versions are wrong leaves no usable tag
        raise
    if smoke.startswith("passed"):
        smoke_ledger(wheel_root, {image_id: smoke + " (earlier, same image id)"})
    return Built(tag, image_id, fresh, time.monotonic() - started, smoke)


def _run_build(client: Any, context: Context, tag: str, console: Console) -> None:
    """Stream the classic builder's log as progress; its last error becomes one line."""
    step, error = "", ""
    with tempfile.TemporaryFile(dir="/var/tmp") as handle:
        context.write(handle)
        handle.seek(0)
        stream = client.api.build(fileobj=handle, custom_context=True, tag=tag,
                                  network_mode="host", rm=True, forcerm=True, pull=False,
                                  decode=True)
        with console.status(f"building {tag}") as status:
            for chunk in stream:
                if "error" in chunk:
                    error = chunk["error"].strip()
                text = chunk.get("stream", "").rstrip()
                if not text:
                    continue
                if text.startswith("Step "):
                    step = text
                    status.update(f"building {tag}: {text[:100]}")
                    console.print(Text(text, style="bold"))
                else:
                    console.print(Text(f"  {text}", style="dim"))
    if error:
        raise UserError(f"build of {tag} failed at {step or 'the start'}: "
                        f"{error.splitlines()[-1]}")


# -- tasks ---------------------------------------------------------------------------------------

def build_task(platform: str, framework: str, ca_bundle: str, console: Console) -> list[Built]:
    """`invoke build`: without an engine and without --platform, a note and no images."""
    matrix = load()
    selection = matrix.selection(platform or default_platform(), framework)
    ca_path = Path(ca_bundle).expanduser() if ca_bundle else None
    if ca_path is not None and not ca_path.is_file():
        raise UserError(f"--ca-bundle {ca_bundle}: no such file")
    if platform or framework:
        client = connect()
    else:
        client = engine_or_none()
        if client is None:
            console.print("images: skipped, no Docker engine answers (`run` uses the host "
                          "runner; `invoke doctor` says how to get an engine)")
            return []
    done = []
    for chosen_platform, chosen in selection:
        built = build_image(client, matrix, chosen_platform, chosen, console, ca_path)
        size = client.images.get(built.tag).attrs["Size"] / 1e6
        verb = "built" if built.built else "up to date"
        console.print(f"{built.tag}: {verb} in {built.seconds:.1f} s, {size:.0f} MB; smoke "
                      f"test {built.smoke}")
        done.append(built)
    return done


def base_task(platform: str, force: bool, console: Console) -> None:
    """`invoke base`: bootstrap the platform's Debian base unless it is present (or forced)."""
    matrix = load()
    base = matrix.platform(platform).base
    if base.bootstrap is None:
        raise UserError(f"{platform} may not use a bootstrapped base ({base.ref} comes from a "
                        "registry); `docker load` it from a machine that has it")
    client = connect()
    present = find_image(client, base.ref)
    if present is not None and not force:
        console.print(f"base {base.ref}: present ({present.short_id}); "
                      "--force bootstraps it again")
        return
    bases.bootstrap(client, matrix, platform, console)
