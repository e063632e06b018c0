"""The frameworks, declared once: what the spec accepts, what the matrix must build an image
for, what the host runner needs installed, and what the CLI's help lists all read from here.

Adding a framework: one `Framework` entry here, its images in containers/matrix.toml, and its
device-side job handlers in toolkit/device/job.py (docs/adding-an-experiment.md shows a handler).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Framework:
    name: str
    # Python distributions the host runner imports for this framework's cells (checked by
    # `invoke build` before it relies on the host; the Docker runner needs none of them).
    host_packages: tuple[str, ...]
    # Experiment kinds with a device-side backend for this framework.
    kinds: tuple[str, ...]
    gpu_only: bool = False


FRAMEWORKS: dict[str, Framework] = {f.name: f for f in (
    Framework("pytorch", ("torch",), ("training",)),
    # ONNX Runtime runs the exported models; onnx writes them (exports run with torch).
    Framework("onnxruntime", ("onnxruntime-training-cpu", "onnx"), ("inference",)),
    # The CPU training build also serves inference on the host.
    Framework("onnxruntime-training", ("onnxruntime-training-cpu",), ("training",)),
    Framework("tensorrt", (), ("inference", "training"), gpu_only=True),
)}
NAMES: tuple[str, ...] = tuple(FRAMEWORKS)


def host_packages() -> tuple[str, ...]:
    """Every distribution the host runner needs, each once, in declaration order."""
    return tuple(dict.fromkeys(p for f in FRAMEWORKS.values() for p in f.host_packages))


def listed() -> str:
    """"pytorch, onnxruntime, ...": for help texts and error messages."""
    return ", ".join(NAMES)
