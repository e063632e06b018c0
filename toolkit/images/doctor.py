"""`invoke doctor`: is this machine ready to build and run the images? One line per check.

Each check says ok, or what to fix in one line; a missing GPU or NVIDIA runtime is a note
(CPU images still build and run), a missing engine or a full disk is a failure. `invoke build`
also checks here that the host runner's frameworks are installed (`check_host_runner`).
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from toolkit import frameworks
from toolkit.errors import UserError
from toolkit.images import bases
from toolkit.images.engine import engine_or_none

MIN_FREE_GB = 20.0  # the amd64 images, their build cache and a base fit in this
HOST_FRAMEWORKS = frameworks.host_packages()


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok", "note" (optional capability missing) or "fix" (blocks building)
    line: str


def docker_engine() -> Check:
    client = engine_or_none(timeout=5)
    if client is None:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        hint = ("start it: dockerd --bridge=none --iptables=false &" if shutil.which("dockerd")
                else "apt-get install docker.io, then dockerd --bridge=none --iptables=false &")
        return Check("docker", "fix", f"no engine answers at {where}: {hint}")
    version = client.version()
    return Check("docker", "ok", f"engine {version.get('Version')} (API "
                 f"{version.get('ApiVersion')}, {version.get('Arch')})")


def emulation() -> Check:
    problem = bases.emulation_ready("arm64")
    if problem:
        return Check("qemu/binfmt", "note", f"arm64 cross-builds unavailable: {problem}")
    return Check("qemu/binfmt", "ok", "arm64 binaries run through qemu (build-and-smoke only)")


def debootstrap() -> Check:
    if shutil.which("debootstrap") is None:
        return Check("debootstrap", "fix", "missing, needed by `invoke base`: apt-get install "
                     "debootstrap")
    return Check("debootstrap", "ok", "present (`invoke base` can make bases without a registry)")


def nvidia_runtime() -> Check:
    client = engine_or_none(timeout=5)
    info = client.info() if client else {}
    return runtime_check(info.get("Runtimes") or {}, info.get("DefaultRuntime") or "",
                         Path("/etc/nv_tegra_release").exists())


def runtime_check(runtimes: dict[str, object], default: str, jetson: bool) -> Check:
    """The NVIDIA runtime must be registered to run L4T/GPU images; on a Jetson it must also be
    the default runtime, since the classic builder cannot choose one per build and the
    JetPack 4 TensorRT image compiles pycuda against the CUDA that runtime mounts."""
    if "nvidia" not in runtimes:
        return Check("nvidia runtime", "fix" if jetson else "note",
                     "not registered: L4T/GPU images cannot run here (install "
                     "nvidia-container-toolkit and run nvidia-ctk runtime configure)")
    if jetson and default != "nvidia":
        return Check("nvidia runtime", "fix", f"registered, but the default runtime is "
                     f"'{default or 'runc'}': builds see no CUDA (the TensorRT image builds "
                     "pycuda against it); set \"default-runtime\": \"nvidia\" in "
                     "/etc/docker/daemon.json and restart dockerd")
    return Check("nvidia runtime", "ok", "registered with the engine"
                 + (" (the default runtime)" if default == "nvidia" else ""))


def gpu() -> Check:
    if Path("/etc/nv_tegra_release").exists():
        return Check("gpu", "ok", "Jetson (L4T): " + Path("/etc/nv_tegra_release").read_text()
                     .splitlines()[0][:60])
    if Path("/dev/nvidiactl").exists() and shutil.which("nvidia-smi"):
        return Check("gpu", "ok", "NVIDIA GPU and driver present")
    return Check("gpu", "note", "no NVIDIA GPU: CPU cells only (GPU tests are skipped)")


def disk_space(path: Path = Path("/var/lib/docker")) -> Check:
    where = path if path.exists() else Path("/")
    free = shutil.disk_usage(where).free / 1e9
    if free < MIN_FREE_GB:
        return Check("disk", "fix", f"{free:.0f} GB free on {where}: free at least "
                     f"{MIN_FREE_GB:.0f} GB (docker system prune removes old images)")
    return Check("disk", "ok", f"{free:.0f} GB free on {where}")


CHECKS: tuple[Callable[[], Check], ...] = (docker_engine, debootstrap, emulation,
                                           nvidia_runtime, gpu, disk_space)


def report(say: Callable[[str], object]) -> bool:
    """Print one line per check; True when nothing blocks building the CPU images."""
    results = [check() for check in CHECKS]
    for result in results:
        say(f"{result.status:>4}  {result.name}: {result.line}")
    return all(result.status != "fix" for result in results)


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
