"""The scaling study's part of the report (kind "inference": NeuralScale against uniform width
scaling): the NeuralScale ÷ uniform table, the architectures and their NeuralScale fits, and the
latency, memory and accuracy charts against model size."""
from __future__ import annotations

from typing import Any

from toolkit import intervals
from toolkit.derived import RUNTIME_MEMORY, metric_value
from toolkit.experiments.cells import COORDINATES
from toolkit.report import charts, summary
from toolkit.report.architectures import architectures
from toolkit.report.kinds.base import (
    MEMORY,
    CellRounds,
    Chart,
    Column,
    Experiment,
    Kind,
    Metrics,
    Row,
    Section,
    Span,
    Table,
    drawn,
    prose,
    ratio_text,
    skipped,
)

# NeuralScale ÷ uniform at equal scale: the comparison the scaling study makes.
RATIO_METRICS = (("latency p50", "latency_p50"), ("model memory", "model_memory"),
                 ("memory / param", "memory_per_param"), ("accuracy / MB", "accuracy_per_mb"),
                 ("accuracy", "accuracy"))
# The study's derived figures (toolkit/derived.py), at the end of the memory group.
COLUMNS = (
    Column("accuracy / MB", "accuracy_per_mb", "1/MB", group=MEMORY),
    Column("memory / param (B)", "memory_per_param", "B", group=MEMORY),
)
HIDDEN = frozenset({"accuracy_final"})  # the last epoch's; the table shows the best epoch's


def section(exp: Experiment) -> Section:
    """The ratio table where both methods ran, the architectures, then the charts."""
    ratios = method_ratios(exp.rows, exp.metrics, exp.rounds)
    tables = [ratios] if ratios.rows else []
    return Section(tables + _architecture_tables(exp), _charts(exp))


def method_ratios(rows: list[Row], metrics: dict[str, Metrics], rounds: CellRounds) -> Table:
    """NeuralScale ÷ uniform per (model, scale, framework, device, precision, batch), with the
    interval of each ratio, with its level, where the cells have rounds."""
    pair_on = [c for c in COORDINATES
               if c != "method" and any(r.get(c) is not None for r in rows)]
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
            cells.append(ratio_text(neuralscale[key], uniform[key], metric, metrics, rounds))
        body.append(cells)
    intro = (Span("NeuralScale ÷ uniform at equal scale", "strong"),
             Span(prose(" (ratios of the two methods' figures; above 1: NeuralScale's is "
                        "larger; [interval; level] of the ratio computed round by round; "
                        "! where the ratio lies outside it)")))
    return Table(intro, pair_on + [f"{label} NS/U" for label, _ in RATIO_METRICS], body)


def _architecture_tables(exp: Experiment) -> list[Table]:
    """Per model: the layer widths of each method and scale, then each NeuralScale fit behind
    them, linked to the search artifact the run keeps."""
    tables = []
    for model in architectures(exp.run_dir, exp.rows):
        tables.append(Table(
            (Span(f"Architectures of {model['model']}", "strong"),
             Span(f" (the {model['layers']} layer widths of each method and scale)")),
            ["method", "scale", "parameters", "widths"], model["widths"],
            numeric=(False, True, True, False), code=(False, False, False, True)))
        for fit in model["fits"]:
            fallback = f"; fell back to {fit['fallback']}" if fit["fallback"] else ""
            tables.append(Table(
                (Span("NeuralScale fit", "em"), Span(" ("),
                 Span(fit["file"], "link", f"{exp.results_link}/{fit['file']}"),
                 Span(f": {fit['about']}): width = α · τ"), Span("β", "sup"),
                 Span(f" per layer, τ the parameter count{fallback}")),
                ["layer", "full width", "α", "β", "R²"], fit["rows"], numeric=(True,) * 5,
                css="fit"))
    return tables


def _varying(rows: list[Row], coords: list[str], fixed: tuple[str, ...]) -> list[str]:
    """Coordinates outside `fixed` that take more than one value across rows: they must be part
    of a series label, or two different cells would share one line."""
    return [c for c in summary.varying(rows, coords) if c not in fixed]


def _charts(exp: Experiment) -> list[Chart]:
    """Latency and memory against parameters (error bars: the interval of each median
    over the cell's rounds), then accuracy against runtime memory."""
    name, metrics = exp.name, exp.metrics
    ok = [r for r in exp.rows
          if r["status"] == "ok" and "params" in metrics.get(r["cell_id"], {})]
    # one series per (model, method) plus whatever else varies, except the swept scale
    keys = ["model", "method"] + _varying(ok, exp.coords, ("scale", "model", "method"))
    points = []
    for r in ok:
        values = {m: v for m, (v, _) in metrics[r["cell_id"]].items()}
        label = " / ".join(summary.coord_text(r.get(k)) for k in keys if k in r)
        spans = {metric: span for metric, series in exp.rounds.get(r["cell_id"], {}).items()
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
        path = exp.charts_dir / f"{exp.slug}-{kind}.svg"
        if draw(points, path, title):
            made.append(drawn(path, title, f"{title}: one line per {' / '.join(keys)}",
                              f"{caption}; ok cells only, one line per {' / '.join(keys)}."))
        else:
            made.append(skipped(title, f"no ok cell has a parameter count and {needs}", path))
    made.append(_accuracy_memory_chart(exp))
    return made


def _accuracy_memory_chart(exp: Experiment) -> Chart:
    """Accuracy against runtime memory (toolkit.derived.RUNTIME_MEMORY, as accuracy / MB uses):
    one panel per model, one line per method, each point labelled with its scale."""
    title = f"{exp.name}: accuracy vs runtime memory"
    path = exp.charts_dir / f"{exp.slug}-accuracy-memory.svg"

    def values(r: dict[str, Any]) -> dict[str, float]:
        return {name: value[0] for name, value in exp.metrics.get(r["cell_id"], {}).items()}

    both = [r for r in exp.rows if r["status"] == "ok" and "accuracy" in values(r)
            and metric_value(values(r), RUNTIME_MEMORY) is not None]
    if not both:
        return skipped(title, "no ok cell has both an accuracy and a runtime memory record "
                              "(accuracy needs settings.accuracy_training)", path)
    keys = ["method"] + _varying(both, exp.coords, ("scale", "model", "method"))
    lines: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for r in both:
        cell = exp.metrics[r["cell_id"]]
        series = " / ".join(summary.coord_text(r.get(k)) for k in keys)
        lines.setdefault((summary.coord_text(r.get("model")), series), []).append(
            (r.get("scale") or 0.0, metric_value(values(r), RUNTIME_MEMORY),
             cell["accuracy"][0]))
    traces = [charts.Trace(model, series, tuple((m, a) for _, m, a in sorted(pts)),
                           tuple(f"{summary.coord_text(s)}×" for s, _, _ in sorted(pts)))
              for (model, series), pts in sorted(lines.items())]
    charts.accuracy_memory_chart(traces, path, title)
    return drawn(path, title, f"{title}: one panel per model, one line per {' / '.join(keys)}",
                 "Accuracy (max test accuracy) against runtime memory (CPU: peak RSS − "
                 "import baseline; GPU: the device-side peak, cudaMemGetInfo); one panel per "
                 f"model, one line per {' / '.join(keys)}, points "
                 "labelled with their scale; ok cells with both records only.")


KIND = Kind("inference", marker="method", marker_text="a scaling method", section=section,
            columns=COLUMNS, hidden=HIDDEN)
