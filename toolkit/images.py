"""Per-framework images built from the matrix through docker-py's low-level API.

Long because building, naming, labelling, checking and finding images still share this one
module; they are to move into a package of small modules, one job each.

One image per (platform, framework): the Dockerfile rendered from containers/<framework>/, a
build context assembled here (so the wheelhouse reaches the build stage only, and unchanged input
gives byte-identical context for the layer cache), OCI labels plus every pinned version, and a
smoke test after every build that imports the framework in a container without network and fails
the build when a version differs from the matrix. An image whose inputs are unchanged is not
built again at all.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
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

from toolkit import bases, wheels
from toolkit.device.errors import UserError
from toolkit.matrix import ARCHES, CONTAINERS, Matrix, canonical, load, version_matches

REPO = Path(__file__).resolve().parents[1]
SITE, LIB = "/opt/edgerepro/site", "/opt/edgerepro/lib"
MANIFEST = "/opt/edgerepro/versions.json"  # the version manifest, at a fixed path in every image
# Build stage only: the tools that build sdists, and the wheels built from them.
BUILD_TOOLS, BUILT = "/tmp/build/tools", "/tmp/build/built"
UID = 1000

def default_platform() -> str:
    """The platform `build` and `run` use unless told: this machine's (its L4T release on a
    Jetson, else its architecture), so a Jetson builds and runs its own images."""
    from toolkit.environment import local_platform

    return local_platform(load().platforms)

LABEL = "io.edgerepro"
HOST_FRAMEWORKS = ("onnxruntime-training-cpu", "onnx", "torch")
# Exit statuses of a process killed by a signal inside a container (128 + signal number).
_CRASHES = {132: "SIGILL", 133: "SIGTRAP", 134: "SIGABRT", 135: "SIGBUS", 139: "SIGSEGV"}


# -- engine --------------------------------------------------------------------------------------

def connect(timeout: int = 10) -> Any:
    """A docker.DockerClient that answers, or a UserError saying what to do."""
    client = engine_or_none(timeout)
    if client is None:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise UserError(f"no Docker engine answers at {where}: start one (apt-get install "
                        "docker.io; dockerd --bridge=none --iptables=false &), `invoke doctor` "
                        "checks the rest")
    return client


def engine_or_none(timeout: int = 10) -> Any:
    """A client when an engine answers within `timeout`; its calls then wait up to 10 min
    (committing a 1 GB layer or removing a container on a busy machine takes a while)."""
    import docker
    from docker.errors import DockerException

    try:
        docker.from_env(timeout=timeout).ping()
        return docker.from_env(timeout=600)
    except DockerException:
        return None


def tag_for(framework: str, platform: str = "", matrix: Matrix | None = None) -> str:
    """The image the docker runner uses for a framework (default: this machine's platform)."""
    return (matrix or load()).tag(platform or default_platform(), framework)


# -- what goes in --------------------------------------------------------------------------------

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


SOURCE = "/tmp/build/src"  # build stage only: a framework's source checkout


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


def device_files() -> list[tuple[str, Path]]:
    """The device side of toolkit: all that the image gets of this repository."""
    files = [("app/toolkit/__init__.py", REPO / "toolkit" / "__init__.py")]
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
        found = _existing_labels(client, tag)
        if not found:
            problems.append(f"{tag} is missing")
        elif holds_older_device_code(found):
            problems.append(f"{tag} holds older device code")
    return problems


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
    oci = "org.opencontainers.image"
    result = {f"{oci}.title": f"edgerepro {framework} ({platform})",
              f"{oci}.source": source_url(matrix), f"{oci}.revision": git_revision(),
              f"{oci}.version": str(facts["framework_version"]),
              f"{oci}.base.name": facts["base"]["name"],
              f"{oci}.base.digest": facts["base"]["digest"],
              f"{LABEL}.platform": platform, f"{LABEL}.framework": framework,
              f"{LABEL}.matrix-hash": facts["matrix_hash"],
              f"{LABEL}.device-code": device_code_digest()}
    for key in ("python", "cuda", "cudnn", "tensorrt"):
        result[f"{LABEL}.{key}"] = facts[key]
    result |= {f"{LABEL}.pin.{name}": version for name, version in facts["packages"].items()}
    result |= {f"{LABEL}.provided.{name}": version
               for name, version in facts["provided"].items()}
    return result


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
    current = _existing_labels(client, tag)
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
    passed = _smoke_ledger(wheel_root)
    if image_id in passed:  # image ids are content hashes: a pass holds for good
        return Built(tag, image_id, fresh, time.monotonic() - started, passed[image_id])
    try:
        smoke = smoke_test(client, matrix, platform, framework, tag)
    except UserError:
        client.images.remove(tag)  # a build whose versions are wrong leaves no usable tag
        raise
    if smoke.startswith("passed"):
        _smoke_ledger(wheel_root, {image_id: smoke + " (earlier, same image id)"})
    return Built(tag, image_id, fresh, time.monotonic() - started, smoke)


def _smoke_ledger(root: Path, add: dict[str, str] | None = None) -> dict[str, str]:
    """Image id -> smoke-test verdict, so an up-to-date image is not started again."""
    path = root / "smoke-passed.json"
    try:
        ledger = json.loads(path.read_text())
    except (OSError, ValueError):
        ledger = {}
    if add:
        ledger.update(add)
        root.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(ledger, indent=1, sort_keys=True) + "\n")
    return ledger


def _existing_labels(client: Any, tag: str) -> dict[str, str]:
    from docker.errors import ImageNotFound

    try:
        return client.images.get(tag).labels or {}
    except ImageNotFound:
        return {}


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


# -- smoke test ----------------------------------------------------------------------------------

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


# -- tasks ---------------------------------------------------------------------------------------

def check_host_runner(console: Console, required: bool = True) -> None:
    """The frameworks `run` needs when cells run as host processes."""
    from toolkit.environment import package_versions

    versions = package_versions()
    missing = [name for name in HOST_FRAMEWORKS if name not in versions]
    if missing and required:
        raise UserError(f"host frameworks missing: {', '.join(missing)}; install them with "
                        "pip install -e '.[all]'")
    if missing:
        console.print(f"host runner: {', '.join(missing)} missing (only images are built)")
        return
    console.print("host runner ready: "
                  + ", ".join(f"{name} {versions[name]}" for name in HOST_FRAMEWORKS))


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
    matrix = load()
    base = matrix.platform(platform).base
    if base.bootstrap is None:
        raise UserError(f"{platform} may not use a bootstrapped base ({base.ref} comes from a "
                        "registry); `docker load` it from a machine that has it")
    client = connect()
    if bases.image_present(client, base.ref) and not force:
        console.print(f"base {base.ref}: present ({client.images.get(base.ref).short_id}); "
                      "--force bootstraps it again")
        return
    bases.bootstrap(client, matrix, platform, console)
