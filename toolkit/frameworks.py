"""The frameworks, as the host sees them: a view of the device side's backend declarations
(toolkit/device/backends/<framework>/__init__.py), so a framework is declared once.

What the spec accepts, what the matrix must build an image for, what the host runner needs
installed, which cells need the ONNX export and what the CLI's help lists all read from here.
Adding a framework: docs/adding-a-framework.md (one backend folder and its matrix entries).
"""
from __future__ import annotations

from dataclasses import dataclass

from toolkit.device import backends


@dataclass(frozen=True)
class Framework:
    name: str
    # Python distributions the host runner imports for this framework's cells (checked by
    # `invoke build` before it relies on the host; the Docker runner needs none of them).
    host_packages: tuple[str, ...]
    # Its cells run the model's ONNX export, which the host prepares first.
    reads_onnx: bool
    # Job kinds its device code runs ("training", "inference", preparation jobs).
    jobs: tuple[str, ...]


FRAMEWORKS: dict[str, Framework] = {
    name: Framework(name, tuple(b.host_packages), bool(b.reads_onnx), tuple(b.jobs))
    for name, b in backends.registered().items()}
NAMES: tuple[str, ...] = tuple(FRAMEWORKS)


def host_packages() -> tuple[str, ...]:
    """Every distribution the host runner needs, each once, in declaration order."""
    return tuple(dict.fromkeys(p for f in FRAMEWORKS.values() for p in f.host_packages))


def reads_onnx(name: str) -> bool:
    return FRAMEWORKS[name].reads_onnx if name in FRAMEWORKS else False


def listed() -> str:
    """"pytorch, onnxruntime, ...": for help texts and error messages."""
    return ", ".join(NAMES)
