"""Every pinned closure of the version matrix resolves for its target (Jetson issue).

For each platform x framework, pip resolves the pins for the TARGET's wheel tags, Python and
architecture (`--platform`, `--python-version`, `--only-binary`, `--dry-run --report`: the
metadata of the very wheels a build would install, read through PyPI's PEP 658 metadata
files, nothing downloaded), and `pip check`'s rule is applied with the target's environment
markers (pip itself evaluates markers for the host): every requirement of every pinned wheel
must be met by the pins or by what the base image provides.

Wheels that only NVIDIA or the Jetson AI Lab serve (matrix `wheels`) cannot be resolved from
PyPI; their requirements are taken from WHEEL_METADATA below, which says where each came from.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from toolkit.images import matrix as matrices
from toolkit.images import wheels
from toolkit.images.matrix import ARCHES, canonical

pytestmark = pytest.mark.slow

# Wheels not on PyPI, by the file name they are published under: the version in their METADATA
# and their Requires-Dist, with where each came from.
UPSTREAM = ("stand-in: the Requires-Dist of PyPI's torch {} aarch64 wheel of the same source "
            "release (NVIDIA's own METADATA is not reachable from here)")
WHEEL_METADATA: dict[str, dict] = {
    "torch-2.1.0a0+41361538.nv23.06-cp38-cp38-linux_aarch64.whl": {
        "version": "2.1.0a0+41361538.nv23.06",
        "requires": ["filelock", "typing-extensions", "sympy", "networkx", "jinja2", "fsspec"],
        "source": UPSTREAM.format("2.1.0")},
    "torch-2.5.0a0+872d972e41.nv24.08.17622132-cp310-cp310-linux_aarch64.whl": {
        # The file name's version has .17622132 more than its METADATA's.
        "version": "2.5.0a0+872d972e41.nv24.08",
        "requires": ["filelock", "typing-extensions>=4.8.0", "networkx", "jinja2", "fsspec",
                     'sympy==1.13.1; python_version >= "3.9"'],
        "source": UPSTREAM.format("2.5.0")},
    "onnxruntime_gpu-1.16.0-cp38-cp38-linux_aarch64.whl": {
        "version": "1.16.0",
        "requires": ["coloredlogs", "flatbuffers", "numpy>=1.21.6", "packaging", "protobuf",
                     "sympy"],
        "source": "the Requires-Dist recorded in containers/matrix.toml"},
    "onnxruntime_gpu-1.23.0-cp310-cp310-linux_aarch64.whl": {
        "version": "1.23.0",
        "requires": ["coloredlogs", "flatbuffers", "numpy>=1.21.6", "packaging", "protobuf",
                     "sympy"],
        "source": "the Requires-Dist recorded in containers/matrix.toml"},
}


# Packages built from sdists (matrix `sdists`): their install_requires, read from the setup.py
# of the pinned archive.
SDIST_METADATA: dict[tuple[str, str], list[str]] = {
    ("pycuda", "2022.1"): ["pytools>=2011.2", "appdirs>=1.4.0", "mako"],
    ("pycuda", "2024.1.2"): ["pytools>=2011.2", "platformdirs>=2.2.0", "mako"],
    ("pytools", "2022.1.12"): ["platformdirs>=2.2.0", "dataclasses>=0.7; python_version<='3.6'",
                               "typing_extensions>=4.0; python_version<'3.11'"],
}


# Frameworks built from source (matrix `source`): the Requires-Dist of the same release's PyPI
# wheel (onnxruntime-training-cpu 1.19.2), as a stand-in for the wheel the build produces.
SOURCE_METADATA: dict[tuple[str, str], list[str]] = {
    ("onnxruntime-training", "1.19.2"): ["cerberus", "flatbuffers", "h5py", "numpy >=1.16.6",
                                         "onnx", "packaging", "protobuf", "sympy",
                                         "setuptools >=61.0.0"],
}


def marker_environment(platform: matrices.Platform) -> dict[str, str]:
    """PEP 508 marker values of the target, not of this host."""
    return {"platform_machine": ARCHES[platform.arch], "sys_platform": "linux",
            "platform_system": "Linux", "os_name": "posix", "python_version": platform.python,
            "python_full_version": platform.python + ".0", "implementation_name": "cpython",
            "implementation_version": platform.python + ".0",
            "platform_python_implementation": "CPython", "platform_release": "",
            "platform_version": "", "extra": ""}


def unmet(requirements: dict[str, list[str]], pins: dict[str, str],
          environment: dict[str, str]) -> list[str]:
    """pip check's rule: each requirement active on the target is met by exactly pinned
    versions. `requirements`: distribution -> its Requires-Dist."""
    problems = []
    for owner, lines in sorted(requirements.items()):
        for line in lines:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate(environment):
                continue
            name = canonical(requirement.name)
            if name not in pins:
                problems.append(f"{owner} requires {requirement}, which is not pinned")
            elif not requirement.specifier.contains(Version(pins[name]), prereleases=True):
                problems.append(f"{owner} requires {requirement}, pinned {name}=={pins[name]}")
    return problems


def resolved_metadata(platform: matrices.Platform, pins: dict[str, str], workdir) -> dict:
    """name -> Requires-Dist of the target wheel of each pin, as pip selects it."""
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps",
               "--ignore-installed", "--quiet", "--disable-pip-version-check",
               "--only-binary=:all:", "--report", str(workdir / "report.json"),
               "--target", str(workdir / "target"),
               *[f"--platform={tag}" for tag in wheels.platform_tags(platform.arch,
                                                                        platform.glibc)],
               *wheels.python_tags(platform.python),
               *[f"{name}=={version}" for name, version in sorted(pins.items())]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")]
        pytest.fail(f"pip cannot resolve the pins for the target: {errors or done.stderr[-800:]}")
    report = json.loads((workdir / "report.json").read_text())
    return {canonical(item["metadata"]["name"]): item["metadata"].get("requires_dist") or []
            for item in report["install"]}


CASES = [(platform, framework) for platform, framework in matrices.load().selection()]


@pytest.mark.parametrize("platform_name, framework", CASES)
def test_every_pinned_closure_resolves_for_its_target(platform_name, framework, tmp_path):
    loaded = matrices.load()
    platform = loaded.platform(platform_name)
    entry = loaded.framework(platform_name, framework)
    from_urls = {canonical(wheel.package) for wheel in entry.wheels}
    pins = dict(entry.packages)
    requirements = resolved_metadata(platform, {n: v for n, v in pins.items()
                                                if n not in from_urls}, tmp_path)
    for wheel in entry.wheels:
        name, known = canonical(wheel.package), WHEEL_METADATA.get(wheel.url_filename)
        if known is None:
            host = wheel.url.split("/")[2]
            pytest.skip(f"{wheel.url_filename} is served only by {host} and its metadata is not "
                        "recorded here (see WHEEL_METADATA)")
        # pip installs a wheel only when its METADATA version is the pinned one.
        assert known["version"] == pins[name], (
            f"{wheel.url_filename}: METADATA says {known['version']}, the pin {pins[name]}")
        requirements[name] = known["requires"]
    assert set(requirements) == set(pins), "pip selected other distributions than the pins"
    for sdist in entry.sdists:
        name = canonical(sdist.package)
        requirements[name] = SDIST_METADATA[(name, sdist.version)]
        pins[name] = sdist.version
    if entry.source is not None:
        name = canonical(entry.source.distribution)
        requirements[name] = SOURCE_METADATA[(name, entry.version)]
        pins[name] = entry.version
    provided = dict(entry.provided)
    problems = unmet(requirements, pins | provided, marker_environment(platform))
    assert problems == [], f"{platform_name}/{framework}: " + "; ".join(problems)


def test_the_check_catches_a_cuda_closure_on_a_cpu_platform():
    """torch 2.13.0's aarch64 wheel requires the CUDA 13 stack on every Linux (what the arm64
    pin had): the rule reports it; an x86-only marker does not count on aarch64."""
    arm64 = matrices.load().platform("arm64")
    requirements = {"torch": ['cuda-toolkit[cudart]==13.0.3; platform_system == "Linux"',
                              'nvidia-nccl-cu12==2.21.5; platform_machine == "x86_64"',
                              "filelock"]}
    problems = unmet(requirements, {"torch": "2.13.0", "filelock": "3.20.0"},
                     marker_environment(arm64))
    assert problems == ["torch requires cuda-toolkit[cudart]==13.0.3; platform_system == "
                        '"Linux", which is not pinned']
