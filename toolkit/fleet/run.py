"""`invoke run --hosts a,b`: one study on several devices at once, one thread per device.

Each device gets its own ordinary run (results/<fleet-id>-<device>/) measured by a DockerRunner
bound to that device's engine, so the single-machine resume logic applies per device: a device
that went away mid-run resumes on its own when the same command runs again, and the others are
not measured twice. Preparation (NeuralScale searches, ONNX exports) runs on this machine once
for all devices; the artifacts reach remote containers through the Engine API when the device
does not share this filesystem (see toolkit/runners/docker_runner.py).
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from toolkit import pipeline, preflight
from toolkit.environment import describe_host
from toolkit.errors import UserError
from toolkit.experiments.cells import Cell
from toolkit.experiments.spec import ResolvedExperiment
from toolkit.fleet import engines
from toolkit.fleet import manifest as fleets
from toolkit.fleet.inventory import Device, choose, inventory_path, load
from toolkit.images import matrix as matrices
from toolkit.images.engine import engine_or_none
from toolkit.images.matrix import Matrix
from toolkit.images.naming import tag_for
from toolkit.runners.base import EngineLost, JobOutcome
from toolkit.runners.docker_runner import DockerRunner
from toolkit.runners.host import REPO_ROOT, HostRunner
from toolkit.scheduler import RunProgress, run_cells

STATUSES = ("done", "failed", "unreachable", "interrupted")


@dataclass(frozen=True)
class DeviceOutcome:
    """How one device's part of the fleet run ended: done, failed or unreachable."""

    name: str
    status: str
    detail: str
    run_id: str | None

    def line(self) -> str:
        where = f" ({self.run_id})" if self.run_id else ""
        return f"{self.name}: {self.status}{where}: {self.detail}"


class DeviceRunner:
    """A device's DockerRunner that knows which device it is (`host`, recorded with every cell)
    and stops when the fleet run is interrupted. A device that went away ends its run through
    the DockerRunner's EngineLost rather than failing every later cell."""

    def __init__(self, inner: DockerRunner, device: Device, host: dict[str, Any],
                 stop: threading.Event) -> None:
        self.inner, self.device, self.host, self.stop = inner, device, host, stop
        self.name = inner.name

    def describe(self) -> dict[str, Any]:
        return self.inner.describe() | {"host": self.host}

    def image_identity(self, framework: str) -> dict[str, Any]:
        return self.inner.image_identity(framework)

    def run_job(self, job: dict[str, Any], workdir: Path, log_path: Path,
                timeout: float) -> JobOutcome:
        if self.stop.is_set():
            raise EngineLost("interrupted")
        return self.inner.run_job(job, workdir, log_path, timeout)


class SharedPreparation:
    """Preparation jobs of all devices on this machine, one at a time. Devices run the same
    cells, so a job whose only artifact another device's thread made while this one waited is
    not run again."""

    name = "host"

    def __init__(self, inner: HostRunner) -> None:
        self.inner = inner
        self.lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def run_job(self, job: dict[str, Any], workdir: Path, log_path: Path,
                timeout: float) -> JobOutcome:
        with self.lock:
            made = list(job.get("artifacts", {}).values())
            if job["kind"] != "ort_training_artifacts" and len(made) == 1 \
                    and Path(made[0]).is_file():
                return JobOutcome(result={"status": "ok", "reason": "", "records": []},
                                  exit_code=0, timed_out=False, peak_rss_kernel=None,
                                  wall_s=0.0, log_tail="made for another device")
            return self.inner.run_job(job, workdir, log_path, timeout)


class _Prefixed:
    """A console stand-in for code that prints run-level lines (resuming ...)."""

    def __init__(self, console: Console, prefix: str) -> None:
        self.console, self.prefix = console, prefix

    def print(self, text: str, **_: Any) -> None:
        self.console.print(f"{self.prefix}{text}", markup=False, highlight=False)


