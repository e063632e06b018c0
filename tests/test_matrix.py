"""The version matrix and the Dockerfiles rendered from it, checked without Docker.

L4T images cannot be built here (no registry, no Jetson), so their Dockerfiles are rendered and
checked statically: hadolint, bases and pins as the matrix says, nothing of the build stage in
the final stage.
"""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from toolkit.device import versions
from toolkit.errors import UserError
from toolkit.images import build as builder
from toolkit.images import matrix, naming, wheels

MATRIX_TEXT = matrix.MATRIX.read_text()
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))


def every_entry():
    loaded = matrix.load()
    return [(p, f) for p in loaded.platforms for f in matrix.FRAMEWORKS]


def test_the_matrix_loads_with_every_platform_of_the_issue():
    loaded = matrix.load()
    assert set(loaded.platforms) == {"l4t-r32.7.1", "l4t-r35.4.1", "l4t-r36.4.0", "arm64",
                                     "amd64"}
    assert loaded.platform("l4t-r35.4.1").python == "3.8"
    assert loaded.platform("l4t-r32.7.1").cuda == "10.2"


@pytest.mark.parametrize("platform, framework", every_entry())
def test_every_framework_is_pinned_or_says_why_not(platform, framework):
    entry = matrix.load().platform(platform).frameworks[framework]
    if not entry.supported:
        assert len(entry.unsupported) > 20  # a reason a reader can act on
        return
    assert entry.version and entry.import_
    assert entry.packages or entry.provided
    for name, version in {**entry.packages, **entry.provided}.items():
        assert re.fullmatch(r"\d+(\.\d+)*((a|b|rc)\d+)?(\+[\w.]+)?", version), (name, version)
    for wheel in entry.wheels:  # not on PyPI: a URL, and a hash or the reason it is missing
        assert wheel.url.endswith(".whl") and f"-{entry.packages[wheel.package]}-" in wheel.filename
        assert re.fullmatch(r"[0-9a-f]{64}", wheel.sha256) or wheel.unverified


# A devpi index (the Jetson AI Lab's) serves a file at /+f/<3 hex>/<13 hex>/<name>: the first 16
# hex digits of its sha256, so a pinned hash that disagrees with its own URL was mis-copied.
DEVPI_FILE = re.compile(r"/\+f/([0-9a-f]{3})/([0-9a-f]{13})/[^/]+\.whl$")


def l4t_wheels():
    loaded = matrix.load()
    return [(p, f, wheel) for p, platform in loaded.platforms.items() if p.startswith("l4t-")
            for f, entry in platform.frameworks.items() for wheel in entry.wheels]


@pytest.mark.parametrize("platform, framework, wheel", l4t_wheels(),
                         ids=lambda value: getattr(value, "filename", value))
def test_every_l4t_wheel_has_its_sha256_or_says_why_not(platform, framework, wheel):
    if wheel.sha256:
        assert re.fullmatch(r"[0-9a-f]{64}", wheel.sha256)
        assert not wheel.unverified, "a pinned hash needs no excuse"
    else:
        assert len(wheel.unverified) > 20, "an empty sha256 needs a reason a reader can act on"
    devpi = DEVPI_FILE.search(wheel.url)
    if devpi:
        assert wheel.sha256.startswith(devpi.group(1) + devpi.group(2)), wheel.url


def test_l4t_onnxruntime_gpu_pins_name_their_wheel_or_say_what_is_missing():
    loaded = matrix.load()
    for name, platform in loaded.platforms.items():
        if not name.startswith("l4t-"):
            continue
        entry = platform.frameworks["onnxruntime"]
        if not entry.supported:
            assert "sha256" in entry.unsupported, name  # what is missing, not just "not yet"
            continue
        assert [wheel.package for wheel in entry.wheels] == ["onnxruntime-gpu"], name
        assert "onnxruntime" not in entry.packages, "the CPU wheel would shadow the GPU one"
        python = "cp" + platform.python.replace(".", "")
        abi = wheels.python_tags(platform.python)[5]  # cp36m on 3.6, else the same as python
        assert entry.wheels[0].filename.endswith(f"-{python}-{abi}-linux_aarch64.whl"), name


