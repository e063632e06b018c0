"""Bench result files: what machine and versions produced them, and two files compared.

A bench file is {"format", "machine", "figures"}: the machine (CPU model, the vector-ISA flags
that decide which kernels run, cores, RAM), the package versions and the git commit, then each
benchmark's figures. `compare` divides every numeric figure of B by A's, so a slowdown between
two commits on one machine shows as a ratio; files from different machines are compared with a
warning, since the ratio then mixes machine and code; a benchmark that failed (its entry holds
"failed": the reason, no figures) is named in a warning. Files written before the format existed
(a bare {benchmark: figures} mapping) are read as figures with an unknown machine.
"""
from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.errors import UserError

FORMAT = "edgerepro.bench/2"
# cpuinfo flags that change which kernels the frameworks pick (x86 "flags", ARM "Features").
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
             "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "asimdhp", "asimddp",
             "sve", "bf16", "i8mm")
# Machine fields that make two bench files incomparable as "the same machine".
SAME_MACHINE = ("cpu", "machine", "cores_usable")


def machine_record(repo: Path) -> dict[str, Any]:
    """The machine and software a bench ran on (read from /proc and the environment)."""
    from toolkit.environment import describe_host

    host = describe_host(repo)
    cpuinfo = _read("/proc/cpuinfo")
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return {
        "cpu": host["cpu"], "machine": platform.machine(), "cores": os.cpu_count(),
        "cores_usable": host["cores_usable"], "ram_bytes": host["ram_bytes"],
        "isa": [flag for flag in ISA_FLAGS if flag in flags],
        "versions": {"python": host["python"], **host["packages"]},
        "git": host["git"],
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def write(path: Path, figures: dict[str, Any], machine: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "machine": machine, "figures": figures}
    path.write_text(json.dumps(payload, indent=1, sort_keys=True))


def read(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(machine, figures) of a bench file, either format."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read bench file {path}: {error}") from None
    if payload.get("format") == FORMAT:
        return payload["machine"], payload["figures"]
    return {}, payload  # written before the format: figures only


def resolve(name: str, bench_dir: Path) -> Path:
    """A bench file given as a path or as its stamp under results/bench (e.g. 20261124-212628)."""
    for candidate in (Path(name), bench_dir / name, bench_dir / f"{name}.json"):
        if candidate.is_file():
            return candidate
    held = sorted(p.stem for p in bench_dir.glob("*.json")) if bench_dir.is_dir() else []
    raise UserError(f"no bench file '{name}'; give a path or one of: "
                    f"{', '.join(held) or '(none in ' + str(bench_dir) + ')'}")


def pair(argument: str, bench_dir: Path) -> tuple[Path, Path]:
    """The two files of `--compare A,B`."""
    names = [part.strip() for part in argument.split(",") if part.strip()]
    if len(names) != 2:
        raise UserError(f"--compare needs two bench files A,B, got '{argument}'")
    return resolve(names[0], bench_dir), resolve(names[1], bench_dir)


@dataclass(frozen=True)
class FigureRatio:
    benchmark: str
    figure: str
    a: float
    b: float

    @property
    def ratio(self) -> float | None:
        return None if self.a == 0 else self.b / self.a


def compare(a: Path, b: Path) -> tuple[list[FigureRatio], list[str]]:
    """Every numeric figure both files have, B over A, and warnings (machines that differ)."""
    machine_a, figures_a = read(a)
    machine_b, figures_b = read(b)
    warnings = []
    if not machine_a or not machine_b:
        warnings.append("a file records no machine (written before bench files did): the "
                        "ratios may compare two machines")
    else:
        differ = [f"{key} {machine_a.get(key)!r} vs {machine_b.get(key)!r}"
                  for key in SAME_MACHINE if machine_a.get(key) != machine_b.get(key)]
        if differ:
            warnings.append("different machines (" + "; ".join(differ) + "): the ratios mix "
                            "machine and code")
    rows = []
    for benchmark in sorted(set(figures_a) & set(figures_b)):
        fa, fb = figures_a[benchmark], figures_b[benchmark]
        for label, figures in (("A", fa), ("B", fb)):
            if "failed" in figures:  # no figures to compare: say why the rows are missing
                warnings.append(f"{benchmark} failed in {label}: {figures['failed']}")
        for figure in sorted(set(fa) & set(fb)):
            va, vb = fa[figure], fb[figure]
            if isinstance(va, int | float) and isinstance(vb, int | float) \
                    and not isinstance(va, bool) and not isinstance(vb, bool):
                rows.append(FigureRatio(benchmark, figure, float(va), float(vb)))
    return rows, warnings
