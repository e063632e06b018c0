"""Report renderer and display units, on a small synthetic results directory."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import polars as pl
import pytest
from markupsafe import Markup

from toolkit import units
from toolkit.report import claims, summary
from toolkit.report.render import render_report
from toolkit.report.table import METRIC_COLUMNS, TABLE_BUDGET
from toolkit.results import FORMAT

RUN_ID = "20250101T000000Z-test"
EXP = "inference_scaling"
TRAIN_EXP = "training"
COORDS = {"framework": "ort", "device": "cpu", "precision": "fp32", "batch": 1}
SCALES = (0.25, 0.5, 0.75, 1.0)
FULL_PARAMS = 9_231_114
NOT_RUN_REASON = "no trained checkpoint for neuralscale"
FAILED_REASON = "onnxruntime error | out of memory <alloc>"
# (framework, precision, freeze, images/s) of the ok training cells; batch 8 on the CPU
TRAINING = (("pytorch", "fp32", 0, 40.0), ("pytorch", "fp16", 4, 55.5),
            ("onnxruntime-training", "fp32", 0, 31.25), ("onnxruntime-training", "fp32", 4, 47.0))
LOSS_STEPS = 6
CELL_FIELDS = ("status", "reason", "runner", "started_at", "wall_s")


def _cell(cell_id: str, model: str, method: str, scale: float, status: str, reason: str) -> dict:
    return {
        "run_id": RUN_ID,
        "cell_id": cell_id,
        "experiment": EXP,
        "model": model,
        "method": method,
        "scale": scale,
        **COORDS,
        "freeze": None,
        "status": status,
        "reason": reason,
        "runner": "host",
        "started_at": "2025-01-01T00:00:00Z",
        "wall_s": 2.5,
    }


def _training_cell(cell_id: str, framework: str, precision: str, freeze: int) -> dict:
    return _cell(cell_id, "vgg16", None, None, "ok", "") | {
        "experiment": TRAIN_EXP, "framework": framework, "precision": precision,
        "freeze": freeze, "batch": 8}


def _metrics(scale: float) -> dict[str, tuple[float, str]]:
    """Known values per ok cell; p50 at scale 1.0 is 0.0123 s, accuracy 0.8 + 0.1 × scale."""
    peak = (100 + 40 * scale) * 2**20
    return {
        "params": (round(FULL_PARAMS * scale**2), "count"),
        "macs": (153e6 * scale**2, "MAC"),
        "session_create": (0.05 * scale, "s"),
        "first_run": (0.02, "s"),
        "latency_p50": (0.0123 * scale, "s"),
        "latency_p90": (0.015 * scale, "s"),
        "latency_cv": (0.021, "ratio"),
        "latency_n": (200.0, "count"),
        "throughput": (1 / (0.0123 * scale), "1/s"),
        "rss_baseline": (100 * 2**20, "B"),
        "rss_peak": (peak, "B"),
        "model_memory": (peak - 100 * 2**20, "B"),
        "accuracy": (0.8 + 0.1 * scale, "ratio"),
    }


def _training_metrics(images_per_s: float) -> dict[str, tuple[float, str]]:
    return {"params": (14_728_266.0, "count"), "step_time_p50": (8 / images_per_s, "s"),
            "throughput": (images_per_s, "1/s"), "rss_peak": (900 * 2**20, "B")}


def _records(cell: dict, metrics: dict[str, tuple[float, str]]) -> list[dict]:
    coords = {k: v for k, v in cell.items() if k not in CELL_FIELDS}
    return [{**coords, "metric": m, "value": float(v), "unit": u} for m, (v, u) in metrics.items()]


def _samples(cell_id: str, metric: str, values: list[float], unit: str) -> list[dict]:
    return [{"run_id": RUN_ID, "cell_id": cell_id, "metric": metric, "i": i, "value": v,
             "unit": unit} for i, v in enumerate(values)]


SYNTHETIC_ROUNDS = 5  # the fewest whose interval reaches the 90 % a verdict needs


def _write_cell_rounds(run: Path, records: list[dict], cells: list[dict]) -> None:
    """Each ok cell's file with SYNTHETIC_ROUNDS rounds that each gave its records (accuracy
    measured once, as the preparation's training is): what the claims' intervals read."""
    (run / "cells").mkdir()
    for cell in cells:
        if cell["status"] != "ok":
            continue
        values = {r["metric"]: r["value"] for r in records if r["cell_id"] == cell["cell_id"]}
        per_round = {m: v for m, v in values.items() if m != "accuracy"}
        rounds = [{"round": k, "status": "ok", "reason": "", "pass": f"p/{k + 1}",
                   "values": per_round} for k in range(SYNTHETIC_ROUNDS)]
        payload = {"cell_id": cell["cell_id"], "status": "ok", "once": ["accuracy"],
                   "rounds": rounds}
        (run / "cells" / f"{cell['cell_id']}.json").write_text(json.dumps(payload))


def write_synthetic_run(root: Path) -> Path:
    """A run of both studies in results/<RUN_ID>/ under root, with every record each report
    chart needs: latency, memory and accuracy of scaled models; images/s and per-step losses of
    training cells. Shared with the browser test, which must see every chart drawn."""
    run = root / "results" / RUN_ID
    run.mkdir(parents=True)
    cells = [_cell(f"c{i}", "vgg11", "uniform", s, "ok", "") for i, s in enumerate(SCALES)]
    cells += [
        _cell("c4", "vgg11", "neuralscale", 0.5, "not run", NOT_RUN_REASON),
        _cell("c5", "mobilenetv2", "uniform", 1.0, "failed", FAILED_REASON),
    ]
    records, samples = [], []
    for cell, scale in zip(cells, SCALES, strict=False):
        metrics = _metrics(scale)
        if scale == 0.25:
            del metrics["macs"]  # a metric missing for one cell must show as "–"
        records += _records(cell, metrics)
        samples += _samples(cell["cell_id"], "latency", [0.0123 * scale] * 3, "s")
    for i, (framework, precision, freeze, rate) in enumerate(TRAINING):
        cell = _training_cell(f"t{i}", framework, precision, freeze)
        cells.append(cell)
        records += _records(cell, _training_metrics(rate))
        losses = [2.3 * (0.9 - 0.05 * i) ** step for step in range(LOSS_STEPS)]
        samples += _samples(cell["cell_id"], "loss", losses, "nat")
        samples += _samples(cell["cell_id"], "step_time", [8 / rate] * 3, "s")
    peak = _training_cell("t-peak", "pytorch", "fp32", 0) | {"model": "matmul", "batch": 0}
    cells.append(peak)  # the machine's matmul peak: neither throughput nor loss
    records += _records(peak, {"peak_flops_fp32": (50e9, "FLOP/s")})
    _write_cell_rounds(run, records, cells)
    pl.DataFrame(cells).write_parquet(run / "cells.parquet")
    pl.DataFrame(records).write_parquet(run / "records.parquet")
    pl.DataFrame(samples).write_parquet(run / "samples.parquet")
    manifest = {
        "run_id": RUN_ID,
        "format": FORMAT,  # written as a current run (its cell files hold only the rounds)
        "created": "2025-01-01T00:00:00Z",
        "experiments": [EXP, TRAIN_EXP],
        "profile": "smoke",
        "runner": "host",
        "runner_note": "no Docker engine: host runner",
        "spec": {
            EXP: {
                "description": "Inference cost of width-scaled VGG-11.",
                "measure": {
                    "warmup_count": 10,
                    "warmup_seconds": 1.0,
                    "min_count": 100,
                    "min_seconds": 2.0,
                    "max_cv": 0.1,
                },
            }
        },
        "environment": {
            "os": "Linux",
            "kernel": "6.1.0",
            "device_type": "x86_64-generic",
            "machine": "x86_64",
            "cpu": "Test CPU",
            "cores": 2,
            "ram_bytes": 8 * 2**30,
            "python": "3.11.9",
            "packages": {"onnxruntime": "1.19.2", "numpy": "2.4.6"},
            "git": {"commit": "abc1234", "dirty": False},
        },
    }
    (run / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return run


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_synthetic_run(tmp_path)


@pytest.fixture
def rendered(run_dir: Path) -> tuple[dict[str, Path], str, str]:
    paths = render_report(run_dir, run_dir.parent.parent / "reports" / RUN_ID)
    md = paths["md"].read_text(encoding="utf-8")
    html = paths["html"].read_text(encoding="utf-8")
    return paths, md, html


MD_RULE = re.compile(r"^\|( *:?-{3,}:? *\|)+$")  # the line under a Markdown table's header


def _md_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """(header, body rows) of every Markdown table in text, in order."""
    tables, lines = [], text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.startswith("|") and MD_RULE.match(lines[i + 1]):
            body = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                body.append(_md_cells(row))
            tables.append((_md_cells(line), body))
    return tables


def _md_cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]


def _section(md: str, heading: str) -> str:
    """The Markdown from a heading line to the next heading of the same or a higher level."""
    start = md.index(heading + "\n") + len(heading) + 1
    level = len(heading.split(" ")[0])
    end = re.search(rf"^#{{1,{level}}} ", md[start:], re.M)
    return heading + "\n" + (md[start:start + end.start()] if end else md[start:])


def _results(md: str, experiment: str = EXP) -> list[dict[str, str]]:
    """The rows of an experiment's results table, its parts joined: column header -> text."""
    section = _section(md, f"## Experiment: {experiment}")
    parts = [(h, rows) for h, rows in _md_tables(section) if h[-1:] == ["status"]]
    merged = [dict(zip(parts[0][0], row, strict=True)) for row in parts[0][1]] if parts else []
    for header, rows in parts[1:]:
        for joined, row in zip(merged, rows, strict=True):
            joined.update(zip(header, row, strict=True))
    return merged


