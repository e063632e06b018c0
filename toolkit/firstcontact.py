"""First contact with a board: `invoke selftest` and `invoke pin --from ARCHIVE`.

A lab with a Jetson or a Raspberry Pi runs `invoke selftest` once: doctor, build (which
downloads and hashes every wheel), one tiny cell per framework and device, `pytest -m gpu`. It
packs what it resolved on first use (the sha256 of every wheel, image ids and digests, base
digests, versions), the logs and the results into one archive to send back. `invoke pin --from
ARCHIVE` writes those pins into containers/matrix.toml and, when every step passed, marks the
platform verified on that board. On a machine without a GPU the same command runs its CPU part
and says what it skipped and why.
"""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from toolkit.errors import UserError

REPO = Path(__file__).resolve().parents[1]
SPECS = Path(__file__).parent / "experiments" / "selftest"
RESOLVED = "resolved.json"
FORMAT = 1


@dataclass
class Step:
    name: str
    status: str  # "ok", "skipped" or "failed"
    detail: str


def _step(steps: list[Step], console: Console, name: str, run: Callable[[], tuple[str, str]],
          ) -> Step:
    """Run one step; a UserError or any failure is that step's result, not the end."""
    console.print(f"selftest: {name} ...")
    try:
        status, detail = run()
    except UserError as error:
        status, detail = "failed", str(error)
    except Exception as error:  # noqa: BLE001 - recorded in the archive, the kit goes on
        status, detail = "failed", f"{type(error).__name__}: {error}"
    step = Step(name, status, " ".join(detail.split()))
    steps.append(step)
    console.print(f"selftest: {name}: {status}: {step.detail}", markup=False, highlight=False)
    return step


def _doctor(logs: Path) -> tuple[str, str]:
    from toolkit.images import doctor

    lines: list[str] = []
    ok = doctor.report(lines.append)
    (logs / "doctor.log").write_text("\n".join(lines) + "\n")
    fixes = [line for line in lines if "fix" in line.split(":")[0]]
    return ("ok" if ok else "failed"), "; ".join(fixes) or f"{len(lines)} checks, none to fix"


def _build(platform: str, console: Console) -> tuple[str, str]:
    from toolkit.images.build import build_task
    from toolkit.images.engine import engine_or_none

    if engine_or_none() is None:
        return "skipped", "no Docker engine answers: images not built, cells run on the host"
    built = build_task(platform, "", "", console)
    return "ok", ", ".join(f"{b.tag} ({'built' if b.built else 'up to date'})" for b in built)


def _cells(out: Path, console: Console) -> tuple[tuple[str, str], dict[str, Any]]:
    from toolkit import pipeline

    store, summary = pipeline.run([str(SPECS / "inference.toml"), str(SPECS / "training.toml")],
                                  "smoke", {}, runner_name="auto", run_id=None, new=True,
                                  force=False, results_root=out / "results", console=console)
    not_run = sorted({f"{' '.join(str(v) for v in c['coords'].values())}: {c['reason']}"
                      for c in store.cell_results().values() if c["status"] == "not run"})
    info = {"run_id": store.run_id, "counts": summary.counts, "not_run": not_run,
            "runner": store.manifest.get("runner")}
    status = "failed" if summary.failed else "ok"
    return (status, summary.line()), info


def _gpu_tests(logs: Path) -> tuple[str, str]:
    tests = REPO / "tests"
    if not tests.is_dir():
        return "skipped", "no tests/ folder in this checkout"
    done = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs",
                           "-p", "no:cacheprovider", str(tests)], cwd=REPO,
                          capture_output=True, text=True, timeout=3600)
    (logs / "pytest-gpu.log").write_text(done.stdout + done.stderr)
    lines = done.stdout.strip().splitlines()
    closing = lines[-1].strip("= ") if lines else "no output"
    if done.returncode == 5:
        return "skipped", "no gpu tests collected"
    if done.returncode != 0:
        return "failed", closing
    skipped = [line for line in lines if line.startswith("SKIPPED")]
    if skipped and "passed" not in closing:
        return "skipped", f"{closing}: {skipped[0].split(':', 2)[-1].strip()}"
    return "ok", closing


