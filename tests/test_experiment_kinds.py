"""An experiment kind is one folder (docs/adding-an-experiment.md).

The end-to-end test adds a kind, "sweep" (the latency of full-width models per batch), to a copy
of the repository: its folder under toolkit/experiments/kinds/ (grid, settings, preparation,
report section) and the job that measures a cell, declared by the backend that runs it. The spec
then accepts the kind, `invoke run` measures its cells in host processes and `invoke report`
prints its section.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TINY_SPEC
from test_backend_registry import _python, _repository_copy, imported_by

from toolkit.errors import UserError
from toolkit.experiments import kinds
from toolkit.experiments import spec as specs
from toolkit.report import kinds as report_kinds


def test_every_kind_is_a_folder_declaring_itself_and_its_report_plugin():
    folders = sorted(p.name for p in (ROOT / "toolkit" / "experiments" / "kinds").iterdir()
                     if (p / "__init__.py").is_file())
    assert list(kinds.registered()) == folders == ["inference", "training"]
    assert list(report_kinds.registered()) == folders
    for name, kind in kinds.registered().items():
        assert kind.grid.__module__ == f"toolkit.experiments.kinds.{name}"
        assert report_kinds.registered()[name].section.__module__ == \
            f"toolkit.experiments.kinds.{name}.report"


def test_finding_the_kinds_imports_no_report_and_no_framework():
    code = "from toolkit.experiments import kinds\nassert len(kinds.registered()) >= 2"
    assert imported_by(code, ("torch", "onnxruntime", "polars", "matplotlib",
                              "toolkit.report.kinds.base")) == []


def test_an_unknown_kind_is_one_line_naming_the_valid_ones(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text(TINY_SPEC.read_text()
                    .replace('kind = "inference"', 'kind = "sparsity"'))
    with pytest.raises(UserError, match="bad.toml: kind: unknown experiment kind 'sparsity'; "
                                        "valid: inference, training"):
        specs.load_spec(spec)
    with pytest.raises(UserError, match="unknown experiment kind 'x'; valid: inference, "):
        kinds.get("x")


def test_an_auxiliary_cell_is_prepared_as_it_is(tmp_path):
    """The training kind's matmul peak is no kind's own cell: nothing to prepare, no data."""
    from toolkit.experiments.expansion import expand

    cells = expand(specs.resolve(specs.find_spec("training"), "smoke"))
    peak = next(cell for cell in cells if cell.kind == "peak")
    assert not kinds.is_experiment_cell(peak) and kinds.needs_dataset(peak) is None

    def no_job(*args: object) -> str:
        raise AssertionError(f"an auxiliary cell ran a preparation job: {args}")

    assert kinds.prepare(peak, tmp_path, no_job) == (peak.settings, {}, [])


SWEEP_INIT = '''"""Kind "sweep": the latency of full-width models per batch."""
from __future__ import annotations

from pydantic import Field

from toolkit.device import models
from toolkit.experiments.kinds.base import (
    Device, ExperimentKind, Framework, Grid, PositiveInts, Precision, Settings)


class SweepGrid(Grid):
    model: list[str] = Field(min_length=1)
    framework: list[Framework] = Field(min_length=1)
    device: list[Device] = Field(min_length=1)
    precision: list[Precision] = Field(min_length=1)
    batch: PositiveInts = Field(min_length=1)


class SweepSettings(Settings):
    input_shape: tuple[int, int, int] = (3, 32, 32)


def cell_settings(base, coords):
    return dict(base, model=coords["model"], widths=models.full_widths(coords["model"]))


KIND = ExperimentKind("sweep", SweepGrid, SweepSettings, cell_settings,
                      prepare=lambda cell, cache_root, run: (dict(cell.settings), {}, []),
                      needs_dataset=lambda cell: None)
'''

SWEEP_REPORT = '''"""The sweep's part of the report: latency per batch."""
from toolkit import units
from toolkit.report.kinds.base import Kind, Section, Span, Table


