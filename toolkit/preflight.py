"""Checks of a run's inputs before its first cell: a bad value is one line and exit 2, with
nothing scheduled or recorded (rather than every cell failing with the same long message)."""
from __future__ import annotations

import re
from typing import Any

from toolkit.device.data import verify_cifar
from toolkit.errors import UserError
from toolkit.experiments import kinds
from toolkit.experiments.cells import Cell

CIFAR_SETS = ("cifar10", "cifar100")
# Docker's memory limits: a number with an optional unit b, k, m or g; the engine refuses
# limits under 6 MiB.
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)([bkmg]?)$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30}
MIN_MEMORY = 6 * 2**20
CONTAINER_OPTIONS = {"memory_limit": "--memory", "gpus": "--gpus"}


def check_datasets(cells: list[Cell]) -> list[str]:
    """Every CIFAR set the cells need: present, MD5-intact, of the right shape (one UserError
    naming the first bad one). Returns the sets checked."""
    names = sorted({name for cell in cells if (name := kinds.needs_dataset(cell)) in CIFAR_SETS})
    for name in names:
        verify_cifar(name)
    return names


def memory_bytes(text: str) -> int:
    """A container memory limit ("512m", "2g") in bytes, or a UserError saying what is valid."""
    match = _MEMORY.match(text.strip())
    if not match:
        raise UserError(f"--memory '{text}' is not a size; write a number with b, k, m or g, "
                        "e.g. 512m or 2g")
    value = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if value < MIN_MEMORY:
        raise UserError(f"--memory '{text}' is below Docker's minimum of 6m")
    return value


def check_runner_options(options: dict[str, Any]) -> None:
    """Syntax of the options every runner passes on (cpuset ranges, memory sizes)."""
    cpuset = options.get("cpuset")
    if cpuset and not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", cpuset.replace(" ", "")):
        raise UserError(f"--cpuset '{cpuset}' is malformed; write CPUs like 0-1,3")
    if options.get("memory_limit"):
        memory_bytes(options["memory_limit"])


def container_only_options(options: dict[str, Any]) -> list[str]:
    """The options given that only a container runner can honour."""
    return [flag for key, flag in CONTAINER_OPTIONS.items() if options.get(key)]


def check_gpus(client: Any) -> None:
    """--gpus needs the NVIDIA container runtime on the engine (nvidia-container-toolkit)."""
    runtimes = (client.info() or {}).get("Runtimes") or {}
    if "nvidia" not in runtimes:
        raise UserError("--gpus: the Docker engine has no NVIDIA runtime (runtimes: "
                        f"{', '.join(sorted(runtimes)) or 'none'}); install "
                        "nvidia-container-toolkit and restart the engine (invoke doctor checks "
                        "it), or drop --gpus")
