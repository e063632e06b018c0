"""The machine that measured a run, in the few words a stand-in verdict is labelled with."""
from __future__ import annotations

from typing import Any

# Packages whose version that measured a cell is a row field ("<package>_version"), named
# beside a stand-in verdict.
VERSION_PACKAGES = {"onnxruntime": "ONNX Runtime", "torch": "PyTorch"}


def usable_cores(environment: dict[str, Any]) -> int | None:
    """The cores the run could use (its affinity), else the machine's count."""
    cores = environment.get("cores_usable") or environment.get("cores")
    return int(cores) if cores else None


def machine_in_short(environment: dict[str, Any]) -> str:
    """ISA and usable cores, e.g. "x86_64, 2 cores"."""
    cores = usable_cores(environment)
    return ", ".join([str(environment.get("machine") or "unknown ISA")]
                     + ([f"{cores} cores"] if cores else []))


def describe_machine(environment: dict[str, Any], rows: list[dict[str, Any]] = ()) -> str:
    """The measuring machine in a few words: ISA, CPU, cores, and the ONNX Runtime or PyTorch
    that measured the rows (from the cells, else the host's package)."""
    parts = [str(environment.get("machine") or "unknown ISA")]
    if environment.get("cpu"):
        parts[0] += f" {environment['cpu']}"
    cores = usable_cores(environment)
    if cores:
        parts.append(f"{cores} cores")
    packages = environment.get("packages") or {}
    named = {package: sorted({str(r[f"{package}_version"]) for r in rows
                              if r.get(f"{package}_version")}) for package in VERSION_PACKAGES}
    if not any(named.values()):  # older runs: the host's package of the rows' framework
        package = "torch" if {r.get("framework") for r in rows} == {"pytorch"} else "onnxruntime"
        named[package] = [str(packages[package])] if packages.get(package) else []
    for package, versions in named.items():
        if versions:
            build = f" ({environment.get('machine')} CPU build)" if package == "onnxruntime" else ""
            parts.append(f"{VERSION_PACKAGES[package]} {' and '.join(versions)}{build}")
    return ", ".join(parts)
