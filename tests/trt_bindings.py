"""The real TensorRT Python bindings, importable on a machine without CUDA or TensorRT.

PyPI serves NVIDIA's pybind11 module alone (tensorrt-bindings 8.6.1, tensorrt-cu12-bindings
10.3.0: a `tensorrt_bindings/tensorrt.so`). It needs libnvinfer and friends only for the few C
entry points it calls (builder and runtime factories, the plugin registry, the parsers):
stub libraries with those names, each symbol returning null, let it import, and every real
class, enum member and signature can then be inspected. Nothing can be built or run with it.

Wheels are pinned by sha256 and cached (with the stubs) in build/tensorrt-bindings/<version>/.
Needs pip's network access (PyPI), a C compiler and binutils (nm, readelf).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "tensorrt-bindings"

# version of the bindings -> (PyPI distribution, sha256 of its cp311 manylinux x86_64 wheel)
WHEELS = {
    "8.6.1": ("tensorrt-bindings",
              "705cfab5c60f0bed7d939559d880165a761bd9ac0f4203004948a760eef99838"),
    "10.3.0": ("tensorrt-cu12-bindings",
               "59ace22d7f2ca1e9dcde2cb0cb5916912cb3cd5a9d72dd7852be0160d9b3a0ee"),
}
# Symbols the interpreter, libc and libstdc++ provide (or that are weak): never stubbed.
_PROVIDED = ("Py", "_Py", "_ITM_", "__gmon_start__", "__pthread_key_create")


class Unavailable(Exception):
    """The bindings cannot be prepared here (no network, no compiler); says what is missing."""


def _run(*args: str) -> str:
    try:
        return subprocess.run(args, check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        raise Unavailable(f"{args[0]} not found (install gcc and binutils)") from None
    except subprocess.CalledProcessError as error:
        raise Unavailable(f"{' '.join(args[:3])} failed: {error.stderr.strip()[-300:]}") from None


def _download(version: str, into: Path) -> Path:
    distribution, sha256 = WHEELS[version]
    into.mkdir(parents=True, exist_ok=True)
    _run(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         f"{distribution}=={version}", "-d", str(into))
    (wheel,) = into.glob("*.whl")
    got = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if got != sha256:
        raise Unavailable(f"{wheel.name}: sha256 {got}, pinned {sha256}")
    return wheel


def stub_symbols(module: Path) -> list[str]:
    """The module's undefined, unversioned symbols that TensorRT's libraries would provide."""
    symbols = []
    for line in _run("nm", "-D", "--undefined-only", "--format=posix", str(module)).splitlines():
        name = line.split()[0]
        if "@" not in name and not name.startswith(_PROVIDED):
            symbols.append(name)
    return symbols


def needed_libraries(module: Path) -> list[str]:
    """The NVIDIA libraries (sonames) the module links against."""
    names = []
    for line in _run("readelf", "-d", str(module)).splitlines():
        if "(NEEDED)" in line and "libnv" in line:
            names.append(line.split("[")[1].rstrip("]"))
    return names


def build_stubs(module: Path, into: Path) -> None:
    """One shared library per needed soname, each defining every stub symbol as null."""
    into.mkdir(parents=True, exist_ok=True)
    source = into / "stubs.c"
    source.write_text("".join(
        f'void *stub_{i}(void) __asm__("{name}");\nvoid *stub_{i}(void) {{ return 0; }}\n'
        for i, name in enumerate(stub_symbols(module))))
    compiler = os.environ.get("CC", "cc")
    for soname in needed_libraries(module):
        _run(compiler, "-shared", "-fPIC", "-o", str(into / soname), f"-Wl,-soname,{soname}",
             str(source))


def prepare(version: str) -> dict[str, str]:
    """Environment variables under which `import tensorrt_bindings` gives the real bindings."""
    target = CACHE / version
    site, stubs = target / "site", target / "stubs"
    if not (target / "ready").is_file():
        shutil.rmtree(target, ignore_errors=True)
        wheel = _download(version, target / "wheel")
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)
        build_stubs(site / "tensorrt_bindings" / "tensorrt.so", stubs)
        (target / "ready").write_text(version)
    return {"PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]),
            "LD_LIBRARY_PATH": str(stubs)}
