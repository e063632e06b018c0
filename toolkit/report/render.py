"""Render a results directory into report.md (+ charts/*.svg) and a self-contained report.html.

All formatting decisions live here and in `toolkit.units`; the templates only loop over plain
strings, so the Markdown and HTML reports cannot disagree about a number.

Long because the tables and charts of both experiment kinds still live here beside the
orchestration; they are to move into one module per kind.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from toolkit import intervals, units
from toolkit import rounds as cell_rounds
from toolkit.derived import DERIVED, RUNTIME_MEMORY, metric_value, utilisation
from toolkit.experiments.cells import COORDINATES
from toolkit.report import charts, claims, summary
from toolkit.report.architectures import architectures
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


@dataclass(frozen=True)
class Column:
    """A metric column of the results table: stored metric shown in a display unit. Columns of
    one group stay side by side when a wide table is split into parts that fit the page."""

    label: str
    metric: str
    unit: str
    integer: bool = False
    group: str = "other"
    interval: bool = False  # the 95 % interval of the metric's median over the cell's rounds


SIZE, SPEED, TRAINING, MEMORY = "size", "speed", "training", "memory and accuracy"
METRIC_COLUMNS = (
    Column("params (M)", "params", "M", group=SIZE),
    Column("MACs (M)", "macs", "M MACs", group=SIZE),
    Column("session create (ms)", "session_create", "ms", group=SPEED),
    Column("first run (ms)", "first_run", "ms", group=SPEED),
    Column("p50 (ms)", "latency_p50", "ms", group=SPEED),
    Column("p50 95% CI (ms)", "latency_p50", "ms", group=SPEED, interval=True),
    Column("p90 (ms)", "latency_p90", "ms", group=SPEED),
    Column("CV (%)", "latency_cv", "%", group=SPEED),
    Column("robust CV (%)", "latency_rcv", "%", group=SPEED),
    Column("n", "latency_n", "count", integer=True, group=SPEED),
    Column("throughput (img/s)", "throughput", "1/s", group=SPEED),
    Column("step p50 (ms)", "step_time_p50", "ms", group=TRAINING),
    Column("step p50 95% CI (ms)", "step_time_p50", "ms", group=TRAINING, interval=True),
    Column("step robust CV (%)", "step_time_rcv", "%", group=TRAINING),
    Column("train FLOP ratio (%)", "train_flops_ratio", "%", group=TRAINING),
    Column("achieved (GFLOP/s)", "achieved_flops", "GFLOP/s", group=TRAINING),
    Column("MFU (%)", "mfu", "%", group=TRAINING),
    Column("peak fp32 (GFLOP/s)", "peak_flops_fp32", "GFLOP/s", group=TRAINING),
    Column("peak bf16 (GFLOP/s)", "peak_flops_bf16", "GFLOP/s", group=TRAINING),
    Column("peak fp16 (GFLOP/s)", "peak_flops_fp16", "GFLOP/s", group=TRAINING),
    Column("theoretical fp32 (GFLOP/s)", "peak_flops_fp32_theoretical", "GFLOP/s",
           group=TRAINING),
    Column("theoretical bf16 (GFLOP/s)", "peak_flops_bf16_theoretical", "GFLOP/s",
           group=TRAINING),
    Column("epoch estimate (s)", "epoch_time_estimate", "s", group=TRAINING),
    Column("loss (last)", "loss_last", "nat", group=TRAINING),
    Column("peak RSS (MiB)", "rss_peak", "MiB", group=MEMORY),
    Column("model memory (MiB)", "model_memory", "MiB", group=MEMORY),
    Column("GPU max allocated (MiB)", "gpu_max_allocated", "MiB", group=MEMORY),
    Column("GPU memory (MiB)", "gpu_memory_peak_delta", "MiB", group=MEMORY),
    Column("container peak (MiB)", "cgroup_memory_peak", "MiB", group=MEMORY),
    Column("accuracy (%)", "accuracy", "%", group=MEMORY),
    Column("accuracy / MB", "accuracy_per_mb", "1/MB", group=MEMORY),
    Column("memory / param (B)", "memory_per_param", "B", group=MEMORY),
)
# Characters of the table font (about 8.6 px each, padding included) a results table part may
# take: at most about 1100 px of the 1120 px a 1280-px screen leaves it.
TABLE_BUDGET = 128
# The peak cell's per-shape figures stay in the raw data (each dtype's best is shown).
NOT_TABULATED_PREFIXES = ("matmul_", "conv_flops_", "conv_time_")
# Known metrics kept out of the table to keep it readable; they stay in records.parquet.
NOT_TABULATED = {
    "runtime_memory",  # model memory on a CPU, GPU memory on a GPU: both have their column
    "latency_max",
    "latency_min",
    "latency_p99",
    "latency_mean",
    "latency_std",
    "latency_iqr",
    "rss_baseline",
    "rss_peak_kernel",
    "accuracy_final",
    "step_time_min", "step_time_p90", "step_time_p99", "step_time_max", "step_time_mean",
    "step_time_std", "step_time_iqr", "step_time_cv", "step_time_n", "setup", "first_step",
    "forward_flops_per_image", "train_flops_per_image", "train_flops_per_step",
    "steps_per_epoch", "loss_first", "loss_tail_mean", "loss_finite", "steps",
    "gpu_max_reserved",
}

Metrics = dict[str, tuple[float, str]]  # metric -> (value, SI unit) of one cell
Series = tuple[tuple[float, float], ...]  # (step, value) pairs of one cell's raw sample series
LOSS_SERIES = "loss"  # the per-step training loss in samples.parquet (device-side trainers)
IMAGE_FIELDS = ("image", "image_id", "image_digest")


def render_report(run_dir: Path, out_dir: Path, results_link: str | None = None) -> dict[str, Path]:
    """Write out_dir/report.md, out_dir/charts/*.svg and out_dir/report.html.

    `results_link` is the path prefix for links to the raw data files; by default the path of
    run_dir relative to out_dir, so reports/<id>/ links to ../../results/<id>/.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    cells = pl.read_parquet(run_dir / "cells.parquet")
    metrics = _load_metrics(run_dir / "records.parquet")
    rounds = load_rounds(run_dir / "rounds.parquet")
    losses = _load_series(run_dir / "samples.parquet", LOSS_SERIES)
    if results_link is None:
        results_link = _relative(run_dir, out_dir)

    context = {
        "run": _run_info(manifest, cells, rounds),
        "verdicts": _verdicts(manifest, run_dir, cells),
        "experiments": [
            _experiment(name, manifest, cells, metrics, rounds, losses, out_dir, run_dir,
                        results_link)
            for name in _experiment_names(manifest, cells)
        ],
        "environment": _environment_rows(manifest.get("environment", {})),
        "packages": _package_rows(manifest.get("environment", {})),
        "images": _images(run_dir, cells, str(manifest.get("runner") or "")),
        "platforms": platform_hardware(),
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


CellRounds = dict[str, dict[str, list[float]]]  # cell -> metric -> its value in each round


def load_rounds(path: Path) -> CellRounds:
    """Each measured round's figures per cell (rounds.parquet), derived figures included;
    empty for a run from before rounds."""
    if not path.exists():
        return {}
    table = pl.read_parquet(path).filter(pl.col("status").is_in(cell_rounds.MEASURED))
    by_round: dict[str, dict[int, dict[str, float]]] = {}
    for cell_id, index, metric, value in table.select(
            "cell_id", "round", "metric", "value").iter_rows():
        by_round.setdefault(cell_id, {}).setdefault(index, {})[metric] = value
    out: CellRounds = {}
    for cell_id, per_round in by_round.items():
        if len(per_round) < 2:
            continue
        ordered = [per_round[k] for k in sorted(per_round)]
        names = set().union(*ordered) | set(DERIVED)
        series = {name: [metric_value(values, name) for values in ordered] for name in names}
        out[cell_id] = {name: [v for v in values if v is not None]
                        for name, values in series.items() if all(v is not None for v in values)}
    return out


def _load_metrics(path: Path) -> dict[str, Metrics]:
    """cell_id -> metric -> (value, unit); a later duplicate record of a metric wins."""
    if not path.exists():
        return {}
    records = pl.read_parquet(path, columns=["cell_id", "metric", "value", "unit"])
    out: dict[str, Metrics] = {}
    for cell_id, metric, value, unit in records.iter_rows():
        out.setdefault(cell_id, {})[metric] = (value, unit)
    if {"device", "precision"} <= set(pl.read_parquet_schema(path)):
        coords = {cell_id: (device, precision) for cell_id, device, precision in pl.read_parquet(
            path, columns=["cell_id", "device", "precision"]).unique().iter_rows()}
        _add_utilisation(out, coords)
    for measured in out.values():  # derived figures (toolkit/derived.py) beside the measured
        plain = {metric: value for metric, (value, _) in measured.items()}
        for name, (unit, _) in DERIVED.items():
            value = metric_value(plain, name)
            if value is not None:
                measured[name] = (value, unit)
    return out


def _add_utilisation(metrics: dict[str, Metrics], coords: dict[str, tuple[str, str]]) -> None:
    """MFU of each training cell (derived.utilisation): against the peak its run measured on
    the same device in the cell's precision."""
    peaks = {(coords[cell_id][0], name[len("peak_flops_"):]): value
             for cell_id, measured in metrics.items() if cell_id in coords
             for name, (value, _) in measured.items()
             if name.startswith("peak_flops_") and not name.endswith("_theoretical")}
    achieved = {cell_id: m["achieved_flops"][0] for cell_id, m in metrics.items()
                if "achieved_flops" in m}
    for cell_id, mfu in utilisation(achieved, peaks, coords).items():
        metrics[cell_id]["mfu"] = (mfu, "ratio")


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
    moved = cell_rounds.drift(speeds)
    text = ""
    if moved is not None:
        text = ("machine speed by round (timing ÷ each cell's median): "
                + " · ".join(f"{s:.2f}" for s in speeds) + f"; moved {moved:.0%}")
    return {"rounds": count, "drift": text,
            "drift_warning": moved is not None and moved > cell_rounds.DRIFT_THRESHOLD}


def _experiment(
    name: str,
    manifest: dict,
    cells: pl.DataFrame,
    metrics: dict[str, Metrics],
    rounds: CellRounds,
    losses: dict[str, Series],
    out_dir: Path,
    run_dir: Path,
    results_link: str,
) -> dict[str, Any]:
    spec = manifest.get("spec", {}).get(name, {})
    rows = _sorted_rows(cells.filter(pl.col("experiment") == name))
    # Coordinates this experiment has (a run of several kinds leaves others' axes empty).
    coords = [c for c in COORDS if c in cells.columns] + [
        c for c in cells.columns if c not in COORDS and c not in BOOKKEEPING
    ]
    coords = [c for c in coords if any(r.get(c) is not None for r in rows)]
    drawn, skipped = _charts(name, rows, coords, metrics, rounds, losses, out_dir)
    return {
        "name": name,
        "anchor": "exp-" + summary.slug(name),
        "description": str(spec.get("description", "")),
        "protocol": _protocol(spec.get("measure", {})),
        "spec_json": json.dumps(spec, indent=2, sort_keys=True, default=str),
        "summary": _status_summary([r["status"] for r in rows]),
        "table": _table(rows, coords, metrics, rounds),
        "method_ratios": _method_ratios(rows, metrics, rounds),
        "speedups": _speedups(rows, metrics, rounds),
        "architectures": [
            model | {"fits": [fit | {"href": f"{results_link}/{fit['file']}"}
                              for fit in model["fits"]]}
            for model in architectures(run_dir, rows)],
        "charts": drawn,
        "skipped_charts": skipped,
    }


# NeuralScale ÷ uniform at equal scale: the comparison the scaling study makes.
RATIO_METRICS = (("latency p50", "latency_p50"), ("model memory", "model_memory"),
                 ("memory / param", "memory_per_param"), ("accuracy / MB", "accuracy_per_mb"),
                 ("accuracy", "accuracy"))


def _method_ratios(rows: list[dict[str, Any]], metrics: dict[str, Metrics],
                   rounds: CellRounds) -> dict[str, Any]:
    """NeuralScale ÷ uniform per (model, scale, framework, device, precision, batch), with the
    95 % interval of each ratio where the cells have rounds."""
    pair_on = [c for c in COORDS if c != "method" and any(r.get(c) is not None for r in rows)]
    by_method: dict[str, dict[tuple, str]] = {}
    for row in rows:
        if row["status"] == "ok" and row.get("method"):
            by_method.setdefault(row["method"], {})[tuple(row[c] for c in pair_on)] = \
                row["cell_id"]
    uniform, neuralscale = by_method.get("uniform", {}), by_method.get("neuralscale", {})
    body = []
    for key in sorted(set(uniform) & set(neuralscale), key=str):
        cells = [summary.coord_text(v) for v in key]
        for _, metric in RATIO_METRICS:
            cells.append(_ratio_text(neuralscale[key], uniform[key], metric, metrics, rounds))
        body.append(cells)
    return {"headers": pair_on + [f"{label} NS/U" for label, _ in RATIO_METRICS], "rows": body}


def _speedups(rows: list[dict[str, Any]], metrics: dict[str, Metrics],
              rounds: CellRounds) -> dict[str, Any]:
    """Training throughput per (framework, device, batch, freeze) and precision, relative to
    the same framework, device and batch at freeze 0 in fp32: the training study's matrix
    (with 95 % intervals where the cells have rounds)."""
    if not rows or "freeze" not in rows[0]:
        return {"headers": [], "rows": []}
    throughput = {(r["framework"], r["device"], r["batch"], r["freeze"], r["precision"]):
                  r["cell_id"] for r in rows
                  if r["status"] == "ok" and "throughput" in metrics.get(r["cell_id"], {})}
    precisions = sorted({key[4] for key in throughput})
    body = []
    for group in sorted({key[:4] for key in throughput}):
        reference = throughput.get((*group[:3], 0, "fp32"))
        if not reference:
            continue
        body.append([summary.coord_text(v) for v in group] + [
            _ratio_text(throughput[(*group, p)], reference, "throughput", metrics, rounds, "×")
            if (*group, p) in throughput else units.MISSING for p in precisions])
    return {"headers": ["framework", "device", "batch", "freeze", *precisions], "rows": body}


def _ratio_text(numerator: str, denominator: str, metric: str, metrics: dict[str, Metrics],
                rounds: CellRounds, suffix: str = "") -> str:
    """"2.14 [1.98–2.31]": the ratio of two cells' medians and its interval from their rounds,
    paired by round (toolkit/intervals.py); the bare ratio with one round."""
    a, b = (metric_value({m: v for m, (v, _) in metrics.get(cell, {}).items()}, metric)
            for cell in (numerator, denominator))
    if a is None or not b:
        return units.MISSING
    text = units.fmt(a / b) + suffix
    span = intervals.ratio_interval(rounds.get(numerator, {}).get(metric, []),
                                    rounds.get(denominator, {}).get(metric, []))
    if span is not None:
        text += f" [{units.fmt(span[0])}–{units.fmt(span[1])}]"
    return text


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


def _status_text(row: dict[str, Any]) -> str:
    status, reason = str(row["status"]), str(row.get("reason") or "")
    return f"{status}: {reason}" if reason and status != "ok" else status


def _interval_text(column: Column, span: tuple[float, float] | None,
                   value: tuple[float, str] | None) -> str:
    """A median's 95 % interval over the cell's rounds in the column's unit ("1.20–1.27")."""
    if span is None or value is None:
        return units.MISSING
    low, high = (units.convert(v, value[1], column.unit) for v in span)
    return f"{units.fmt(low)}–{units.fmt(high)}"


def _metric_text(column: Column, value: tuple[float, str] | None) -> str:
    if value is None:
        return units.MISSING
    number, unit = value
    try:
        shown = units.convert(number, unit, column.unit)
    except ValueError:  # an unexpected unit: show the stored value rather than a wrong one
        return f"{units.fmt(number)} {unit}"
    return units.fmt(round(shown) if column.integer else shown)


def _table(
    rows: list[dict[str, Any]], coords: list[str], metrics: dict[str, Metrics],
    rounds: CellRounds,
) -> dict[str, Any]:
    """The cells that ran as preformatted table parts that each fit the page, their reasons as
    footnotes, and the cells that did not run as counts by reason. Metric columns nobody in
    this experiment measured are left out; unknown metrics get a generic column in their
    default display unit; coordinates every row shares are said once above the table."""
    ran = [r for r in rows if r["status"] != summary.NOT_RUN]
    present: dict[str, str] = {}
    for row in ran:
        for metric, (_, unit) in metrics.get(row["cell_id"], {}).items():
            present.setdefault(metric, unit)
    known = {c.metric for c in METRIC_COLUMNS} | NOT_TABULATED
    spans = {cell: {metric: span for metric, values in by_metric.items()
                    if (span := intervals.median_interval(values)) is not None}
             for cell, by_metric in rounds.items()}
    spanned = {metric for by_metric in spans.values() for metric in by_metric}
    columns = [c for c in METRIC_COLUMNS if (c.metric in spanned if c.interval else
                                             c.metric in present)] + [
        Column(f"{m} ({units.DISPLAY.get(u, u)})", m, units.DISPLAY.get(u, u))
        for m, u in sorted(present.items())
        if m not in known and not m.startswith(NOT_TABULATED_PREFIXES)
    ]
    shown, fixed = summary.split_coordinates(ran, coords)
    notes = summary.Notes()
    body = []
    for row in ran:
        cell = metrics.get(row["cell_id"], {})
        status = str(row["status"])
        note = notes.cite(_status_text(row)) if status != "ok" and row.get("reason") else 0
        body.append({
            "coords": [summary.coord_text(row.get(c)) for c in shown],
            "metrics": [_interval_text(col, spans.get(row["cell_id"], {}).get(col.metric),
                                       cell.get(col.metric))
                        if col.interval else _metric_text(col, cell.get(col.metric))
                        for col in columns],
            "status": status,
            "note": note,
            "marks": summary.marks([note]) if note else "",
            "css": "status-" + summary.slug(status),
        })
    return {
        "ran": len(ran),
        "fixed": ", ".join(fixed),
        "parts": summary.table_parts(shown, [(c.label, c.group) for c in columns], body,
                                     TABLE_BUDGET),
        "notes": notes.rows(),
        "not_run": summary.not_run(rows, coords),
    }


Chart = dict[str, Any]  # a drawn chart (title, alt, caption, md_path, svg) or a skipped one


def _charts(
    name: str,
    rows: list[dict[str, Any]],
    coords: list[str],
    metrics: dict[str, Metrics],
    rounds: CellRounds,
    losses: dict[str, Series],
    out_dir: Path,
) -> tuple[list[Chart], list[Chart]]:
    """Drawn charts and skipped ones (title and reason): a reader sees why a chart is absent
    instead of guessing. The scaling study's views apply to cells with a method, the training
    study's to cells with a freeze coordinate (one run may hold both kinds)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "experiment"
    charts_dir = out_dir / "charts"
    outcomes: list[Chart] = []
    if any(r.get("method") is not None for r in rows):
        outcomes += _scaling_charts(name, slug, rows, coords, metrics, rounds, charts_dir)
    if any(r.get("freeze") is not None for r in rows):
        outcomes += _training_charts(name, slug, rows, metrics, losses, charts_dir)
    if not outcomes:
        outcomes.append(_skipped("charts", "no cell has a scaling method or a training freeze"))
    drawn = [c for c in outcomes if "svg" in c]
    return drawn, [c for c in outcomes if "reason" in c]


def _drawn(path: Path, title: str, alt: str, caption: str) -> Chart:
    """A chart written at path (charts/<name>.svg), linked from the Markdown, inlined in HTML."""
    return {
        "title": title,
        "alt": alt,
        "caption": caption,
        "md_path": f"{path.parent.name}/{path.name}",
        "svg": _inline_svg(path, alt),
    }


def _skipped(title: str, reason: str, path: Path | None = None) -> Chart:
    """A chart the data cannot support, with the reason shown in its place. A file left at its
    path by an earlier rendering into the same directory is removed: it would show old data."""
    if path is not None:
        path.unlink(missing_ok=True)
    return {"title": title, "reason": reason}


def _varying(rows: list[dict[str, Any]], coords: list[str], fixed: tuple[str, ...]) -> list[str]:
    """Coordinates outside `fixed` that take more than one value across rows: they must be part
    of a series label, or two different cells would share one line."""
    return [c for c in summary.varying(rows, coords) if c not in fixed]


def _scaling_charts(
    name: str,
    slug: str,
    rows: list[dict[str, Any]],
    coords: list[str],
    metrics: dict[str, Metrics],
    rounds: CellRounds,
    charts_dir: Path,
) -> list[Chart]:
    """Latency and memory against parameters (error bars: the 95 % interval of each median
    over the cell's rounds), then accuracy against runtime memory."""
    ok = [r for r in rows if r["status"] == "ok" and "params" in metrics.get(r["cell_id"], {})]
    # one series per (model, method) plus whatever else varies, except the swept scale
    keys = ["model", "method"] + _varying(ok, coords, ("scale", "model", "method"))
    points = []
    for r in ok:
        values = {m: v for m, (v, _) in metrics[r["cell_id"]].items()}
        label = " / ".join(summary.coord_text(r.get(k)) for k in keys if k in r)
        spans = {metric: span for metric, series in rounds.get(r["cell_id"], {}).items()
                 if (span := intervals.median_interval(series)) is not None}
        points.append(charts.Point(label, values["params"], values, spans))
    made = []
    for kind, draw, title, caption, needs in (
        ("latency", charts.latency_chart, f"{name}: latency p50 vs parameters",
         "Median latency (p50) against parameter count", "a latency p50"),
        ("memory", charts.memory_chart, f"{name}: memory vs parameters",
         "Peak RSS and model memory (peak − import baseline) against parameter count",
         "a peak RSS or model memory"),
    ):
        path = charts_dir / f"{slug}-{kind}.svg"
        if draw(points, path, title):
            made.append(_drawn(path, title, f"{title}: one line per {' / '.join(keys)}",
                               f"{caption}; ok cells only, one line per {' / '.join(keys)}."))
        else:
            made.append(_skipped(title, f"no ok cell has a parameter count and {needs}", path))
    made.append(_accuracy_memory_chart(name, slug, rows, coords, metrics, charts_dir))
    return made


def _accuracy_memory_chart(
    name: str,
    slug: str,
    rows: list[dict[str, Any]],
    coords: list[str],
    metrics: dict[str, Metrics],
    charts_dir: Path,
) -> Chart:
    """Accuracy against runtime memory (toolkit.derived.RUNTIME_MEMORY, as accuracy / MB uses):
    one panel per model, one line per method, each point labelled with its scale."""
    title = f"{name}: accuracy vs runtime memory"
    path = charts_dir / f"{slug}-accuracy-memory.svg"
    def values(r: dict[str, Any]) -> dict[str, float]:
        return {name: value[0] for name, value in metrics.get(r["cell_id"], {}).items()}

    both = [r for r in rows if r["status"] == "ok" and "accuracy" in values(r)
            and metric_value(values(r), RUNTIME_MEMORY) is not None]
    if not both:
        return _skipped(title, "no ok cell has both an accuracy and a runtime memory record "
                               "(accuracy needs settings.accuracy_training)", path)
    keys = ["method"] + _varying(both, coords, ("scale", "model", "method"))
    lines: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for r in both:
        cell = metrics[r["cell_id"]]
        series = " / ".join(summary.coord_text(r.get(k)) for k in keys)
        lines.setdefault((summary.coord_text(r.get("model")), series), []).append(
            (r.get("scale") or 0.0, metric_value(values(r), RUNTIME_MEMORY),
             cell["accuracy"][0]))
    traces = [charts.Trace(model, series, tuple((m, a) for _, m, a in sorted(pts)),
                           tuple(f"{summary.coord_text(s)}×" for s, _, _ in sorted(pts)))
              for (model, series), pts in sorted(lines.items())]
    charts.accuracy_memory_chart(traces, path, title)
    return _drawn(path, title, f"{title}: one panel per model, one line per {' / '.join(keys)}",
                  "Accuracy (max test accuracy) against runtime memory (CPU: peak RSS − "
                  "import baseline; GPU: the device-side peak, cudaMemGetInfo); one panel per "
                  f"model, one line per {' / '.join(keys)}, points "
                  "labelled with their scale; ok cells with both records only.")


# What tells two training cells of one framework apart, in label order (device always shown).
TRAINING_LABEL = ("model", "device", "precision", "freeze", "batch")
# Bars and lines in the speed-up table's order: precisions of one freeze level side by side.
TRAINING_ORDER = ("framework", "model", "device", "batch", "freeze", "precision")


def _training_label(row: dict[str, Any], shown: list[str]) -> str:
    """"cpu / fp16 / freeze 4 / batch 8": numbers carry their coordinate's name, or a reader
    could not tell a freeze of 8 from a batch of 8."""
    parts = []
    for coord in shown:
        text = summary.coord_text(row.get(coord))
        parts.append(f"{coord} {text}" if coord in ("freeze", "batch") else text)
    return " / ".join(parts)


def _training_charts(
    name: str,
    slug: str,
    rows: list[dict[str, Any]],
    metrics: dict[str, Metrics],
    losses: dict[str, Series],
    charts_dir: Path,
) -> list[Chart]:
    """Throughput per framework and loss curves of the ok training cells (not the peak cells:
    they have neither a throughput nor a loss)."""
    ok = sorted((r for r in rows if r["status"] == "ok"
                 and ("throughput" in metrics.get(r["cell_id"], {}) or r["cell_id"] in losses)),
                key=lambda r: _coord_key(r, TRAINING_ORDER))
    several_models = len({r.get("model") for r in ok}) > 1
    shown = [c for c in TRAINING_LABEL if c != "model" or several_models]
    return [_throughput_chart(name, slug, ok, shown, metrics, charts_dir),
            _loss_chart(name, slug, ok, shown, losses, charts_dir)]


def _coord_key(row: dict[str, Any], coords: tuple[str, ...]) -> tuple:
    """Sort key by coordinates in their own types (freeze 4 before 10), missing values last."""
    return tuple((row.get(c) is None, row.get(c) if row.get(c) is not None else 0)
                 for c in coords)


def _throughput_chart(
    name: str,
    slug: str,
    ok: list[dict[str, Any]],
    shown: list[str],
    metrics: dict[str, Metrics],
    charts_dir: Path,
) -> Chart:
    """Images/s of every ok training cell, one bar each, coloured per framework."""
    title = f"{name}: training throughput per framework"
    bars = [charts.Bar(str(r["framework"]), _training_label(r, ["framework", *shown]),
                       metrics[r["cell_id"]]["throughput"][0])
            for r in ok if "throughput" in metrics.get(r["cell_id"], {})]
    path = charts_dir / f"{slug}-throughput.svg"
    if not charts.throughput_chart(bars, path, title):
        return _skipped(title, "no ok training cell has a throughput record", path)
    return _drawn(path, title, f"{title}: one bar per cell, coloured per framework",
                  "Training images/s (batch ÷ step-time p50), one bar per "
                  f"{' / '.join(['framework', *shown])}; ok cells only.")


def _loss_chart(
    name: str,
    slug: str,
    ok: list[dict[str, Any]],
    shown: list[str],
    losses: dict[str, Series],
    charts_dir: Path,
) -> Chart:
    """Loss of every step of every ok training cell, one panel per framework."""
    title = f"{name}: training loss per step"
    traces = [charts.Trace(str(r["framework"]), _training_label(r, shown), losses[r["cell_id"]])
              for r in ok if losses.get(r["cell_id"])]
    path = charts_dir / f"{slug}-loss.svg"
    if not charts.loss_chart(traces, path, title):
        return _skipped(title, f"no ok training cell has {LOSS_SERIES!r} samples in "
                               "samples.parquet", path)
    return _drawn(path, title, f"{title}: one panel per framework, one line per cell",
                  "Training loss of every step from the first (warm-up included), from "
                  "samples.parquet; one panel per framework, one line per "
                  f"{' / '.join(shown)}; ok cells only.")


def _load_series(path: Path, metric: str) -> dict[str, Series]:
    """cell_id -> (sample index, value) pairs of one raw sample series in samples.parquet."""
    if not path.exists():
        return {}
    frame = (pl.scan_parquet(path).filter(pl.col("metric") == metric)
             .select("cell_id", "i", "value").sort("cell_id", "i").collect())
    out: dict[str, list[tuple[float, float]]] = {}
    for cell_id, i, value in frame.iter_rows():
        out.setdefault(cell_id, []).append((float(i), value))
    return {cell_id: tuple(pairs) for cell_id, pairs in out.items()}


def _images(run_dir: Path, cells: pl.DataFrame, runner: str) -> dict[str, Any]:
    """Every image that ran cells of this run, with its id and digest (which pin exactly what
    was measured, where a tag can move), or the message that the runner used none."""
    counts: dict[tuple[str, str, str], list[str]] = {}
    for row in cells.iter_rows(named=True):
        identity = _image_identity(run_dir, row)
        if identity[0]:
            counts.setdefault(identity, []).append(str(row.get("framework") or ""))
    if not counts:
        runners = sorted({str(r) for r in cells["runner"].to_list() if r}
                         if "runner" in cells.columns else []) or [runner or "host"]
        return {"rows": [], "none": f"{', '.join(runners)} runner: no images"}
    from toolkit.images import matrix as matrices

    loaded = matrices.load()  # once for every image
    rows = [[tag, image_id or units.MISSING, digest or units.MISSING, str(len(frameworks)),
             ", ".join(sorted(set(filter(None, frameworks)))) or units.MISSING,
             image_hardware(tag, loaded)]
            for (tag, image_id, digest), frameworks in sorted(counts.items())]
    return {"rows": rows, "none": ""}


def image_hardware(tag: str, loaded: Any) -> str:
    """The matrix's word on whether an image (edgerepro/<framework>:<platform>-<hash>, with or
    without a registry in front) was proven on the hardware it is for."""
    name, _, version = tag.rpartition("/")[2].partition(":")
    platform = version.rsplit("-", 1)[0]
    if platform not in loaded.platforms or name not in loaded.platforms[platform].frameworks:
        return units.MISSING
    return loaded.hardware(platform, name)


def platform_hardware() -> list[list[str]]:
    """Every platform of the matrix with what it is for and whether that hardware ran it."""
    from toolkit.images import matrix as matrices

    loaded = matrices.load()
    return [[name, platform.description, platform.hardware]
            for name, platform in loaded.platforms.items()]


def _image_identity(run_dir: Path, row: dict[str, Any]) -> tuple[str, str, str]:
    """(tag, id, digest) of the image that ran a cell. Runs stored before cells.parquet had an
    image_id column have it read from the cell's own results/<run>/cells/ file."""
    identity = {f: str(row.get(f) or "") for f in IMAGE_FIELDS}
    if any(f not in row for f in IMAGE_FIELDS) and (identity["image"] or "image" not in row):
        path = run_dir / "cells" / f"{row['cell_id']}.json"
        payload = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        identity |= {f: str(payload.get(f) or "") for f in IMAGE_FIELDS if f not in row}
    return identity["image"], identity["image_id"], identity["image_digest"]


def _inline_svg(path: Path, title: str) -> Markup:
    """The SVG element alone, ready to inline into HTML5 (which needs no XML namespaces)."""
    text = path.read_text(encoding="utf-8")
    text = text[text.index("<svg") :]
    head, sep, rest = text.partition(">")
    head = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", head)
    # group ids (figure_1, axes_1, ...) are never referenced and would repeat across charts
    rest = re.sub(r'<g id="[^"]*"', "<g", rest)
    label = Markup.escape(title)
    return Markup(f'{head} role="img" aria-label="{label}"{sep}{rest}'.strip())


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
        return
    if isinstance(value, list | tuple):
        text = ", ".join(str(v) for v in value)
    elif value is None:
        text = units.MISSING
    elif prefix.endswith("_bytes") and isinstance(value, int | float):
        text = f"{units.fmt(units.convert(value, 'B', 'GiB'))} GiB ({value} B)"
    else:
        text = str(value)
    out.append((prefix, text))


def _environment_rows(environment: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    _flatten("", {k: v for k, v in environment.items() if k != "packages"}, rows)
    return rows


def _package_rows(environment: dict[str, Any]) -> list[tuple[str, str]]:
    packages = environment.get("packages") or {}
    if not isinstance(packages, dict):
        return []
    return [(str(k), units.MISSING if v is None else str(v)) for k, v in sorted(packages.items())]
