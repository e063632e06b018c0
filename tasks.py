"""edgerepro tasks: `invoke build run report` (and `invoke --help TASK` for each)."""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from invoke import Task, task
from invoke.exceptions import Exit

from toolkit import frameworks

ROOT = Path(__file__).resolve().parent
# Overridable so tests and shared machines can keep runs elsewhere.
RESULTS = Path(os.environ.get("EDGEREPRO_RESULTS", ROOT / "results"))
REPORTS = Path(os.environ.get("EDGEREPRO_REPORTS", ROOT / "reports"))
# The exit status when the Docker engine stopped answering mid-run (restart it, run again).
ENGINE_LOST = 3


def user_errors(body):
    """One line and a non-zero exit for problems the user can fix; no traceback."""

    @functools.wraps(body)
    def wrapper(*args, **kwargs):
        from toolkit.errors import UserError
        from toolkit.runners.base import EngineLost

        try:
            return body(*args, **kwargs)
        except UserError as error:
            raise Exit(f"error: {error}", code=2) from None
        except EngineLost as lost:
            raise Exit(f"error: {lost}", code=ENGINE_LOST) from None
        except KeyboardInterrupt:
            raise Exit("interrupted: finished cells are saved; run the same command again to "
                       "resume", code=130) from None
        except OSError as error:
            if error.errno == 28:  # ENOSPC
                raise Exit(f"error: disk full ({error.filename}); free space and re-run to "
                           "resume", code=2) from None
            raise

    return wrapper


@task(help={"platform": "build only this platform's images (default: amd64 when a Docker "
                        "engine answers; see containers/matrix.toml)",
            "framework": f"build only this framework ({frameworks.listed()})",
            "ca_bundle": "a CA bundle for TLS-intercepting proxies, given to the build stage only "
                         "(never in the final image)"})
@user_errors
def build(c, platform="", framework="", ca_bundle=""):
    """Build what `run` needs: the host runner check, then the pinned images (Docker SDK).

    Without a Docker engine and without --platform it says so in one line and stops after the
    host check (`run` then uses the host runner); with --platform an engine is required.
    """
    from rich.console import Console

    from toolkit.images import build as builder
    from toolkit.images import doctor as checks

    console = Console(stderr=True, soft_wrap=True)
    checks.check_host_runner(console, required=not (platform or framework))
    builder.build_task(platform, framework, ca_bundle, console)


@task(help={"platform": "the platform whose base to bootstrap (default: amd64)",
            "force": "bootstrap again even if the base image exists"})
@user_errors
def base(c, platform="amd64", force=False):
    """Bootstrap a Debian base with debootstrap and import it: no registry needed."""
    from rich.console import Console

    from toolkit.images import build as builder

    builder.base_task(platform, force, Console(stderr=True, soft_wrap=True))


@task(help={"platform": "fill only this platform's wheelhouse (default: amd64)",
            "framework": "only this framework's wheels (default: all supported ones)"})
@user_errors
def wheels(c, platform="amd64", framework=""):
    """Download the pinned wheels for a target platform into containers/wheelhouse/ (hashed)."""
    from rich.console import Console

    from toolkit.images import matrix
    from toolkit.images import wheels as wheelhouse

    console = Console(stderr=True, soft_wrap=True)
    loaded = matrix.load()
    for chosen_platform, chosen in loaded.selection(platform, framework):
        path = wheelhouse.fill(loaded, chosen_platform, chosen, console)
        console.print(f"wheels {chosen_platform}/{chosen}: {path}")


@task
@user_errors
def doctor(c):
    """Check the Docker engine, emulation, NVIDIA runtime, GPU and disk; one line per fix."""
    from toolkit.images import doctor as checks

    if not checks.report(print):
        raise Exit(code=1)


class _KeepsHelpFlag(Task):
    """Automatic short flags skip -h, so `invoke run -h` stays help (--hosts would take it)."""

    def arg_opts(self, name, default, taken_names):
        return super().arg_opts(name, default, set(taken_names) | {"h"})


