"""Pure formatting for a report a reader can take in within a minute: the summary that opens it,
claims grouped by source with their reasons as shared footnotes, cells that did not run folded
into counts, and wide tables split into parts that fit a page.

Nothing here reads files; render.py passes in what it loaded and the templates print strings.
Verdicts are read by attribute (with defaults for fields that may come later), and verdict
strings this module does not know are counted like any other, so a new verdict needs no change.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from string import ascii_lowercase
from typing import Any

from toolkit import units
from toolkit.report import claims

NOT_RUN = "not run"
# Verdicts in reading order; one not listed comes before the last ones.
FIRST_VERDICTS = (claims.REPRODUCED, claims.NOT_REPRODUCED, claims.INCONCLUSIVE)
LAST_VERDICTS = (claims.NOT_COMPARABLE,)
SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
# How a claim's scaling convention reads in a sentence.
CONVENTION_WORDS = {"width": "width", "params": "parameter"}
# Marks of a source's readings of its own words, told apart from reason numbers (no "q" exists).
LETTERS = "ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖʳˢᵗᵘᵛʷˣʸᶻ"
# Coordinates whose bare value would be ambiguous (a batch of 8 or a freeze of 8?): shown named.
NAMED_COORDINATES = ("scale", "batch", "freeze")
PADDING = 2  # a table cell's padding and border, in characters of the table's font
GROUP_BREAK = 0.6  # a part may end early, at a group's start, once this share of it is used
HEX_RUN = re.compile(r"[0-9a-f]{16,}")  # digests and ids: their head identifies them


def slug(text: str) -> str:
    """A CSS class or anchor fragment from free text ("not comparable" -> "not-comparable")."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def marks(numbers: Iterable[int]) -> str:
    """Footnote marks in plain text ("¹,³"): they read the same in any Markdown viewer."""
    return ",".join(str(n).translate(SUPERSCRIPT) for n in numbers)


def shorten(text: Any, keep: int = 12) -> str:
    """"sha256:7b9f4058c8b4…" for a long hex digest or id, anywhere in text; the page shows
    this and keeps the full value in a title attribute."""
    return HEX_RUN.sub(lambda m: m.group()[:keep] + "…", str(text))


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def verdict_rank(verdict: str) -> tuple[int, str]:
    """Sort key: reproduced, not reproduced, any other verdict by name, not comparable."""
    if verdict in FIRST_VERDICTS:
        return FIRST_VERDICTS.index(verdict), ""
    if verdict in LAST_VERDICTS:
        return len(FIRST_VERDICTS) + 1 + LAST_VERDICTS.index(verdict), ""
    return len(FIRST_VERDICTS), verdict


def counts_text(counts: Counter[str]) -> str:
    """"2 reproduced, 1 not comparable", verdicts in reading order; "none" for no verdict."""
    return ", ".join(f"{counts[v]} {v}" for v in sorted(counts, key=verdict_rank)) or "none"


def machine_text(environment: dict[str, Any]) -> str:
    """What measured: the device type the claims are judged against, then CPU, cores and GPU."""
    device = str(environment.get("device_type") or "unknown device type")
    details = [str(environment[k]) for k in ("cpu",) if environment.get(k)]
    cores = claims.usable_cores(environment)
    if cores:
        details.append(plural(cores, "core"))
    gpu = str(environment.get("gpu") or "")
    if gpu and gpu != "none":
        details.append(f"GPU {gpu}")
    return f"{device} ({', '.join(details)})" if details else device


