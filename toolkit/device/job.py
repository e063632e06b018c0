"""Entry point of every device-side job: `python -m toolkit.device.job JOB.json RESULT.json`.

A job is one measured cell (or one preparation step such as an ONNX export) in a fresh process,
so its peak memory is its own. The result JSON is written atomically; the exit code is 0 whenever a
result was written, including "not run" and "failed" outcomes the host should record.
"""
import importlib
import json
import os
import platform
import sys
import time
import traceback

from toolkit.device import backends
from toolkit.device.measure import memory
from toolkit.device.results import NotRun

# Jobs that need no framework, only numpy or the interpreter, so they run in every image:
# (kind, coords["framework"]) -> "module:function". Frameworks' jobs: toolkit/device/backends.
_FRAMEWORK_FREE = {
    ("peak", "numpy"): "toolkit.device.training.peak:run_numpy",
    ("export_dataset", "numpy"): "toolkit.device.dataset_export:export_dataset",
    ("selftest", "python"): "toolkit.device.selftest:run",
}


def _handler(job):
    # type: (Dict[str, Any]) -> Callable[[Dict[str, Any]], Dict[str, Any]]
    kind, framework = job["kind"], job["coords"]["framework"]
    target = _FRAMEWORK_FREE.get((kind, framework)) or backends.target(kind, framework)
    if target is None:
        runs = sorted(name for name, backend in backends.registered().items()
                      if kind in backend.jobs)
        runs += sorted(f for k, f in _FRAMEWORK_FREE if k == kind)
        if not runs:
            raise NotRun("unknown job kind '{}'".format(kind))
        raise NotRun("no {} backend for framework '{}' (available: {})".format(
            kind, framework, ", ".join(runs)))
    module_name, function = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise NotRun("{} is not installed here ({})".format(framework, error)) from None
    return getattr(module, function)


def execute(job):
    # type: (Dict[str, Any]) -> Dict[str, Any]
    """Run one job and turn every outcome into a result dict."""
    started = time.time()
    try:
        result = _handler(job)(job)
        result["status"] = "invalid" if result.get("invalid") else "ok"
        result["reason"] = result.pop("invalid", None) or ""
    except NotRun as reason:
        result = {"status": "not run", "reason": str(reason)}
    except Exception as error:  # noqa: BLE001 - a crashing cell is a recorded result
        traceback.print_exc()
        result = {"status": "failed", "reason": "{}: {}".format(type(error).__name__, error)}
    result.setdefault("records", [])
    if os.environ.get("EDGEREPRO_CONTAINER") and result["status"] in ("ok", "invalid"):
        # Alone in its container, the job's cgroup peak is the container's runtime memory.
        peak = memory.cgroup_peak_bytes()
        if peak is not None:
            result["records"].append(("cgroup_memory_peak", float(peak), "B"))
    result.setdefault("versions", {})
    result["versions"]["python"] = platform.python_version()
    result["job_seconds"] = time.time() - started
    result["started_epoch"] = started  # what launch overhead is measured to (invoke bench)
    return result


def write_atomically(path, payload):
    # type: (str, Dict[str, Any]) -> None
    tmp = "{}.tmp.{}".format(path, os.getpid())
    with open(tmp, "w") as handle:
        json.dump(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def main(argv):
    # type: (list) -> int
    if len(argv) != 2:
        sys.stderr.write("usage: python -m toolkit.device.job JOB.json RESULT.json\n")
        return 2
    with open(argv[0]) as handle:
        job = json.load(handle)
    write_atomically(argv[1], execute(job))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
