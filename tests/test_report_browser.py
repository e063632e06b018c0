"""The HTML report of a real run, opened in headless Chromium as a reader would."""
import shutil

import pytest
from conftest import ARTIFACTS, TINY_SPEC

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                       "(bash .ci/setup --dev installs it)"),
]


def test_report_page_has_no_errors_and_shows_verdicts_and_every_chart(invoke_cmd, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    assert invoke_cmd("run", "--experiment", str(TINY_SPEC), results=tmp_path).returncode == 0
    done = invoke_cmd("report", results=tmp_path)
    assert done.returncode == 0, done.stderr
    html = next((tmp_path / "reports").glob("*/report.html"))
    charts = list(html.parent.glob("charts/*.svg"))
    assert len(charts) >= 2

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        problems = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("request", lambda r: problems.append(f"fetched {r.url}")
                if not r.url.startswith(("file:", "data:")) else None)
        page.goto(html.as_uri())
        verdicts = page.locator("table.verdicts")
        assert verdicts.is_visible()
        assert verdicts.locator("tbody tr").count() >= 1
        svgs = page.locator("figure svg")
        assert svgs.count() == len(charts)
        for index in range(svgs.count()):
            svgs.nth(index).scroll_into_view_if_needed()
            assert svgs.nth(index).is_visible()
            assert svgs.nth(index).bounding_box()["height"] > 100
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})  # a phone
        page.screenshot(path=str(ARTIFACTS / "report-phone.png"), full_page=True)
        browser.close()
    assert problems == []