def device_environment(host: dict[str, Any], controller: dict[str, Any], this_machine: bool,
                       ) -> dict[str, Any]:
    """The environment section of a device run's manifest: the device as its engine reports it.

    The host-side Python, packages and git state are this machine's (they prepared the jobs);
    CPU model and GPU of a remote device are not known to its engine and say so, rather than
    showing this machine's."""
    device = {"hostname": host["hostname"], "device_type": host["device_type"],
              "platform": host["platform"], "machine": host["arch"], "os": host["os"],
              "kernel": host["kernel"], "cores": host["cpus"], "ram_bytes": host["memory_bytes"],
              "engine": host["engine"], "engine_version": host["engine_version"]}
    if this_machine:
        return controller | device
    return {"cpu": "not reported by the Docker engine", "gpu": "not reported by the Docker "
            "engine"} | device | {"controller": controller["hostname"],
                                 **{key: controller[key] for key in ("python", "packages", "git")}}


@dataclass
class FleetContext:
    """What every device thread shares."""

    fleet: fleets.FleetRun
    resolved: list[ResolvedExperiment]
    cells: list[Cell]
    frameworks: list[str]
    selection: dict[str, Any]
    matrix: Matrix
    local: Any  # this machine's docker client, or None
    controller: dict[str, Any]
    results_root: Path
    force: bool
    runner_options: dict[str, Any]
    preparation: SharedPreparation
    progress: Progress
    stop: threading.Event


def _image_for(matrix: Matrix, platform: str):  # -> Callable[[str], str]
    def image_for(framework: str) -> str:
        framework = "onnxruntime" if framework == "python" else framework
        matrix.framework(platform, framework)  # UserError: the cell is recorded as not run
        return tag_for(framework, platform, matrix)

    return image_for


