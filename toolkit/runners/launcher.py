"""Start one job and report the kernel's accounting of it.

Usage: python -S launcher.py TIMEOUT_S REPORT.json [CPU,CPU...] -- PROGRAM ARGS...

Why a launcher: Linux carries a parent's RSS high-water mark into a forked child's ru_maxrss, so a
job forked straight from the host process (polars, rich, pydantic: ~150 MB) would report at least
the host's size. This script runs with `-S` and the standard library only, so the jobs it forks
start from its few MB. It kills the job at the timeout, and on SIGTERM (the host's Ctrl-C path).
Given a CPU list, the job is pinned to those CPUs, as the Docker runner's --cpuset pins a container.
"""
import json
import os
import signal
import sys


def main(argv):
    timeout, report_path = float(argv[0]), argv[1]
    separator = argv.index("--")
    cpus = [int(cpu) for cpu in argv[2].split(",")] if separator == 3 else []
    program = argv[separator + 1:]
    child = os.fork()
    if child == 0:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if cpus:
            os.sched_setaffinity(0, cpus)
        os.execv(program[0], program)
    timed_out = []

    def on_timeout(signum, frame):
        timed_out.append(True)
        os.kill(child, signal.SIGKILL)

    signal.signal(signal.SIGALRM, on_timeout)
    signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(child, signal.SIGKILL))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the job gets the terminal's Ctrl-C itself
    signal.setitimer(signal.ITIMER_REAL, timeout)
    _, status, usage = os.wait4(child, 0)
    signal.setitimer(signal.ITIMER_REAL, 0)
    report = {"exit_code": os.waitstatus_to_exitcode(status), "timed_out": bool(timed_out),
              "maxrss_kib": usage.ru_maxrss}
    with open(report_path, "w") as handle:
        json.dump(report, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
