"""What the invoke tasks do: select experiments, pick or resume a run, measure, render."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console

from toolkit import preflight
from toolkit import rounds as cell_rounds
from toolkit.environment import describe_host
from toolkit.environment import device_type as describe_device_type
from toolkit.errors import UserError
from toolkit.experiments import spec as specs
from toolkit.experiments.cells import Cell
from toolkit.experiments.expansion import expand
from toolkit.options import number
from toolkit.results import RunStore, latest_run, list_runs, new_run_id
from toolkit.runners.base import EngineLost, parse_cpuset
from toolkit.runners.host import REPO_ROOT, HostRunner
from toolkit.scheduler import RunSummary, run_cells

RUNNERS = ("auto", "host", "docker")


def parse_list(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def grid_overrides(models: str | None, batch: str | None) -> dict[str, list]:
    """Command-line restrictions of the grid; validated like the spec itself."""
    overrides: dict[str, list] = {}
    if models:
        overrides["model"] = parse_list(models)
    if batch:
        try:
            overrides["batch"] = [int(value) for value in parse_list(batch)]
        except ValueError:
            raise UserError(f"--batch takes whole numbers separated by commas, got '{batch}'"
                            ) from None
    return overrides


def select(experiments: list[str], profile: str, overrides: dict[str, list],
           rounds: int | str | None = None) -> tuple[list[specs.ResolvedExperiment], list[Cell]]:
    """Resolve the chosen experiments under a profile and expand them into cells; `rounds`
    (--rounds, its text as given: '' or None when not) replaces the profiles' rounds per cell."""
    rounds = number("--rounds", rounds, whole=True, minimum=specs.MIN_ROUNDS,
                    maximum=specs.MAX_ROUNDS)
    names = experiments or list(specs.available_experiments())
    resolved = [specs.resolve(specs.find_spec(name), profile, overrides) for name in names]
    if rounds is not None:
        resolved = [experiment.model_copy(update={"rounds": rounds}) for experiment in resolved]
    return resolved, [cell for experiment in resolved for cell in expand(experiment)]


def choose_runner(name: str, results_root: Path, frameworks: list[str],
                  options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """The runner for measured cells, and a note for the report when auto fell back to host.

    auto: the Docker runner when an engine answers and the images of the cells' frameworks
    hold this checkout's device code; else the host runner, said in one line.
    """
    if name not in RUNNERS:
        raise UserError(f"unknown runner '{name}'; valid: {', '.join(RUNNERS)}")
    cpuset = (options or {}).get("cpuset")
    host = HostRunner(cpus=parse_cpuset(cpuset) if cpuset else None)
    container_only = preflight.container_only_options(options or {})

    def host_runner(note: str) -> tuple[Any, str]:
        if container_only:  # a limit the user asked for would silently not apply
            why = note.split(":")[0] if note else "--runner host"
            flags = " and ".join(container_only)
            verb = "applies" if len(container_only) == 1 else "apply"
            raise UserError(f"{flags} {verb} to cell containers, but cells would run as host "
                            f"processes ({why}); drop {flags} or use --runner docker")
        return host, note

    if name == "host":
        return host_runner("")
    from toolkit.images import matrix as matrices
    from toolkit.images.engine import default_platform, engine_or_none
    from toolkit.images.naming import stale_images, tag_for
    from toolkit.runners.docker_runner import DockerRunner, docker_client

    if name == "auto":
        client = engine_or_none()
        if client is None:
            return host_runner("no Docker engine answers: cells ran as host processes")
    else:
        client = docker_client()
    matrix = matrices.load()
    platform = default_platform()
    buildable = [f for f in frameworks if matrix.framework_supported(platform, f)]
    problems = stale_images(client, buildable, platform, matrix)
    if problems:
        if name == "docker":
            raise UserError(f"{'; '.join(problems)}: run `invoke build` first")
        return host_runner(f"{'; '.join(problems)} (run invoke build): cells ran as host "
                           "processes")
    if (options or {}).get("gpus"):
        preflight.check_gpus(client)

    def image_for(framework: str) -> str:
        # Jobs that only need Python (self-tests) run in the smallest image.
        framework = "onnxruntime" if framework == "python" else framework
        matrix.framework(platform, framework)  # UserError naming why it has no image here
        return tag_for(framework, platform, matrix)

    options = dict(options or {}, gpus=bool((options or {}).get("gpus")))
    # Jetson boards: the NVIDIA container runtime provides the GPU and the L4T libraries.
    options["nvidia_runtime"] = describe_device_type().startswith("jetson")
    return DockerRunner(client, image_for, results_root, **options), ""


def open_or_create(results_root: Path, run_id: str | None, new: bool, selection: dict[str, Any],
                   manifest: dict[str, Any], console: Console) -> RunStore:
    """Resume the given run (same selection only), else the last unfinished run of the same
    selection unless `new`, else create one. Fleet runs resume each device's run through it."""
    if run_id and (results_root / run_id / "manifest.json").is_file():
        store = RunStore.open(results_root, run_id)
        if store.manifest["selection"] != selection:
            raise UserError(f"run '{run_id}' measured another selection "
                            f"({store.manifest['selection']}); start a new run without --run-id")
        console.print(f"resuming run {run_id}")
        return store
    if not new and not run_id:
        previous = [r for r in list_runs(results_root) if r.manifest.get("selection") == selection]
        if previous and not previous[-1].is_complete():
            store = previous[-1]
            store.migrate()
            done = len(store.finished_ids() & set(manifest["cell_ids"]))
            console.print(f"resuming run {store.run_id}: {done}/{len(manifest['cell_ids'])} cells "
                          "already done (--new starts a fresh run)")
            return store
    return RunStore.create(results_root, run_id or new_run_id(selection["profile"]), manifest)


def selection_of(resolved: list[specs.ResolvedExperiment], profile: str,
                 overrides: dict[str, list]) -> dict[str, Any]:
    """What a run measures, as the resume logic compares it."""
    return {"experiments": [e.name for e in resolved], "profile": profile,
            "overrides": overrides}


def run_manifest(resolved: list[specs.ResolvedExperiment], cells: list[Cell],
                 selection: dict[str, Any], runner: Any, note: str,
                 environment: dict[str, Any] | None = None) -> dict[str, Any]:
    """A new run's manifest.json: the resolved specs, the runner and the environment."""
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "experiments": selection["experiments"],
        "profile": selection["profile"], "selection": selection, "runner": runner.name,
        "runner_note": note, "runner_details": runner.describe(),
        "spec": {e.name: e.model_dump(mode="json") for e in resolved},
        "environment": environment or describe_host(REPO_ROOT),
        "cell_ids": [cell.id for cell in cells],
    }