def _images(platform: str) -> dict[str, Any]:
    """Tag, id and repo digests of this platform's images and of their bases."""
    from toolkit.images.engine import engine_or_none, find_image
    from toolkit.images.matrix import load

    client = engine_or_none()
    if client is None:
        return {}
    matrix = load()
    out: dict[str, Any] = {}
    for _, framework in matrix.selection(platform):
        tag = matrix.tag(platform, framework)
        base = matrix.base_of(platform, framework)
        entry: dict[str, Any] = {"tag": tag, "base": {"ref": base.ref}}
        for key, ref in (("image", tag), ("base", base.ref)):
            image = find_image(client, ref)
            if image is None:  # not on this engine: recorded as absent
                continue
            attrs = image.attrs
            target = entry if key == "image" else entry["base"]
            target |= {"id": attrs.get("Id"), "repo_digests": attrs.get("RepoDigests") or []}
        out[framework] = entry
    return out


def _wheel_hashes(platform: str) -> dict[str, str]:
    from toolkit.images import wheels

    ledger = wheels.directory(platform) / wheels.HASHES
    return json.loads(ledger.read_text()) if ledger.is_file() else {}


def selftest_task(out: Path, console: Console) -> Path:
    """Every step on this machine, then one archive; returns its path."""
    from toolkit.environment import describe_host, device_type
    from toolkit.images.engine import default_platform
    from toolkit.images.matrix import load

    platform = default_platform()
    device = device_type()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = out / f"selftest-{platform}-{device}-{stamp}"
    logs = work / "logs"
    logs.mkdir(parents=True)
    console.print(f"selftest: platform {platform}, device {device}; everything goes to {work}")
    steps: list[Step] = []
    cells: dict[str, Any] = {}
    _step(steps, console, "doctor", lambda: _doctor(logs))
    _step(steps, console, "build", lambda: _build(platform, console))

    def run_cells() -> tuple[str, str]:
        result, info = _cells(work, console)
        cells.update(info)
        return result

    _step(steps, console, "cells", run_cells)
    _step(steps, console, "pytest -m gpu", lambda: _gpu_tests(logs))
    matrix = load()
    resolved = {
        "format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "platform": platform, "device_type": device, "environment": describe_host(REPO),
        "matrix_hashes": {f: matrix.entry_hash(platform, f) for _, f in
                          matrix.selection(platform)},
        "images": _images(platform), "wheels": _wheel_hashes(platform),
        "steps": [asdict(step) for step in steps], "cells": cells,
    }
    (work / RESOLVED).write_text(json.dumps(resolved, indent=1, sort_keys=True) + "\n")
    archive = out / f"{work.name}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(work, arcname=work.name)
    for line in cells.get("not_run", []):
        console.print(f"selftest: not run: {line}", markup=False, highlight=False)
    skipped = [s for s in steps if s.status != "ok"]
    console.print(f"selftest: {len(steps) - len(skipped)} of {len(steps)} steps ok"
                  + "".join(f"; {s.name} {s.status}" for s in skipped))
    console.print(f"selftest: send back {archive} (`invoke pin --from` writes its pins)")
    return archive


# -- invoke pin --from ---------------------------------------------------------------------------

def read_archive(path: Path) -> dict[str, Any]:
    """resolved.json of a selftest archive, or a UserError saying what is wrong."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith("/" + RESOLVED)),
                          None)
            if member is None:
                raise UserError(f"{path}: no {RESOLVED} inside; is it an `invoke selftest` "
                                "archive?")
            resolved = json.load(io.BytesIO(tar.extractfile(member).read()))
    except (OSError, tarfile.TarError, ValueError) as error:
        raise UserError(f"{path}: not a readable selftest archive ({error})") from None
    if resolved.get("format") != FORMAT:
        raise UserError(f"{path}: selftest format {resolved.get('format')}, this checkout "
                        f"reads {FORMAT}")
    return resolved


def _platform_header(platform: str) -> str:
    """A platform's table header as containers/matrix.toml writes it (L4T names are quoted)."""
    return f'[platforms."{platform}"]' if "." in platform else f"[platforms.{platform}]"


