"""`invoke verify`: does an image hold what containers/matrix.toml pins?

An image that arrives from a registry or a tarball was built elsewhere; before a lab measures
with it, its labels and its version manifest (/opt/edgerepro/versions.json, what pip really
installed) are checked against this checkout's matrix, one table row per check, so a failure
names exactly which pin differs. The manifest is copied out of a created, never started,
container: no process runs, so images of another architecture verify without emulation.
"""
from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from toolkit.errors import UserError
from toolkit.images.engine import connect, default_platform, find_image
from toolkit.images.matrix import ARCHES, Matrix, load, version_matches
from toolkit.images.naming import LABEL, MANIFEST, device_code_digest, expected, expected_labels

PASS, FAIL, NOTE = "pass", "FAIL", "note"


@dataclass(frozen=True)
class Check:
    """One row of the table: what was checked, what the matrix wants, what the image has."""

    name: str
    expected: str
    found: str
    result: str  # PASS, FAIL or NOTE (shown, never fails the image)


def label_checks(matrix: Matrix, platform: str, framework: str,
                 found: dict[str, str]) -> list[Check]:
    """One check per matrix label, plus any pin or provided label the matrix does not know."""
    wanted = expected_labels(matrix, platform, framework)
    checks = [_check(f"label {key}", value, found.get(key)) for key, value in wanted.items()]
    for key in sorted(found):
        pinned = key.startswith((f"{LABEL}.pin.", f"{LABEL}.provided."))
        if pinned and key not in wanted:
            checks.append(Check(f"label {key}", "(not pinned)", found[key], FAIL))
    code = found.get(f"{LABEL}.device-code", "")
    current = device_code_digest()
    checks.append(Check(f"label {LABEL}.device-code (this checkout's device code)", current,
                        code or "missing", PASS if code == current else NOTE))
    return checks


def manifest_checks(matrix: Matrix, platform: str, framework: str,
                    manifest: dict[str, Any] | None) -> list[Check]:
    """The manifest's record of the matrix, and what is really installed, against the matrix."""
    if manifest is None:
        return [Check(f"manifest {MANIFEST}", "present", "missing", FAIL)]
    wanted = expected(matrix, platform, framework)
    checks = [_check(f"manifest {key}", wanted[key], manifest.get(key))
              for key in ("platform", "framework", "matrix_hash", "arch", "python", "cuda",
                          "cudnn", "tensorrt", "framework_version", "import")]
    checks.append(_check("manifest base.name", wanted["base"]["name"],
                         (manifest.get("base") or {}).get("name")))
    for key in ("packages", "provided"):
        checks.append(_check(f"manifest {key}", _pins(wanted[key]), _pins(manifest.get(key))))
    installed = manifest.get("installed") or {}
    have = installed.get("distributions") or {}
    entry, chosen = matrix.framework(platform, framework), matrix.platform(platform)
    python = installed.get("python") or ""
    checks.append(Check("installed python", chosen.python, python or "missing",
                        PASS if version_matches(chosen.python, python) else FAIL))
    checks.append(_check("installed machine", ARCHES[chosen.arch], installed.get("machine")))
    for name, version in entry.packages.items():
        checks.append(_check(f"installed {name}", version, have.get(name)))
    for name, version in entry.provided.items():
        found = have.get(name) or ""
        checks.append(Check(f"installed {name} (from the base)", version, found or "missing",
                            PASS if found and version_matches(version, found) else FAIL))
    if matrix.base_of(platform, framework).bootstrap is not None:
        # A bootstrapped base brings no Python distributions: anything else was slipped in. A
        # registry base (L4T) brings its own, which the matrix does not list.
        extra = sorted(set(have) - set(entry.packages) - set(entry.provided))
        checks.append(Check("installed beyond the pins", "nothing", ", ".join(extra) or "nothing",
                            FAIL if extra else PASS))
    return checks


def _pins(pins: Any) -> str:
    return ", ".join(f"{name}=={pins[name]}" for name in sorted(pins)) if pins else "(none)"


def _check(name: str, wanted: Any, found: Any) -> Check:
    found_text = "missing" if found is None else str(found)
    return Check(name, str(wanted), found_text, PASS if found_text == str(wanted) else FAIL)


def read_manifest(client: Any, image_id: str) -> dict[str, Any] | None:
    """The version manifest inside an image, copied from a created (never started) container."""
    from docker.errors import NotFound

    container = client.containers.create(image_id, ["true"], network_disabled=True)
    try:
        stream, _ = container.get_archive(MANIFEST)
        data = b"".join(stream)
    except NotFound:
        return None
    finally:
        container.remove(force=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        member = archive.next()
        handle = archive.extractfile(member) if member else None
        return json.loads(handle.read()) if handle else None


def resolve(client: Any, reference: str) -> Any:
    """The local image a tag, an id or a repo@sha256 digest names."""
    image = find_image(client, reference)
    if image is None:
        raise UserError(f"no image '{reference}' on this engine: give a tag, an id or a "
                        "repo@sha256:... digest (`docker images --digests` lists them)")
    return image


def checks_for(client: Any, matrix: Matrix, image: Any) -> tuple[str, list[Check]]:
    """What the image claims to be (platform/framework) and every check of it."""
    found = image.labels or {}
    platform = found.get(f"{LABEL}.platform", "")
    framework = found.get(f"{LABEL}.framework", "")
    if not matrix.framework_supported(platform, framework):
        valid = ", ".join(f"{p}/{f}" for p, f in matrix.selection())
        return f"{platform or '?'}/{framework or '?'}", [Check(
            f"labels {LABEL}.platform/framework", f"one of {valid}",
            f"{platform or 'missing'}/{framework or 'missing'}", FAIL)]
    checks = label_checks(matrix, platform, framework, found)
    checks += manifest_checks(matrix, platform, framework, read_manifest(client, image.id))
    return f"{platform}/{framework}", checks


def table(title: str, checks: list[Check]) -> Table:
    styles = {PASS: "green", FAIL: "bold red", NOTE: "yellow"}
    result = Table(title=title, title_justify="left")
    result.add_column("check", no_wrap=True)
    result.add_column("expected (matrix)", overflow="fold")
    result.add_column("found (image)", overflow="fold")
    result.add_column("result", no_wrap=True)
    for check in checks:
        # Text, not markup: a version or a label may contain brackets.
        result.add_row(Text(check.name), Text(check.expected), Text(check.found),
                       Text(check.result, style=styles[check.result]))
    return result


def verify_task(references: list[str], platform: str, console: Console) -> list[str]:
    """`invoke verify`: print a table per image; returns one line per image that failed."""
    matrix = load()
    client = connect()
    if not references:
        wanted = [matrix.tag(chosen, framework)
                  for chosen, framework in matrix.selection(platform or default_platform())]
        references = [tag for tag in wanted if find_image(client, tag) is not None]
        if not references:
            raise UserError(f"no {platform or default_platform()} images on this engine: "
                            "`invoke build`, `invoke pull` or `invoke load` one, or name one")
    failed = []
    for reference in references:
        image = resolve(client, reference)
        what, checks = checks_for(client, matrix, image)
        title = f"{reference} ({what}, {image.short_id})"
        console.print(table(title, checks))
        bad = [check.name for check in checks if check.result == FAIL]
        if bad:
            failed.append(f"{reference}: {len(bad)} of {len(checks)} checks failed: "
                          + ", ".join(bad))
        else:
            notes = sum(check.result == NOTE for check in checks)
            console.print(f"{reference}: all {len(checks) - notes} checks passed"
                          + (f" ({notes} note{'s' * (notes > 1)})" if notes else ""))
    return failed