def test_units_convert_and_display() -> None:
    assert units.ms(0.0123) == pytest.approx(12.3)
    assert units.mib(3 * 2**20) == 3
    assert units.millions(FULL_PARAMS) == pytest.approx(9.231114)
    assert units.percent(0.021) == pytest.approx(2.1)
    assert units.convert(153e6, "MAC", "M MACs") == pytest.approx(153)
    assert units.convert(2.0, "GiB", "MiB") == 2048
    assert units.display(0.0123, "s") == (pytest.approx(12.3), "ms")
    assert units.display(5.0, "furlong") == (5.0, "furlong")
    with pytest.raises(ValueError, match="cannot convert"):
        units.convert(1.0, "s", "B")
    with pytest.raises(ValueError, match="unknown unit"):
        units.convert(1.0, "parsec", "s")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (12.3, "12.3"),
        (0.0123, "0.0123"),
        (12345.6, "12346"),
        (9.996, "10.0"),
        (0.5, "0.500"),
        (-3.14159, "-3.14"),
        (0.0, "0"),
        (200, "200"),
        (None, "–"),
        (math.nan, "–"),
    ],
)
def test_units_fmt(value: float | None, text: str) -> None:
    assert units.fmt(value) == text


def test_units_fmt_unit() -> None:
    assert units.fmt_unit(0.0123, "s") == "12.3 ms"
    assert units.fmt_unit(None, "s") == "–"


def test_markdown_table(rendered: tuple[dict[str, Path], str, str]) -> None:
    paths, md, _ = rendered
    assert paths["md"].name == "report.md" and paths["html"].name == "report.html"
    assert RUN_ID in md and "smoke" in md and "no Docker engine: host runner" in md
    assert "nearest-rank" in md and "10 %" in md  # protocol and validity rule
    rows = _results(md)
    assert len(rows) == 5  # every cell that ran; the one not run is counted below the table
    # coordinates every row shares are said once, not repeated in a column
    assert "*Every cell below: method uniform, framework ort, device cpu, precision fp32, " \
           "batch 1.*" in md
    assert "method" not in rows[0] and "p50 (ms)" in rows[0] and "peak RSS (MiB)" in rows[0]
    full = next(r for r in rows if (r["model"], r["scale"]) == ("vgg11", "1"))
    assert full["p50 (ms)"] == "12.3"  # 0.0123 s -> 12.3 ms
    assert full["params (M)"] == "9.23"  # params in M
    assert full["peak RSS (MiB)"] == "140" and full["model memory (MiB)"] == "40.0"
    assert full["status"] == "ok"
    quarter = next(r for r in rows if (r["model"], r["scale"]) == ("vgg11", "0.25"))
    assert quarter["MACs (M)"] == "–"  # macs missing for that cell
    failed = next(r for r in rows if r["model"] == "mobilenetv2")
    assert failed["status"] == "failed ¹"  # the reason is a note under the table
    assert "- ¹ failed: onnxruntime error \\| out of memory &lt;alloc>" in md  # escaped


def test_markdown_charts_and_links(rendered: tuple[dict[str, Path], str, str]) -> None:
    paths, md, _ = rendered
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(images) >= 2
    for ref in images:
        assert not ref.startswith(("/", "http")) and ref.endswith(".svg")
        assert (paths["md"].parent / ref).is_file()
    for name in ("records.parquet", "cells.parquet", "samples.parquet"):
        assert f"](../../results/{RUN_ID}/{name})" in md


