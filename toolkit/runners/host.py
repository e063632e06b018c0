"""Host runner: each job in a fresh child process of this Python, started by a small launcher."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from toolkit.runners.base import JobOutcome, read_result, tail

REPO_ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = Path(__file__).with_name("launcher.py")


class HostRunner:
    """Runs jobs on this machine, without isolation beyond a fresh process."""

    name = "host"

    def __init__(self, python: str = sys.executable, cpus: list[int] | None = None) -> None:
        self.python = python
        self.cpus = cpus or []  # pin each job to these CPUs (empty: wherever the kernel puts it)

    def describe(self) -> dict[str, Any]:
        return {"runner": self.name, "python": self.python,
                "cpuset": ",".join(map(str, self.cpus)) or None}

    def run_job(self, job: dict[str, Any], workdir: Path, log_path: Path,
                timeout: float) -> JobOutcome:
        workdir.mkdir(parents=True, exist_ok=True)
        paths = {name: workdir / f"{name}.json" for name in ("job", "result", "launch")}
        paths["job"].write_text(json.dumps(job))
        for name in ("result", "launch"):
            paths[name].unlink(missing_ok=True)
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
        command = [self.python, "-S", str(LAUNCHER), str(timeout), str(paths["launch"]),
                   *([",".join(map(str, self.cpus))] if self.cpus else []), "--",
                   self.python, "-m", "toolkit.device.job", str(paths["job"]),
                   str(paths["result"])]
        started = time.monotonic()
        with log_path.open("w") as log:
            launcher = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env)
            try:
                launcher.wait()
            except BaseException:  # Ctrl-C: the launcher kills the job, then we re-raise
                launcher.terminate()
                launcher.wait()
                raise
        launch = read_result(paths["launch"]) or {"exit_code": launcher.returncode,
                                                   "timed_out": False, "maxrss_kib": 0}
        return JobOutcome(
            result=read_result(paths["result"]), exit_code=launch["exit_code"],
            timed_out=launch["timed_out"], peak_rss_kernel=launch["maxrss_kib"] * 1024,
            wall_s=time.monotonic() - started, log_tail=tail(log_path))
