"""The report in a real browser: headless Chromium (Debian package `chromium`) takes a screenshot, which must not be
blank, and loads the page with a check that every <img> decoded and the graph has a size.

Chromium's --dump-dom prints the document after its scripts ran, so the check is a script added to a copy of the
page (the report itself has none); --virtual-time-budget lets the load finish first.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from report_runs import LocalRuns

from pipelines.report import ReportData

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync")
WIDTH, HEIGHT = 1280, 4000
CHECK = """<script>
window.addEventListener("load", () => {
  const images = [...document.images].map(i => (i.complete && i.naturalWidth > 0 ? "ok:" : "broken:") + i.alt);
  document.body.dataset.images = images.join("|");
  document.body.dataset.graph = String(Math.round(document.querySelector("svg.dag").getBoundingClientRect().width));
});
</script>"""


@pytest.fixture(scope="module")
def chromium() -> str:
    found = next(filter(None, map(shutil.which, BROWSERS)), None)
    if found is None:
        pytest.skip("no Chromium here (Debian: apt-get install chromium); test_report_render.py checked the page "
                    "without a browser")
    return found


def browse(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_screenshot_of_the_report_is_not_blank(chromium: str, succeeded_report: tuple[LocalRuns, ReportData, str],
                                               tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(succeeded_report[2], encoding="utf-8")
    screenshot = tmp_path / "screenshot.png"
    browse(chromium, tmp_path / "profile", f"--screenshot={screenshot}", f"--window-size={WIDTH},{HEIGHT}",
           page.as_uri())

    image = Image.open(screenshot).convert("RGB")
    assert image.size == (WIDTH, HEIGHT)
    colours = image.getcolors(maxcolors=WIDTH * HEIGHT)
    white = sum(count for count, colour in colours if colour == (255, 255, 255))
    assert len(colours) > 500  # text, badges, charts: a blank or one-colour page has a handful
    assert white / (WIDTH * HEIGHT) < 0.95
    top = image.crop((0, 0, WIDTH, 200)).getcolors(maxcolors=WIDTH * 200)
    assert len(top) > 20  # the header drew: the page did not start with empty space


def test_every_image_loads_and_the_graph_has_a_size(chromium: str,
                                                    succeeded_report: tuple[LocalRuns, ReportData, str],
                                                    tmp_path: Path) -> None:
    page = tmp_path / "checked.html"
    page.write_text(succeeded_report[2].replace("</body>", CHECK + "</body>"), encoding="utf-8")
    dom = browse(chromium, tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()).stdout

    loaded = re.search(r'data-images="([^"]*)"', dom)
    assert loaded, dom[:500]
    images = loaded.group(1).split("|")
    assert [i for i in images if not i.startswith("ok:")] == []
    charts = ["validation:accuracy vs lr", "training curves", "system utilisation", "confusion matrix",
              "class balance per split"]
    assert [next(i for i in images if chart in i) for chart in charts]
    # ExplainModel's overlays: every class of the run, the mistaken image in the top-loss grid and its confused pair
    overlays = [i.removeprefix("ok:overlay of ") for i in images if i.startswith("ok:overlay of ")]
    assert sorted(overlays) == ["0-zero/a.png", "0-zero/b.png", "1-one/a.png", "1-one/b.png", "2-two/a.png",
                                "2-two/b.png", "2-two/e.png", "2-two/e.png"]
    graph = re.search(r'data-graph="(\d+)"', dom)
    assert graph and int(graph.group(1)) > 200