def test_onnxruntime_training_on_arm_is_a_source_build_on_jetpack_5_and_6_only():
    """No aarch64 training wheel exists: the Pi and JetPack 4 say so; JetPack 5 and 6 build it
    from source with training and CUDA for their own CUDA and GPU architectures (Meißl trained
    with ONNX Runtime Training on an Orin), labelled unverified until a board builds it."""
    loaded = matrix.load()
    for name in ("arm64", "l4t-r32.7.1"):
        assert "aarch64" in loaded.platform(name).frameworks["onnxruntime-training"].unsupported
    for name, cuda, arch in (("l4t-r35.4.1", "11.4", "72;87"), ("l4t-r36.4.0", "12.6", "87")):
        entry = loaded.framework(name, "onnxruntime-training")
        assert entry.source is not None and loaded.platform(name).cuda == cuda
        build = list(entry.source.build)
        assert "--enable_training" in build and "--use_cuda" in build and "--build_wheel" in build
        assert build[build.index("--cuda_version") + 1] == cuda
        assert f"CMAKE_CUDA_ARCHITECTURES={arch}" in build and "87" in arch.split(";")  # Orin
        assert ("--disable_types" in build) == (cuda < "11.8")  # build.py's rule below 11.8
        assert "--use_tensorrt" not in build
        assert loaded.hardware(name, "onnxruntime-training").startswith("unverified on hardware")
        text = builder.render(loaded, name, "onnxruntime-training")
        build_stage, final = text.split("\nFROM ")[1:]
        commands = builder.source_build_commands(loaded, name, "onnxruntime-training")
        for key in ("clone", "check", "fixes", "build", "wheel"):
            assert commands[key] in build_stage, key
        assert "'CMAKE_CUDA_ARCHITECTURES=72;87'" in commands["build"] or arch == "87"
        assert entry.source.commit in build_stage and "/tmp/build/src" not in final
        assert naming.expected(loaded, name, "onnxruntime-training")["packages"][
            "onnxruntime-training"] == "1.19.2"


def _broken(tmp_path, old, new):
    assert old in MATRIX_TEXT, old
    path = tmp_path / "matrix.toml"
    path.write_text(MATRIX_TEXT.replace(old, new, 1))
    return path


@pytest.mark.parametrize("old, new, message", [
    ('version = "1.19.2"\nimport = "onnxruntime"', 'version = ">=1.19"\nimport = "onnxruntime"',
     "platforms.amd64.frameworks.onnxruntime.version: String should match pattern"),
    ("[platforms.amd64.frameworks.tensorrt]", "[platforms.amd64.frameworks.tensorflow]",
     "platforms.amd64.frameworks: unknown framework 'tensorflow'; valid: onnxruntime, "),
    ('python = "3.11"', 'python = "three"', "platforms.amd64.python: String should match"),
    ("schema = 1", "schema = 2", "schema: Input should be 1"),
    ('arch = "amd64"', 'arch = "riscv64"', "platforms.amd64.arch: Input should be 'amd64' or"),
    ('packages = { onnxruntime = "1.19.2"', 'pakages = { onnxruntime = "1.19.2"',
     "platforms.amd64.frameworks.onnxruntime.pakages: Extra inputs are not permitted"),
    ('sha256 = "5112e2ef', 'sha256 = "not-a-hash', "sha256: String should match pattern"),
    ('sha256 = ""\nunverified = "sha256 not yet', 'sha256 = ""\nnote = "sha256 not yet',
     "Extra inputs are not permitted"),
    ('import = "torch"\nalso_import = ["onnx"]\n# The CPU', 'also_import = ["onnx"]\n# The CPU',
     "give `version` and `import` (or `unsupported` with the reason)"),
    ('unsupported = "a Raspberry Pi 4 has no NVIDIA GPU"',
     'unsupported = "no GPU"\nversion = "8.6"', "an unsupported framework pins nothing"),
    ("schema = 1", "schema = 1\n[broken", "malformed TOML"),
])
def test_a_broken_matrix_is_one_line_naming_where(tmp_path, old, new, message):
    with pytest.raises(UserError) as caught:
        matrix.load(_broken(tmp_path, old, new))
    text = str(caught.value)
    assert message in text and "\n" not in text, text


def test_a_wheel_url_must_carry_the_pinned_version(tmp_path):
    path = _broken(tmp_path, "torch-2.1.0a0+41361538.nv23.06-cp38", "torch-2.0.0-cp38")
    with pytest.raises(UserError, match="is not version 2.1.0a0"):
        matrix.load(path)


def test_a_missing_framework_must_be_pinned_or_explained(tmp_path):
    text = MATRIX_TEXT.replace('[platforms.arm64.frameworks.tensorrt]\nunsupported = '
                               '"a Raspberry Pi 4 has no NVIDIA GPU"\n', "")
    path = tmp_path / "matrix.toml"
    path.write_text(text)
    with pytest.raises(UserError, match="tensorrt: pin it or say why it is unsupported"):
        matrix.load(path)


