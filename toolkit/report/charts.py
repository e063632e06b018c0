"""Report charts: matplotlib figures written as byte-stable SVG.

Uses the object-oriented API (`Figure`, no pyplot), so no GUI backend is ever touched and no
global state is changed: rendering works headless without `matplotlib.use("Agg")` and leaves a
caller's own matplotlib setup alone. Byte stability comes from a fixed hash salt, Matplotlib's
default style (not the user's matplotlibrc) and no metadata block (no date, no creator URL).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib as mpl
import matplotlib.style
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from toolkit import units

# Text as <text> elements, not glyph paths: smaller files, selectable text, and no glyph ids that
# would repeat when several charts are inlined into one HTML page.
_RC = {"svg.fonttype": "none", "svg.id": None, "axes.grid": True, "grid.alpha": 0.3}
_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}
_MARKERS = "osD^vPX*"  # marker plus colour per series, so charts survive greyscale printing
LOG_SPAN = 10.0  # an axis spanning more than this factor is drawn logarithmic


@dataclass(frozen=True)
class Point:
    """One ok cell as a chart sees it: its series label, raw SI metric values and, where the
    cell was measured in rounds, each median's order-statistic interval (drawn as an error bar)."""

    series: str
    params: float
    values: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)


def latency_chart(points: list[Point], path: Path, title: str) -> bool:
    """Latency p50 (ms) against parameter count; False (nothing written) without data."""
    return _chart(points, path, title, [("latency_p50", "s", "ms", "latency p50 (ms)")])


def memory_chart(points: list[Point], path: Path, title: str) -> bool:
    """Peak RSS and model memory (MiB) against parameter count, one panel each."""
    panels = [
        ("rss_peak", "B", "MiB", "peak RSS (MiB)"),
        ("model_memory", "B", "MiB", "model memory (MiB)"),
    ]
    return _chart(points, path, title, panels)


def _chart(
    points: list[Point], path: Path, title: str, panels: list[tuple[str, str, str, str]]
) -> bool:
    panels = [p for p in panels if any(p[0] in pt.values for pt in points)]
    if not panels:
        return False
    series = sorted({pt.series for pt in points})
    colours = [c["color"] for c in mpl.rcParamsDefault["axes.prop_cycle"]]
    style = {
        name: (_MARKERS[i % len(_MARKERS)], colours[i % len(colours)])
        for i, name in enumerate(series)
    }
    params_m = [units.millions(pt.params) for pt in points if pt.params > 0]
    with mpl.style.context("default"), mpl.rc_context(_RC | {"svg.hashsalt": path.stem}):
        fig = Figure(figsize=(6.4, 2.4 + 2.2 * len(panels)), layout="constrained")
        axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
        for ax, (metric, unit, to, label) in zip(axes, panels, strict=True):
            for name in series:
                xy = sorted(
                    (units.millions(pt.params), units.convert(pt.values[metric], unit, to))
                    for pt in points
                    if pt.series == name and metric in pt.values
                )
                if xy:
                    marker, colour = style[name]
                    xs, ys = zip(*xy, strict=True)
                    ax.plot(xs, ys, marker=marker, color=colour, label=name)
                    _error_bars(ax, [pt for pt in points if pt.series == name], metric, unit,
                                to, colour)
            ax.set_ylabel(label)
        if params_m and max(params_m) / min(params_m) > LOG_SPAN:
            axes[0].set_xscale("log")  # shared x: applies to every panel
            axes[0].xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axes[0].xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axes[0].xaxis.set_minor_formatter(NullFormatter())
        axes[-1].set_xlabel("parameters (M)")
        axes[0].set_title(title, fontsize="medium")
        axes[0].legend(fontsize="small")
        _save(fig, path)
    return True


def _error_bars(ax, points: list[Point], metric: str, unit: str, to: str, colour: str) -> None:
    """Vertical bars from each point's interval low to high (points without one: none)."""
    bars = sorted((units.millions(pt.params), units.convert(pt.values[metric], unit, to),
                   *(units.convert(v, unit, to) for v in pt.intervals[metric][:2]))
                  for pt in points if metric in pt.intervals and metric in pt.values)
    if bars:
        xs, ys, lows, highs = zip(*bars, strict=True)
        ax.errorbar(xs, ys, yerr=[[max(0.0, y - lo) for y, lo in zip(ys, lows, strict=True)],
                                  [max(0.0, hi - y) for y, hi in zip(ys, highs, strict=True)]],
                    fmt="none", ecolor=colour, elinewidth=1.0, capsize=3)


