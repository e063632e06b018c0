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
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from toolkit import units

# Text as <text> elements, not glyph paths: smaller files, selectable text, and no glyph ids that
# would repeat when several charts are inlined into one HTML page.
_RC = {"svg.fonttype": "none", "svg.id": None, "axes.grid": True, "grid.alpha": 0.3}
_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}
_MARKERS = "osD^vPX*"  # marker plus colour per series, so charts survive greyscale printing
LOG_SPAN = 10.0  # an axis spanning more than this factor is drawn logarithmic


@dataclass(frozen=True)
class Point:
    """One ok cell as a chart sees it: its series label and raw SI metric values."""

    series: str
    params: float
    values: dict[str, float] = field(default_factory=dict)


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
            ax.set_ylabel(label)
        if params_m and max(params_m) / min(params_m) > LOG_SPAN:
            axes[0].set_xscale("log")  # shared x: applies to every panel
            axes[0].xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axes[0].xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axes[0].xaxis.set_minor_formatter(NullFormatter())
        axes[-1].set_xlabel("parameters (M)")
        axes[0].set_title(title, fontsize="medium")
        axes[0].legend(fontsize="small")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="svg", metadata=_METADATA)
    return True
