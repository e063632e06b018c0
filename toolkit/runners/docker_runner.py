"""Docker runner: each job in a fresh container of its framework's image, no network.

Paths under the results root are mounted at /results (read-write) and the data directory at
/data (read-only); the job file is rewritten with the container's paths. Runtime memory comes
from the container's cgroup (recorded by the job itself, see toolkit/device/job.py), beside the
in-process peak RSS. A container killed by the OOM killer or the timeout is a failed result with
its exit status and the tail of its log.

An engine that stops answering during a job (dockerd ended, a device dropped off the network)
is not a failed cell: the runner raises EngineLost, the run stops and a re-run measures the cell.

An engine on another machine (a fleet device, see toolkit/fleet/) cannot bind-mount this
machine's results directory: with shares_filesystem=False the job file, the artifacts it names and
the data directory are copied into the created container through the Engine API (put_archive)
at the same paths, and the result file is copied back (get_archive) after it exits.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from toolkit.errors import UserError
from toolkit.images.engine import PING_TIMEOUT, address, find_image
from toolkit.runners.base import EngineLost, JobOutcome, data_directory, read_result, tail

RESULTS_MOUNT = "/results"
DATA_MOUNT = "/data"
# Every cell container carries its owner (host and pid of the run), so a run killed without a
# chance to clean up leaves containers the next run on this host can recognise and remove.
OWNER_LABEL = "org.edgerepro.owner"


def _owner() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans(client: Any) -> list[str]:
    """Remove cell containers left by runs of this host whose process no longer exists."""
    host = os.uname().nodename
    removed = []
    for container in client.containers.list(all=True, filters={"label": OWNER_LABEL}):
        owner_host, _, pid = container.labels.get(OWNER_LABEL, "").rpartition(":")
        if owner_host == host and pid.isdigit() and not _pid_alive(int(pid)):
            container.remove(force=True)
            removed.append(container.short_id)
    return removed


def docker_client(base_url: str | None = None, timeout: int = 10):  # -> docker.DockerClient
    """A client that answers, or a UserError saying how to get one."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.DockerClient(base_url=base_url, timeout=timeout) if base_url \
            else docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as error:
        where = base_url or address()
        raise UserError(f"no Docker engine answers at {where} ({type(error).__name__}); start "
                        "one (see README) or use --runner host") from None
    return client