def _section(text: str, header: str) -> tuple[int, int]:
    """Start and end offsets of a TOML table (from its header to the next header)."""
    start = text.find(header + "\n")
    if start < 0:
        raise UserError(f"containers/matrix.toml has no {header}")
    following = re.compile(r"^\[", re.M).search(text, start + len(header))
    return start, following.start() if following else len(text)


def pin_text(text: str, resolved: dict[str, Any], matrix: Any) -> tuple[str, list[str]]:
    """The matrix text with what the selftest resolved written in, and what changed."""
    platform = resolved["platform"]
    changes = []
    chosen = matrix.platform(platform)
    for framework, entry in chosen.frameworks.items():
        for wheel in entry.wheels:
            digest = resolved.get("wheels", {}).get(wheel.filename)
            if wheel.sha256 or not digest:
                continue
            at = text.find(f'url = "{wheel.url}"')
            end = text.find("\n\n", at)
            block = text[at:end]
            pinned = re.sub(r'sha256 = ""\n(unverified = .*\n?)?', f'sha256 = "{digest}"\n',
                            block + "\n").rstrip("\n")
            pinned = re.sub(r'\nunverified = "[^"]*"', "", pinned)
            text = text[:at] + pinned + text[end:]
            changes.append(f"{platform}/{framework}: {wheel.filename} sha256 {digest[:16]}…")
        found = resolved.get("images", {}).get(framework, {}).get("base", {})
        base = matrix.base_of(platform, framework)
        digests = [d.split("@", 1)[1] for d in found.get("repo_digests", [])
                   if d.split("@", 1)[0] == base.name]
        if base.digest or not digests:
            continue
        if entry.base is not None:  # the framework's own base, inline in its table
            start, end = _section(text, _platform_header(platform)[:-1]
                                  + f".frameworks.{framework}]")
        else:
            start, end = _section(text, _platform_header(platform)[:-1] + ".base]")
        block = text[start:end].replace('digest = ""', f'digest = "{digests[0]}"', 1)
        if block != text[start:end]:
            text = text[:start] + block + text[end:]
            changes.append(f"{platform}/{framework}: base {base.name} digest {digests[0][:19]}…")
    failed = [s for s in resolved.get("steps", []) if s["status"] == "failed"]
    counts = resolved.get("cells", {}).get("counts", {})
    if not failed and counts.get("ok"):
        verdict = (f"verified on {resolved['device_type']} (invoke selftest "
                   f"{resolved['created'][:10]}: {counts.get('ok', 0)} cells ok, "
                   f"{counts.get('not run', 0)} not run)")
        start, end = _section(text, _platform_header(platform))
        block = re.sub(r'^hardware = ".*"$', f'hardware = "{verdict}"', text[start:end],
                       count=1, flags=re.M)
        text = text[:start] + block + text[end:]
        changes.append(f"{platform}: hardware = {verdict}")
    return text, changes


def pin_task(archive: Path, matrix_path: Path, dry_run: bool, console: Console) -> list[str]:
    """Write an archive's pins into the matrix (checked by loading it before it is saved)."""
    from toolkit.images import matrix as matrices

    resolved = read_archive(archive)
    loaded = matrices.load(matrix_path)
    if resolved["platform"] not in loaded.platforms:
        raise UserError(f"{archive}: platform {resolved['platform']} is not in {matrix_path}; "
                        f"valid: {', '.join(loaded.platforms)}")
    failed = [f"{s['name']} ({s['detail']})" for s in resolved["steps"]
              if s["status"] == "failed"]
    text, changes = pin_text(matrix_path.read_text(), resolved, loaded)
    candidate = matrix_path.with_name(matrix_path.name + ".pinned")
    candidate.write_text(text)
    try:
        matrices.load(candidate)  # a pin that breaks the matrix is never written
    finally:
        if dry_run:
            candidate.unlink()
    if not dry_run:
        candidate.replace(matrix_path)
    for change in changes or ["nothing to pin: the matrix already holds what it resolved"]:
        console.print(f"pin: {change}", markup=False, highlight=False)
    if failed:
        console.print(f"pin: not marked verified, steps failed: {'; '.join(failed)}",
                      markup=False, highlight=False)
    return changes
