"""What an experiment kind's report plugin receives and returns, and the helpers its tables and
charts share. Plugins import this module only (never the registry beside it, nor render.py), so
adding a kind cannot tangle the report's imports.

A plugin returns plain data: tables as rows of preformatted strings with a short introduction
made of styled spans, charts as drawn SVG files or skip reasons. Both templates print that data
with one generic loop each, so a new kind needs no template edit.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import Markup

from toolkit import intervals, units
from toolkit.derived import metric_value

Row = dict[str, Any]  # one cell of cells.parquet: coordinates, status, reason, bookkeeping
Metrics = dict[str, tuple[float, str]]  # metric -> (value, SI unit) of one cell
# cell -> metric -> its value in each measured round, keyed by the round's pass (rounds.py)
CellRounds = dict[str, dict[str, dict[str, float]]]
Chart = dict[str, Any]  # a drawn chart (title, alt, caption, md_path, svg) or a skipped one

# Groups of the results table's metric columns: a group's columns stay side by side when a wide
# table is split into parts. A kind's columns may join one of these or bring a group of its own.
SIZE, SPEED, MEMORY = "size", "speed", "memory and accuracy"


@dataclass(frozen=True)
class Column:
    """A metric column of the results table: stored metric shown in a display unit. Columns of
    one group stay side by side when a wide table is split into parts that fit the page."""

    label: str
    metric: str
    unit: str
    integer: bool = False
    group: str = "other"
    interval: bool = False  # the interval of the metric's median over the cell's rounds


@dataclass(frozen=True)
class Span:
    """A piece of a table's introduction. style: "" (plain), "strong", "em", "sup" (a
    superscript) or "link" (to href). Fixed wording may be passed as Markup (see `prose`)."""

    text: str
    style: str = ""
    href: str = ""


def prose(text: str) -> Markup:
    """Fixed wording of the page, printed as written in HTML too (an apostrophe stays one)
    rather than escaped like data."""
    return Markup(text)


@dataclass(frozen=True)
class Table:
    """An extra table of a kind's section: the introduction line above it, its headers and rows
    of preformatted strings. numeric: right-aligned columns; code: columns shown as code in
    HTML; css: the HTML table's class."""

    intro: tuple[Span, ...]
    headers: list[str]
    rows: list[list[str]]
    numeric: tuple[bool, ...] = ()
    code: tuple[bool, ...] = ()
    css: str = ""

    def __post_init__(self) -> None:  # unset flags: none of the columns
        width = len(self.headers)
        object.__setattr__(self, "numeric", self.numeric or (False,) * width)
        object.__setattr__(self, "code", self.code or (False,) * width)


@dataclass(frozen=True)
class Experiment:
    """One experiment's data as a kind's section needs it; render.py loads it once."""

    name: str
    rows: list[Row]  # its cells, sorted by coordinates
    coords: list[str]  # the coordinates its cells have
    metrics: dict[str, Metrics]  # every cell of the run: measured and derived figures
    rounds: CellRounds  # each measured round's figures, for intervals
    run_dir: Path
    out_dir: Path  # the report's directory; charts go into out_dir/charts
    results_link: str  # the path prefix of links to the run's raw files

    @property
    def slug(self) -> str:
        """The experiment's name as a file-name part, for its charts."""
        return re.sub(r"[^A-Za-z0-9._-]+", "-", self.name).strip("-") or "experiment"

    @property
    def charts_dir(self) -> Path:
        return self.out_dir / "charts"


@dataclass(frozen=True)
class Section:
    """What a kind adds to an experiment's part of the report, after the results table."""

    tables: list[Table] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)  # drawn and skipped, in reading order


@dataclass(frozen=True)
class Kind:
    """An experiment kind's report plugin, keyed by the kind a spec records ("inference").

    marker: the coordinate only this kind's cells carry; it tells the kind of a run whose
    manifest does not record it, and a kind's section is drawn only for cells that carry it.
    marker_text names it in the sentence that says why an experiment has no charts.
    columns: metric columns of the results table only this kind measures (every experiment's
    table knows them all: a column shows wherever its metric was measured); hidden and
    hidden_prefixes: its metrics kept out of the table (they stay in records.parquet).
    """

    name: str
    marker: str
    marker_text: str
    section: Callable[[Experiment], Section]
    columns: tuple[Column, ...] = ()
    hidden: frozenset[str] = frozenset()
    hidden_prefixes: tuple[str, ...] = ()

    def applies(self, rows: list[Row]) -> bool:
        """Whether any of these cells carries the kind's marking coordinate."""
        return any(r.get(self.marker) is not None for r in rows)


def ratio_text(numerator: str, denominator: str, metric: str, metrics: dict[str, Metrics],
               rounds: CellRounds, suffix: str = "") -> str:
    """"2.14 [1.98–2.31; 93.8 %]": the ratio of the two cells' figures (their medians over
    rounds) and the order-statistic interval of the per-pass ratios with its level
    (intervals.ratio_interval); a figure outside its interval is marked "!" (the rounds and
    the medians disagree: a finding, not hidden); the plain ratio alone with one round."""
    a, b = (metric_value({m: v for m, (v, _) in metrics.get(cell, {}).items()}, metric)
            for cell in (numerator, denominator))
    if a is None or not b:
        return units.MISSING
    figure = a / b
    found = intervals.ratio_interval(rounds.get(numerator, {}).get(metric, {}),
                                     rounds.get(denominator, {}).get(metric, {}))
    if found is None:
        return units.fmt(figure) + suffix
    flag = " !" if intervals.outside(figure, found) else ""
    return f"{units.fmt(figure)}{suffix}{flag} {found.text(units.fmt)}"


def drawn(path: Path, title: str, alt: str, caption: str) -> Chart:
    """A chart written at path (charts/<name>.svg), linked from the Markdown, inlined in HTML."""
    return {
        "title": title,
        "alt": alt,
        "caption": caption,
        "md_path": f"{path.parent.name}/{path.name}",
        "svg": _inline_svg(path, alt),
    }


def skipped(title: str, reason: str, path: Path | None = None) -> Chart:
    """A chart the data cannot support, with the reason shown in its place. A file left at its
    path by an earlier rendering into the same directory is removed: it would show old data."""
    if path is not None:
        path.unlink(missing_ok=True)
    return {"title": title, "reason": reason}


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