def run(experiments: list[str], profile: str, overrides: dict[str, list], *, runner_name: str,
        run_id: str | None, new: bool, force: bool, results_root: Path,
        console: Console, runner_options: dict[str, Any] | None = None,
        rounds: int | str | None = None) -> tuple[RunStore, RunSummary]:
    resolved, cells = select(experiments, profile, overrides, rounds)
    preflight.check_runner_options(runner_options or {})
    frameworks = sorted({cell.coords["framework"] for cell in cells if cell.kind != "peak"})
    runner, note = choose_runner(runner_name, results_root, frameworks, runner_options)
    preflight.check_datasets(cells)
    if note:
        console.print(f"note: {note}")
    if getattr(runner, "orphans_removed", None):
        console.print(f"removed {len(runner.orphans_removed)} cell container(s) left by an "
                      "interrupted run")
    selection = selection_of(resolved, profile, overrides)
    manifest = run_manifest(resolved, cells, selection, runner, note)
    store = open_or_create(results_root, run_id, new, selection, manifest, console)
    most = max((cell.rounds for cell in cells), default=1)
    rounds_text = f" x {most} interleaved rounds" if most > 1 else ""
    console.print(f"run {store.run_id}: {len(cells)} cells{rounds_text}, profile {profile}, "
                  f"results in {store.path}")
    # Preparation (search, accuracy training, export) is not measured: it runs on the host.
    try:
        summary = run_cells(cells, store, runner, results_root / "cache", force=force,
                            console=console, prepare_with=HostRunner())
    except EngineLost as lost:
        done = len(store.finished_ids() & {cell.id for cell in cells})
        raise EngineLost(f"{lost} during the run; {done} of {len(cells)} cells finished and "
                         f"everything measured is kept in {store.path}; start the engine and "
                         "run the same command again to resume") from None
    store.update_manifest(finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    speeds = cell_rounds.speed_by_round(cell_rounds.timings(list(store.cell_results().values())))
    text, too_much = cell_rounds.drift_text(speeds)
    if text:
        warn = "  [bold yellow]more than the 10 % a fair comparison allows[/]" if too_much else ""
        console.print(f"machine speed by round: {text}{warn}")
    return store, summary


def report(run_id: str | None, results_root: Path, reports_root: Path) -> dict[str, Path]:
    """One run's report; a fleet run's (its id, or the latest run when that belongs to a fleet)
    shows its devices side by side and links each device's own report."""
    from toolkit.fleet import manifest as fleets
    from toolkit.report.render import render_report

    if run_id and fleets.is_fleet(results_root, run_id):
        fleet = fleets.FleetRun(results_root, run_id)
    else:
        store = RunStore.open(results_root, run_id) if run_id else latest_run(results_root)
        fleet = None if run_id else fleets.fleet_of(store)
        if fleet is None:
            return render_report(store.path, reports_root / store.run_id)
    from toolkit.fleet.compare import fleet_context
    from toolkit.report.render import render_fleet_report

    return render_fleet_report(fleet_context(fleet), {
        name: store.path for name, store in fleet.device_stores().items()},
        reports_root / fleet.fleet_id)


def compare(runs: str, threshold: float | str | None, results_root: Path,
            reports_root: Path) -> Path:
    """Compare two runs cell by cell; prints a table and writes compare.md. `threshold`
    (--threshold, its text as given: '' or None when not) defaults to DEFAULT_THRESHOLD."""
    from rich.table import Column, Table

    from toolkit.report.compare import (
        DEFAULT_THRESHOLD,
        compare_runs,
        format_ms,
        format_ratio,
        write_markdown,
    )

    threshold = number("--threshold", threshold, minimum=0)
    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    ids = parse_list(runs.replace(" ", ","))
    if len(ids) != 2:
        raise UserError(f"--compare takes two run ids A,B, got '{runs}'")
    a, b = (RunStore.open(results_root, run_id) for run_id in ids)
    rows = compare_runs(a, b, threshold)
    # brackets: intervals over rounds (with their level), or the samples' inter-quartile
    # ranges (see basis)
    table = Table("cell", "p50 A (ms)", "p50 B (ms)", "B/A", Column("basis", no_wrap=True),
                  Column("verdict", no_wrap=True), title=f"{a.run_id} (A) vs {b.run_id} (B)")
    for row in rows:
        table.add_row(row.label, format_ms(row.p50_a, row.a_interval),
                      format_ms(row.p50_b, row.b_interval),
                      format_ratio(row.ratio, row.ratio_interval), row.basis, row.verdict)
    console = Console(soft_wrap=True)
    console.print(table)
    path = write_markdown(rows, a, b, threshold,
                          reports_root / f"compare-{a.run_id}-vs-{b.run_id}" / "compare.md")
    console.print(f"comparison: {path}")
    return path