@task(klass=_KeepsHelpFlag, help={
    "experiment": "experiments to run, comma-separated names or a path to a .toml spec "
                  "(default: every experiment)",
    "profile": "smoke (minutes on a laptop CPU), quick (scaling: Gealy's CPU claims on the "
               "published NeuralScale architectures, stand-in verdicts off a Raspberry Pi), or "
               "paper (the published protocol)",
    "model": "restrict the grid to these models, comma-separated (e.g. vgg11)",
    "batch": "restrict the grid to these batch sizes, comma-separated",
    "runner": "auto, host or docker (auto: docker when an engine answers, else host)",
    "run_id": "resume or create this run id (default: resume the last unfinished run of the "
              "same selection, else start a new one)",
    "new": "start a new run even if an unfinished one of the same selection exists",
    "rounds": "measure each cell this many times, each in a fresh process or container, the "
              "rounds of all cells interleaved; figures are medians with intervals (default: "
              "the profile's, smoke 2, quick 5, paper 5; smoke training 1; at most 100; a "
              "verdict needs 5: docs/statistics.md)",
    "force": "re-measure cells that are already finished in this run",
    "cpuset": "pin each cell (its container, or its host process) to these CPUs (e.g. 0-1)",
    "memory": "docker runner: memory limit per cell's container (e.g. 2g); over it: OOM-killed",
    "gpus": "docker runner on an x86 host: give cells the NVIDIA GPUs (device requests)",
    "hosts": "run on these devices of the inventory in parallel, comma-separated (e.g. "
             "local,orin): each device's Docker engine, one run per device (see README)",
    "inventory": "with --hosts: the fleet inventory (default: $EDGEREPRO_FLEET, else fleet.toml)",
    "data": "directory of the CIFAR-10/100 python-version archives (or their extracted folders) "
            "for the paper profiles (default: $EDGEREPRO_DATA); nothing is downloaded",
})
@user_errors
def run(c, experiment="", profile="smoke", model="", batch="", runner="auto", run_id="",
        new=False, force=False, cpuset="", memory="", gpus=False, hosts="", inventory="",
        data="", rounds=""):
    """Measure every cell of the chosen experiments, each in a fresh process; resumes.

    Exit status: 0 when every cell ended ok, invalid or not run (each with its reason); 1 when
    cells failed (their logs are named; a re-run retries them); 2 for bad input, found before
    any cell starts; 3 when the Docker engine stopped answering during the run (finished cells
    are kept; start the engine and run the same command again); 130 when interrupted (finished
    cells are kept).
    """
    from rich.console import Console

    from toolkit import pipeline
    from toolkit.device.data import DATA_ENV
    from toolkit.runners.base import data_directory

    if data:
        os.environ[DATA_ENV] = data
    data_directory()  # a data directory that is not there: one line, before anything runs

    console = Console(stderr=True, soft_wrap=True)
    if hosts:
        from toolkit.errors import UserError
        from toolkit.fleet import run as fleet

        if runner == "host":
            raise UserError("--hosts measures in containers on each device's engine; drop "
                            "--runner host")
        if not fleet.run_task(
                hosts, pipeline.parse_list(experiment), profile,
                pipeline.grid_overrides(model, batch), inventory=inventory or None,
                run_id=run_id or None, new=new, force=force, results_root=RESULTS,
                console=console, runner_options={"cpuset": cpuset, "memory_limit": memory,
                                                 "gpus": gpus}, rounds=rounds):
            raise Exit("fleet run: not every device finished (see above); run the same "
                       "command again to resume", code=1)
        return
    store, summary = pipeline.run(
        pipeline.parse_list(experiment), profile, pipeline.grid_overrides(model, batch),
        runner_name=runner, run_id=run_id or None, new=new, force=force, results_root=RESULTS,
        console=console, runner_options={"cpuset": cpuset or None, "memory_limit": memory or None,
                                         "gpus": gpus}, rounds=rounds)
    console.print(f"run {store.run_id}: {summary.line()}", markup=False, highlight=False)
    for line in summary.grouped():
        console.print(f"  {line}", markup=False, highlight=False)
    if summary.failed:
        logs = [str(path) for path in summary.failed_logs if path.is_file()]
        shown = ", ".join(logs[:3]) + (f" and {len(logs) - 3} more in {store.logs_dir}"
                                       if len(logs) > 3 else "")
        raise Exit(f"{summary.failed} cell(s) failed (logs: {shown or store.logs_dir}); run the "
                   "same command again to retry them", code=1)


@task(help={"run_id": "the run to render (default: the latest)",
            "compare": "two run ids A,B: per-cell latency ratios B/A with a noise-aware verdict",
            "threshold": "with --compare: the smallest ratio change that counts, a number >= 0 "
                         "(default 0.10: 10 %)"})
@user_errors
def report(c, run_id="", compare="", threshold=""):
    """Render reports/<run-id>/report.md and report.html from a run's results."""
    from toolkit import pipeline

    if compare:
        pipeline.compare(compare, threshold, RESULTS, REPORTS)
        return
    paths = pipeline.report(run_id or None, RESULTS, REPORTS)
    print(f"report: {paths['md']}\nreport: {paths['html']}")


_SELECT = {"platform": "only this platform's images (default: amd64, like `invoke build`)",
           "framework": f"only this framework ({frameworks.listed()})"}


@task(help={"registry": "HOST[:PORT]/NAMESPACE, e.g. 127.0.0.1:5000/mylab (log in with "
                        "`docker login HOST` first if it needs credentials)", **_SELECT})
