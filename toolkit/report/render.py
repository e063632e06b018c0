"""Render a results directory into report.md (+ charts/*.svg) and a self-contained report.html.

All formatting decisions live here, in the modules it calls and in `toolkit.units`; the templates
only loop over plain strings, so the Markdown and HTML reports cannot disagree about a number.

This module orchestrates: it loads the run, builds the parts every experiment has (the results
table in table.py, the environment in environment.py, the claims' verdicts) and asks each
experiment's kind (toolkit/report/kinds/) for its own tables and charts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from toolkit import rounds as cell_rounds
from toolkit import units
from toolkit.derived import DERIVED, MFU, derived_values, metric_value, run_utilisation
from toolkit.experiments.cells import COORDINATES
from toolkit.report import claims, environment, kinds, summary
from toolkit.report.kinds.base import CellRounds, Chart, Experiment, Metrics, skipped
from toolkit.report.table import results_table
from toolkit.results import RunStore

TEMPLATES = Path(__file__).parent / "templates"

# Coordinates in display order; any other cells.parquet column not in BOOKKEEPING is shown too.
COORDS = tuple(COORDINATES)
BOOKKEEPING = {
    "run_id",
    "cell_id",
    "experiment",
    "status",
    "reason",
    "runner",
    "started_at",
    "wall_s",
    "image",
    "image_id",
    "image_digest",
    "widths",
}
RAW_FILES = (
    ("records.parquet", "one measured value per row (metric, value, SI unit) with coordinates"),
    ("cells.parquet", "one row per cell: coordinates, status and reason"),
    ("samples.parquet", "every raw sample: latencies, step times, per-step losses"),
    ("records.csv", "the records as CSV, for spreadsheets"),
    ("cells.csv", "the cells as CSV"),
    ("manifest.json", "resolved specs and environment"),
)


def render_report(run_dir: Path, out_dir: Path, results_link: str | None = None) -> dict[str, Path]:
    """Write out_dir/report.md, out_dir/charts/*.svg and out_dir/report.html.

    `results_link` is the path prefix for links to the raw data files; by default the path of
    run_dir relative to out_dir, so reports/<id>/ links to ../../results/<id>/.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    store = RunStore.open(run_dir.parent, run_dir.name)  # an older run is migrated first
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = store.manifest
    cells = pl.read_parquet(run_dir / "cells.parquet")
    metrics = _load_metrics(run_dir / "records.parquet")
    rounds = load_rounds(run_dir / "rounds.parquet")
    if results_link is None:
        results_link = _relative(run_dir, out_dir)

    context = {
        "run": _run_info(manifest, cells, rounds),
        "verdicts": _verdicts(manifest, run_dir, cells),
        "experiments": [
            _experiment(name, manifest, cells, metrics, rounds, out_dir, run_dir, results_link)
            for name in _experiment_names(manifest, cells)
        ],
        "environment": environment.environment_rows(manifest.get("environment", {})),
        "packages": environment.package_rows(manifest.get("environment", {})),
        "images": environment.images(cells, str(manifest.get("runner") or "")),
        "platforms": environment.platform_hardware(),
        "raw_files": [
            {
                "name": name,
                "href": f"{results_link}/{name}",
                "about": about,
                "exists": (run_dir / name).exists(),
            }
            for name, about in RAW_FILES
        ],
    }
    env = _jinja()
    paths = {"md": out_dir / "report.md", "html": out_dir / "report.html"}
    for kind, path in paths.items():
        text = env.get_template(f"report.{kind}.j2").render(**context)
        path.write_text(text, encoding="utf-8", newline="\n")
    return paths


def render_fleet_report(fleet: dict[str, Any], run_dirs: dict[str, Path], out_dir: Path,
                        ) -> dict[str, Path]:
    """A fleet run (several devices measuring the same cells): each device's own full report in
    out_dir/<device>/, then out_dir/report.md and report.html with the devices side by side.

    `fleet` comes from toolkit.fleet.compare.fleet_context (preformatted strings, like every
    other table here); a device run without cells yet gets no report of its own.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, run_dir in run_dirs.items():
        if (Path(run_dir) / "cells.parquet").is_file():
            render_report(run_dir, out_dir / name)
    env = _jinja()
    paths = {"md": out_dir / "report.md", "html": out_dir / "report.html"}
    for kind, path in paths.items():
        text = env.get_template(f"fleet.{kind}.j2").render(fleet=fleet)
        path.write_text(text, encoding="utf-8", newline="\n")
    return paths


def _verdicts(manifest: dict, run_dir: Path, cells: pl.DataFrame) -> dict[str, Any]:
    """Every published claim's verdict on this run, formatted by summary.claims_context."""
    records_path = run_dir / "records.parquet"
    records = (pl.read_parquet(records_path) if records_path.exists()
               else pl.DataFrame(schema={"cell_id": pl.String, "metric": pl.String,
                                         "value": pl.Float64}))
    rows, all_cells = claims.run_rows(cells, records, RunStore(run_dir).cell_results())
    environment = manifest.get("environment", {})
    verdicts = claims.evaluate_all(claims.load_publications(), rows, all_cells,
                                   manifest.get("profile", "smoke"), environment)
    return summary.claims_context(verdicts)


def _jinja() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = md_escape
    env.filters["short"] = summary.shorten
    return env


def md_escape(text: Any) -> str:
    """Make text safe inside a Markdown table cell: no pipes, newlines or raw HTML tags."""
    s = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;")
    return " ".join(s.split())


def load_rounds(path: Path) -> CellRounds:
    """Each measured round's figures per cell (rounds.parquet), derived figures included,
    keyed by the pass each round was measured in (intervals.py pairs cells on it); empty for a
    run from before rounds. Figures measured once per cell (accuracy) are not among them."""
    if not path.exists():
        return {}
    table = pl.read_parquet(path).filter(pl.col("status").is_in(cell_rounds.MEASURED))
    if "pass" not in table.columns:  # written before passes were recorded: pair by index
        table = table.with_columns(pl.format("round {}", pl.col("round")).alias("pass"))
    by_round: dict[str, dict[str, dict[str, float]]] = {}  # in round order (rounds.py)
    for cell_id, key, metric, value in table.sort("round").select(
            "cell_id", "pass", "metric", "value").iter_rows():
        by_round.setdefault(cell_id, {}).setdefault(key, {})[metric] = value
    out: CellRounds = {}
    for cell_id, per_round in by_round.items():
        if len(per_round) < 2:
            continue
        names = set().union(*per_round.values()) | set(DERIVED)
        series = {name: {key: metric_value(values, name) for key, values in per_round.items()}
                  for name in names}
        out[cell_id] = {name: {k: v for k, v in values.items() if v is not None}
                        for name, values in series.items()
                        if all(v is not None for v in values.values())}
    return out


def _load_metrics(path: Path) -> dict[str, Metrics]:
    """cell_id -> metric -> (value, unit), derived figures (toolkit/derived.py: MFU against the
    run's own peaks, then the per-cell ones) beside the measured; a later duplicate record of a
    metric wins."""
    if not path.exists():
        return {}
    records = pl.read_parquet(path, columns=["cell_id", "metric", "value", "unit"])
    out: dict[str, Metrics] = {}
    for cell_id, metric, value, unit in records.iter_rows():
        out.setdefault(cell_id, {})[metric] = (value, unit)
    if {"device", "precision"} <= set(pl.read_parquet_schema(path)):
        coords = {cell_id: (device, precision) for cell_id, device, precision in pl.read_parquet(
            path, columns=["cell_id", "device", "precision"]).unique().iter_rows()}
        plain = {cell: _values(measured) for cell, measured in out.items()}
        for cell_id, mfu in run_utilisation(plain, coords).items():
            out[cell_id][MFU] = (mfu, "ratio")
    for measured in out.values():
        measured.update(derived_values(_values(measured)))
    return out


def _values(measured: Metrics) -> dict[str, float]:
    return {metric: value for metric, (value, _) in measured.items()}


def _relative(run_dir: Path, out_dir: Path) -> str:
    try:
        return Path(os.path.relpath(run_dir.resolve(), out_dir.resolve())).as_posix()
    except ValueError:  # different drives on Windows: no relative path exists
        return run_dir.resolve().as_posix()


def _experiment_names(manifest: dict, cells: pl.DataFrame) -> list[str]:
    listed = list(manifest.get("experiments", []))
    extra = sorted(set(cells["experiment"].to_list()) - set(listed))
    return listed + extra


def _status_summary(statuses: list[str]) -> str:
    order = ["ok", "invalid", "failed", "not run"]
    counts = {
        s: statuses.count(s)
        for s in sorted(
            set(statuses), key=lambda s: (order.index(s) if s in order else len(order), s)
        )
    }
    return ", ".join(f"{n} {s}" for s, n in counts.items()) or "no cells"


def _run_info(manifest: dict, cells: pl.DataFrame, rounds: CellRounds) -> dict[str, Any]:
    git = manifest.get("environment", {}).get("git", {})
    commit = str(git.get("commit", "")) if isinstance(git, dict) else ""
    if commit and isinstance(git, dict) and git.get("dirty"):
        commit += " (dirty working tree)"
    wall = cells["wall_s"].drop_nulls().sum() if "wall_s" in cells.columns else None
    return {
        "run_id": str(manifest.get("run_id", "")),
        "created": str(manifest.get("created", "")),
        "experiments": ", ".join(_experiment_names(manifest, cells)),
        "profile": str(manifest.get("profile", "")),
        "runner": str(manifest.get("runner", "")),
        "runner_note": str(manifest.get("runner_note") or ""),
        "machine": summary.machine_text(manifest.get("environment", {})),
        "commit": commit,
        "summary": _status_summary(cells["status"].to_list()),
        "wall": f"{units.fmt(wall)} s" if wall else units.MISSING,
    } | _rounds_info(rounds)


def _rounds_info(rounds: CellRounds) -> dict[str, Any]:
    """How many rounds the cells were measured in, and how the machine's speed moved between
    them (toolkit/rounds.py): a move beyond the threshold is a warning on the page."""
    count = max((len(v) for by_metric in rounds.values() for v in by_metric.values()), default=1)
    speeds = cell_rounds.speed_by_round(list(rounds.values()))
    text, too_much = cell_rounds.drift_text(speeds)
    if text:
        text = f"machine speed by round (timing ÷ each cell's median): {text}"
    return {"rounds": count, "drift": text, "drift_warning": too_much}


def _experiment(
    name: str,
    manifest: dict,
    cells: pl.DataFrame,
    metrics: dict[str, Metrics],
    rounds: CellRounds,
    out_dir: Path,
    run_dir: Path,
    results_link: str,
) -> dict[str, Any]:
    """One experiment's part of the report: what every experiment has, then its kind's tables
    and charts (kinds.for_experiment picks the kind its spec records)."""
    spec = manifest.get("spec", {}).get(name, {})
    rows = _sorted_rows(cells.filter(pl.col("experiment") == name))
    # Coordinates this experiment has (a run of several kinds leaves others' axes empty).
    coords = [c for c in COORDS if c in cells.columns] + [
        c for c in cells.columns if c not in COORDS and c not in BOOKKEEPING
    ]
    coords = [c for c in coords if any(r.get(c) is not None for r in rows)]
    data = Experiment(name, rows, coords, metrics, rounds, run_dir, out_dir, results_link)
    sections = [kind.section(data) for kind in kinds.for_experiment(spec, rows)]
    charts: list[Chart] = [chart for section in sections for chart in section.charts]
    if not charts:  # a reader sees why charts are absent instead of guessing
        charts.append(skipped("charts", kinds.no_section_reason()))
    return {
        "name": name,
        "anchor": "exp-" + summary.slug(name),
        "description": str(spec.get("description", "")),
        "protocol": _protocol(spec.get("measure", {})),
        "spec_json": json.dumps(spec, indent=2, sort_keys=True, default=str),
        "summary": _status_summary([r["status"] for r in rows]),
        "table": results_table(rows, coords, metrics, rounds),
        "tables": [table for section in sections for table in section.tables],
        "charts": [c for c in charts if "svg" in c],
        "skipped_charts": [c for c in charts if "reason" in c],
    }


def _sorted_rows(cells: pl.DataFrame) -> list[dict[str, Any]]:
    keys = [c for c in (*COORDS, "cell_id") if c in cells.columns]
    return list(cells.sort(keys, nulls_last=True).iter_rows(named=True))


def _protocol(measure: dict[str, Any]) -> list[tuple[str, str]]:
    """Measurement protocol as (label, sentence) pairs; unknown keys are listed verbatim."""

    def get(key: str, suffix: str = "") -> str:
        value = measure.get(key)
        return units.MISSING if value is None else f"{value}{suffix}"

    max_cv = measure.get("max_cv")
    cv = units.MISSING if max_cv is None else f"{units.percent(max_cv):g} %"
    items = [
        (
            "warm-up",
            f"until both {get('warmup_count')} calls and {get('warmup_seconds', ' s')} are "
            "reached; not part of the statistics",
        ),
        (
            "measurement",
            f"until both at least {get('min_count')} samples and "
            f"{get('min_seconds', ' s')} of measuring are reached; every sample kept",
        ),
        (
            "statistics",
            "min, p50, p90, p99 (nearest-rank percentiles), mean, std, IQR, CV = std / mean, "
            "robust CV = IQR / (1.349 × median)",
        ),
        (
            "validity",
            f"a cell is invalid (shown, never dropped) when its robust CV exceeds {cv}, "
            "it has too few samples or it raised an error",
        ),
    ]
    known = {"warmup_count", "warmup_seconds", "min_count", "min_seconds", "max_cv"}
    items += [(k, str(v)) for k, v in sorted(measure.items()) if k not in known]
    return items