def claims_context(verdicts: Sequence[Any]) -> dict[str, Any]:
    """Everything the report says about published claims, preformatted.

    Reasons are numbered once, most frequent first, and every claim cites them by number, so a
    reason's text is printed once however many claims share it (grouped by the exact string).
    A verdict judged on stand-in hardware is tallied per stand-in machine, never added to those
    on the hardware the claims name; a "not comparable" one was not judged there, and its label
    says no more than "not comparable", so it is counted with the others. A claim the project
    derived from another (`derived_from`) is shown, marked, and never tallied: it would count
    one finding twice. A reading several claims share is one footnote.
    """
    reasons = _numbered_reasons(verdicts)
    numbers = {r["text"]: r["n"] for r in reasons}
    tallies: dict[str, Counter[str]] = {"": Counter()}
    derived = 0
    named_hardware: dict[str, dict[str, None]] = {}
    sections: dict[str, dict[str, Any]] = {}
    headline, partial = [], []
    for verdict in verdicts:
        judged_apart = verdict.stand_in and verdict.verdict != claims.NOT_COMPARABLE
        machine = verdict.stand_in if judged_apart else ""
        is_derived = bool(getattr(verdict.claim, "derived_from", ""))
        derived += is_derived
        if not is_derived:
            tallies.setdefault(machine, Counter())[verdict.verdict] += 1
        if judged_apart and not is_derived and getattr(verdict, "named_hardware", ""):
            named_hardware.setdefault(machine, {})[verdict.named_hardware] = None
        source = verdict.source
        section = sections.setdefault(source.key, {
            "key": source.key, "anchor": "source-" + slug(source.key),
            "citation": source.citation, "url": source.url, "notes": source.notes,
            "rows": [], "readings": [], "tally": Counter(), "stand_in_tally": Counter(),
            "derived": 0})
        row = _claim_row(verdict, numbers)
        reading = str(getattr(verdict.claim, "interpretation", "") or "")
        if reading:
            row |= _reading_mark(section["readings"], reading)
        section["rows"].append(row)
        if is_derived:
            section["derived"] += 1
        else:
            section["tally" if not machine else "stand_in_tally"][verdict.verdict] += 1
        observed = verdict.observed
        numeric = isinstance(observed, int | float) and not isinstance(observed, bool)
        if numeric and verdict.verdict == claims.NOT_COMPARABLE:
            partial.append(row)  # measured, but not a verdict: shown muted, never as one
        elif numeric and verdict.claim.comparison == "ratio":
            headline.append(row)
    named = tallies.pop("")
    apart = f"; {derived} derived from another claim, not counted" if derived else ""
    return {
        "total": len(verdicts) - derived,
        "counts": counts_text(named) + apart,
        "named_total": sum(named.values()),
        "stand_in": [{"machine": machine, "total": sum(tally.values()),
                      "counts": counts_text(tally),
                      "instead_of": "; ".join(named_hardware.get(machine, {}))}
                     for machine, tally in tallies.items()],
        "headline": headline,
        "partial": partial,
        "reasons": reasons,
        "sources": [section | {"counts": _section_counts(section.pop("tally"),
                                                         section.pop("stand_in_tally"),
                                                         section.pop("derived"))}
                    for section in sections.values()],
    }


def _reading_mark(readings: list[dict[str, str]], text: str) -> dict[str, str]:
    """The row's mark of a reading: that of an earlier claim with the same text, else the next
    letter (the footnote is added to `readings`)."""
    for reading in readings:
        if reading["text"] == text:
            return {"reading": reading["mark"], "reading_letter": reading["letter"]}
    index = len(readings) % len(LETTERS)
    mark = {"reading": LETTERS[index], "reading_letter": ascii_lowercase.replace("q", "")[index]}
    readings.append({"mark": mark["reading"], "letter": mark["reading_letter"], "text": text})
    return mark


def _section_counts(named: Counter[str], stand_in: Counter[str], derived: int = 0) -> str:
    """A source's verdict counts, those on stand-in hardware and derived claims said apart."""
    text = counts_text(named) if named or not (stand_in or derived) else ""
    apart = f"{counts_text(stand_in)} on stand-in hardware" if stand_in else ""
    copied = f"{derived} derived, not counted" if derived else ""
    return "; ".join(filter(None, (text, apart, copied)))


def _numbered_reasons(verdicts: Sequence[Any]) -> list[dict[str, Any]]:
    """Each distinct reason with how many claims give it, numbered most frequent first."""
    counts: Counter[str] = Counter()
    for verdict in verdicts:
        counts.update(list(dict.fromkeys(r for r in verdict.reasons if r)))  # once per claim
    order = sorted(counts, key=lambda r: -counts[r])  # stable: ties keep first appearance
    return [{"n": n, "text": text, "claims": counts[text], "count": plural(counts[text], "claim")}
            for n, text in enumerate(order, 1)]


def _claim_row(verdict: Any, numbers: dict[str, int]) -> dict[str, Any]:
    claim = verdict.claim
    apart = bool(verdict.stand_in) and verdict.verdict != claims.NOT_COMPARABLE
    cited = sorted({numbers[r] for r in verdict.reasons if r in numbers})
    convention = getattr(claim, "convention", "")
    return {
        "id": claim.id,
        "statement": claim.statement,
        "reading": "",  # the mark of the project's reading of the source's words, if any
        "reading_letter": "",
        "convention": (f"scales are {CONVENTION_WORDS.get(convention, convention)} ratios"
                       if convention else ""),
        "expected": verdict.expected_text(),
        "observed": verdict.observed_text(),
        "n": verdict.n,
        "verdict": verdict.verdict,
        "label": verdict.label,
        # a verdict on stand-in hardware is styled apart from one on the named hardware
        "css": "verdict-" + slug(verdict.verdict) + (" stand-in" if apart else ""),
        "emphasis": "*" if apart else "**",
        "covers": (f"covers {verdict.covers[0]} of {verdict.covers[1]}"
                   if getattr(verdict, "covers", None) else ""),
        "stand_in": verdict.stand_in,
        # a claim derived from another: shown beside its verdict, which no count includes
        "derived": (f"derived from {claim.derived_from}: not counted"
                    if getattr(claim, "derived_from", "") else ""),
        "notes": cited,
        "marks": marks(cited),
    }


