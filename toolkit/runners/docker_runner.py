"""Docker runner: each job in a fresh container of its framework's image, no network.

Paths under the results root are mounted at /results (read-write) and the data directory at
/data (read-only); the job file is rewritten with the container's paths. Runtime memory comes
from the container's cgroup (recorded by the job itself, see toolkit/device/job.py), beside the
in-process peak RSS. A container killed by the OOM killer or the timeout is a failed result with
its exit status and the tail of its log.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from toolkit.device.errors import UserError
from toolkit.runners.base import JobOutcome, read_result, tail

RESULTS_MOUNT = "/results"
DATA_MOUNT = "/data"


def docker_client(base_url: str | None = None, timeout: int = 10):  # -> docker.DockerClient
    """A client that answers, or a UserError saying how to get one."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.DockerClient(base_url=base_url, timeout=timeout) if base_url \
            else docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as error:
        where = base_url or os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise UserError(f"no Docker engine answers at {where} ({type(error).__name__}); start "
                        "one (see README) or use --runner host") from None
    return client


class DockerRunner:
    """Runs jobs in containers; `image_for(framework)` names the image of a framework."""

    name = "docker"

    def __init__(self, client: Any, image_for: Callable[[str], str], results_root: Path,
                 data_dir: Path | None = None, cpuset: str | None = None,
                 memory_limit: str | None = None, gpus: bool = False,
                 nvidia_runtime: bool = False) -> None:
        self.client = client
        self.image_for = image_for
        self.results_root = results_root.resolve()
        self.results_root.mkdir(parents=True, exist_ok=True)
        # The image's non-root user must reach the files below the mount point.
        self.results_root.chmod(self.results_root.stat().st_mode | 0o711)
        self.data_dir = data_dir
        self.cpuset = cpuset
        self.memory_limit = memory_limit
        self.gpus = gpus
        self.nvidia_runtime = nvidia_runtime

    def describe(self) -> dict[str, Any]:
        version = self.client.version()
        return {"runner": self.name, "engine": version.get("Version"),
                "api": version.get("ApiVersion"), "os": version.get("Os"),
                "arch": version.get("Arch"), "cpuset": self.cpuset,
                "memory_limit": self.memory_limit, "gpus": self.gpus,
                "nvidia_runtime": self.nvidia_runtime}

    def image_identity(self, framework: str) -> dict[str, Any]:
        """Tag, id and repo digest of a framework's image (recorded with every cell)."""
        from docker.errors import ImageNotFound

        try:
            tag = self.image_for(framework)
        except UserError:  # no image of this framework on this platform: the cell says why
            return {"image": "", "image_id": "", "image_digest": ""}
        try:
            image = self.client.images.get(tag)
        except ImageNotFound:  # the cell itself is recorded as not run for this reason
            return {"image": tag, "image_id": "", "image_digest": ""}
        # A pushed image has a registry digest; a local build is identified by its content id.
        digests = image.attrs.get("RepoDigests") or []
        return {"image": tag, "image_id": image.id,
                "image_digest": digests[0] if digests else image.id}

    def _in_container(self, path: str | Path) -> str:
        relative = Path(path).resolve().relative_to(self.results_root)
        return f"{RESULTS_MOUNT}/{relative.as_posix()}"

    def _translate(self, job: dict[str, Any]) -> dict[str, Any]:
        artifacts = {name: self._in_container(path) if isinstance(path, str) and path.startswith(
            str(self.results_root)) else path for name, path in job.get("artifacts", {}).items()}
        return job | {"artifacts": artifacts}

    def _run_options(self) -> dict[str, Any]:
        volumes = {str(self.results_root): {"bind": RESULTS_MOUNT, "mode": "rw"}}
        if self.data_dir is not None:
            volumes[str(self.data_dir.resolve())] = {"bind": DATA_MOUNT, "mode": "ro"}
        options: dict[str, Any] = {
            "volumes": volumes, "network_mode": "none", "detach": True,
            "environment": {"EDGEREPRO_CONTAINER": "1", "PYTHONUNBUFFERED": "1",
                            **({"EDGEREPRO_DATA": DATA_MOUNT} if self.data_dir else {})},
            "cpuset_cpus": self.cpuset, "mem_limit": self.memory_limit,
            # No swap: a cell over its memory limit is OOM-killed, not slowed down.
            "memswap_limit": self.memory_limit,
        }
        if self.nvidia_runtime:  # Jetson: the NVIDIA container runtime mounts the L4T libraries
            options["runtime"] = "nvidia"
        elif self.gpus:
            from docker.types import DeviceRequest

            options["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
        return {key: value for key, value in options.items() if value is not None}

    def run_job(self, job: dict[str, Any], workdir: Path, log_path: Path,
                timeout: float) -> JobOutcome:
        workdir.mkdir(parents=True, exist_ok=True)
        workdir.chmod(0o777)  # the image's non-root user writes its result here
        job_path, result_path = workdir / "job.json", workdir / "result.json"
        job_path.write_text(json.dumps(self._translate(job)))
        result_path.unlink(missing_ok=True)
        framework = job["coords"]["framework"]
        try:
            image = self.image_for(framework)
        except UserError as missing:
            return JobOutcome(result={"status": "not run", "reason": f"no image: {missing}",
                                      "records": []}, exit_code=0, timed_out=False,
                              peak_rss_kernel=None, wall_s=0.0, log_tail="")
        command = ["python3", "-m", "toolkit.device.job", self._in_container(job_path),
                   self._in_container(result_path)]
        from docker.errors import ImageNotFound

        try:
            self.client.images.get(image)  # never pull: images come from `invoke build`
        except ImageNotFound:
            return JobOutcome(result={"status": "not run", "records": [], "reason":
                                      f"image {image} is missing (invoke build)"},
                              exit_code=0, timed_out=False, peak_rss_kernel=None, wall_s=0.0,
                              log_tail="")
        started = time.monotonic()
        container = self.client.containers.run(image, command, **self._run_options())
        timed_out = False
        try:
            try:
                status = container.wait(timeout=timeout)
            except Exception:  # requests' ReadTimeout: the job outlived its time limit
                timed_out = True
                container.kill()
                status = container.wait(timeout=30)
            container.reload()
            state = container.attrs["State"]
            log_path.write_bytes(container.logs(stdout=True, stderr=True))
        except BaseException:
            container.remove(force=True)
            raise
        container.remove(force=True)
        exit_code = int(status.get("StatusCode", state.get("ExitCode", -1)))
        if state.get("OOMKilled"):
            exit_code = -9
        result = read_result(result_path)
        if result is not None and state.get("OOMKilled"):
            result = None  # a result written before the kill is not the cell's whole story
        return JobOutcome(result=result, exit_code=exit_code, timed_out=timed_out,
                          peak_rss_kernel=None, wall_s=time.monotonic() - started,
                          log_tail=tail(log_path), oom_killed=bool(state.get("OOMKilled")))
