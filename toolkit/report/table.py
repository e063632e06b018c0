"""The results table every experiment's section opens with: one row per cell that ran, its
coordinates and metric columns in display units (each median's interval, with its level, where
the cells have rounds), split into parts that fit the page.

Columns every kind measures are defined here, the rest by the kinds (toolkit/report/kinds/);
every experiment's table knows them all, and a column shows where its metric was measured.
"""
from __future__ import annotations

from typing import Any

from toolkit import intervals, units
from toolkit import rounds as cell_rounds
from toolkit.report import kinds, summary
from toolkit.report.kinds.base import MEMORY, SIZE, SPEED, CellRounds, Column, Metrics, Row

COMMON_COLUMNS = (
    Column("params (M)", "params", "M", group=SIZE),
    Column("MACs (M)", "macs", "M MACs", group=SIZE),
    Column("session create (ms)", "session_create", "ms", group=SPEED),
    Column("first run (ms)", "first_run", "ms", group=SPEED),
    Column("p50 (ms)", "latency_p50", "ms", group=SPEED),
    Column("p50 interval (ms)", "latency_p50", "ms", group=SPEED, interval=True),
    Column("p90 (ms)", "latency_p90", "ms", group=SPEED),
    Column("CV (%)", "latency_cv", "%", group=SPEED),
    Column("robust CV (%)", "latency_rcv", "%", group=SPEED),
    Column("n", "latency_n", "count", integer=True, group=SPEED),
    Column("throughput (img/s)", "throughput", "1/s", group=SPEED),
    Column("peak RSS (MiB)", "rss_peak", "MiB", group=MEMORY),
    Column("model memory (MiB)", "model_memory", "MiB", group=MEMORY),
    Column("GPU max allocated (MiB)", "gpu_max_allocated", "MiB", group=MEMORY),
    Column("GPU memory (MiB)", "gpu_memory_peak_delta", "MiB", group=MEMORY),
    Column("container peak (MiB)", "cgroup_memory_peak", "MiB", group=MEMORY),
    Column("accuracy (%)", "accuracy", "%", group=MEMORY),
)


def _ordered(columns: tuple[Column, ...]) -> tuple[Column, ...]:
    """Groups in the order they first appear, except that memory and accuracy close the table
    (a kind's own group comes before it); columns keep their order within a group."""
    first = {group: i for i, group in reversed(list(enumerate(c.group for c in columns)))}
    return tuple(sorted(columns, key=lambda c: (c.group == MEMORY, first[c.group])))


METRIC_COLUMNS = _ordered(COMMON_COLUMNS + kinds.columns())
# Characters of the table font (about 8.6 px each, padding included) a results table part may
# take: at most about 1100 px of the 1120 px a 1280-px screen leaves it.
TABLE_BUDGET = 128
# Known metrics every kind may record, kept out of the table to keep it readable; they stay in
# records.parquet. Each kind adds its own (kinds.hidden).
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
    "gpu_max_reserved",
}


def results_table(rows: list[Row], coords: list[str], metrics: dict[str, Metrics],
                  rounds: CellRounds) -> dict[str, Any]:
    """The cells that ran as preformatted table parts that each fit the page, their reasons as
    footnotes, and the cells that did not run as counts by reason. Metric columns nobody in
    this experiment measured are left out; unknown metrics get a generic column in their
    default display unit; coordinates every row shares are said once above the table."""
    ran = [r for r in rows if r["status"] != summary.NOT_RUN]
    present: dict[str, str] = {}
    for row in ran:
        for metric, (_, unit) in metrics.get(row["cell_id"], {}).items():
            present.setdefault(metric, unit)
    hidden, hidden_prefixes = kinds.hidden()
    known = {c.metric for c in METRIC_COLUMNS} | NOT_TABULATED | hidden
    spans = {cell: {metric: span for metric, values in by_metric.items()
                    if (span := intervals.median_interval(values)) is not None}
             for cell, by_metric in rounds.items()}
    spanned = {metric for by_metric in spans.values() for metric in by_metric}
    columns = [c for c in METRIC_COLUMNS if (c.metric in spanned if c.interval else
                                             c.metric in present)] + [
        Column(f"{m} ({units.DISPLAY.get(u, u)})", m, units.DISPLAY.get(u, u))
        for m, u in sorted(present.items())
        if m not in known and not m.startswith(hidden_prefixes)
    ]
    shown, fixed = summary.split_coordinates(ran, coords)
    notes = summary.Notes()
    body = []
    for row in ran:
        cell = metrics.get(row["cell_id"], {})
        status = str(row["status"])
        note = notes.cite(_status_text(row)) if status != "ok" and row.get("reason") else 0
        spread = cell_rounds.timing_spread(rounds.get(row["cell_id"], {}))
        cited = [n for n in (note, notes.cite(_spread_text(spread)) if spread else 0) if n]
        body.append({
            "coords": [summary.coord_text(row.get(c)) for c in shown],
            "metrics": [_interval_text(col, spans.get(row["cell_id"], {}).get(col.metric),
                                       cell.get(col.metric))
                        if col.interval else _metric_text(col, cell.get(col.metric))
                        for col in columns],
            "status": status,
            "notes": cited,
            "marks": summary.marks(cited) if cited else "",
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


def _spread_text(spread: tuple[str, float, float, int]) -> str:
    """"rounds disagree: latency_p50 from 1.02 s to 1.31 s over 3 rounds (29 %)"."""
    metric, low, high, count = spread
    return (f"rounds disagree: {metric} from {units.fmt_unit(low, 's')} to "
            f"{units.fmt_unit(high, 's')} over {count} rounds ({100 * (high / low - 1):.0f} % "
            f"apart, more than the {100 * cell_rounds.SPREAD_THRESHOLD:g} % a steady cell "
            "shows)")


def _status_text(row: Row) -> str:
    status, reason = str(row["status"]), str(row.get("reason") or "")
    return f"{status}: {reason}" if reason and status != "ok" else status


def _interval_text(column: Column, span: intervals.Interval | None,
                   value: tuple[float, str] | None) -> str:
    """A median's interval over the cell's rounds in the column's unit, with its level
    ("1.20–1.27; 93.8 %")."""
    if span is None or value is None:
        return units.MISSING
    low, high = (units.convert(v, value[1], column.unit) for v in (span.low, span.high))
    return f"{units.fmt(low)}–{units.fmt(high)}; {intervals.level_text(span.level)}"


def _metric_text(column: Column, value: tuple[float, str] | None) -> str:
    if value is None:
        return units.MISSING
    number, unit = value
    try:
        shown = units.convert(number, unit, column.unit)
    except ValueError:  # an unexpected unit: show the stored value rather than a wrong one
        return f"{units.fmt(number)} {unit}"
    return units.fmt(round(shown) if column.integer else shown)
