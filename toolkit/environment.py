"""The host environment of a run: recorded in every run's manifest."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Distributions whose versions change results; recorded when installed.
PACKAGES = ("numpy", "onnxruntime", "onnxruntime-training-cpu", "onnxruntime-training", "onnx",
            "torch", "torchvision", "tensorrt", "pycuda", "polars", "docker", "edgerepro")


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _field(text: str, key: str, separator: str = ":") -> str | None:
    for line in text.splitlines():
        name, _, value = line.partition(separator)
        if name.strip() == key:
            return value.strip().strip('"')
    return None


def _command(args: list[str], cwd: Path | None = None) -> str | None:
    if shutil.which(args[0]) is None:
        return None
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=10, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_state(repo: Path) -> dict[str, Any]:
    commit = _command(["git", "rev-parse", "HEAD"], cwd=repo)
    status = _command(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo)
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def gpu_description() -> dict[str, Any]:
    """NVIDIA GPUs by nvidia-smi, Jetson boards by their L4T release file; empty when none."""
    gpu: dict[str, Any] = {}
    smi = _command(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                    "--format=csv,noheader"])
    if smi:
        gpu["nvidia_smi"] = smi.splitlines()
    tegra = _read("/etc/nv_tegra_release").strip()
    if tegra:
        gpu["l4t_release"] = tegra.splitlines()[0]
        gpu["model"] = _read("/proc/device-tree/model").strip("\x00\n ") or None
    return gpu


# /proc/device-tree/model fragments -> the device types published claims name.
_BOARDS = (("Orin", "jetson-orin"), ("Xavier", "jetson-agx-xavier"), ("TX2", "jetson-tx2"),
           ("Nano", "jetson-nano"), ("Raspberry Pi 4", "raspberry-pi-4"))


L4T_RELEASE = Path("/etc/nv_tegra_release")


def l4t_release(text: str) -> str | None:
    """'r35.4.1' from /etc/nv_tegra_release ("# R35 (release), REVISION: 4.1, ..."), else None."""
    match = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)\.(\d+)", text)
    return f"r{match.group(1)}.{match.group(2)}.{match.group(3)}" if match else None


def local_platform(known: Iterable[str], release_file: Path = L4T_RELEASE) -> str:
    """This machine's platform of the version matrix: its L4T release on a Jetson, else its
    architecture (amd64, arm64). A Jetson whose release the matrix lacks is one line."""
    text = _read(str(release_file))
    release = l4t_release(text) if text else None
    if release is not None:
        name = f"l4t-{release}"
        if name not in known:
            from toolkit.errors import UserError

            raise UserError(f"this Jetson runs L4T {release}, which the version matrix does "
                            f"not pin; valid: {', '.join(p for p in known if p.startswith('l4t'))}"
                            " (flash one of those, or add the release to containers/matrix.toml)")
        return name
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), "amd64")


def device_type() -> str:
    """What the studies call the hardware: a board name, else '<machine>-generic'."""
    model = _read("/proc/device-tree/model").strip("\x00\n ")
    for fragment, name in _BOARDS:
        if fragment in model:
            return name
    return f"{platform.machine()}-generic"


def describe_host(repo: Path) -> dict[str, Any]:
    """OS, kernel, CPU, cores, RAM, GPU, Python, package versions and git state of this host."""
    uname = platform.uname()
    meminfo_kib = _field(_read("/proc/meminfo"), "MemTotal") or "0 kB"
    return {
        "hostname": uname.node,
        "device_type": device_type(),
        "os": _field(_read("/etc/os-release"), "PRETTY_NAME", "=") or platform.platform(),
        "kernel": uname.release,
        "machine": uname.machine,
        "cpu": _field(_read("/proc/cpuinfo"), "model name") or platform.processor(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "ram_bytes": int(meminfo_kib.split()[0]) * 1024,
        "gpu": gpu_description() or "none",
        "python": platform.python_version(),
        "packages": package_versions(),
        "git": git_state(repo),
    }
