"""The per-platform wheelhouse: every pinned wheel downloaded on the host, hashed, then installed
inside the build stage with `--no-index --require-hashes`.

Why on the host: a build that fetches nothing works behind any proxy and on machines that cannot
reach an index at all, and the hashes pin the bytes, not only the version numbers. pip downloads
for the target (its platform tags, Python and ABI) with --no-deps, because for another platform
pip evaluates dependency markers against the host; the matrix lists the whole closure instead.
Hashes are recorded on first download (hashes.json) and every later use is checked against
them; a wheel whose sha256 the matrix gives is checked against that.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from toolkit.errors import UserError
from toolkit.images.matrix import ARCHES, CONTAINERS, Matrix, canonical

WHEELHOUSE = CONTAINERS / "wheelhouse"
HASHES = "hashes.json"
BUILD_WHEELHOUSE = "/tmp/build/wheelhouse"  # where the build stage sees the wheelhouse


REQUIREMENTS = "requirements.txt"  # the image's packages
BUILD_REQUIREMENTS = "build-requirements.txt"  # setuptools and wheel, for building sdists
SDISTS = "sdists.txt"  # packages built from source in the build stage
_OFFLINE = ["--no-index", "--no-deps", "--require-hashes", "--no-cache-dir",
            "--disable-pip-version-check"]


def install_arguments(wheelhouse: str, target: str, requirements: str = REQUIREMENTS,
                      ) -> list[str]:
    """`pip install`'s arguments in an image's build stage (containers/Dockerfile.common.j2
    renders them; the tests run the very same command on the host): offline, the exact
    closure, every file hash-checked."""
    return [*_OFFLINE, "--no-warn-script-location", "--find-links", wheelhouse,
            "--target", target, "--requirement", f"{wheelhouse}/{requirements}"]


def sdist_build_arguments(wheelhouse: str, wheel_dir: str) -> list[str]:
    """`pip wheel`'s arguments that build the pinned sdists, offline and hash-checked, with the
    build tools and the image's packages on PYTHONPATH (no build isolation: it would fetch)."""
    return [*_OFFLINE, "--no-build-isolation", "--find-links", wheelhouse,
            "--wheel-dir", wheel_dir, "--requirement", f"{wheelhouse}/{SDISTS}"]


def directory(platform: str, root: Path = WHEELHOUSE) -> Path:
    return root / platform


def platform_tags(arch: str, glibc: str) -> list[str]:
    """Every manylinux tag a glibc-`glibc` system accepts (pip does not expand them itself)."""
    machine = ARCHES[arch]
    newest = int(glibc.split(".")[1])
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(newest, 4, -1)]
    tags += [f"manylinux2014_{machine}", f"linux_{machine}"]
    if machine == "x86_64":
        tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    return tags


def python_tags(python: str) -> list[str]:
    major, minor = python.split(".")
    abi = f"cp{major}{minor}" + ("m" if int(minor) < 8 else "")
    return ["--python-version", python, "--implementation", "cp", "--abi", abi,
            "--abi", "abi3", "--abi", "none"]


def parse_wheel(filename: str) -> tuple[str, str] | None:
    """(canonical name, version) of a wheel file name, None for anything else."""
    match = re.match(r"^([^-]+)-([^-]+)-.+\.whl$", filename)
    return (canonical(match.group(1)), match.group(2)) if match else None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pins(matrix: Matrix, platform: str, framework: str) -> dict[str, str]:
    """Canonical name -> version of every wheel this image's build needs: pip itself, the
    packages, and the build tools of its sdists."""
    entry = matrix.framework(platform, framework)
    return {"pip": matrix.platform(platform).pip, **entry.build_packages, **entry.packages}


def _index(folder: Path) -> dict[tuple[str, str], list[Path]]:
    found: dict[tuple[str, str], list[Path]] = {}
    for path in sorted(folder.glob("*.whl")):
        key = parse_wheel(path.name)
        if key:
            found.setdefault(key, []).append(path)
    return found


def _download(arguments: list[str], folder: Path, what: str, binary_only: bool = True) -> None:
    command = [sys.executable, "-m", "pip", "download", "--no-deps",
               *(["--only-binary=:all:"] if binary_only else []),
               "--disable-pip-version-check", "--dest", str(folder), *arguments]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
        reason = (errors or done.stderr.strip().splitlines()[-1:] or ["no output"])[0]
        raise UserError(f"pip download of {what} failed: {reason}")


def fetch(url: str, path: Path) -> None:
    """A wheel that is not on an index, fetched as a file (not through pip, which would check
    its METADATA version against the URL's file name) and stored as `path`; sha256 is checked
    afterwards like every wheel's."""
    import urllib.error
    import urllib.request

    partial = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as out:
            while block := response.read(1 << 20):
                out.write(block)
    except (urllib.error.URLError, OSError) as error:
        partial.unlink(missing_ok=True)
        raise UserError(f"download of {url} failed: {getattr(error, 'reason', error)}") from None
    partial.replace(path)