def test_selection_names_what_is_valid():
    loaded = matrix.load()
    with pytest.raises(UserError, match="unknown platform 'jetson'; valid: amd64, arm64"):
        loaded.selection("jetson")
    with pytest.raises(UserError,
                       match="unknown framework 'tf'; valid: onnxruntime, onnxruntime-training, p"):
        loaded.selection("amd64", "tf")
    with pytest.raises(UserError, match="onnxruntime-training is not supported on arm64: no"):
        loaded.selection("arm64", "onnxruntime-training")
    assert loaded.selection("amd64") == [("amd64", "onnxruntime"),
                                         ("amd64", "onnxruntime-training"), ("amd64", "pytorch")]


def test_the_hash_depends_on_the_entry_not_on_the_formatting(tmp_path):
    loaded = matrix.load()
    before = {key: loaded.entry_hash(*key) for key in loaded.selection()}
    assert before == {key: matrix.load().entry_hash(*key) for key in loaded.selection()}
    assert all(re.fullmatch(r"[0-9a-f]{12}", value) for value in before.values())
    reformatted = tmp_path / "matrix.toml"
    reformatted.write_text("\n".join(line.rstrip() + "   " if not line.startswith("#") else ""
                                     for line in MATRIX_TEXT.splitlines()))
    assert {key: matrix.load(reformatted).entry_hash(*key) for key in before} == before
    changed = matrix.load(_broken(tmp_path, 'torch = "2.13.0+cpu", onnx = "1.17.0", numpy = '
                                  '"1.26.4"', 'torch = "2.13.0+cpu", onnx = "1.17.0", numpy = '
                                  '"1.26.3"'))
    assert changed.entry_hash("amd64", "pytorch") != before[("amd64", "pytorch")]
    assert changed.entry_hash("amd64", "onnxruntime") == before[("amd64", "onnxruntime")]
    assert loaded.tag("amd64", "onnxruntime") == (
        f"edgerepro/onnxruntime:amd64-{before[('amd64', 'onnxruntime')]}")


