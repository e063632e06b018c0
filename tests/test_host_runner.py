"""The host runner against real child processes: results, crashes, timeouts, kernel memory."""
import os
import re
from pathlib import Path

import pytest

from toolkit.errors import UserError
from toolkit.results import record_values
from toolkit.runners.base import parse_cpuset
from toolkit.runners.host import HostRunner


def _selftest(tmp_path: Path, timeout: float = 60, **settings):
    job = {"kind": "selftest", "coords": {"framework": "python"}, "settings": settings}
    return HostRunner().run_job(job, tmp_path / "job", tmp_path / "job.log", timeout=timeout)


def test_result_and_peak_rss_from_the_kernel(tmp_path):
    small = _selftest(tmp_path, allocate_mib=0)
    big = _selftest(tmp_path, allocate_mib=200)
    assert small.result["status"] == "ok" and big.result["status"] == "ok"
    # The launcher keeps the host's own size out of the child's ru_maxrss.
    assert small.peak_rss_kernel < 100 * 2**20
    assert big.peak_rss_kernel - small.peak_rss_kernel > 190 * 2**20


def test_exception_is_a_failed_result_with_the_reason(tmp_path):
    outcome = _selftest(tmp_path, **{"raise": "boom"})
    assert outcome.result["status"] == "failed"
    assert outcome.result["reason"] == "RuntimeError: boom"
    assert "Traceback" in outcome.log_tail


def test_crash_and_timeout_leave_no_result_and_say_why(tmp_path):
    crashed = _selftest(tmp_path, crash=3)
    assert crashed.result is None and crashed.exit_code == 3
    assert crashed.failure_reason().startswith("exit code 3")
    slow = _selftest(tmp_path, timeout=0.5, sleep_s=30)
    assert slow.result is None and slow.timed_out and slow.wall_s < 10
    assert slow.failure_reason() == f"timed out after {slow.wall_s:.0f} s"


def test_unknown_framework_is_not_run(tmp_path):
    job = {"kind": "inference", "coords": {"framework": "caffe"}, "settings": {}}
    outcome = HostRunner().run_job(job, tmp_path / "j", tmp_path / "j.log", timeout=60)
    assert outcome.result["status"] == "not run"
    assert "no inference backend for framework 'caffe'" in outcome.result["reason"]


def test_a_cpuset_pins_the_job_to_those_cpus(tmp_path):
    job = {"kind": "selftest", "coords": {"framework": "python"}, "settings": {}}
    cpu = max(os.sched_getaffinity(0))
    outcome = HostRunner(cpus=[cpu]).run_job(job, tmp_path / "j", tmp_path / "j.log", 60)
    assert record_values(outcome.result["records"])["allowed_cpus"] == 1


@pytest.mark.parametrize(("text", "message"), [
    ("0-x", "cpuset '0-x' is malformed; write CPUs like 0-1,3"),
    ("4096", "cpuset '4096' names CPUs this machine does not have; valid: "),
])
def test_a_bad_cpuset_is_one_line_naming_it(text, message):
    with pytest.raises(UserError, match=re.escape(message)):
        parse_cpuset(text)


def test_cpuset_ranges_and_lists():
    allowed = sorted(os.sched_getaffinity(0))
    assert parse_cpuset(f"{allowed[0]}-{allowed[-1]}") == allowed
    assert parse_cpuset(f"{allowed[-1]},{allowed[0]}") == sorted({allowed[0], allowed[-1]})


def test_a_running_jobs_progress_can_be_followed(tmp_path):
    """The newest log line reaches the host while the job still runs (long searches and
    training show their epochs in the progress bar)."""
    from toolkit.runners.follow import LogFollower

    seen = []

    def show(line):
        seen.append((line, (tmp_path / "job" / "result.json").exists()))

    with LogFollower(tmp_path / "job.log", show, interval=0.1):
        outcome = _selftest(tmp_path, progress=["epoch 1/2 loss 2.30", "epoch 2/2 loss 1.70"],
                            progress_every_s=1.0)
    assert outcome.result["status"] == "ok"
    assert ("epoch 1/2 loss 2.30", False) in seen and ("epoch 2/2 loss 1.70", False) in seen
    assert [line for line, _ in seen] == ["epoch 1/2 loss 2.30", "epoch 2/2 loss 1.70"]


def test_the_follower_shows_whole_lines_only(tmp_path):
    from toolkit.runners.follow import LogFollower

    log = tmp_path / "job.log"
    follower = LogFollower(log, print)
    assert follower.newest_line() == ""  # no file yet
    log.write_text("first\nsecond\n\npart")
    assert follower.newest_line() == "second"
    assert follower.newest_line() == ""  # nothing new
    with log.open("a") as handle:
        handle.write("ial line\n")
    assert follower.newest_line() == "partial line"
    log.write_text("rewritten\n")  # a runner copying a whole log anew
    assert follower.newest_line() == "rewritten"