def fill(matrix: Matrix, platform: str, framework: str, console: Console,
         root: Path = WHEELHOUSE, verify_later: bool = False) -> Path:
    """Download what is missing, check every hash (unless the caller does it next: the build
    context hashes every file anyway); returns the wheelhouse directory."""
    chosen, entry = matrix.platform(platform), matrix.framework(platform, framework)
    folder = directory(platform, root)
    folder.mkdir(parents=True, exist_ok=True)
    wanted = pins(matrix, platform, framework)
    by_url = {canonical(wheel.package): wheel for wheel in entry.wheels}
    have = _index(folder)
    missing = {name: version for name, version in wanted.items() if (name, version) not in have}
    target = [f"--platform={tag}" for tag in platform_tags(chosen.arch, chosen.glibc)]
    target += python_tags(chosen.python)
    from_index = [f"{name}=={version}" for name, version in missing.items()
                  if name not in by_url]
    if from_index:
        console.print(f"wheels {platform}/{framework}: downloading {len(from_index)} wheels for "
                      f"{chosen.arch}, Python {chosen.python}")
        _download(target + from_index, folder, ", ".join(from_index))
    for sdist in entry.sdists:
        if not (folder / sdist.filename).is_file():
            console.print(f"wheels {platform}/{framework}: downloading the sdist "
                          f"{sdist.package}=={sdist.version}")
            _download(["--no-binary=:all:", "--no-build-isolation",
                       f"{sdist.package}=={sdist.version}"], folder, sdist.filename,
                      binary_only=False)
    for name in missing:
        if name in by_url:
            console.print(f"wheels {platform}/{framework}: downloading {by_url[name].url}")
            fetch(by_url[name].url, folder / by_url[name].filename)
    if missing or not verify_later:
        record_hashes(matrix, platform, framework, folder)
    return folder


def record_hashes(matrix: Matrix, platform: str, framework: str, folder: Path) -> dict[str, str]:
    """Filename -> sha256 of this image's wheels; checked against hashes seen before."""
    entry = matrix.framework(platform, framework)
    expected = {wheel.filename: wheel.sha256 for wheel in entry.wheels if wheel.sha256}
    expected |= {sdist.filename: sdist.sha256 for sdist in entry.sdists}
    ledger_path = folder / HASHES
    ledger = json.loads(ledger_path.read_text()) if ledger_path.exists() else {}
    chosen = {}
    for path in files(matrix, platform, framework, folder) + sdist_files(matrix, platform,
                                                                        framework, folder):
        digest = sha256(path)
        pinned = expected.get(path.name) or ledger.get(path.name)
        if pinned and pinned != digest:
            source = "the matrix" if path.name in expected else f"{ledger_path} (first download)"
            raise UserError(f"{path} has sha256 {digest[:16]}…, {source} says "
                            f"{pinned[:16]}…: delete it and run `invoke wheels` again")
        chosen[path.name] = digest
    ledger.update(chosen)
    ledger_path.write_text(json.dumps(ledger, indent=1, sort_keys=True) + "\n")
    return chosen


def files(matrix: Matrix, platform: str, framework: str, folder: Path) -> list[Path]:
    """The wheel files of this image's pins; a UserError naming what is missing."""
    have = _index(folder)
    chosen, missing = [], []
    for name, version in pins(matrix, platform, framework).items():
        if (name, version) in have:
            chosen += have[(name, version)]
        else:
            missing.append(f"{name}=={version}")
    if missing:
        raise UserError(f"the {platform} wheelhouse lacks {', '.join(missing)}: run "
                        f"`invoke wheels --platform {platform} --framework {framework}`")
    return chosen


def sdist_files(matrix: Matrix, platform: str, framework: str, folder: Path) -> list[Path]:
    """The source archives of this image's sdists; a UserError naming what is missing."""
    entry = matrix.framework(platform, framework)
    missing = [s.filename for s in entry.sdists if not (folder / s.filename).is_file()]
    if missing:
        raise UserError(f"the {platform} wheelhouse lacks {', '.join(missing)}: run "
                        f"`invoke wheels --platform {platform} --framework {framework}`")
    return [folder / s.filename for s in entry.sdists]


def sdist_requirements(matrix: Matrix, platform: str, framework: str, folder: Path) -> str:
    """sdists.txt: each sdist pinned with the hash of its archive."""
    ledger = json.loads((folder / HASHES).read_text())
    return "".join(f"{s.package}=={s.version} --hash=sha256:{ledger[s.filename]}\n"
                   for s in matrix.framework(platform, framework).sdists)


def requirements(matrix: Matrix, platform: str, framework: str, folder: Path,
                 build_tools: bool = False) -> str:
    """requirements.txt for pip --require-hashes: every pin with the hashes of its files (the
    image's packages; with build_tools, the build stage's tools for its sdists instead)."""
    ledger = json.loads((folder / HASHES).read_text())
    entry = matrix.framework(platform, framework)
    chosen = entry.build_packages if build_tools else entry.packages
    by_pin: dict[str, list[str]] = {}
    for path in files(matrix, platform, framework, folder):
        name, version = parse_wheel(path.name) or ("", "")
        if chosen.get(name) == version:
            by_pin.setdefault(f"{name}=={version}", []).append(ledger[path.name])
    return "".join(f"{pin} " + " ".join(f"--hash=sha256:{digest}" for digest in digests) + "\n"
                   for pin, digests in sorted(by_pin.items()))
