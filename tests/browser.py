"""A tiny headless-Chromium driver for the page tests: no pip dependencies.

Chromium is started with ``--remote-debugging-pipe``: it reads DevTools protocol
commands from fd 3 and writes replies and events to fd 4, one JSON message per
NUL-terminated chunk.  :class:`Browser` speaks that protocol, and
:func:`Browser.check_page` opens one URL in a fresh tab and collects everything a
person would call broken: uncaught exceptions, ``console.error``, error log
entries, failed or >= 400 requests, and a page that renders as blank.

It also serves a folder over HTTP on 127.0.0.1 (:func:`serve_dir`), so the pages
are loaded the way a person opens them, not from ``file://``.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--hide-scrollbars",
)


def find_chromium() -> str | None:
    """Path of a Chromium binary, or None ($PADBENCH_CHROMIUM overrides the search)."""
    env = os.environ.get("PADBENCH_CHROMIUM")
    if env:
        return env if os.path.exists(env) else None
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(RuntimeError):
    pass


def _high_fd(fd: int) -> int:
    """Duplicate fd to a number >= 10 so that dup2 onto 3 and 4 cannot clobber it."""
    import fcntl

    new = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return new


class Browser:
    """One headless Chromium process driven over ``--remote-debugging-pipe``."""

    def __init__(self, binary: str | None = None, width: int = 1280, height: int = 900,
                 timeout: float = 60.0):
        self.binary = binary or find_chromium()
        if not self.binary:
            raise BrowserError("chromium not found")
        self.width, self.height, self.timeout = width, height, timeout
        self.profile = tempfile.mkdtemp(prefix="padbench-chromium-")
        # to_chrome: we write, chromium reads on fd 3; from_chrome: chromium writes fd 4.
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        to_r, from_w = _high_fd(to_r), _high_fd(from_w)
        args = [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}", "--remote-debugging-pipe", "about:blank"]
        # A small exec shim moves our pipe ends onto fds 3 and 4 (where chromium expects
        # them) and execs chromium; pass_fds keeps exactly those two ends open in it.
        shim = ("import os, sys; r, w = int(sys.argv[1]), int(sys.argv[2]); "
                "os.dup2(r, 3); os.dup2(w, 4); os.close(r); os.close(w); "
                "os.execv(sys.argv[3], sys.argv[3:])")
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-c", shim, str(to_r), str(from_w), *args],
                                     stdin=subprocess.DEVNULL, stdout=self._stderr,
                                     stderr=self._stderr, pass_fds=(to_r, from_w))
        os.close(to_r)
        os.close(from_w)
        self._wfd, self._rfd = to_w, from_r
        self._next_id = 0
        self._lock = threading.Condition()
        self._replies: dict[int, dict] = {}
        self.events: list[dict] = []
        self._closed = False
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        self.send("Browser.getVersion")  # fails fast when chromium did not start

    # --- protocol ---------------------------------------------------------------------
    def _read_loop(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._rfd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._lock:
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self._lock.notify_all()
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float | None = None) -> dict:
        with self._lock:
            self._next_id += 1
            mid = self._next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._wfd, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._lock:
            while mid not in self._replies:
                if self._closed:
                    raise BrowserError(f"chromium exited during {method}: {self.stderr_tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError(f"no reply to {method} within {timeout or self.timeout}s")
                self._lock.wait(left)
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, session: str | None = None, start: int = 0,
                   timeout: float | None = None) -> dict:
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._lock:
            while True:
                for ev in self.events[start:]:
                    if ev.get("method") == method and (session is None or ev.get("sessionId") == session):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise BrowserError(f"no {method} event within {timeout or self.timeout}s")
                self._lock.wait(left)

    def stderr_tail(self, n: int = 2000) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-n:]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close", timeout=5)
        with contextlib.suppress(OSError):
            os.close(self._wfd)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            os.close(self._rfd)
        self._stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- pages ------------------------------------------------------------------------
    def open_tab(self) -> str:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
                  session=session)
        self._targets = getattr(self, "_targets", {})
        self._targets[session] = target
        return session

    def close_tab(self, session: str) -> None:
        target = self._targets.pop(session, None)
        if target:
            with contextlib.suppress(BrowserError):
                self.send("Target.closeTarget", {"targetId": target})

    def evaluate(self, session: str, expression: str, timeout: float | None = None):
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": True}, session=session, timeout=timeout)
        if "exceptionDetails" in res:
            raise BrowserError(f"evaluate failed: {res['exceptionDetails'].get('text')}: {expression[:200]}")
        return res.get("result", {}).get("value")

    def screenshot(self, session: str) -> bytes:
        data = self.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
        return base64.b64decode(data)

    def check_page(self, url: str, ready: str = "true", settle: float = 0.5,
                   ready_timeout: float = 30.0) -> "PageReport":
        """Load url in a fresh tab, wait until the JS expression `ready` is truthy, collect problems."""
        session = self.open_tab()
        try:
            start = len(self.events)
            self.send("Page.navigate", {"url": url}, session=session)
            self.wait_event("Page.loadEventFired", session=session, start=start)
            deadline = time.monotonic() + ready_timeout
            ok = False
            while time.monotonic() < deadline:
                if self.evaluate(session, f"Boolean({ready})"):
                    ok = True
                    break
                time.sleep(0.2)
            time.sleep(settle)  # late requests and errors
            shot = self.screenshot(session)
            with self._lock:
                events = [e for e in self.events[start:] if e.get("sessionId") == session]
            report = PageReport(url=url, ready=ok, ready_expr=ready, screenshot=shot)
            report.collect(events)
            report.blank = self._is_blank(shot)
            return report
        finally:
            self.close_tab(session)

    @functools.cached_property
    def blank_screenshot(self) -> bytes:
        session = self.open_tab()
        try:
            start = len(self.events)
            self.send("Page.navigate", {"url": "about:blank"}, session=session)
            with contextlib.suppress(BrowserError):
                self.wait_event("Page.loadEventFired", session=session, start=start, timeout=10)
            return self.screenshot(session)
        finally:
            self.close_tab(session)

    def _is_blank(self, shot: bytes) -> bool:
        # "Blank" = (almost) every pixel as about:blank renders; a heading alone is ~0.3 %.
        return screenshot_difference(shot, self.blank_screenshot) < 1e-4


def screenshot_difference(a: bytes, b: bytes) -> float:
    """Fraction of pixels that differ between two PNG screenshots (1.0 if sizes differ)."""
    from PIL import Image, ImageChops

    ia = Image.open(io.BytesIO(a)).convert("RGB")
    ib = Image.open(io.BytesIO(b)).convert("RGB")
    if ia.size != ib.size:
        return 1.0
    diff = ImageChops.difference(ia, ib).convert("L").point(lambda v: 255 if v > 16 else 0)
    return sum(diff.histogram()[255:]) / (ia.size[0] * ia.size[1])


@dataclass
class PageReport:
    url: str
    ready: bool
    ready_expr: str
    screenshot: bytes = b""
    blank: bool = False
    exceptions: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def collect(self, events: list[dict]) -> None:
        urls = {}
        for ev in events:
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                desc = d.get("exception", {}).get("description") or d.get("text")
                self.exceptions.append(f"{desc} at {d.get('url')}:{d.get('lineNumber')}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                args = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                self.console_errors.append(args)
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                e = p["entry"]
                self.log_errors.append(f"{e.get('text')} ({e.get('url', '')})")
            elif m == "Network.requestWillBeSent":
                urls[p["requestId"]] = p["request"]["url"]
                self.requests.append(p["request"]["url"])
            elif m == "Network.responseReceived":
                status = p["response"]["status"]
                if status >= 400:
                    self.failed_requests.append(f"{status} {p['response']['url']}")
            elif m == "Network.loadingFailed":
                self.failed_requests.append(
                    f"{p.get('errorText')} {urls.get(p['requestId'], p['requestId'])}"
                    + (" (canceled)" if p.get("canceled") else ""))

    @property
    def problems(self) -> list[str]:
        out = []
        if not self.ready:
            out.append(f"page never became ready: {self.ready_expr}")
        if self.blank:
            out.append("page renders blank (screenshot equals about:blank)")
        out += [f"exception: {x}" for x in self.exceptions]
        out += [f"console.error: {x}" for x in self.console_errors]
        out += [f"log error: {x}" for x in self.log_errors]
        out += [f"request failed: {x}" for x in self.failed_requests]
        return out


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass


@contextlib.contextmanager
def serve_dir(root: str | os.PathLike):
    """Serve `root` on 127.0.0.1 at a free port in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=os.fspath(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
