"""``dece report --html`` in a real headless browser (Debian's chromium + chromium-driver, driven
by Selenium through ``/usr/bin/chromedriver``: nothing downloads a driver; ``make browser-deps``
installs them).

Oracle: the planted defense cells of ``explorer_runs`` and their ``result.json`` files. The pages
load from ``file://`` without console errors and without any request outside ``file://`` /
``data:``; the cells table shows the values of every ``result.json``; clicking a missed input
shows its trigger span (the manifest's) highlighted. ``DECE_SCREENSHOT_DIR`` set: the explorer's
screenshot is saved there (``docs/explorer.png`` in the README comes from this test).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explorer_runs import make_explorer_runs  # noqa: E402

from dece.cli import main as cli_main  # noqa: E402

CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage", "--window-size=1400,900")  # fmt: skip

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                "(pip install -e '.[dev]')")  # fmt: skip
if not (CHROMEDRIVER.is_file() and CHROMIUM.is_file()):
    pytest.skip(
        "Debian's chromium and chromium-driver are missing: run 'make browser-deps' "
        "(as root: apt-get install -y chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("html")
    facts = make_explorer_runs(root / "runs")
    code = cli_main(["report", str(root / "runs"), "-o", str(root / "report"), "--html"])
    assert code == 0
    return root / "runs", root / "report" / "html", facts


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _open(driver, path: Path) -> None:
    """Load ``path`` after dropping the logs of what came before (the browser's own start-up
    pages request chrome:// resources)."""
    driver.get_log("browser")
    driver.get_log("performance")
    driver.get(path.as_uri())


def _problems(driver) -> list[str]:
    """Console errors, and every request of the report's pages (documents loaded from file://)
    whose URL is neither file:// nor data:. The browser's own pages (chrome://new-tab-page, which
    headless Chromium loads beside ours) are not the report's."""
    errors = [m["message"] for m in driver.get_log("browser") if m["level"] == "SEVERE"]
    ours = 0
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] != "Network.requestWillBeSent":
            continue
        params = message["params"]
        if str(params.get("documentURL", "")).startswith("file://"):
            ours += 1
            if not params["request"]["url"].startswith(("file://", "data:")):
                errors.append(f"request to {params['request']['url']}")
    return errors if ours else [*errors, "no request of the report's pages was logged"]


def test_tables_show_the_values_of_result_json(site, browser):
    runs, html_dir, _ = site
    _open(browser, html_dir / "index.html")
    assert _problems(browser) == []
    images = browser.find_elements(By.TAG_NAME, "img")  # the plots, embedded
    assert images and all(
        browser.execute_script("return arguments[0].naturalWidth", img) > 0 for img in images
    )
    rows = browser.find_elements(By.CSS_SELECTOR, "#cells tr.cell")
    assert len(rows) == 3
    for tr in rows:
        h = tr.get_attribute("data-hash")
        final = json.loads((runs / h / "result.json").read_text())["final"]
        shown = {td.get_attribute("data-metric"): td.text
                 for td in tr.find_elements(By.CSS_SELECTOR, "td[data-metric]")}  # fmt: skip
        assert shown, h
        for metric, text in shown.items():
            if metric in final:
                assert float(text) == pytest.approx(final[metric], abs=5e-5), (h, metric)
            else:
                assert text == "-"


def test_clicking_a_missed_input_shows_its_trigger(site, browser):
    runs, html_dir, facts = site
    _open(browser, html_dir / "index.html")
    browser.find_element(By.CSS_SELECTOR, f"a[href='cells/{facts['onion']}.html']").click()
    browser.find_element(By.CSS_SELECTOR, "button[data-filter='missed']").click()
    visible = [r for r in browser.find_elements(By.CSS_SELECTOR, "tr.input") if r.is_displayed()]
    assert [r.get_attribute("data-id") for r in visible] == facts["missed"]
    visible[0].click()
    i = facts["missed"][0]
    source = facts["poisoned"][i].source
    expected = [source[s["start"] : s["end"]] for s in facts["spans"][i] if s["side"] == "source"]
    marked = browser.find_elements(By.CSS_SELECTOR, "#detail .input-source .trigger")
    assert marked and all(m.is_displayed() for m in marked)
    assert "".join(m.get_attribute("textContent") for m in marked) == "".join(expected)
    shown = browser.find_element(By.CSS_SELECTOR, "#detail .input-source")
    assert shown.get_attribute("textContent") == source
    color = marked[0].value_of_css_property("outline-color")
    assert color.replace(" ", "") in ("rgb(221,0,0)", "rgba(221,0,0,1)")
    assert _problems(browser) == []
    _screenshot(browser, html_dir)


def test_filter_page_shows_rows_removed_vs_the_manifest(site, browser):
    _, html_dir, facts = site
    _open(browser, html_dir / "cells" / f"{facts['keyword']}.html")
    summary = {tr.find_element(By.TAG_NAME, "th").text: tr.find_element(By.TAG_NAME, "td").text
               for tr in browser.find_elements(By.CSS_SELECTOR, "#summary tr")}  # fmt: skip
    poisoned = set(facts["train_manifest"].poisoned_ids)
    flagged = {i for i, f in zip(facts["filter"].ids, facts["filter"].flagged, strict=True) if f}
    assert summary["removed"] == str(len(flagged))
    assert summary["poisoned and removed"] == str(len(flagged & poisoned))
    assert summary["poisoned (manifest)"] == str(len(poisoned))
    assert _problems(browser) == []


def _screenshot(driver, html_dir: Path) -> None:
    """The explorer with a detected input open (trigger, scores, what was replaced)."""
    driver.find_element(By.CSS_SELECTOR, "button[data-filter='all']").click()
    driver.find_element(By.CSS_SELECTOR, "tr.input[data-category='detected']").click()
    path = html_dir / "explorer.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 0
    target = os.environ.get("DECE_SCREENSHOT_DIR")
    if target:
        shutil.copy(path, Path(target) / "explorer.png")