def test_html_self_contained(rendered: tuple[dict[str, Path], str, str]) -> None:
    _, _, html = rendered
    assert html.count("<svg") >= 2
    assert '<meta name="viewport"' in html and "overflow-x: auto" in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:[a-z]+:)?//""", html, re.I)
    # Citation addresses may appear as text; nothing may be fetched (no src/href/url()/@import).
    assert not re.search(r"url\((?!#)|@import", html)  # url(#id): in-page SVG clip paths
    assert "<link" not in html and "<script" not in html
    assert "out of memory &lt;alloc&gt;" in html  # autoescaped
    assert (f'<details class="not-run"><summary><span class="count">1 cell</span>: '
            f"{NOT_RUN_REASON}</summary>") in html
    assert "onnxruntime" in html and "1.19.2" in html  # packages sub-table


def test_rendering_is_byte_stable(run_dir: Path, tmp_path: Path) -> None:
    first = render_report(run_dir, tmp_path / "a" / "report")
    second = render_report(run_dir, tmp_path / "b" / "report")
    again = render_report(run_dir, tmp_path / "a" / "report")
    for kind in ("md", "html"):
        assert first[kind].read_bytes() == second[kind].read_bytes() == again[kind].read_bytes()
    charts_a = sorted((tmp_path / "a" / "report" / "charts").iterdir())
    assert charts_a
    for chart in charts_a:
        assert (
            chart.read_bytes() == (tmp_path / "b" / "report" / "charts" / chart.name).read_bytes()
        )


def test_no_ok_cells_and_results_link(run_dir: Path, tmp_path: Path) -> None:
    cells = pl.read_parquet(run_dir / "cells.parquet")
    cells.with_columns(status=pl.lit("not run"), reason=pl.lit("skipped")).write_parquet(
        run_dir / "cells.parquet"
    )
    (run_dir / "records.parquet").unlink()
    paths = render_report(run_dir, tmp_path / "out", results_link="data")
    md = paths["md"].read_text(encoding="utf-8")
    assert _results(md) == [] and md.count("No cell ran.") == 2
    assert "**6 cells not run**, by reason" in md and "| skipped | 6 |" in md  # inference
    assert "**5 cells not run**, by reason" in md and "| skipped | 5 |" in md  # training
    assert f"**{EXP}: latency p50 vs parameters** skipped: no ok cell has a parameter" in md
    assert f"**{TRAIN_EXP}: training throughput per framework** skipped: no ok" in md
    assert "](data/records.parquet) (missing)" in md
    assert not (tmp_path / "out" / "charts").exists()


def test_extra_coordinates_and_metrics_render_generically(run_dir: Path, tmp_path: Path) -> None:
    cells = pl.read_parquet(run_dir / "cells.parquet").with_columns(freeze=pl.lit("none"))
    cells.write_parquet(run_dir / "cells.parquet")
    records = pl.read_parquet(run_dir / "records.parquet")
    extra = records.filter(pl.col("metric") == "params").with_columns(
        metric=pl.lit("accuracy"), value=pl.lit(0.9123), unit=pl.lit("ratio")
    )
    pl.concat([records, extra]).write_parquet(run_dir / "records.parquet")
    md = render_report(run_dir, tmp_path / "out")["md"].read_text(encoding="utf-8")
    assert "*Every cell below: method uniform, framework ort, device cpu, precision fp32, " \
           "freeze none, batch 1.*" in md  # a coordinate every cell shares is said once
    assert {r["accuracy (%)"] for r in _results(md)} >= {"91.2"}


# Every chart of the synthetic run: (file under charts/, title) in report order.
CHARTS = (
    (f"{EXP}-latency.svg", f"{EXP}: latency p50 vs parameters"),
    (f"{EXP}-memory.svg", f"{EXP}: memory vs parameters"),
    (f"{EXP}-accuracy-memory.svg", f"{EXP}: accuracy vs runtime memory"),
    (f"{TRAIN_EXP}-throughput.svg", f"{TRAIN_EXP}: training throughput per framework"),
    (f"{TRAIN_EXP}-loss.svg", f"{TRAIN_EXP}: training loss per step"),
)


def test_every_chart_in_markdown_and_html(rendered: tuple[dict[str, Path], str, str]) -> None:
    paths, md, html = rendered
    charts_dir = paths["md"].parent / "charts"
    assert sorted(p.name for p in charts_dir.iterdir()) == sorted(name for name, _ in CHARTS)
    images = re.findall(r"!\[([^\]]+)\]\((charts/[^)]+)\)", md)
    assert [ref for _, ref in images] == [f"charts/{name}" for name, _ in CHARTS]
    for (alt, _), (_, title) in zip(images, CHARTS, strict=True):
        assert alt.startswith(title)  # alt text: the title and what the lines are
        assert f"**{title}.**" in md  # the title beside the image, for text-only readers
    labels = re.findall(r'<svg[^>]*role="img" aria-label="([^"]+)"', html)
    assert len(labels) == html.count("<svg") == len(CHARTS)
    assert [label.split(":")[1] for label in labels] == [t.split(":")[1] for _, t in CHARTS]
    assert "skipped:" not in md and "skipped:" not in html


def test_accuracy_memory_chart_points(rendered: tuple[dict[str, Path], str, str]) -> None:
    paths, _, _ = rendered
    svg = (paths["md"].parent / "charts" / f"{EXP}-accuracy-memory.svg").read_text()
    assert "model memory (MiB)" in svg and "accuracy (%)" in svg  # units from toolkit.units
    assert ">vgg11<" in svg and ">uniform<" in svg  # panel per model, line per method
    for scale in ("0.25×", "0.5×", "0.75×", "1×"):  # each point labelled with its scale
        assert f">{scale}<" in svg


def test_training_charts_content(rendered: tuple[dict[str, Path], str, str]) -> None:
    paths, _, _ = rendered
    charts_dir = paths["md"].parent / "charts"
    bars = (charts_dir / f"{TRAIN_EXP}-throughput.svg").read_text()
    assert "training throughput (images/s)" in bars
    for framework, precision, freeze, rate in TRAINING:
        assert f">{framework} / cpu / {precision} / freeze {freeze} / batch 8<" in bars
        assert f">{units.fmt(rate)}<" in bars  # every bar labelled with its value
    assert "matmul" not in bars  # the peak cell measures no training
    loss = (charts_dir / f"{TRAIN_EXP}-loss.svg").read_text()
    assert "loss (nat)" in loss and ">step<" in loss
    assert ">pytorch<" in loss and ">onnxruntime-training<" in loss  # a panel per framework
    for _, precision, freeze, _ in TRAINING:
        assert f">cpu / {precision} / freeze {freeze} / batch 8<" in loss
    assert loss.count("<path") > len(TRAINING)


