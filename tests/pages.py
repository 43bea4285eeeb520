"""Open built pages in the system Chromium through Selenium and Debian's chromedriver.

The site is served over HTTP on 127.0.0.1 (:func:`serve_dir`) because that is how a person
opens it; ``file://`` hides failed fetches. :func:`check_page` reads chromedriver's browser log
(uncaught exceptions, console.error, error log entries are all SEVERE there) and its
performance log (the DevTools Network events) to list what a person would call broken.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field

import pytest

CHROMIUM = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Path of a Chromium binary, or None ($PADBENCH_CHROMIUM overrides the search)."""
    env = os.environ.get("PADBENCH_CHROMIUM")
    if env:
        return env if os.path.exists(env) else None
    return next(filter(None, map(shutil.which, CHROMIUM)), None)


@pytest.fixture(scope="module")
def driver():
    """One headless Chromium for the module; the driver is given by path so Selenium never downloads one."""
    chromium, chromedriver = find_chromium(), shutil.which("chromedriver")
    if not chromium:
        pytest.skip("chromium is not installed (apt-get install chromium chromium-driver)")
    if not chromedriver:
        pytest.skip("chromedriver is not installed (apt-get install chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--hide-scrollbars", "--window-size=1280,900"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    with webdriver.Chrome(options=opts, service=Service(chromedriver)) as d:
        d.set_page_load_timeout(60)
        yield d


@dataclass
class Page:
    url: str
    problems: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


def check_page(driver, url: str, ready: str = "true", ready_timeout: float = 30.0,
               settle: float = 0.5) -> Page:
    """Load url, wait until the JS expression `ready` is truthy, and list what went wrong.

    The driver stays on the page, so callers can query it further with ``execute_script``.
    """
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get("about:blank")
    blank = driver.get_screenshot_as_png()
    for log in ("browser", "performance"):
        driver.get_log(log)  # reading a log empties it
    page = Page(url)
    driver.get(url)
    try:
        WebDriverWait(driver, ready_timeout, poll_frequency=0.2).until(
            lambda d: d.execute_script(f"return Boolean({ready})"))
    except TimeoutException:
        page.problems.append(f"page never became ready: {ready}")
    time.sleep(settle)  # late requests and errors
    if _differing_pixels(driver.get_screenshot_as_png(), blank) < 1e-4:
        page.problems.append("page renders blank (screenshot equals about:blank)")
    page.problems += [f"{e['source']} {e['level']}: {e['message']}"
                      for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    urls = {}
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        method, p = msg["method"], msg.get("params", {})
        if method == "Network.requestWillBeSent":
            urls[p["requestId"]] = p["request"]["url"]
            page.requests.append(p["request"]["url"])
        elif method == "Network.responseReceived" and p["response"]["status"] >= 400:
            page.problems.append(f"request failed: {p['response']['status']} {p['response']['url']}")
        elif method == "Network.loadingFailed":
            page.problems.append(f"request failed: {p.get('errorText')} {urls.get(p['requestId'])}"
                                 + (" (canceled)" if p.get("canceled") else ""))
    return page


def _differing_pixels(a: bytes, b: bytes) -> float:
    """Fraction of pixels that differ between two PNGs; a lone heading changes ~0.3 %."""
    from PIL import Image, ImageChops

    ia, ib = (Image.open(io.BytesIO(x)).convert("RGB") for x in (a, b))
    if ia.size != ib.size:
        return 1.0
    diff = ImageChops.difference(ia, ib).convert("L").point(lambda v: 255 if v > 16 else 0)
    return diff.histogram()[255] / (ia.size[0] * ia.size[1])


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass


@contextlib.contextmanager
def serve_dir(root: str | os.PathLike):
    """Serve `root` on 127.0.0.1 at a free port in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=os.fspath(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
