"""The HTML report opened in headless Chromium as a reader would: a real run's, and the synthetic
run's that has every chart kind (a real smoke run has no accuracy or training loss to draw)."""
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import ARTIFACTS, TINY_SPEC
from test_report import CHARTS, write_synthetic_run

from toolkit.report.render import render_report

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                       "(bash .ci/setup --dev installs it)"),
]


@contextmanager
def _page(html: Path) -> Iterator[tuple[object, list[str]]]:
    """The page loaded offline, and every console error, page error or network request seen;
    a self-contained report makes none."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
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


def _screenshots(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.screenshot(path=str(ARTIFACTS / f"{name}-phone.png"), full_page=True)


def test_report_page_has_no_errors_and_shows_verdicts_and_every_chart(invoke_cmd, tmp_path):
    pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    assert invoke_cmd("run", "--experiment", str(TINY_SPEC), results=tmp_path).returncode == 0
    done = invoke_cmd("report", results=tmp_path)
    assert done.returncode == 0, done.stderr
    html = next((tmp_path / "reports").glob("*/report.html"))
    charts = sorted(html.parent.glob("charts/*.svg"))
    assert len(charts) >= 2  # latency and memory against parameters

    with _page(html) as (page, problems):
        verdicts = page.locator("table.verdicts")
        assert verdicts.is_visible()
        assert verdicts.locator("tbody tr").count() >= 1
        _assert_every_chart_visible(page, charts)
        # the tiny spec trains nothing for accuracy: that chart says why it is missing
        skipped = page.locator("p.skipped", has_text="accuracy vs runtime memory")
        assert skipped.is_visible()
        assert "skipped: no ok cell has both an accuracy" in skipped.inner_text()
        images = page.locator("table.images, p.images-none")
        assert images.count() == 1 and images.is_visible()
        _screenshots(page, "report")
    assert problems == []


def test_synthetic_report_shows_every_chart_kind(tmp_path):
    run = write_synthetic_run(tmp_path)
    html = render_report(run, tmp_path / "reports" / run.name)["html"]
    charts = sorted(html.parent.glob("charts/*.svg"))
    assert sorted(p.name for p in charts) == sorted(name for name, _ in CHARTS)

    with _page(html) as (page, problems):
        labels = _assert_every_chart_visible(page, charts)
        assert [label.split(":")[1] for label in labels] == [t.split(":")[1] for _, t in CHARTS]
        assert page.locator("p.skipped").count() == 0
        assert page.get_by_text("host runner: no images").is_visible()
        _screenshots(page, "report-all-charts")
    assert problems == []