def _drop(run_dir: Path, table: str, metric: str) -> None:
    frame = pl.read_parquet(run_dir / f"{table}.parquet")
    frame.filter(pl.col("metric") != metric).write_parquet(run_dir / f"{table}.parquet")


def test_charts_without_their_data_are_skipped_with_the_reason(run_dir: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "out"
    render_report(run_dir, out)  # first with every chart: skipping must remove stale files
    _drop(run_dir, "records", "accuracy")
    _drop(run_dir, "samples", "loss")
    paths = render_report(run_dir, out)
    md, html = paths["md"].read_text(), paths["html"].read_text()
    accuracy = (f"**{EXP}: accuracy vs runtime memory** skipped: no ok cell has both an "
                "accuracy and a runtime memory record")
    loss = f"**{TRAIN_EXP}: training loss per step** skipped: no ok training cell has 'loss'"
    assert accuracy in md and loss in md
    for text in (accuracy, loss):
        title, reason = text.removeprefix("**").split("** ")
        assert f"<strong>{title}</strong> {reason}" in html.replace("&#39;", "'")
    names = sorted(p.name for p in (out / "charts").iterdir())
    assert names == sorted(n for n, _ in CHARTS if "accuracy" not in n and "loss" not in n)
    assert md.count("](charts/") == html.count("<svg") == 3


def test_environment_lists_no_images_for_the_host_runner(
        rendered: tuple[dict[str, Path], str, str]) -> None:
    _, md, html = rendered
    assert "### Images\n\nhost runner: no images\n" in md
    assert '<p class="images-none">host runner: no images</p>' in html


def test_environment_lists_each_image_with_id_and_digest(run_dir: Path, tmp_path: Path) -> None:
    """The Docker runner's cells name their image, its id and its digest."""
    cells = pl.read_parquet(run_dir / "cells.parquet")
    tag = {"ort": "edgerepro/onnxruntime:amd64", "pytorch": "edgerepro/pytorch:amd64",
           "onnxruntime-training": "edgerepro/onnxruntime-training:amd64"}
    digest = {k: f"{v.split(':')[0]}@sha256:{k[:3]}d1" for k, v in tag.items()}
    cells = cells.with_columns(runner=pl.lit("docker"),
                               image=pl.col("framework").replace_strict(tag),
                               image_id="sha256:" + pl.col("framework"),
                               image_digest=pl.col("framework").replace_strict(digest))
    cells.write_parquet(run_dir / "cells.parquet")
    paths = render_report(run_dir, tmp_path / "out")
    md, html = paths["md"].read_text(), paths["html"].read_text()
    assert "| image | image id | digest | cells | frameworks |" in md
    assert ("| edgerepro/onnxruntime:amd64 | sha256:ort | edgerepro/onnxruntime@sha256:ortd1 "
            "| 6 | ort |") in md
    assert ("| edgerepro/pytorch:amd64 | sha256:pytorch | edgerepro/pytorch@sha256:pytd1 | 3 "
            "| pytorch |") in md  # two training cells and the matmul peak cell
    assert "no images" not in md
    assert ('<td><code title="sha256:onnxruntime-training">sha256:onnxruntime-training</code>'
            "</td>") in html
    assert html.count("<tr><td><code>edgerepro/") == 3
    # What was proven on the hardware it is for, and what was not, with the reason.
    assert "| ort | verified on x86-64 (built, smoke-tested and measured by CI" in md
    for platform in ("arm64", "l4t-r32.7.1", "l4t-r35.4.1", "l4t-r36.4.0"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {platform} |"))
        assert "| unverified on hardware: " in row, row
    assert html.count("unverified on hardware: ") == 4


def test_architectures_show_widths_and_the_neuralscale_fit(run_dir: Path, tmp_path: Path) -> None:
    """A scaling run's widths per method and scale, and the fit of the search artifact it kept
    (results/<run>/neuralscale/), linked from the report."""
    import numpy as np

    from toolkit.device import models
    from toolkit.device.scaling import neuralscale as ns

    full = models.full_widths("vgg11")
    powers = np.linspace(0.6, 1.4, len(full))
    records = [[max(1, int(w * m ** p)) for w, p in zip(full, powers, strict=True)]
               for m in np.linspace(0.1, 1.0, 8)]
    fit = ns.fit_power_law("vgg11", records)
    artifact = ns.build_artifact("vgg11", 10, {"name": "digits"}, 0, "smoke",
                                 ns.search_config("smoke"), [{"records": records}], fit)
    ns.save_artifact(artifact, str(run_dir / "neuralscale" / "vgg11-abc.json"))
    solved = ns.widths_for_ratio(artifact, 0.5)["widths"]
    cells = pl.read_parquet(run_dir / "cells.parquet").with_columns(widths=pl.lit("[]"))
    widths = {"c1": models.scale_widths("vgg11", 0.5), "c4": solved}
    cells = cells.with_columns(widths=pl.col("cell_id").replace_strict(
        {k: json.dumps(v) for k, v in widths.items()}, default="[]"))
    cells.write_parquet(run_dir / "cells.parquet")

    paths = render_report(run_dir, tmp_path / "out", results_link="RES")
    md, html = paths["md"].read_text(), paths["html"].read_text()
    assert "**Architectures of vgg11** (the 8 layer widths of each method and scale)" in md
    assert (f"| neuralscale | 0.5 | {models.count_params('vgg11', solved):,} | "
            f"{' '.join(map(str, solved))} |") in md
    assert "| uniform | 0.5 | 2,311,562 | 32 64 128 128 256 256 256 256 |" in md
    assert "[neuralscale/vgg11-abc.json](RES/neuralscale/vgg11-abc.json)" in md
    assert "data digits, profile smoke, 1 descent iteration, 8 width records" in md
    layer_rows = [line for line in md.splitlines() if re.match(r"\| \d+ \| \d+ \| ", line)]
    assert len(layer_rows) == 8
    first = layer_rows[0].strip("| ").split(" | ")
    assert first[:2] == ["0", "64"]
    assert float(first[3]) == pytest.approx(fit["beta"][0], abs=1e-4)
    assert float(first[4]) == pytest.approx(fit["r2"][0], abs=1e-3)
    assert '<a href="RES/neuralscale/vgg11-abc.json">' in html
    assert html.count("<table class=\"fit\">") == 1
    # the widths are bookkeeping, not a coordinate of the results table
    header = next(line for line in md.splitlines() if line.startswith("| model |"))
    assert "widths" not in header


# Claims the synthetic run can judge (latency p50 at scale 1.0 over 0.5 is 2.0; accuracy at 1.0
# is 0.9): one of each verdict on the named hardware, one on stand-in hardware, and two that
# share a reason. Shared with the browser test, whose screenshot should show every kind.
SHARED_REASON = "needs jetson-orin (this run: x86_64-generic)"
_LATENCY_RATIO = {"experiment": EXP, "metric": "latency_p50", "comparison": "ratio",
                  "filter": {"model": "vgg11", "method": "uniform"}, "numerator": {"scale": 1.0},
                  "denominator": {"scale": 0.5}, "pair_on": ["model", "method", "framework"],
                  "min_profile": "smoke", "operator": "approx", "tolerance": 0.25}


def synthetic_publication() -> claims.Publication:
    return claims.Publication.model_validate({
        "source": {"key": "synthetic", "citation": "Claims written for the report tests.",
                   "notes": "Each verdict kind once, judged on the synthetic run."},
        "hardware": {"raspberry-pi-4": "Raspberry Pi 4: 4 × Cortex-A72"},
        "claims": [
            _LATENCY_RATIO | {"id": "pi-latency", "expected": 2.0, "hardware": ["raspberry-pi-4"],
                              "stand_in": True, "statement": "On a Pi's CPU full width takes "
                              "twice as long as half width."},
            _LATENCY_RATIO | {"id": "latency", "expected": 3.0,
                              "statement": "Full width takes three times as long as half width.",
                              "interpretation": "'Three times' is read as 3 ± 0.25."},
            {"id": "accuracy", "statement": "VGG-11 at full width: 90 % accuracy.",
             "experiment": EXP, "metric": "accuracy", "comparison": "value",
             "filter": {"model": "vgg11", "scale": 1.0}, "operator": "approx", "expected": 0.9,
             "tolerance": 0.01, "min_profile": "smoke"},
            _LATENCY_RATIO | {"id": "orin-latency", "expected": 2.0, "hardware": ["jetson-orin"],
                              "statement": "On an Orin full width takes twice as long."},
            _LATENCY_RATIO | {"id": "orin-latency-bound", "operator": "at_least",
                              "expected": 1.5, "hardware": ["jetson-orin"],
                              "statement": "On an Orin full width takes at least 1.5x as long."},
        ]})


@pytest.fixture
def synthetic_claims(monkeypatch: pytest.MonkeyPatch) -> None:
    """The report judges the synthetic claims alone (render.py loads them through claims)."""
    monkeypatch.setattr(claims, "load_publications", lambda: [synthetic_publication()])


def test_summary_opens_the_report(rendered: tuple[dict[str, Path], str, str]) -> None:
    """What ran where, the verdict counts and the reasons come before any claim or cell."""
    _, md, html = rendered
    order = [md.index(h) for h in ("## Summary\n", "## Published claims\n", "## Method\n",
                                   f"## Experiment: {EXP}\n")]
    assert order == sorted(order)
    top = _section(md, "## Summary")
    assert ("- **Ran on:** x86_64-generic (Test CPU, 2 cores); runner host (no Docker engine: "
            "host runner); profile smoke\n") in top
    assert f"- **Run:** {RUN_ID}, created 2025-01-01T00:00:00Z, git commit abc1234\n" in top
    assert "- **Cells:** 9 ok, 1 failed, 1 not run" in top
    shipped = [c for p in claims.load_publications() for c in p.claims]
    derived = sum(bool(c.derived_from) for c in shipped)
    assert re.search(rf"- \*\*Published claims \({len(shipped) - derived}\):\*\* \d+ not "
                     rf"comparable; {derived} derived from another claim, not counted\n", top)
    assert "*No ratio claim has a measured value in this run.*" in top
    assert html.index('<section id="summary"') < html.index('<section id="claims"')


def test_every_reason_is_printed_once_and_cited_by_number(
        rendered: tuple[dict[str, Path], str, str]) -> None:
    """The published claims of a smoke run share a few reasons: each is one numbered line of the
    summary with its claim count, and the claims cite its number."""
    _, md, html = rendered
    header, reasons = next(t for t in _md_tables(md) if t[0] == ["#", "reason", "claims"])
    assert len(reasons) >= 2
    assert [int(n) for n, _, _ in reasons] == list(range(1, len(reasons) + 1))
    assert [int(c) for _, _, c in reasons] == sorted((int(c) for _, _, c in reasons),
                                                     reverse=True)
    claim_rows = [row for h, rows in _md_tables(_section(md, "## Published claims"))
                  if h[0] == "claim" for row in rows]
    for number, reason, count in reasons:
        text = reason.replace("\\|", "|")
        assert md.count(text) == 1, text
        assert html.count(str(Markup.escape(text))) == 1, text
        mark = summary.marks([int(number)])
        citing = [r for r in claim_rows if re.search(rf"(^| |,){mark}(,|$)", r[-1])]
        assert len(citing) == int(count), (reason, citing)
    assert md.count("not comparable**") == len(claim_rows)


def test_verdicts_on_stand_in_hardware_are_counted_apart(synthetic_claims: None,
                                                         run_dir: Path, tmp_path: Path) -> None:
    md = render_report(run_dir, tmp_path / "out")["md"].read_text(encoding="utf-8")
    top = _section(md, "## Summary")
    assert ("- **Published claims judged on the hardware they name (4):** 1 reproduced, "
            "1 not reproduced, 2 not comparable\n") in top
    assert re.search(r"- \*\*Judged on stand-in hardware, counted apart \(1\):\*\* "
                     r"1 reproduced, measured on x86_64 Test CPU, 2 cores.*, standing in for "
                     r"Raspberry Pi 4: 4 × Cortex-A72\n", top), top
    # the judged ratio claims, measured beside published; a verdict on stand-in hardware is
    # styled apart (italic) from one on the named hardware (bold)
    tables = [t for t in _md_tables(top) if t[0][0] == "claim"]
    header, rows = tables[0]
    assert header == ["claim", "measured", "published", "verdict"]
    judged = "2 [2–2; 93.8 %]"  # five rounds that each measured 2: the level beside it
    assert [(r[1], r[2]) for r in rows] == [(judged, "2 ± 0.25"), (judged, "3 ± 0.25")]
    assert rows[0][3].startswith("*reproduced on stand-in hardware (x86_64, 2 cores)*")
    assert rows[1][3] == "**not reproduced**"
    # measured but not judged: shown muted (italic) with no verdict word, citing the reason
    header, partial = tables[1]
    assert header == ["claim", "observed", "published", "coverage"]
    assert [(r[1], r[2], r[3]) for r in partial] == [(f"*{judged}*", "*2 ± 0.25*", "*–* ¹"),
                                                     (f"*{judged}*", "*≥ 1.5*", "*–* ¹")]
    assert "**Measured, but not judged**" in top
    assert "VGG-11 at full width" not in top  # judged: a value claim is not in the headline
    assert top.count(SHARED_REASON) == 1 and md.count(SHARED_REASON) == 1
    # claims grouped by source, a line each, the reading of the source's words marked
    section = _section(md, "### synthetic (1 reproduced, 1 not reproduced, 2 not comparable; "
                           "1 reproduced on stand-in hardware)")
    assert "Claims written for the report tests." in section
    _, lines = next(t for t in _md_tables(section) if t[0][0] == "claim")
    assert len(lines) == 5
    assert lines[1][0] == "Full width takes three times as long as half width. ᵃ"
    assert "- ᵃ 'Three times' is read as 3 ± 0.25." in section
    assert lines[2][1:] == ["0.9 ± 0.01", "0.9; accuracy measured once per cell: no interval",
                            "1", "**reproduced**"]


def test_the_markdown_states_each_claims_scaling_convention(run_dir: Path,
                                                            tmp_path: Path) -> None:
    """Before, only the HTML's tooltip said whether a claim's scales are width or parameter
    ratios; a Markdown reader could not tell Lee's r = 0.25 from Gealy's."""
    md = render_report(run_dir, tmp_path / "out")["md"].read_text(encoding="utf-8")
    published = _section(md, "## Published claims")
    assert "(scales are width ratios)" in published
    assert "(scales are parameter ratios)" in published


def test_claims_context_handles_any_verdict() -> None:
    """A verdict string the report does not know (e.g. a future "inconclusive") is counted and
    styled like the others, between the judged verdicts and "not comparable"."""
    publication = synthetic_publication()
    source = publication.source

    def verdict(index: int, name: str, reasons: tuple[str, ...] = (), stand_in: str = "",
                ) -> claims.Verdict:
        return claims.Verdict(publication.claims[index], source, name, 1.25, reasons, 2,
                              stand_in)

    context = summary.claims_context([
        verdict(0, "not comparable", ("b", "a")), verdict(1, "inconclusive", ("a",)),
        verdict(2, "reproduced"), verdict(3, "not comparable", ("a",)),
        verdict(4, "reproduced", stand_in="arm64 box"),
        verdict(4, "not comparable", ("b",), stand_in="arm64 box")])
    assert context["counts"] == "1 reproduced, 1 inconclusive, 3 not comparable"
    assert [(g["machine"], g["counts"]) for g in context["stand_in"]] == [
        ("arm64 box", "1 reproduced")]
    assert [(r["n"], r["text"], r["claims"]) for r in context["reasons"]] == [
        (1, "a", 3), (2, "b", 2)]
    rows = context["sources"][0]["rows"]
    assert [r["marks"] for r in rows] == ["¹,²", "¹", "", "¹", "", "²"]
    assert rows[1]["css"] == "verdict-inconclusive"
    # judged ratio claims in the headline; measured but not comparable ones apart, unjudged
    assert [r["observed"] for r in context["headline"]] == ["1.25"] * 2
    assert [r["observed"] for r in context["partial"]] == ["1.25"] * 3


def test_a_derived_claim_is_marked_and_never_counted(monkeypatch: pytest.MonkeyPatch,
                                                    run_dir: Path, tmp_path: Path) -> None:
    """A claim the project derives from another (Gealy's absolute runtime memory from his 2.7x
    memory per parameter) is shown with its verdict, marked derived, and left out of every
    count: it is not a second confirmation. A reading shared by claims is one footnote."""
    publication = synthetic_publication()
    latency = next(c for c in publication.claims if c.id == "latency")
    twice = latency.model_copy(update={"id": "latency-twice", "expected": 2.0,
                                       "derived_from": "latency",
                                       "statement": "Derived: full width takes twice as long."})
    derived = publication.model_copy(update={"claims": [*publication.claims, twice]})
    monkeypatch.setattr(claims, "load_publications", lambda: [derived])
    paths = render_report(run_dir, tmp_path / "out")
    md, html = (paths[k].read_text(encoding="utf-8") for k in ("md", "html"))
    top = _section(md, "## Summary")
    assert ("- **Published claims judged on the hardware they name (4):** 1 reproduced, "
            "1 not reproduced, 2 not comparable; 1 derived from another claim, not counted\n"
            ) in top
    section = _section(md, "### synthetic (1 reproduced, 1 not reproduced, 2 not comparable; "
                           "1 reproduced on stand-in hardware; 1 derived, not counted)")
    _, lines = next(t for t in _md_tables(section) if t[0][0] == "claim")
    assert lines[-1][0] == "Derived: full width takes twice as long. ᵃ"
    assert lines[-1][-1] == "**reproduced** (derived from latency: not counted)"
    assert section.count("- ᵃ 'Three times' is read as 3 ± 0.25.") == 1
    assert 'reproduced <span class="derived">(derived from latency: not counted)</span>' in html


def _not_run(run_dir: Path, reasons: dict[str, str]) -> None:
    """Mark cells (cell id -> reason) as not run, with no records."""
    cells = pl.read_parquet(run_dir / "cells.parquet")
    cells = cells.with_columns(
        status=pl.when(pl.col("cell_id").is_in(list(reasons))).then(pl.lit("not run"))
        .otherwise(pl.col("status")),
        reason=pl.col("cell_id").replace_strict(reasons, default=pl.col("reason")))
    cells.write_parquet(run_dir / "cells.parquet")
    records = pl.read_parquet(run_dir / "records.parquet")
    records.filter(~pl.col("cell_id").is_in(list(reasons))).write_parquet(
        run_dir / "records.parquet")


def test_cells_not_run_are_counted_by_reason(run_dir: Path, tmp_path: Path) -> None:
    """No row per cell that did not run: a count per reason (most cells first), the cells
    behind a <details> in HTML."""
    gpu = "fp16 training needs a CUDA device"
    _not_run(run_dir, {"t1": gpu, "t2": gpu, "t3": gpu, "t0": "no ONNX Runtime Training"})
    paths = render_report(run_dir, tmp_path / "out")
    md, html = paths["md"].read_text(), paths["html"].read_text()
    section = _section(md, f"## Experiment: {TRAIN_EXP}")
    assert len(_results(md, TRAIN_EXP)) == 1  # the peak cell: the only one that ran
    assert "**4 cells not run**, by reason (cells.parquet lists each):" in section
    assert next(rows for h, rows in _md_tables(section) if h == ["reason", "cells"]) == [
        [gpu, "3"], ["no ONNX Runtime Training", "1"]]
    assert (f"- not run: {gpu} (3 cells): onnxruntime-training · fp32 · freeze 0; "
            "onnxruntime-training · fp32 · freeze 4; pytorch · fp16 · freeze 4\n") in section
    assert section.count(gpu) == 2  # the count table and the list of cells, no table rows
    assert (f'<details class="not-run"><summary><span class="count">3 cells</span>: {gpu}'
            "</summary>") in html
    assert '<span class="count">1 cell</span>: no ONNX Runtime Training</summary>' in html
    assert html.count('<details class="not-run">') == 3  # with the inference cell not run


def widen_synthetic_run(run_dir: Path) -> None:
    """Every ok inference cell gets every known metric it lacks (plausible values) and an
    unknown one, and its framework, device, precision and batch vary: the widest results table
    a run can give. Shared with the browser test, which checks that it fits the page."""
    plausible = {"M": (9.23e6, "count"), "M MACs": (153e6, "MAC"), "ms": (0.0123, "s"),
                 "%": (0.0213, "ratio"), "count": (200.0, "count"), "1/s": (15536.0, "1/s"),
                 "MiB": (140 * 2**20, "B"), "GFLOP/s": (50.5e9, "FLOP/s"), "s": (12.5, "s"),
                 "nat": (0.693, "nat"), "1/MB": (0.0215, "1/MB"), "B": (4.54, "B")}
    cells = pl.read_parquet(run_dir / "cells.parquet")
    inference = pl.col("experiment") == EXP
    index = pl.int_range(pl.len())
    cells = cells.with_columns(
        framework=pl.when(inference & (index % 2 == 1)).then(pl.lit("onnxruntime"))
        .otherwise(pl.col("framework")),
        device=pl.when(inference & (index % 2 == 1)).then(pl.lit("cuda"))
        .otherwise(pl.col("device")),
        precision=pl.when(inference & (index % 3 == 1)).then(pl.lit("fp16"))
        .otherwise(pl.col("precision")),
        batch=pl.when(inference & (index % 3 == 2)).then(pl.lit(64)).otherwise(pl.col("batch")))
    cells.write_parquet(run_dir / "cells.parquet")
    records = pl.read_parquet(run_dir / "records.parquet")
    widened = cells.filter(inference & (pl.col("status") == "ok"))
    metrics = {c.metric: plausible[c.unit] for c in METRIC_COLUMNS}
    metrics["a_metric_nobody_planned_for"] = (0.5, "ratio")
    measured = set(records.select("cell_id", "metric").iter_rows())
    extra = pl.DataFrame([{"cell_id": cell_id, "metric": m, "value": float(v), "unit": u}
                          for cell_id in widened["cell_id"] for m, (v, u) in metrics.items()
                          if (cell_id, m) not in measured])  # measured values stay
    coords = [c for c in records.columns if c not in ("cell_id", "metric", "value", "unit")]
    pl.concat([records.select("cell_id", "metric", "value", "unit"), extra]).join(
        cells.select("cell_id", *coords), on="cell_id").write_parquet(run_dir / "records.parquet")


def test_a_wide_results_table_is_split_into_parts_that_fit(run_dir: Path,
                                                           tmp_path: Path) -> None:
    widen_synthetic_run(run_dir)
    md = render_report(run_dir, tmp_path / "out")["md"].read_text()
    section = _section(md, f"## Experiment: {EXP}")
    parts = [(h, rows) for h, rows in _md_tables(section) if h[-1:] == ["status"]]
    assert len(parts) > 1
    shown = ["model", "scale", "framework", "device", "precision", "batch"]
    metrics = []
    for header, rows in parts:
        assert header[:len(shown)] == shown and len(rows) == 5  # each part: every cell
        metrics += header[len(shown):-1]
        width = sum(summary.column_width(h, [r[i] for r in rows]) + summary.PADDING
                    for i, h in enumerate(header))
        assert width <= TABLE_BUDGET, header
    assert sorted(metrics) == sorted([c.label for c in METRIC_COLUMNS if not c.interval]
                                     + ["a_metric_nobody_planned_for (%)"])
    assert "**Size · speed**" in section or "**Size**" in section


def test_pack_fills_parts_and_breaks_at_groups() -> None:
    pad = summary.PADDING
    # two groups of two columns: a part holds three columns, so it ends where b starts
    assert summary.pack([8, 8, 8, 8], ["a", "a", "b", "b"], 3 * (8 + pad)) == [[0, 1], [2, 3]]
    # breaking at the group would leave the first part under GROUP_BREAK full: filled instead
    assert summary.pack([2, 8, 8, 8], ["a", "b", "b", "b"], 3 * (8 + pad)) == [[0, 1, 2], [3]]
    assert summary.pack([50], ["a"], 30) == [[0]]  # wider than the budget: a part of its own
    assert summary.pack([], [], 30) == [[]]


def test_long_digests_are_shortened_for_the_page() -> None:
    digest = "repo@sha256:" + "7b9f4058c8b4f518" * 4
    assert summary.shorten(digest) == "repo@sha256:7b9f4058c8b4…"
    assert summary.shorten("sha256:ort") == "sha256:ort"  # short ids stay whole


def test_mfu_is_against_the_peak_of_the_cells_device_and_precision(tmp_path: Path) -> None:
    from toolkit.report import render

    rows = [("peak", "cpu", "fp32", "peak_flops_fp32", 100e9),
            ("peak", "cpu", "fp32", "peak_flops_bf16", 200e9),
            ("peak", "cpu", "fp32", "peak_flops_fp32_theoretical", 150e9),
            ("a", "cpu", "fp32", "achieved_flops", 50e9),
            ("b", "cpu", "bf16", "achieved_flops", 50e9),
            ("c", "cuda", "fp16", "achieved_flops", 10e9)]  # no CUDA peak in this run
    path = tmp_path / "records.parquet"
    pl.DataFrame([{"cell_id": c, "device": d, "precision": p, "metric": m, "value": v,
                   "unit": "FLOP/s"} for c, d, p, m, v in rows]).write_parquet(path)
    metrics = render._load_metrics(path)
    assert metrics["a"]["mfu"] == (0.5, "ratio")
    assert metrics["b"]["mfu"] == (0.25, "ratio")  # the bf16 peak, not the fp32 one
    assert "mfu" not in metrics["c"] and "mfu" not in metrics["peak"]


def _write_rounds(run_dir: Path, slow_last_round: float) -> None:
    """Three rounds per ok cell: the run's latencies x (1, 1.02, slow_last_round), and the same
    factor for every metric of the round (the machine, not the cells, moved)."""
    records = pl.read_parquet(run_dir / "records.parquet")
    rows = []
    for cell_id, metric, value in records.select("cell_id", "metric", "value").iter_rows():
        for index, factor in enumerate((1.0, 1.02, slow_last_round)):
            scaled = value * factor if metric in ("latency_p50", "step_time_p50") else value
            rows.append({"run_id": RUN_ID, "cell_id": cell_id, "round": index, "status": "ok",
                         "metric": metric, "value": scaled})
    pl.DataFrame(rows).write_parquet(run_dir / "rounds.parquet")


def test_rounds_give_intervals_ratio_intervals_and_a_drift_warning(run_dir: Path,
                                                                  tmp_path: Path) -> None:
    _write_rounds(run_dir, slow_last_round=1.3)
    md = render_report(run_dir, tmp_path / "out")["md"].read_text()
    assert "- **Rounds:** 3 per cell" in md and "0.98 · 1.00 · 1.27; moved 30%" in md
    assert "Warning: the machine's speed moved by more than 10 %" in md
    row = next(r for r in _results(md) if r["status"].startswith("ok"))
    # rounds at 1, 1.02 and 1.3 x 3.08 ms: their range, which covers the median 75 % of the time
    assert row["p50 interval (ms)"] == "3.08–4.00; 75 %"
    # each cell's own rounds 30 % apart: said beside the cell, not only as the machine's drift
    mark = row["status"].removeprefix("ok ")
    assert (f"- {mark} rounds disagree: latency_p50 from 3.08 ms to 4.00 ms over 3 rounds (30 % "
            "apart, more than the 20 % a steady cell shows)") in md
    steady = tmp_path / "steady"
    _write_rounds(run_dir, slow_last_round=1.01)
    text = render_report(run_dir, steady)["md"].read_text()
    assert "moved 2%" in text and "Warning: the machine" not in text
    assert "rounds disagree" not in text


def test_charts_draw_error_bars_from_rounds(run_dir: Path, tmp_path: Path) -> None:
    _write_rounds(run_dir, slow_last_round=1.3)
    out = render_report(run_dir, tmp_path / "out")["md"].parent
    with_bars = next((out / "charts").glob("*-latency.svg")).read_text()
    (run_dir / "rounds.parquet").unlink()
    plain = next((render_report(run_dir, tmp_path / "plain")["md"].parent / "charts").glob(
        "*-latency.svg")).read_text()
    assert with_bars.count("<path") > plain.count("<path")  # the bars are drawn paths


def test_a_ratio_between_cells_carries_its_interval_paired_by_round() -> None:
    from toolkit.report.kinds.base import ratio_text

    metrics = {"ns": {"latency_p50": (3e-3, "s")}, "u": {"latency_p50": (1e-3, "s")}}
    slow = [1.0, 1.3, 0.9]  # the machine's speed in each round: both cells alike
    rounds = {"ns": {"latency_p50": [3e-3 * s for s in slow]},
              "u": {"latency_p50": [1e-3 * s for s in slow]}}
    assert ratio_text("ns", "u", "latency_p50", metrics, rounds) == "3.00 [3.00–3.00; 75 %]"
    assert ratio_text("ns", "u", "latency_p50", metrics, {}) == "3.00"
    assert ratio_text("ns", "missing", "latency_p50", metrics, rounds) == "–"


def test_the_kind_the_manifest_records_picks_the_report_plugin() -> None:
    """The spec's kind decides; a run whose manifest lacks it is told by its cells' marking
    coordinates; a kind draws nothing for cells without its marker."""
    from toolkit.report import kinds

    def names(spec: dict, rows: list[dict]) -> list[str]:
        return [kind.name for kind in kinds.for_experiment(spec, rows)]

    scaled, mixed = [{"method": "uniform", "freeze": None}], [{"method": "uniform", "freeze": 0}]
    assert names({"kind": "inference"}, scaled) == names({}, scaled) == ["inference"]
    assert names({"kind": "training"}, mixed) == ["training"]
    assert names({}, mixed) == ["inference", "training"]
    assert names({"kind": "inference"}, []) == names({}, []) == []
    assert kinds.no_section_reason() == "no cell has a scaling method or a training freeze"


def test_a_published_search_says_refit_where_the_refit_solved_it(tmp_path: Path) -> None:
    """Cells solved from a shipped published search with our refit say "refit" in the widths
    table and in the fit's caption; those solved with the public fit show the public fit."""
    import shutil

    from toolkit.device import models
    from toolkit.device.scaling import published
    from toolkit.report.architectures import architectures

    run = tmp_path / "run"
    (run / "cells").mkdir(parents=True)
    (run / "neuralscale").mkdir()
    shutil.copy(Path(published.PUBLISHED_DIR) / "mobilenetv2-cifar100.json",
                run / "neuralscale" / "mobilenetv2-cifar100.json")
    rows = []
    for cell_id, method, scale, fit_source in (("u", "uniform", 0.5, None),
                                               ("p", "neuralscale", 0.25, "public"),
                                               ("r", "neuralscale", 0.5, "refit")):
        settings = {"classes": 100}
        if fit_source:
            settings["neuralscale_solution"] = {"fit_source": fit_source, "source": "published"}
        (run / "cells" / f"{cell_id}.json").write_text(
            json.dumps({"cell_id": cell_id, "settings": settings}))
        rows.append({"cell_id": cell_id, "model": "mobilenetv2", "method": method,
                     "scale": scale,
                     "widths": json.dumps(models.scale_widths("mobilenetv2", scale))})
    (model,) = architectures(run, rows)
    assert [(r[0], r[1]) for r in model["widths"]] == [
        ("neuralscale", "0.25"), ("neuralscale (refit)", "0.5"), ("uniform", "0.5")]
    public, refit = model["fits"]
    art = json.loads((run / "neuralscale" / "mobilenetv2-cifar100.json").read_text())
    assert "the public fit (prune_record/mobilenetv2_10_eff_c100.pk param[14]" in public["about"]
    assert float(public["rows"][0][2]) == pytest.approx(art["public"]["fit"]["alpha"][0],
                                                        rel=1e-3)
    assert "refit: our least squares" in refit["about"]
    assert float(refit["rows"][0][2]) == pytest.approx(art["final_fit"]["alpha"][0], rel=1e-3)
    # runs made before the choice solved every published search with the refit: they say so
    (run / "cells" / "p.json").write_text(json.dumps({"cell_id": "p", "settings": {
        "classes": 100, "neuralscale_solution": {"source": "published"}}}))
    (run / "cells" / "r.json").unlink()
    (model,) = architectures(run, rows)
    assert [(r[0], r[1]) for r in model["widths"]] == [
        ("neuralscale", "0.5"), ("neuralscale (refit)", "0.25"), ("uniform", "0.5")]
    assert [fit["about"].count("refit: our least squares") for fit in model["fits"]] == [1]