@dataclass(frozen=True)
class Trace:
    """One line of a panelled chart: (x, y) points in stored SI units, with an optional note per
    point (written beside it) so a swept coordinate the axes do not show stays readable."""

    panel: str
    series: str
    points: tuple[tuple[float, float], ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Axis:
    """An axis: its label, the stored SI unit of its values and the unit they are shown in."""

    label: str
    unit: str
    to: str
    integer: bool = False  # ticks on whole numbers only (steps: there is no step 2.5)


@dataclass(frozen=True)
class Bar:
    """One horizontal bar: its colour group (legend entry), its own label and an SI value."""

    group: str
    label: str
    value: float


MAX_LINE_POINTS = 1000  # longer lines are thinned by a stride: same picture, far smaller SVG
_LINESTYLES = ("-", "--", ":", "-.")
_LEGEND_INSIDE = 4  # more series than this: the legend goes beside the panel, not over lines


def accuracy_memory_chart(traces: list[Trace], path: Path, title: str) -> bool:
    """Accuracy (%) against runtime memory, one panel per model: the scaling study's claim is a
    better accuracy for the same memory, which only this view shows directly."""
    memory = units.DISPLAY["B"]
    x = Axis(f"model memory ({memory})", "B", memory)
    return _trace_chart(traces, path, title, x, Axis("accuracy (%)", "ratio", "%"), markers=True)


def loss_chart(traces: list[Trace], path: Path, title: str) -> bool:
    """Training loss per step, one panel per framework: shows divergence (fp16, frozen layers)
    that the step-time summary alone would hide."""
    x, y = Axis("step", "count", "count", integer=True), Axis("loss (nat)", "nat", "nat")
    return _trace_chart(traces, path, title, x, y, markers=False)


def throughput_chart(bars: list[Bar], path: Path, title: str) -> bool:
    """Training images/s as horizontal bars (long labels stay readable), coloured per group and
    each labelled with its value, so the framework comparison needs no table lookup. The group
    is part of each bar's label, so no legend covers a bar and greyscale print still reads."""
    if not bars:
        return False
    groups = sorted({bar.group for bar in bars})
    colours = [c["color"] for c in mpl.rcParamsDefault["axes.prop_cycle"]]
    colour = {group: colours[i % len(colours)] for i, group in enumerate(groups)}
    values = [bar.value for bar in bars]  # images/s: stored as 1/s, shown as is
    with mpl.style.context("default"), mpl.rc_context(_RC | {"svg.hashsalt": path.stem}):
        fig = Figure(figsize=(6.4, 1.4 + 0.3 * len(bars)), layout="constrained")
        ax = fig.subplots()
        for group in groups:
            mine = [i for i, bar in enumerate(bars) if bar.group == group]
            drawn = ax.barh(mine, [values[i] for i in mine], color=colour[group])
            ax.bar_label(drawn, labels=[units.fmt(values[i]) for i in mine],
                         padding=2, fontsize="x-small")
        ax.set_yticks(range(len(bars)), [bar.label for bar in bars], fontsize="small")
        ax.set_ylim(len(bars) - 0.5, -0.5)  # first bar on top, in reading order; no padding
        ax.grid(axis="y", visible=False)
        ax.margins(x=0.15)  # room for the value labels
        ax.set_xlabel("training throughput (images/s)")
        ax.set_title(title, fontsize="medium")
        _save(fig, path)
    return True


def _trace_chart(traces: list[Trace], path: Path, title: str, x: Axis, y: Axis,
                 markers: bool) -> bool:
    """Panels stacked vertically (each with its own axes, since models or frameworks differ by
    orders of magnitude), one line per series; colours stay fixed per series across panels."""
    traces = [t for t in traces if t.points]
    if not traces:
        return False
    panels = sorted({t.panel for t in traces})
    # Series in the callers' order (they sort coordinates by value: freeze 5 before 10).
    style = _styles(list(dict.fromkeys(t.series for t in traces)))
    with mpl.style.context("default"), mpl.rc_context(_RC | {"svg.hashsalt": path.stem}):
        fig = Figure(figsize=(6.4, 1.2 + 2.6 * len(panels)), layout="constrained")
        axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
        for ax, panel in zip(axes, panels, strict=True):
            mine = [t for t in traces if t.panel == panel]
            for trace in mine:
                _draw_trace(ax, trace, x, y, style[trace.series], markers)
            ax.set_title(panel, fontsize="small")
            if x.integer:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel(x.label)
            ax.set_ylabel(y.label)
            if len(mine) > _LEGEND_INSIDE:
                ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
            else:
                ax.legend(fontsize="small")
        fig.suptitle(title, fontsize="medium")
        _save(fig, path)
    return True


def _draw_trace(ax, trace: Trace, x: Axis, y: Axis, style: tuple[str, str, str],
                markers: bool) -> None:
    """One line in display units; point notes (e.g. the scale) written beside their points."""
    stride = max(1, -(-len(trace.points) // MAX_LINE_POINTS))
    kept = list(trace.points[::stride])
    if stride > 1 and kept[-1] != trace.points[-1]:
        kept.append(trace.points[-1])  # the last step is what a reader compares
    xs = [units.convert(px, x.unit, x.to) for px, _ in kept]
    ys = [units.convert(py, y.unit, y.to) for _, py in kept]
    marker, colour, linestyle = style
    ax.plot(xs, ys, marker=marker if markers else None, color=colour, linestyle=linestyle,
            linewidth=1.2 if markers else 1.0, label=trace.series)
    for px, py, note in zip(xs, ys, trace.notes, strict=False):
        ax.annotate(note, (px, py), textcoords="offset points", xytext=(4, 4),
                    fontsize="x-small", color=colour)


def _styles(series: list[str]) -> dict[str, tuple[str, str, str]]:
    """Marker, colour and line style per series: unique for up to 40 series, and still
    distinguishable in greyscale print."""
    colours = [c["color"] for c in mpl.rcParamsDefault["axes.prop_cycle"]]
    return {
        name: (_MARKERS[i % len(_MARKERS)], colours[i % len(colours)],
               _LINESTYLES[(i // len(colours)) % len(_LINESTYLES)])
        for i, name in enumerate(series)
    }


def _save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg", metadata=_METADATA)
