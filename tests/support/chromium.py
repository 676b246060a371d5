"""Headless Chromium for the report tests: find it (installing the Debian packages `chromium`
and `chromium-driver` when running as root with apt-get), screenshot a page, and run a script
in it through chromedriver's WebDriver HTTP API (plain urllib, no selenium)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                  "--disable-dev-shm-usage", "--no-first-run")


def find_or_install() -> tuple[str | None, str | None, str]:
    """(chromium, chromedriver, why missing). Installs with apt-get when root and allowed."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver, ""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return chromium, driver, ("headless Chromium is not installed and this is not a root shell"
                                  " with apt-get: `sudo apt-get install chromium chromium-driver`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
        done = subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"],
                              env=env, capture_output=True, text=True, timeout=1200)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, None, f"installing chromium with apt-get failed: {exc}"
    if done.returncode != 0:
        return None, None, f"apt-get install chromium chromium-driver failed: {done.stderr[-500:]}"
    return shutil.which("chromium"), shutil.which("chromedriver"), "not on PATH after apt-get"


def screenshot(chromium: str, url: str, out: Path, width: int, height: int) -> Path:
    subprocess.run([chromium, *CHROMIUM_FLAGS, f"--window-size={width},{height}",
                    f"--screenshot={out}", url], capture_output=True, timeout=120, check=True)
    return out


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _call(base: str, method: str, path: str, body: dict | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["value"]


class Page:
    """A page loaded in a WebDriver session."""

    def __init__(self, base: str, session: str) -> None:
        self._base, self._session = base, session

    def run(self, script: str) -> Any:
        """Execute JavaScript in the page; returns its JSON-able value."""
        return _call(self._base, "POST", f"/session/{self._session}/execute/sync",
                     {"script": script, "args": []})

    def pdf(self) -> bytes:
        """The page printed to PDF (A4), as the print dialog would."""
        encoded = _call(self._base, "POST", f"/session/{self._session}/print",
                        {"page": {"width": 21.0, "height": 29.7}})
        return base64.b64decode(encoded)


@contextmanager
def browser_page(chromium: str, driver: str, url: str, width: int, height: int) -> Iterator[Page]:
    """The page at `url`, loaded in headless Chromium driven by chromedriver."""
    port = _free_port()
    process = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _call(base, "GET", "/status")["ready"]:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("chromedriver did not start")
            time.sleep(0.1)
        options = {"binary": chromium, "args": [*CHROMIUM_FLAGS, f"--window-size={width},{height}"]}
        session = _call(base, "POST", "/session", {"capabilities": {"alwaysMatch": {
            "goog:chromeOptions": options}}})["sessionId"]
        try:
            _call(base, "POST", f"/session/{session}/url", {"url": url})
            yield Page(base, session)
        finally:
            _call(base, "DELETE", f"/session/{session}")
    finally:
        process.terminate()
        process.wait(timeout=30)
