"""Report renderer and display units, on a small synthetic results directory."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import polars as pl
import pytest

from toolkit import units
from toolkit.report.render import render_report

RUN_ID = "20250101T000000Z-test"
EXP = "inference_scaling"
COORDS = {"framework": "ort", "device": "cpu", "precision": "fp32", "batch": 1}
SCALES = (0.25, 0.5, 0.75, 1.0)
FULL_PARAMS = 9_231_114
NOT_RUN_REASON = "no trained checkpoint for neuralscale"
FAILED_REASON = "onnxruntime error | out of memory <alloc>"


def _cell(cell_id: str, model: str, method: str, scale: float, status: str, reason: str) -> dict:
    return {
        "run_id": RUN_ID,
        "cell_id": cell_id,
        "experiment": EXP,
        "model": model,
        "method": method,
        "scale": scale,
        **COORDS,
        "status": status,
        "reason": reason,
        "runner": "host",
        "started_at": "2025-01-01T00:00:00Z",
        "wall_s": 2.5,
    }


def _metrics(scale: float) -> dict[str, tuple[float, str]]:
    """Known values per ok cell; p50 at scale 1.0 is 0.0123 s."""
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
    }


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "results" / RUN_ID
    run.mkdir(parents=True)
    cells = [_cell(f"c{i}", "vgg11", "uniform", s, "ok", "") for i, s in enumerate(SCALES)]
    cells += [
        _cell("c4", "vgg11", "neuralscale", 0.5, "not run", NOT_RUN_REASON),
        _cell("c5", "mobilenetv2", "uniform", 1.0, "failed", FAILED_REASON),
    ]
    pl.DataFrame(cells).write_parquet(run / "cells.parquet")
    records, samples = [], []
    for cell, scale in zip(cells, SCALES, strict=False):
        coords = {
            k: v
            for k, v in cell.items()
            if k not in ("status", "reason", "runner", "started_at", "wall_s")
        }
        for metric, (value, unit) in _metrics(scale).items():
            if scale == 0.25 and metric == "macs":
                continue  # a metric missing for one cell must show as "–"
            records.append({**coords, "metric": metric, "value": float(value), "unit": unit})
        samples += [
            {
                "run_id": RUN_ID,
                "cell_id": cell["cell_id"],
                "metric": "latency",
                "i": i,
                "value": 0.0123 * scale,
                "unit": "s",
            }
            for i in range(3)
        ]
    pl.DataFrame(records).write_parquet(run / "records.parquet")
    pl.DataFrame(samples).write_parquet(run / "samples.parquet")
    manifest = {
        "run_id": RUN_ID,
        "created": "2025-01-01T00:00:00Z",
        "experiments": [EXP],
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
def rendered(run_dir: Path) -> tuple[dict[str, Path], str, str]:
    paths = render_report(run_dir, run_dir.parent.parent / "reports" / RUN_ID)
    md = paths["md"].read_text(encoding="utf-8")
    html = paths["html"].read_text(encoding="utf-8")
    return paths, md, html


def _table_rows(md: str) -> list[list[str]]:
    """Body rows of the results table (the one whose header starts with `model`)."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| model |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


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
    rows = _table_rows(md)
    assert len(rows) == 6  # every cell, none dropped
    header = next(line for line in md.splitlines() if line.startswith("| model |"))
    assert "p50 (ms)" in header and "peak RSS (MiB)" in header
    full = next(r for r in rows if r[:3] == ["vgg11", "uniform", "1"])
    assert "12.3" in full  # 0.0123 s -> 12.3 ms
    assert "9.23" in full  # params in M
    assert "140" in full  # peak RSS MiB
    assert "40.0" in full  # model memory MiB
    assert full[-1] == "ok"
    quarter = next(r for r in rows if r[:3] == ["vgg11", "uniform", "0.25"])
    assert "–" in quarter  # macs missing for that cell
    assert f"not run: {NOT_RUN_REASON}" in md
    assert "failed: onnxruntime error \\| out of memory &lt;alloc>" in md  # escaped for tables


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
    assert f"not run: {NOT_RUN_REASON}" in html
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
    assert len(_table_rows(md)) == 6 and "No charts" in md
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
    header = next(line for line in md.splitlines() if line.startswith("| model |"))
    assert "| freeze |" in header and "| accuracy (%) |" in header
    assert "| 91.2 |" in md