def _measure(device: Device, ctx: FleetContext, say: Any) -> tuple[str, str]:
    """Connect, check the images, measure; (status, detail) or an exception saying why not."""
    client = engines.connect(device)
    host = engines.identity(device, client, ctx.matrix)
    engines.ensure_images(device, client, ctx.local, ctx.frameworks, ctx.matrix, say)
    options = {key: value for key, value in ctx.runner_options.items() if value}
    inner = DockerRunner(client, _image_for(ctx.matrix, device.platform), ctx.results_root,
                         shares_filesystem=device.shared,
                         nvidia_runtime=ctx.matrix.platform(device.platform).nvidia_runtime,
                         engine=device.engine, **options)
    if inner.orphans_removed:
        say(f"removed {len(inner.orphans_removed)} cell container(s) left by an interrupted run")
    runner = DeviceRunner(inner, device, host, ctx.stop)
    manifest = pipeline.run_manifest(
        ctx.resolved, ctx.cells, ctx.selection, runner, "",
        environment=device_environment(host, ctx.controller, device.on_this_machine))
    manifest |= {"fleet": ctx.fleet.fleet_id, "host": host}
    prefix = f"[{device.name}] "
    store = pipeline.open_or_create(ctx.results_root, ctx.fleet.device_run_id(device.name),
                                    False, ctx.selection, manifest, _Prefixed(ctx.progress.console,
                                                                              prefix))
    ctx.fleet.record(device.name, {"host": host, "inventory": device.public()})
    try:
        summary = run_cells(ctx.cells, store, runner, ctx.results_root / "cache",
                            force=ctx.force, console=ctx.progress.console,
                            prepare_with=ctx.preparation, progress=ctx.progress, prefix=prefix)
    except EngineLost as lost:
        done = len(store.finished_ids() & {cell.id for cell in ctx.cells})
        raise engines.Unreachable(f"{lost} with {done} of {len(ctx.cells)} cells done; run the "
                                  "same command again to resume it") from None
    store.update_manifest(finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return ("done" if store.is_complete() else "failed"), summary.line()


def _run_device(device: Device, ctx: FleetContext) -> DeviceOutcome:
    """One device's whole part; never raises, so one device cannot stop the others."""

    def say(text: str) -> None:
        ctx.progress.console.print(f"[{device.name}] {text}", markup=False, highlight=False)

    try:
        status, detail = _measure(device, ctx, say)
    except engines.Unreachable as error:
        status, detail = "unreachable", str(error)
        if ctx.stop.is_set():
            status = "interrupted"
    except (engines.DeviceFailed, UserError) as error:
        status, detail = "failed", str(error)
    except Exception as error:  # noqa: BLE001 - reported per device, the others go on
        status = "failed" if engines.answers(device) else "unreachable"
        detail = f"{type(error).__name__}: {error}"
    run_id = ctx.fleet.device_run_id(device.name)
    if not (ctx.results_root / run_id / "manifest.json").is_file():
        run_id = None
    outcome = DeviceOutcome(device.name, status, " ".join(detail.split()), run_id)
    ctx.fleet.record(device.name, {"status": status, "detail": outcome.detail,
                                   "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    say(f"{status}: {outcome.detail}")
    return outcome


def run(hosts: list[str], experiments: list[str], profile: str, overrides: dict[str, list], *,
        inventory: str | None, run_id: str | None, new: bool, force: bool, results_root: Path,
        console: Console, runner_options: dict[str, Any] | None = None,
        rounds: int | str | None = None) -> tuple[fleets.FleetRun, list[DeviceOutcome]]:
    """Measure the selection on every named device in parallel; an outcome per device."""
    resolved, cells = pipeline.select(experiments, profile, overrides, rounds)
    preflight.check_runner_options(runner_options or {})
    frameworks = sorted({cell.coords["framework"] for cell in cells if cell.kind != "peak"})
    matrix = matrices.load()
    source = inventory_path(inventory)
    devices = choose(load(source, list(matrix.platforms)), hosts, source)
    preflight.check_datasets(cells)
    selection = pipeline.selection_of(resolved, profile, overrides)
    fleet = fleets.open_or_create(results_root, run_id, new, selection,
                                  [device.name for device in devices], console)
    console.print(f"fleet run {fleet.fleet_id}: {len(cells)} cells on each of "
                  f"{', '.join(device.name for device in devices)}; results in "
                  f"{results_root}/{fleet.fleet_id}-<device>")
    stop = threading.Event()
    with RunProgress(console) as progress:
        ctx = FleetContext(fleet, resolved, cells, frameworks, selection, matrix,
                           engine_or_none(), describe_host(REPO_ROOT), results_root,
                           force, dict(runner_options or {}), SharedPreparation(HostRunner()),
                           progress, stop)
        with ThreadPoolExecutor(max_workers=len(devices), thread_name_prefix="device") as pool:
            futures = [pool.submit(_run_device, device, ctx) for device in devices]
            try:
                outcomes = [future.result() for future in futures]
            except KeyboardInterrupt:
                stop.set()  # devices finish the cell they measure, then stop
                raise
    return fleet, outcomes


def run_task(hosts: str, experiments: list[str], profile: str, overrides: dict[str, list], *,
             inventory: str | None, run_id: str | None, new: bool, force: bool,
             results_root: Path, console: Console, runner_options: dict[str, Any],
             rounds: int | str | None = None) -> bool:
    """`invoke run --hosts`: the summary per device; False when any device did not finish."""
    names = pipeline.parse_list(hosts)
    if not names:
        raise UserError("--hosts takes device names from the inventory, comma-separated")
    fleet, outcomes = run(names, experiments, profile, overrides, inventory=inventory,
                          run_id=run_id, new=new, force=force, results_root=results_root,
                          console=console, runner_options=runner_options, rounds=rounds)
    counts = {status: sum(o.status == status for o in outcomes) for status in STATUSES}
    console.print(f"fleet run {fleet.fleet_id}: "
                  + ", ".join(f"{n} {status}" for status, n in counts.items() if n))
    for outcome in outcomes:
        console.print(f"  {outcome.line()}", markup=False, highlight=False)
    return all(outcome.status == "done" for outcome in outcomes)