class Notes:
    """Footnotes of one table: each distinct text numbered at first use and printed once."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def cite(self, text: str) -> int:
        self._counts[text] += 1
        return list(self._counts).index(text) + 1

    def rows(self) -> list[dict[str, Any]]:
        return [{"n": n, "mark": marks([n]), "text": text, "count": count}
                for n, (text, count) in enumerate(self._counts.items(), 1)]


def coord_text(value: Any) -> str:
    if value is None:
        return units.MISSING
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def varying(rows: Sequence[dict[str, Any]], coords: Sequence[str]) -> list[str]:
    """The coordinates that take more than one value (as shown) across rows."""
    return [c for c in coords if len({coord_text(r.get(c)) for r in rows}) > 1]


def split_coordinates(rows: Sequence[dict[str, Any]], coords: Sequence[str],
                      ) -> tuple[list[str], list[str]]:
    """(coordinates that vary across rows: table columns, "name value" of the others): a value
    every row shares is said once above the table instead of filling a column. A single row
    keeps all its coordinates as columns."""
    if len(rows) < 2:
        return list(coords), []
    shown = varying(rows, coords)
    return shown, [f"{c} {coord_text(rows[0].get(c))}" for c in coords if c not in shown]


def cell_label(row: dict[str, Any], coords: Sequence[str]) -> str:
    """"vgg11 · neuralscale · scale 0.5": numbers carry their coordinate's name."""
    parts = []
    for coord in coords:
        text = coord_text(row.get(coord))
        parts.append(f"{coord} {text}" if coord in NAMED_COORDINATES else text)
    return " · ".join(parts)


def not_run(rows: Sequence[dict[str, Any]], coords: Sequence[str]) -> dict[str, Any]:
    """Cells that did not run, as counts by reason (most frequent first), each with the labels
    of its cells (the coordinates that tell those cells apart) for whoever expands it."""
    skipped = [r for r in rows if r["status"] == NOT_RUN]
    telling = varying(skipped, coords) or list(coords)  # one cell, or alike: say everything
    groups: dict[str, list[str]] = {}
    for row in skipped:
        reason = str(row.get("reason") or "") or "no reason recorded"
        groups.setdefault(reason, []).append(cell_label(row, telling))
    ordered = sorted(groups.items(), key=lambda item: -len(item[1]))
    return {
        "total": len(skipped),
        "cells": plural(len(skipped), "cell"),
        "groups": [{"reason": reason, "count": len(labels), "cells": plural(len(labels), "cell"),
                    "labels": labels} for reason, labels in ordered],
    }


def column_width(header: str, values: Iterable[str]) -> int:
    """Characters a column needs when its header wraps at spaces and its values do not."""
    words = max((len(word) for word in header.split()), default=0)
    return max([words, *(len(value) for value in values)])


def pack(widths: Sequence[int], groups: Sequence[str], budget: int) -> list[list[int]]:
    """Column indices per table part, in order, each part within the budget (a column costs its
    width plus PADDING). Parts are filled to the budget, so a wide table becomes as few tables as
    possible; a part ends where a group of columns starts (consecutive columns with the same
    group) when that leaves it at least GROUP_BREAK full, so related columns stay together."""
    costs = [width + PADDING for width in widths]
    parts: list[list[int]] = []
    current: list[int] = []
    for index, cost in enumerate(costs):
        while current and sum(costs[i] for i in current) + cost > budget:
            starts = [k for k in range(1, len(current))
                      if groups[current[k]] != groups[current[k - 1]]]
            cut = next((k for k in reversed(starts)
                        if sum(costs[i] for i in current[:k]) >= GROUP_BREAK * budget),
                       len(current))
            parts.append(current[:cut])
            current = current[cut:]
        current.append(index)
    return [*parts, current] if current else parts or [[]]


def table_parts(coords: Sequence[str], columns: Sequence[tuple[str, str]],
                body: Sequence[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """A results table as parts that each fit the budget: every part repeats the coordinate
    columns and the status, and takes the metric columns pack() gives it. `columns` are (header,
    group) of the metric columns; each body row has "coords", "metrics" and "status" + "marks"
    (with "notes" and "css", passed on)."""
    fixed = sum(column_width(c, [r["coords"][i] for r in body]) + PADDING
                for i, c in enumerate(coords))
    status = column_width("status", [r["status"] + r["marks"] for r in body]) + PADDING
    widths = [column_width(header, [r["metrics"][i] for r in body])
              for i, (header, _) in enumerate(columns)]
    parts = pack(widths, [group for _, group in columns], budget - fixed - status)
    return [{
        "title": " · ".join(dict.fromkeys(columns[i][1] for i in part)),
        "headers": [*coords, *(columns[i][0] for i in part), "status"],
        "numeric": [False] * len(coords) + [True] * len(part) + [False],
        "rows": [{"values": r["coords"] + [r["metrics"][i] for i in part]}
                 | {k: r[k] for k in ("status", "notes", "marks", "css")} for r in body],
    } for part in parts]
