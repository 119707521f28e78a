"""Helpers of the browser tests: the Procfile's real web process and Debian's Chromium.

`WebServer` runs the Procfile's `web` line (gunicorn) on a free port against a
given Redis; `launch_chromium` starts /usr/bin/chromium through Playwright's sync
API with a fresh profile; `PageWatch` collects what a page reports as going wrong
(console errors, uncaught exceptions, CSP violations, failed requests).
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, procfile_command, wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_MISSING = (f"Chromium not found at {CHROMIUM}; install Debian's chromium "
                    "(apt-get install chromium) to run browser tests")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

DASHBOARD_USER, DASHBOARD_PASSWORD = "browser-admin", "browser-secret"

#: Runs in every document before the page's own scripts: records CSP violations,
#: and every value the progress bar and the status badge take, so a test can see
#: the live updates a page made between two of its own checks.
WATCH_SCRIPT = """
(() => {
  window.__csp = [];
  window.__progress = [];
  window.__statuses = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    window.__csp.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
  });
  document.addEventListener("DOMContentLoaded", () => {
    const bar = document.getElementById("progress-bar");
    const badge = document.getElementById("status");
    const record = () => {
      if (bar && bar.hasAttribute("aria-valuenow")) {
        const value = Number(bar.getAttribute("aria-valuenow"));
        if (window.__progress[window.__progress.length - 1] !== value) { window.__progress.push(value); }
      }
      if (badge) {
        const status = badge.getAttribute("data-status");
        if (window.__statuses[window.__statuses.length - 1] !== status) { window.__statuses.push(status); }
      }
    };
    record();
    const observer = new MutationObserver(record);
    if (bar) { observer.observe(bar, {attributes: true}); }
    if (badge) { observer.observe(badge, {attributes: true}); }
  });
})();
"""


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebServer:
    """gunicorn from the Procfile's web line, on a free port, against `redis_url`."""

    def __init__(self, redis_url: str, log: Path, env: dict | None = None):
        self.log = log
        self.env = dict(os.environ, REDIS_URL=redis_url, SECRET_KEY="browser-test", PYTHONPATH=str(ROOT),
                        WEB_CONCURRENCY="2", **(env or {}))
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env.get('PATH', '')}"
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.url = ""

    def start(self, attempts: int = 3) -> "WebServer":
        """Start on a free port; another port if someone takes this one before gunicorn binds it."""
        for _ in range(attempts):
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            with open(self.log, "wb") as out:
                self.proc = subprocess.Popen(procfile_command("web"), shell=True, cwd=ROOT,
                                             env={**self.env, "PORT": str(self.port)}, stdout=out,
                                             stderr=subprocess.STDOUT, start_new_session=True)
            if wait_for(self._listening, timeout=30, interval=0.1, message="gunicorn to listen") == "listening":
                wait_for(self._answering, timeout=30, interval=0.1, message="gunicorn to answer")
                return self
            self.stop()
        raise RuntimeError(f"gunicorn found no free port in {attempts} attempts:\n{self.log_text()}")

    def _listening(self) -> str | None:
        # Wait for ours to listen: another server may have taken the port since free_port().
        text = self.log.read_text(errors="replace")
        if f"Listening at: http://0.0.0.0:{self.port}" in text:
            return "listening"
        if "Connection in use" in text:
            return "port taken"
        assert self.proc.poll() is None, f"gunicorn exited:\n{self.log_text()}"
        return None

    def _answering(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            connection.request("GET", "/healthz")
            return connection.getresponse().status in (200, 503)
        except OSError:
            assert self.proc.poll() is None, f"gunicorn exited:\n{self.log_text()}"
            return False
        finally:
            connection.close()

    def log_text(self, tail: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-tail:]

    def stop(self) -> None:
        if self.proc is None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self.proc = None


def launch_chromium(playwright):
    """Debian's Chromium, headless. Playwright gives every launch a fresh temporary profile
    (--user-data-dir) and removes it on close; each test then opens its own context."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


class PageWatch:
    """Everything a page reported as going wrong, as readable lines."""

    def __init__(self, page):
        self.page = page
        self.problems: list[str] = []
        self.http_errors: list[str] = []  # kept apart: a 422 form page is an expected answer
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"uncaught exception on {page.url}: {error}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _console(self, message) -> None:
        if message.type in ("error", "assert"):
            self.problems.append(f"console {message.type} on {self.page.url}: {message.text}")

    def _failed(self, request) -> None:
        if request.failure and "ERR_ABORTED" in request.failure:
            return  # a download or a navigation that replaced the page (e.g. the reload at the end)
        self.problems.append(f"request failed: {request.method} {request.url}: {request.failure}")

    def _response(self, response) -> None:
        if response.status >= 400:
            self.http_errors.append(f"HTTP {response.status} for {response.request.method} {response.url}")

    def csp_violations(self) -> list[str]:
        """CSP violations the current document saw (recorded by WATCH_SCRIPT)."""
        return self.page.evaluate("() => window.__csp || []")
