"""The HTML report opened in headless Chromium as a reader would: a real run's, and the synthetic
run's that has every chart kind (a real smoke run has no accuracy or training loss to draw), the
widest results table and a verdict of every kind. Both must read at a glance on a 1280-px screen:
the summary first, nothing to scroll sideways, short rows, the cells that did not run folded."""
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pytest
from conftest import ARTIFACTS, TINY_SPEC
from test_report import CHARTS, synthetic_publication, widen_synthetic_run, write_synthetic_run

from toolkit.report import claims
from toolkit.report.render import render_report

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                       "(bash .ci/setup --dev installs it)"),
]
VIEWPORT = {"width": 1280, "height": 900}
MAX_ROW_PX = 80  # a table row taller than this is a paragraph in a cell: it hides the others


@contextmanager
def _page(html: Path) -> Iterator[tuple[object, list[str]]]:
    """The page loaded offline, and every console error, page error or network request seen;
    a self-contained report makes none."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport=VIEWPORT)
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("request", lambda r: problems.append(f"fetched {r.url}")
                if not r.url.startswith(("file:", "data:")) else None)
        page.goto(html.as_uri())
        try:
            yield page, problems
        finally:
            browser.close()


def _assert_every_chart_visible(page, chart_files: list[Path]) -> list[str]:
    """Each chart file is one inline SVG, visible at a readable size; returns their labels."""
    svgs = page.locator("figure svg")
    assert svgs.count() == len(chart_files) > 0
    labels = []
    for index in range(svgs.count()):
        svg = svgs.nth(index)
        svg.scroll_into_view_if_needed()
        assert svg.is_visible()
        assert svg.bounding_box()["height"] > 100
        labels.append(svg.get_attribute("aria-label"))
    return labels


LAYOUT = """() => {
  const rows = [...document.querySelectorAll('tr')].filter(r => r.offsetParent !== null);
  const tallest = rows.map(r => [r.getBoundingClientRect().height, r.innerText.slice(0, 80)])
                      .sort((a, b) => b[0] - a[0])[0] || [0, ''];
  const scrolling = [...document.querySelectorAll('.table-wrap, table, pre, dl, section')]
      .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)
      .map(e => `${e.tagName}.${e.className}: ${e.scrollWidth} > ${e.clientWidth}`);
  const summary = document.querySelector('#summary'), claims = document.querySelector('#claims');
  return {width: document.documentElement.scrollWidth, bodyWidth: document.body.scrollWidth,
          tallest, scrolling,
          summaryFirst: !!(summary && claims && summary.compareDocumentPosition(claims)
                           & Node.DOCUMENT_POSITION_FOLLOWING),
          summaryTop: summary ? summary.getBoundingClientRect().top : null};
}"""


def _assert_readable(page, cells: pl.DataFrame, name: str, capsys) -> dict:
    """The properties that make the report readable in a minute, on a 1280-px screen; then a
    screenshot of its top (the summary), whose path is printed for whoever runs the test."""
    layout = page.evaluate(LAYOUT)
    assert layout["width"] <= VIEWPORT["width"] and layout["bodyWidth"] <= VIEWPORT["width"]
    assert layout["scrolling"] == []  # no table scrolls sideways inside its wrapper either
    assert layout["tallest"][0] <= MAX_ROW_PX, layout["tallest"]
    assert layout["summaryFirst"] and layout["summaryTop"] < VIEWPORT["height"] / 4
    summary = page.locator("#summary")
    assert summary.locator("dl.meta").is_visible()
    for term in ("Ran on", "Run", "Cells", "Published claims"):
        assert summary.locator("dt", has_text=re.compile(f"^{term}$")).count() == 1, term
    # Cells that did not run: one <details> per reason, its summary giving the count.
    skipped = cells.filter(pl.col("status") == "not run")
    counts = skipped.group_by("reason").len().sort(["len", "reason"], descending=[True, False])
    details = page.locator("details.not-run")
    assert details.count() == counts.height
    shown = {}
    for index in range(details.count()):
        text = details.nth(index).locator("summary").inner_text()
        count, _, reason = text.partition(": ")
        shown[reason] = int(count.split()[0])
        assert not details.nth(index).locator("ul.cells").is_visible()  # collapsed
    assert shown == dict(counts.iter_rows())
    if details.count():
        details.first.locator("summary").click()
        assert details.first.locator("ul.cells li").first.is_visible()
    assert page.locator("tr.status-not-run").count() == 0  # no row per cell not run
    path = ARTIFACTS / f"{name}-top.png"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path))  # the viewport: what a reader sees first
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.screenshot(path=str(ARTIFACTS / f"{name}-phone.png"), full_page=True)
    with capsys.disabled():
        print(f"\nscreenshot: {path} (page {layout['width']} px wide, tallest row "
              f"{layout['tallest'][0]:.0f} px)")
    return layout


def test_report_page_has_no_errors_and_shows_verdicts_and_every_chart(invoke_cmd, tmp_path,
                                                                      capsys):
    pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    # fp16 cells of ONNX Runtime are "not run" on any machine: the real run has some to fold
    spec = tmp_path / "spec.toml"
    spec.write_text(TINY_SPEC.read_text().replace('precision = ["fp32"]',
                                                  'precision = ["fp32", "fp16"]'))
    results = tmp_path / "results"
    assert invoke_cmd("run", "--experiment", str(spec), results=results).returncode == 0
    done = invoke_cmd("report", results=results)
    assert done.returncode == 0, done.stderr
    html = next((results / "reports").glob("*/report.html"))
    cells = pl.read_parquet(next(results.glob("*/cells.parquet")))
    assert (cells["status"] == "not run").sum() == 4
    charts = sorted(html.parent.glob("charts/*.svg"))
    assert len(charts) >= 2  # latency and memory against parameters

    with _page(html) as (page, problems):
        verdicts = page.locator("table.verdicts")
        assert verdicts.first.is_visible()
        assert verdicts.locator("tbody tr").count() >= 1
        _assert_every_chart_visible(page, charts)
        # the tiny spec trains nothing for accuracy: that chart says why it is missing
        skipped = page.locator("p.skipped", has_text="accuracy vs runtime memory")
        assert skipped.is_visible()
        assert "skipped: no ok cell has both an accuracy" in skipped.inner_text()
        images = page.locator("table.images, p.images-none")
        assert images.count() == 1 and images.is_visible()
        _assert_readable(page, cells, "report", capsys)
    assert problems == []


def test_synthetic_report_shows_every_chart_kind(tmp_path, monkeypatch, capsys):
    """Every chart, the widest results table, and a headline ratio of every verdict kind (the
    published claims and the synthetic ones together)."""
    published = claims.load_publications()
    monkeypatch.setattr(claims, "load_publications",
                        lambda: [*published, synthetic_publication()])
    run = write_synthetic_run(tmp_path)
    widen_synthetic_run(run)
    html = render_report(run, tmp_path / "reports" / run.name)["html"]
    charts = sorted(html.parent.glob("charts/*.svg"))
    assert sorted(p.name for p in charts) == sorted(name for name, _ in CHARTS)

    with _page(html) as (page, problems):
        labels = _assert_every_chart_visible(page, charts)
        assert [label.split(":")[1] for label in labels] == [t.split(":")[1] for _, t in CHARTS]
        assert page.locator("p.skipped").count() == 0
        assert page.get_by_text("host runner: no images").is_visible()
        headline = page.locator("#summary table.headline tbody tr")
        assert headline.count() == 4
        assert page.locator("#summary dd.stand-in-counts").is_visible()
        assert page.locator("table.results").count() > 2  # the wide table, split into parts
        _assert_readable(page, pl.read_parquet(run / "cells.parquet"), "report-all-charts",
                         capsys)
    assert problems == []
