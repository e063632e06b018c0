"""A framework is one folder and its matrix entries (docs/adding-a-framework.md).

The end-to-end test adds a test framework, "echo" (a fixed linear map in NumPy, through the
inference scenario), to a copy of the repository: its folder under toolkit/device/backends/ and
one `unsupported` entry per platform of the matrix, nothing else. The spec then accepts it, the
matrix requires and holds it, `invoke run` measures its cells in host processes and `invoke
report` reports them.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TINY_SPEC

from toolkit import frameworks
from toolkit.device import backends

ECHO_INIT = '''"""A test framework: inference with a fixed linear map in NumPy."""
from toolkit.device.backends import Backend, register


@register
class Echo(Backend):
    name = "echo"
    jobs = {"inference": ".inference:run"}
'''

ECHO_INFERENCE = '''import numpy as np

from toolkit.device.scenarios import inference as scenario


class EchoBackend(scenario.InferenceBackend):
    name = "echo"

    def load(self, job):
        size = int(np.prod(job["settings"]["input_shape"]))
        rng = np.random.default_rng(0)
        self.weights = rng.standard_normal((size, 10)).astype(np.float32)
        return [("weights_size", float(self.weights.nbytes), "B")]

    def prepare(self, x):
        flat = x.reshape(len(x), -1)
        return lambda: flat @ self.weights

    def describe(self):
        return {"settings": {"map": "linear"}, "versions": {"numpy": np.__version__}}


def run(job):
    return scenario.run(job, EchoBackend())
'''


def test_every_framework_is_a_backend_folder_declaring_itself():
    folders = {p.name for p in (ROOT / "toolkit" / "device" / "backends").iterdir()
               if (p / "__init__.py").is_file()}
    declared = backends.registered()
    assert {name.replace("-", "_") for name in declared} == folders
    assert tuple(declared) == frameworks.NAMES
    for name, backend in declared.items():
        for kind in backend.jobs:
            module, function = backends.target(kind, name).split(":")
            assert module.startswith("toolkit.device."), (name, kind)
    assert backends.target("inference", "onnxruntime") == (
        "toolkit.device.backends.onnxruntime.inference:run")
    assert backends.target("training", "onnxruntime") is None


def imported_by(code: str, modules: tuple[str, ...]) -> list[str]:
    """Which of `modules` a fresh interpreter has imported after running `code`."""
    probe = (f"import json, sys\n{code}\n"
             f"print(json.dumps([m for m in {modules!r} if m in sys.modules]))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_finding_the_backends_imports_no_framework():
    code = "from toolkit.device import backends\nassert len(backends.registered()) >= 4"
    assert imported_by(code, ("torch", "onnxruntime", "onnx", "tensorrt", "pycuda")) == []


def test_a_framework_declared_twice_is_refused():
    class Twin(backends.Backend):
        name = "onnxruntime"
        jobs = {"inference": ".inference:run"}

    backends.registered()
    with pytest.raises(ValueError, match="framework 'onnxruntime' is declared twice"):
        backends.register(Twin)


def _repository_copy(root: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("toolkit", "containers"):
        shutil.copytree(ROOT / name, root / name, ignore=ignore)
    for name in ("tasks.py", "pyproject.toml"):
        shutil.copy2(ROOT / name, root / name)
    return root


def _python(copy: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=copy, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow
def test_a_new_framework_is_one_folder_and_its_matrix_entries(tmp_path):
    copy = _repository_copy(tmp_path / "repo")
    folder = copy / "toolkit" / "device" / "backends" / "echo"
    folder.mkdir()
    (folder / "__init__.py").write_text(ECHO_INIT)
    (folder / "inference.py").write_text(ECHO_INFERENCE)

    # The folder alone: every list of frameworks has it, and the matrix asks for its images.
    listed = _python(copy, "from toolkit import frameworks; print(frameworks.listed())")
    assert listed.returncode == 0 and "echo" in listed.stdout.strip().split(", "), listed.stderr
    unpinned = _python(copy, "from toolkit.images import matrix; matrix.load()")
    assert unpinned.returncode != 0
    assert "echo: pin it or say why it is unsupported" in unpinned.stderr, unpinned.stderr

    matrix_file = copy / "containers" / "matrix.toml"
    platforms = json.loads(_python(copy, "import json, tomllib; print(json.dumps(list(tomllib.load("
                                         "open('containers/matrix.toml', 'rb'))['platforms'])))"
                                   ).stdout)
    matrix_file.write_text(matrix_file.read_text() + "".join(
        f'\n[platforms."{p}".frameworks.echo]\nunsupported = "a test framework: host runner '
        'only"\n' for p in platforms))
    loads = _python(copy, "from toolkit.images import matrix; "
                          "print(matrix.load().framework_supported('amd64', 'echo'))")
    assert loads.returncode == 0 and loads.stdout.strip() == "False", loads.stderr

    spec = copy / "echo.toml"
    spec.write_text(TINY_SPEC.read_text().replace('name = "tiny-inference"', 'name = "echo"')
                    .replace('framework = ["onnxruntime"]', 'framework = ["echo"]')
                    .replace("scale = [0.125, 0.25, 0.375, 0.5]", "scale = [0.25, 0.5]"))
    env = {"EDGEREPRO_RESULTS": str(tmp_path / "results"),
           "EDGEREPRO_REPORTS": str(tmp_path / "reports")}

    def invoke(*args: str) -> subprocess.CompletedProcess:
        import os

        return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=copy,
                              env=dict(os.environ, **env), capture_output=True, text=True,
                              timeout=600)

    ran = invoke("run", "--experiment", str(spec), "--runner", "host")
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr.count("[ok]") == 2, ran.stderr
    (run_dir,) = [p for p in (tmp_path / "results").iterdir() if p.name != "cache"]
    cells = [json.loads(p.read_text()) for p in (run_dir / "cells").glob("*.json")]
    for cell in cells:
        assert cell["status"] == "ok" and cell["coords"]["framework"] == "echo", cell
        names = {name for name, _, _ in cell["records"]}
        assert {"weights_size", "first_run", "latency_p50", "throughput", "rss_peak"} <= names
    reported = invoke("report")
    assert reported.returncode == 0, reported.stderr
    (markdown,) = (tmp_path / "reports").glob("*/report.md")
    assert "echo" in markdown.read_text()