class DockerRunner:
    """Runs jobs in containers; `image_for(framework)` names the image of a framework."""

    name = "docker"

    def __init__(self, client: Any, image_for: Callable[[str], str], results_root: Path,
                 data_dir: Path | None = None, cpuset: str | None = None,
                 memory_limit: str | None = None, gpus: bool = False,
                 nvidia_runtime: bool = False, shares_filesystem: bool = True,
                 engine: str | None = None) -> None:
        self.client = client
        self.engine = engine or address()  # the engine's URL, for the user
        self.image_for = image_for
        self.results_root = results_root.resolve()
        self.results_root.mkdir(parents=True, exist_ok=True)
        # The image's non-root user must reach the files below the mount point.
        self.results_root.chmod(self.results_root.stat().st_mode | 0o711)
        # Data sets the cells read (CIFAR), mounted read-only: by default $EDGEREPRO_DATA's.
        self.data_dir = data_dir if data_dir is not None else data_directory()
        self.cpuset = cpuset
        self.memory_limit = memory_limit
        self.gpus = gpus
        self.nvidia_runtime = nvidia_runtime
        self.shares_filesystem = shares_filesystem
        self.orphans_removed = remove_orphans(client)

    def describe(self) -> dict[str, Any]:
        version = self.client.version()
        return {"runner": self.name, "engine": version.get("Version"),
                "api": version.get("ApiVersion"), "os": version.get("Os"),
                "arch": version.get("Arch"), "cpuset": self.cpuset,
                "memory_limit": self.memory_limit, "gpus": self.gpus,
                "nvidia_runtime": self.nvidia_runtime,
                "files": "bind mounts" if self.shares_filesystem else "Engine API archives"}

    def answers(self) -> bool:
        """Whether the engine answers a ping within PING_TIMEOUT (not the client's own timeout
        of minutes: a device gone from the network must not hold the run that long)."""
        api = self.client.api
        try:
            return api.get(f"{api.base_url}/_ping", timeout=PING_TIMEOUT).ok
        except Exception:  # noqa: BLE001 - any failure to answer is the answer
            return False

    @contextlib.contextmanager
    def _engine_calls(self) -> Iterator[None]:
        """An error of a call to the engine: EngineLost when the engine no longer answers, else
        (a failing cell, a full disk) the error itself."""
        try:
            yield
        except Exception as error:
            if (isinstance(error, OSError) and error.errno == 28) or self.answers():
                raise
            raise EngineLost(f"the Docker engine at {self.engine} stopped answering") from error

    def image_identity(self, framework: str) -> dict[str, Any]:
        """Tag, id and repo digest of a framework's image (recorded with every cell)."""
        try:
            tag = self.image_for(framework)
        except UserError:  # no image of this framework on this platform: the cell says why
            return {"image": "", "image_id": "", "image_digest": ""}
        with self._engine_calls():
            image = find_image(self.client, tag)
        if image is None:  # the cell itself is recorded as not run for this reason
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
            "volumes": volumes if self.shares_filesystem else None, "network_mode": "none",
            "detach": True,
            "labels": {OWNER_LABEL: _owner()},
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
        with self._engine_calls():
            return self._run_job(job, workdir, log_path, timeout)

    def _run_job(self, job: dict[str, Any], workdir: Path, log_path: Path,
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
        if find_image(self.client, image) is None:  # never pull: images come from `invoke build`
            # Failed, not "not run": a re-run after `invoke build` measures the cell.
            return JobOutcome(result={"status": "failed", "records": [], "reason":
                                      f"image {image} is missing (invoke build)"},
                              exit_code=0, timed_out=False, peak_rss_kernel=None, wall_s=0.0,
                              log_tail="")
        started = time.monotonic()
        if self.shares_filesystem:
            container = self.client.containers.run(image, command, **self._run_options())
        else:
            container = self._start_with_files(image, command, job, job_path)
        timed_out = False
        copier = _LogCopier(container, log_path)
        try:
            try:
                status = container.wait(timeout=timeout)
            except Exception:  # requests' ReadTimeout: the job outlived its time limit
                timed_out = True
                container.kill()
                status = container.wait(timeout=30)
            container.reload()
            state = container.attrs["State"]
            copier.finish()
            if not self.shares_filesystem:
                self._fetch(container, result_path)
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

    # -- engines that do not share this filesystem: files travel as tar archives -------------

    def _start_with_files(self, image: str, command: list[str], job: dict[str, Any],
                          job_path: Path) -> Any:
        """Create the container, copy the job's inputs in at their container paths, start it."""
        container = self.client.containers.create(image, command, **self._run_options())
        try:
            with tempfile.TemporaryFile() as archive:  # artifacts can be large: not in memory
                self._inputs_archive(job, job_path, archive)
                archive.seek(0)
                container.put_archive("/", archive)
            container.start()
        except BaseException:
            container.remove(force=True)
            raise
        return container

    def _inputs_archive(self, job: dict[str, Any], job_path: Path, handle: Any) -> None:
        """A tar rooted at / holding the job file, every artifact under the results root (files
        or whole directories) and the data directory, owned by the image's user so the job can
        write its result beside the job file."""
        from toolkit.images.naming import UID

        def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = UID
            info.uname = info.gname = ""
            return info

        def container_name(path: str | Path) -> str:
            return self._in_container(path).lstrip("/")

        with tarfile.open(fileobj=handle, mode="w") as archive:
            workdir = tarfile.TarInfo(container_name(job_path.parent))
            workdir.type, workdir.mode = tarfile.DIRTYPE, 0o777
            archive.addfile(owned(workdir))
            archive.add(job_path, container_name(job_path), filter=owned)
            for path in job.get("artifacts", {}).values():
                if isinstance(path, str) and path.startswith(str(self.results_root)) \
                        and Path(path).exists():
                    archive.add(path, container_name(path), filter=owned)
            if self.data_dir is not None:
                archive.add(self.data_dir.resolve(), DATA_MOUNT.lstrip("/"), filter=owned)

    def _fetch(self, container: Any, result_path: Path) -> None:
        """Copy the result file out of the stopped container (absent: the job wrote none)."""
        from docker.errors import NotFound

        try:
            stream, _ = container.get_archive(self._in_container(result_path))
        except NotFound:
            return
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
            member = archive.extractfile(result_path.name)
            if member is not None:
                result_path.write_bytes(member.read())


class _LogCopier:
    """Copies a container's output into its log file as it comes, so the host can follow a
    running job (LogFollower); finish() makes sure the file ends up holding all of it."""

    # Output still in flight when the container stops arrives within this time.
    DRAIN_SECONDS = 10.0

    def __init__(self, container: Any, log_path: Path) -> None:
        self.container, self.log_path = container, log_path
        self.complete = False
        self.thread = threading.Thread(target=self._copy, name=f"logs {log_path.name}",
                                       daemon=True)
        self.thread.start()

    def _copy(self) -> None:
        try:
            with self.log_path.open("wb") as log:
                for chunk in self.container.logs(stdout=True, stderr=True, stream=True,
                                                 follow=True):
                    log.write(chunk)
                    log.flush()
            self.complete = True
        except Exception:  # noqa: BLE001 - the engine dropped the stream: finish() refetches
            self.complete = False

    def finish(self) -> None:
        self.thread.join(self.DRAIN_SECONDS)
        if self.thread.is_alive() or not self.complete:
            self.log_path.write_bytes(self.container.logs(stdout=True, stderr=True))