@user_errors
def push(c, registry, platform="", framework=""):
    """Push the matrix's images to a registry; their digests go to containers/images.lock.json."""
    from rich.console import Console

    from toolkit.images.share import registry as registries

    registries.push_task(registry, platform, framework, Console(stderr=True, soft_wrap=True))


@task(help={"registry": "pull the matrix's tags from this HOST[:PORT]/NAMESPACE and lock their "
                        "digests (default: pull exactly the digests the lock file holds)",
            **_SELECT})
@user_errors
def pull(c, registry="", platform="", framework=""):
    """Pull the matrix's images by digest and tag them for `run` (images.lock.json)."""
    from rich.console import Console

    from toolkit.images.share import registry as registries

    registries.pull_task(registry, platform, framework, Console(stderr=True, soft_wrap=True))


@task(help={"out": "directory for the archives and their .json manifests (default: build/images)",
            **_SELECT})
@user_errors
def save(c, out="", platform="", framework=""):
    """Write each image as a gzip docker-save archive plus a manifest, for offline devices."""
    from rich.console import Console

    from toolkit.images.share import archive

    archive.save_task(Path(out) if out else ROOT / "build" / "images", platform, framework,
                      Console(stderr=True, soft_wrap=True))


@task(positional=["archive"],
      help={"archive": "an .tar.gz that `invoke save` wrote (its .json manifest beside it)"})
@user_errors
def load(c, archive):
    """Check an image archive (sha256, version matrix), load it and check the loaded image id."""
    from rich.console import Console

    from toolkit.images.share import archive as archives

    archives.load_task([Path(archive)], Console(stderr=True, soft_wrap=True))


@task(positional=["image"],
      help={"image": "IMAGE: a tag, id or repo@sha256 digest (comma-separated for several), or "
                     "'all': every matrix image of --platform on this engine",
            "platform": "with 'all': whose images (default: amd64)"})
@user_errors
def verify(c, image, platform=""):
    """Check images' labels and version manifests against the matrix; a table per image."""
    from rich.console import Console

    from toolkit.images.share import verify as verification

    width = None if sys.stdout.isatty() else 160  # logs and pipes: rows unwrapped, greppable
    names = [] if image == "all" else [name for name in image.split(",") if name]
    failed = verification.verify_task(names, platform,
                                      Console(width=width))
    if failed:
        raise Exit("\n".join(f"verify failed: {line}" for line in failed), code=1)


@task(help={"out": "where the archive and its working folder go (default: build/selftest)"})
@user_errors
def selftest(c, out=""):
    """First contact with a board (Jetson, Raspberry Pi): doctor, build, one tiny cell per
    framework and device, pytest -m gpu; one archive to send back with what it resolved.

    Every step runs even when one fails; without a GPU or a Docker engine it runs the CPU part
    and says what it skipped. `invoke pin --from ARCHIVE` writes the archive's pins.
    """
    from rich.console import Console

    from toolkit import firstcontact

    folder = Path(out) if out else ROOT / "build" / "selftest"
    folder.mkdir(parents=True, exist_ok=True)
    firstcontact.selftest_task(folder, Console(stderr=True, soft_wrap=True))


@task(name="pin", help={"from_": "an archive `invoke selftest` wrote on a board",
                        "matrix": "the version matrix to update (default: containers/matrix.toml)",
                        "dry_run": "print what would be pinned, change nothing"})
@user_errors
def pin(c, from_, matrix="", dry_run=False):
    """Write what a board's selftest resolved into the version matrix: wheel sha256s and base
    digests still missing, and "verified on <board>" when every step passed."""
    from rich.console import Console

    from toolkit import firstcontact
    from toolkit.images.matrix import MATRIX

    firstcontact.pin_task(Path(from_), Path(matrix) if matrix else MATRIX, dry_run,
                          Console(stderr=True, soft_wrap=True))


@task(help={"all": "also the slow and Docker-backed tests (what CI runs)",
            "k": "only tests matching this pytest -k expression"})
def test(c, all=False, k=""):
    """Run the tests (fast ones by default)."""
    args = [sys.executable, "-m", "pytest"]
    if all:
        args += ["-m", ""]
    if k:
        args += ["-k", k]
    c.run(" ".join(f"'{a}'" if a == "" or " " in a else a for a in args), pty=False)


@task(help={"name": "only this benchmark (default: all)",
            "compare": "A,B: two bench files (paths or stamps under results/bench) compared, "
                       "every figure as B ÷ A; runs no benchmark"})
@user_errors
def bench(c, name="", compare=""):
    """Run the benchmarks and write their figures, machine and versions to results/bench/."""
    from toolkit import bench as benches
    from toolkit import bench_files

    if compare:
        benches.show_comparison(*bench_files.pair(compare, RESULTS / "bench"))
        return
    benches.run_all(name or None, RESULTS / "bench")
