"""The published pages, opened in headless Chromium the way a person opens them.

A fixture builds the site into a temporary folder from the committed asv results
(``results/<machine>/``; ``html/`` need not exist): ``asv publish --html-dir``, the offline
dashboard UI (`padbench.report.install_dashboard`) and the report (`padbench.report.build_report`
into ``<site>/report``). It is served on 127.0.0.1 and each page must load with no uncaught
exception, no console.error, no error log entry, no failed request, and must not render blank;
the report must show one loaded plot per device and mode and per epoch document (``results/epoch/``),
the dashboard must draw a graph.

Skipped only when Chromium or chromedriver is missing (CI installs both:
``apt-get install chromium chromium-driver``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from padbench import asv_results, report

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pages import check_page, serve_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"


def _asv() -> list[str]:
    exe = Path(sys.executable).parent / "asv"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("asv")
    if found:
        return [found]
    return [sys.executable, "-m", "asv"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if not asv_results.is_asv_results_dir(RESULTS):
        pytest.fail(f"no asv results committed under {RESULTS}/<machine>/ (see docs/asv.md)")
    html = tmp_path_factory.mktemp("site") / "html"
    proc = subprocess.run([*_asv(), "publish", "--no-pull", "--html-dir", str(html)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"asv publish failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert (html / "index.json").exists()
    report.install_dashboard(html, repo=REPO)
    report.build_report([RESULTS], html / "report")
    with serve_dir(html) as url:
        yield html, url


def _assert_clean(page):
    assert not page.problems, f"{page.url}:\n  " + "\n  ".join(page.problems)


def test_report_page_shows_every_plot(driver, site):
    html, url = site
    sections = len(list((html / "report").glob("plot-*.png")))
    assert sections >= 1
    ready = ("document.images.length > 0 && Array.from(document.images).every("
             "i => i.complete && i.naturalWidth > 0)")
    page = check_page(driver, url + "report/", ready=ready)
    _assert_clean(page)
    n_img = driver.execute_script("return Array.from(document.querySelectorAll('section img.plot'))"
                                  ".filter(i => i.complete && i.naturalWidth > 0).length")
    n_sec = driver.execute_script("return document.querySelectorAll('section').length")
    assert n_sec == sections and n_img == sections
    assert any(u.endswith(".png") for u in page.requests)
    # the epoch part: one section per committed `padbench epoch` document, its figure loaded
    documents = len(list((RESULTS / "epoch").glob("*.pbepoch")))
    n_epoch = driver.execute_script("return Array.from(document.querySelectorAll('#epochs section.epoch img.plot'))"
                                    ".filter(i => i.complete && i.naturalWidth > 0).length")
    assert documents >= 1 and n_epoch == documents
    text = driver.execute_script("return document.getElementById('epochs').innerText")
    assert "Whole epochs" in text and "Every pair" in text and "an epoch in" in text


# The asv-tachyon UI draws a benchmark's graph with uPlot into a <canvas> (only when the
# benchmark has data): it must exist, have a size, and have pixels drawn on it.
GRAPH_DRAWN = """Array.from(document.querySelectorAll('canvas')).some(c => {
  if (c.width < 100 || c.height < 50) return false;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let drawn = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] > 0) drawn++;
  return drawn > 200;
})"""
GRAPHED = "encoders.Inference.time_step"


def _local_only(page):
    foreign = [u for u in page.requests if not u.startswith(("http://127.0.0.1", "data:", "blob:"))]
    assert not foreign, f"requests leave the machine (CDN?): {foreign}"


def test_asv_dashboard_overview(driver, site):
    html, url = site
    page = check_page(driver, url, ready=f"document.body.innerText.includes('{GRAPHED}')", ready_timeout=40)
    _assert_clean(page)
    _local_only(page)
    assert any(u.endswith("index.json") for u in page.requests)


def test_asv_dashboard_draws_a_graph(driver, site):
    html, url = site
    page = check_page(driver, f"{url}#view=explore&bench={GRAPHED}", ready=GRAPH_DRAWN, ready_timeout=40)
    _assert_clean(page)
    _local_only(page)
    assert any("/graphs/" in u and u.endswith(f"{GRAPHED}.json") for u in page.requests)
