"""Report renderer: a results directory in, report.md (+ SVG charts) and report.html out."""

from toolkit.report.render import render_report

__all__ = ["render_report"]
