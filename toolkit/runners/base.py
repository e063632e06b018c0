"""The runner interface: run one device-side job in a fresh process and report how it ended."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class EngineLost(Exception):
    """The runner's engine stopped answering (dockerd ended, a device went away): the run stops
    at once instead of recording every remaining cell as failed; the cell that was running is not
    recorded, so a re-run measures it."""


@dataclass(frozen=True)
class JobOutcome:
    """How a job's process ended, and what it wrote."""

    result: dict[str, Any] | None  # the RESULT.json, None when the process died before writing it
    exit_code: int  # negative: killed by that signal (-9 is also how the OOM killer ends it)
    timed_out: bool
    peak_rss_kernel: int | None  # bytes, from the kernel's accounting of the child (wait4)
    wall_s: float
    log_tail: str
    oom_killed: bool = False  # known for certain only where the runner can tell (containers)

    def failure_reason(self) -> str | None:
        """Why the job produced no result, or None when it did."""
        if self.result is not None:
            return None
        if self.timed_out:
            return f"timed out after {self.wall_s:.0f} s"
        if self.oom_killed:
            return "OOM-killed: over its memory limit"
        if self.exit_code == -9:
            return "killed by SIGKILL (out of memory?)"
        if self.exit_code < 0:
            return f"killed by signal {-self.exit_code}"
        last = self.log_tail.strip().splitlines()[-1:] or ["no output"]
        return f"exit code {self.exit_code}: {last[0]}"


class Runner(Protocol):
    """Where jobs run. The host runner is one; a Docker runner slots in beside it."""

    name: str

    def describe(self) -> dict[str, Any]:
        """What this runner is, for the run manifest."""
        ...

    def run_job(self, job: dict[str, Any], workdir: Path, log_path: Path,
                timeout: float) -> JobOutcome:
        """Run `python -m toolkit.device.job` on `job` in a fresh process."""
        ...


def read_result(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def parse_cpuset(text: str) -> list[int]:
    """CPUs of a cpuset string ("0-1,3"), checked against the CPUs this process may use."""
    from toolkit.errors import UserError

    allowed = sorted(os.sched_getaffinity(0))
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
    except ValueError:
        raise UserError(f"cpuset '{text}' is malformed; write CPUs like 0-1,3 (this machine: "
                        f"{allowed[0]}-{allowed[-1]})") from None
    if not cpus or not cpus <= set(allowed):
        raise UserError(f"cpuset '{text}' names CPUs this machine does not have; valid: "
                        f"{allowed[0]}-{allowed[-1]}")
    return sorted(cpus)


def data_directory() -> Path | None:
    """The directory of local data sets ($EDGEREPRO_DATA, which `invoke run --data` sets): host
    jobs inherit the variable, containers get the directory mounted read-only."""
    from toolkit.device.data import DATA_ENV
    from toolkit.errors import UserError

    value = os.environ.get(DATA_ENV)
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise UserError(f"{DATA_ENV}: no directory '{value}' (the folder holding "
                        "cifar-10-python.tar.gz / cifar-100-python.tar.gz or their extracted "
                        "folders)")
    return path