@pytest.mark.parametrize("platform, framework", matrix.load().selection())
def test_rendered_dockerfiles_pass_static_checks(tmp_path, platform, framework):
    loaded = matrix.load()
    text = builder.render(loaded, platform, framework, ca_bundle=True)
    stages = text.split("\nFROM ")
    assert len(stages) == 3, "a build stage and a final stage"
    base = loaded.base_of(platform, framework)
    assert stages[1].startswith(f"{base.ref} AS build") and stages[2].startswith(base.ref)
    final = stages[2]
    for build_only in ("wheelhouse", "ca.crt", "PIP_CERT", "pip-"):
        assert build_only not in final, build_only
    assert f"COPY --from=build {builder.SITE}/" in final
    assert re.search(r"^USER \d+:\d+$", final, re.M) and "USER 0" not in final
    assert "--require-hashes" in stages[1] and "--no-index" in stages[1]
    assert loaded.entry_hash(platform, framework) in text
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(text)
    # DL3006/DL3007: a registry base is pinned by its tag (or digest, where known) in the matrix,
    # which hadolint cannot see; DL4006 concerns pipes, which these RUNs do not use.
    done = subprocess.run([HADOLINT, "--ignore", "DL3006", "--ignore", "DL3007",
                           str(dockerfile)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def _fake_wheelhouse(tmp_path, loaded, platform, framework):
    folder = tmp_path / platform
    folder.mkdir()
    python = "cp" + loaded.platform(platform).python.replace(".", "")
    for name, version in wheels.pins(loaded, platform, framework).items():
        (folder / f"{name.replace('-', '_')}-{version}-{python}-none-any.whl").write_bytes(
            name.encode())
    for sdist in loaded.framework(platform, framework).sdists:  # hashes: the stand-ins' own
        (folder / sdist.filename).write_bytes(sdist.package.encode())
        object.__setattr__(sdist, "sha256", wheels.sha256(folder / sdist.filename))
    return folder


@pytest.mark.parametrize("platform, framework", matrix.load().selection())
def test_every_referenced_wheel_is_pinned_with_its_hash(tmp_path, platform, framework):
    loaded = matrix.load()
    entry = loaded.framework(platform, framework)
    folder = _fake_wheelhouse(tmp_path, loaded, platform, framework)
    for wheel in entry.wheels:  # the matrix's hash is for the real file; use the ledger here
        object.__setattr__(wheel, "sha256", "")
    hashes = wheels.record_hashes(loaded, platform, framework, folder)
    lines = wheels.requirements(loaded, platform, framework, folder).splitlines()
    assert len(lines) == len(entry.packages)
    for line in lines:
        assert re.fullmatch(r"[a-z0-9-]+==\S+ --hash=sha256:[0-9a-f]{64}", line), line
    assert sorted(line.split()[0] for line in lines) == sorted(
        f"{name}=={version}" for name, version in entry.packages.items())
    assert set(hashes.values()) >= {line.split(":")[-1] for line in lines}


def test_a_wheel_whose_bytes_changed_is_refused(tmp_path):
    loaded = matrix.load()
    folder = _fake_wheelhouse(tmp_path, loaded, "amd64", "onnxruntime")
    wheels.record_hashes(loaded, "amd64", "onnxruntime", folder)
    victim = next(folder.glob("numpy-*.whl"))
    victim.write_bytes(b"tampered")
    with pytest.raises(UserError, match=r"numpy-1.26.4.* has sha256 .*\(first download\) says"):
        wheels.record_hashes(loaded, "amd64", "onnxruntime", folder)


def test_a_missing_wheel_says_how_to_get_it(tmp_path):
    loaded = matrix.load()
    folder = _fake_wheelhouse(tmp_path, loaded, "amd64", "onnxruntime")
    next(folder.glob("sympy-*.whl")).unlink()
    with pytest.raises(UserError, match=r"lacks sympy==1.14.0: run `invoke wheels --platform "
                                        r"amd64 --framework onnxruntime`"):
        wheels.files(loaded, "amd64", "onnxruntime", folder)


def test_pip_is_told_the_target_not_the_host():
    assert "manylinux_2_36_aarch64" in wheels.platform_tags("arm64", "2.36")
    assert "manylinux_2_17_aarch64" in wheels.platform_tags("arm64", "2.36")
    assert "manylinux_2_28_x86_64" not in wheels.platform_tags("amd64", "2.27")
    assert wheels.python_tags("3.6")[5] == "cp36m" and wheels.python_tags("3.11")[5] == "cp311"


def test_the_version_report_reads_distributions_without_importlib_metadata():
    found = versions.report(["json"])
    assert found["distributions"]["numpy"] and found["python"] == sys.version.split()[0]
    assert found["modules"] == {"json": versions.module_versions(["json"])["json"]}


def test_version_matching_is_exact_for_pins_and_prefix_for_short_ones():
    assert matrix.version_matches("3.11", "3.11.2")
    assert matrix.version_matches("8.5.2", "8.5.2.2")
    assert not matrix.version_matches("3.1", "3.11.2")
    assert not matrix.version_matches("2.13.0+cpu", "2.13.0+cpu.1")
    assert not matrix.version_matches("1.19.2", "1.19.0")


@pytest.mark.parametrize("args, expected", [
    (["build", "--platform", "jetson"], "unknown platform 'jetson'; valid: amd64, arm64"),
    (["build", "--framework", "tf"],
     "unknown framework 'tf'; valid: onnxruntime, onnxruntime-training, pytorch"),
    (["build", "--platform", "arm64", "--framework", "tensorrt"],
     "tensorrt is not supported on arm64: a Raspberry Pi 4 has no NVIDIA GPU"),
    (["build", "--platform", "amd64"], "no Docker engine answers at tcp://127.0.0.1:9"),
    (["build", "--ca-bundle", "/nonexistent.pem"], "--ca-bundle /nonexistent.pem: no such file"),
    (["base", "--platform", "l4t-r36.4.0"], "l4t-r36.4.0 may not use a bootstrapped base"),
    (["wheels", "--platform", "x"], "unknown platform 'x'"),
])
def test_build_mistakes_are_one_line(args, expected):
    env = {"DOCKER_HOST": "tcp://127.0.0.1:9", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, text=True,
                          capture_output=True, env=env, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert expected in lines[-1] and "Traceback" not in done.stderr, done.stderr
    assert all(line.startswith("host runner") for line in lines[:-1]), done.stderr


def test_build_without_an_engine_is_a_note_not_a_failure():
    env = {"DOCKER_HOST": "tcp://127.0.0.1:9", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "invoke", "build"], cwd=ROOT, text=True,
                          capture_output=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "images: skipped, no Docker engine answers" in done.stderr


def _standin_wheel(folder: Path, file_version: str, metadata_version: str) -> Path:
    """A pure-Python 'torch' wheel whose file name carries `file_version` and whose METADATA
    says `metadata_version` (NVIDIA's JetPack 6 wheel: ...nv24.08.17622132 vs ...nv24.08)."""
    import base64
    import hashlib
    import zipfile

    dist_info = f"torch-{metadata_version}.dist-info"
    files = {"torch/__init__.py": f"__version__ = '{metadata_version}'\n",
             f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: torch\n"
                                      f"Version: {metadata_version}\n",
             f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                   "Tag: py3-none-any\n"}

    def entry(name: str, text: str) -> str:
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest())
        return f"{name},sha256={digest.rstrip(b'=').decode()},{len(text.encode())}\n"

    record = "".join(entry(n, t) for n, t in files.items()) + f"{dist_info}/RECORD,,\n"
    path = folder / f"torch-{file_version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in {**files, f"{dist_info}/RECORD": record}.items():
            archive.writestr(name, text)
    return path


def _install(wheelhouse: Path, target: Path) -> subprocess.CompletedProcess:
    """The build stage's pip install (wheels.install_arguments), run on the host."""
    return subprocess.run([sys.executable, "-m", "pip", "install",
                           *wheels.install_arguments(str(wheelhouse), str(target))],
                          capture_output=True, text=True, timeout=300)


def test_a_wheel_whose_name_and_metadata_disagree_installs_under_its_stored_name(tmp_path):
    """JetPack 6's torch: pinned by its file name's version pip refuses it; stored under the
    name its METADATA implies (matrix `store_as`) and pinned by that version, the build
    stage's own install command installs it, hash-checked."""
    long, short = "2.5.0a0+872d972e41.nv24.08.17622132", "2.5.0a0+872d972e41.nv24.08"
    served = _standin_wheel(tmp_path, long, short)
    digest = wheels.sha256(served)

    as_served = tmp_path / "as-served"
    as_served.mkdir()
    shutil.copy(served, as_served / served.name)
    (as_served / "requirements.txt").write_text(f"torch=={long} --hash=sha256:{digest}\n")
    refused = _install(as_served, tmp_path / "site-refused")
    # pip reads the METADATA version and finds no candidate for the pinned one.
    assert refused.returncode != 0 and (f"Cannot install torch=={long}" in refused.stderr
                                        or "inconsistent version" in refused.stderr), \
        refused.stderr

    text = MATRIX_TEXT
    entry = matrix.load().framework("l4t-r36.4.0", "pytorch")
    (wheel,) = entry.wheels
    assert entry.packages["torch"] == short and wheel.filename == \
        f"torch-{short}-cp310-cp310-linux_aarch64.whl" and long in wheel.url_filename
    text = text.replace(wheel.url_filename, f"torch-{long}-py3-none-any.whl").replace(
        wheel.filename, f"torch-{short}-py3-none-any.whl")
    text = text.replace('sha256 = ""\nunverified = "sha256 not yet recorded: NVIDIA\'s download '
                        'server is not reachable from the machine that wrote this entry"',
                        f'sha256 = "{digest}"', 1)
    (tmp_path / "matrix.toml").write_text(text)
    loaded = matrix.load(tmp_path / "matrix.toml")
    standin = loaded.framework("l4t-r36.4.0", "pytorch").wheels[0]
    assert standin.sha256 == digest
    house = tmp_path / "wheelhouse"
    house.mkdir()
    wheels.fetch(served.as_uri(), house / standin.filename)  # what `invoke wheels` does
    for name, version in wheels.pins(loaded, "l4t-r36.4.0", "pytorch").items():
        if name != "torch":  # the rest of the closure: stand-ins, not installed here
            (house / f"{name.replace('-', '_')}-{version}-py3-none-any.whl").write_bytes(b"x")
    wheels.record_hashes(loaded, "l4t-r36.4.0", "pytorch", house)
    lines = wheels.requirements(loaded, "l4t-r36.4.0", "pytorch", house).splitlines()
    (torch_line,) = [line for line in lines if line.startswith("torch==")]
    assert torch_line == f"torch=={short} --hash=sha256:{digest}"
    (house / "requirements.txt").write_text(torch_line + "\n")
    done = _install(house, tmp_path / "site")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / f"torch-{short}.dist-info").is_dir()


def test_pycuda_is_built_from_its_sdist_in_every_l4t_tensorrt_image(tmp_path):
    """No aarch64 pycuda wheel exists: each L4T TensorRT image builds it from its pinned sdist
    in the build stage (the exact offline, hash-checked command), and neither the compiler nor
    the build tools reach the final stage."""
    loaded = matrix.load()
    for platform in ("l4t-r32.7.1", "l4t-r35.4.1", "l4t-r36.4.0"):
        entry = loaded.framework(platform, "tensorrt")
        assert "pycuda" in [sdist.package for sdist in entry.sdists], platform
        text = builder.render(loaded, platform, "tensorrt")
        build, final = text.split("\nFROM ")[1:]
        command = " ".join(wheels.sdist_build_arguments(wheels.BUILD_WHEELHOUSE, builder.BUILT))
        assert f"pip wheel {command}" in build and "--require-hashes" in command
        assert "CUDA_ROOT=/usr/local/cuda" in build and "g++" in build
        assert builder.BUILT + "/*.whl" in build and "pip check" in build.split(command)[1]
        for build_only in ("g++", builder.BUILD_TOOLS, builder.BUILT, "sdists.txt"):
            assert build_only not in final, (platform, build_only)
        folder = _fake_wheelhouse(tmp_path, loaded, platform, "tensorrt")
        wheels.record_hashes(loaded, platform, "tensorrt", folder)
        tools = wheels.requirements(loaded, platform, "tensorrt", folder, build_tools=True)
        assert sorted(line.split()[0] for line in tools.splitlines()) == sorted(
            f"{n}=={v}" for n, v in entry.build_packages.items())
        image = wheels.requirements(loaded, platform, "tensorrt", folder)
        assert "setuptools" not in image and "pycuda" not in image
        assert wheels.sdist_requirements(loaded, platform, "tensorrt", folder).splitlines() == [
            f"{s.package}=={s.version} --hash=sha256:{s.sha256}" for s in entry.sdists]
        assert naming.expected(loaded, platform, "tensorrt")["packages"]["pycuda"]


def test_the_sdist_build_command_builds_a_pinned_sdist_offline(tmp_path):
    """The build stage's `pip wheel` arguments, run on the host against a stand-in sdist:
    offline, hash-checked, no build isolation (setuptools from the environment)."""
    import tarfile

    source = tmp_path / "src" / "standin-1.0"
    source.mkdir(parents=True)
    (source / "setup.py").write_text(
        "from setuptools import setup\n"
        "setup(name='standin', version='1.0', py_modules=['standin'])\n")
    (source / "standin.py").write_text("VALUE = 1\n")
    house = tmp_path / "wheelhouse"
    house.mkdir()
    archive = house / "standin-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="standin-1.0")
    (house / wheels.SDISTS).write_text(f"standin==1.0 --hash=sha256:{wheels.sha256(archive)}\n")
    built = tmp_path / "built"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel",
                           *wheels.sdist_build_arguments(str(house), str(built))],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [p.name for p in built.glob("*.whl")] == ["standin-1.0-py3-none-any.whl"]
    (house / wheels.SDISTS).write_text("standin==1.0 --hash=sha256:" + "0" * 64 + "\n")
    tampered = subprocess.run([sys.executable, "-m", "pip", "wheel",
                               *wheels.sdist_build_arguments(str(house), str(tmp_path / "b2"))],
                              capture_output=True, text=True, timeout=300)
    assert tampered.returncode != 0 and "HASH" in tampered.stderr.upper()


@pytest.mark.parametrize("runtimes, default, jetson, status, words", [
    ({}, "", False, "note", "not registered"),
    ({}, "", True, "fix", "not registered"),
    ({"nvidia": {}}, "runc", True, "fix", "default-runtime"),
    ({"nvidia": {}}, "nvidia", True, "ok", "the default runtime"),
    ({"nvidia": {}}, "runc", False, "ok", "registered"),
])
def test_doctor_wants_the_nvidia_default_runtime_on_a_jetson(runtimes, default, jetson, status,
                                                             words):
    from toolkit.images import doctor

    check = doctor.runtime_check(runtimes, default, jetson)
    assert check.status == status and words in check.line, check


def test_every_platform_says_whether_its_hardware_ran_it():
    """What cannot be proven here is labelled, with the reason: only x86-64 is verified (CI);
    the Pi and every Jetson stack say 'unverified on hardware' and why."""
    loaded = matrix.load()
    for name in loaded.platforms:
        for framework in loaded.platforms[name].frameworks:
            status = loaded.hardware(name, framework)
            if name == "amd64":
                assert status.startswith("verified on x86-64"), status
            else:
                assert status.startswith("unverified on hardware: "), (name, framework, status)