def section(exp):
    rows = [[r["model"], str(r["batch"]),
             units.fmt(exp.metrics[r["cell_id"]]["latency_p50"][0] * 1e3)]
            for r in exp.rows if r["status"] in ("ok", "invalid")]
    return Section([Table((Span("Latency per batch", "strong"),), ["model", "batch", "p50 (ms)"],
                          rows, numeric=(False, True, True))], [])


KIND = Kind("sweep", marker="batch", marker_text="a batch", section=section)
'''

SPEC = '''name = "sweep"
description = "Latency of full-width models per batch."
kind = "sweep"

[grid]
model = ["vgg11"]
framework = ["echo"]
device = ["cpu"]
precision = ["fp32"]
batch = [1, 2]

[profiles.smoke.measure]
warmup_count = 1
warmup_seconds = 0
min_count = 5
min_seconds = 0
max_cv = 100.0  # a microsecond-long job on a shared machine: spread is not what is tested
[profiles.quick.measure]
[profiles.paper.measure]
'''


@pytest.mark.slow
def test_a_new_kind_is_one_folder_and_its_job(tmp_path):
    from test_backend_registry import ECHO_INFERENCE

    copy = _repository_copy(tmp_path / "repo")
    kind = copy / "toolkit" / "experiments" / "kinds" / "sweep"
    kind.mkdir()
    (kind / "__init__.py").write_text(SWEEP_INIT)
    (kind / "report.py").write_text(SWEEP_REPORT)
    backend = copy / "toolkit" / "device" / "backends" / "echo"  # the job that measures a cell
    backend.mkdir()
    (backend / "__init__.py").write_text(
        "from toolkit.device.backends import Backend, register\n\n\n@register\n"
        "class Echo(Backend):\n    name = 'echo'\n    jobs = {'sweep': '.inference:run'}\n")
    (backend / "inference.py").write_text(ECHO_INFERENCE)
    matrix_file = copy / "containers" / "matrix.toml"
    platforms = json.loads(_python(copy, "import json, tomllib; print(json.dumps(list(tomllib.load("
                                         "open('containers/matrix.toml', 'rb'))['platforms'])))"
                                   ).stdout)
    matrix_file.write_text(matrix_file.read_text() + "".join(
        f'\n[platforms."{p}".frameworks.echo]\nunsupported = "a test framework"\n'
        for p in platforms))

    listed = _python(copy, "from toolkit.experiments import kinds; print(kinds.names())")
    assert listed.returncode == 0 and "'sweep'" in listed.stdout, listed.stderr
    spec = copy / "sweep.toml"
    spec.write_text(SPEC)
    env = dict(os.environ, EDGEREPRO_RESULTS=str(tmp_path / "results"),
               EDGEREPRO_REPORTS=str(tmp_path / "reports"))

    def invoke(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=copy, env=env,
                              capture_output=True, text=True, timeout=600)

    ran = invoke("run", "--experiment", str(spec), "--runner", "host")
    assert ran.returncode == 0, ran.stderr
    measured = ran.stderr.count("[ok]") + ran.stderr.count("[invalid]")
    assert measured == 4, ran.stderr  # 2 cells x 2 rounds (smoke)
    (run_dir,) = [p for p in (tmp_path / "results").iterdir() if p.name != "cache"]
    cells = [json.loads(p.read_text()) for p in (run_dir / "cells").glob("*.json")]
    assert sorted(cell["coords"]["batch"] for cell in cells) == [1, 2]
    for cell in cells:
        assert cell["kind"] == "sweep" and cell["status"] in ("ok", "invalid"), cell
        assert cell["settings"]["widths"] and "latency_p50" in {n for n, _, _ in cell["records"]}
    reported = invoke("report")
    assert reported.returncode == 0, reported.stderr
    (markdown,) = Path(tmp_path / "reports").glob("*/report.md")
    text = markdown.read_text()
    assert "Latency per batch" in text and "| vgg11 | 2 |" in text.replace("  ", " "), text
