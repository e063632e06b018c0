"""A job that misbehaves on purpose (allocate, sleep, crash), to test runners' failure handling,
or reports progress slowly, to test that the host sees a running job's output."""
import sys
import time


def run(job):
    # type: (Dict[str, Any]) -> Dict[str, Any]
    settings = job["settings"]
    for line in settings.get("progress", []):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
        time.sleep(float(settings.get("progress_every_s", 0)))
    hold = bytearray(int(settings.get("allocate_mib", 0)) * 2 ** 20)
    for offset in range(0, len(hold), 4096):  # touch every page so it is resident
        hold[offset] = 1
    time.sleep(float(settings.get("sleep_s", 0)))
    if settings.get("crash"):
        import os

        os._exit(int(settings["crash"]))
    if settings.get("raise"):
        raise RuntimeError(settings["raise"])
    import os

    records = [("allocated", float(len(hold)), "B"),
               ("allowed_cpus", float(len(os.sched_getaffinity(0))), "count")]
    if settings.get("data_file"):  # a file of the data directory the runner gave the job
        path = os.path.join(os.environ["EDGEREPRO_DATA"], settings["data_file"])
        records.append(("data_file_bytes", float(os.path.getsize(path)), "B"))
    return {"records": records}
