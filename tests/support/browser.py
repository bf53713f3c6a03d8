"""Headless Chromium, driven over the DevTools protocol, to check pages the framework writes.

Chromium speaks the protocol over two pipes (``--remote-debugging-pipe``: it reads commands on
fd 3 and writes replies and events on fd 4, each message JSON ending in a NUL byte), so no
websocket library or open port is needed. The page's own network requests arrive as
``Network.requestWillBeSent`` events, which is how a test proves a page fetched nothing.

``chromium`` comes from Debian's package (scripts/browser-tools installs it). Tests that need
it skip when it is missing, except in CI (``CI=true`` or ``SCYTHE_REQUIRE_HATCHET=1``), where a
missing browser is a failure: the check must never silently not run.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root in CI containers, where the sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--remote-debugging-pipe",
    "--hide-scrollbars",
)


def chromium_path() -> str:
    """The chromium binary; skips the test when it is missing (fails in CI)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI") == "true" or os.environ.get("SCYTHE_REQUIRE_HATCHET") == "1":
        pytest.fail("chromium is missing in CI; scripts/browser-tools installs it")
    pytest.skip("chromium is not installed (bash scripts/browser-tools installs it)")


class DevTools:
    """One Chromium process and one page target, spoken to over the DevTools pipes."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_chrome_read, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_write = os.pipe()
        # bash moves our pipe ends onto the fds Chromium expects (3 and 4); dash, Debian's sh,
        # cannot redirect a descriptor above 9.
        script = f'exec "$0" "$@" 3<&{to_chrome_read} 4>&{from_chrome_write}'
        self.process = subprocess.Popen(
            ["bash", "-c", script, binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"],
            pass_fds=(to_chrome_read, from_chrome_write),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(profile / "chromium.log").open("wb"),  # read when chromium dies
        )
        os.close(to_chrome_read)
        os.close(from_chrome_write)
        self._log = profile / "chromium.log"
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def send(self, method: str, timeout: float = 60.0, **params: Any) -> dict[str, Any]:
        """Send a command (to the page once attached) and wait for its reply; events that
        arrive meanwhile are kept in ``events``."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        try:
            os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            raise EOFError(f"chromium exited: {self.log_tail()}") from None
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_chrome], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise EOFError(f"chromium closed the DevTools pipe: {self.log_tail()}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def log_tail(self) -> str:
        """The end of chromium's stderr, without its harmless D-Bus complaints."""
        lines = self._log.read_text(errors="replace").splitlines() if self._log.exists() else []
        return "\n".join(line for line in lines if "dbus" not in line)[-3000:]

    def wait_for_event(self, method: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found = next((e for e in self.events if e.get("method") == method), None)
            if found is not None:
                return found
            self.events.append(self._read(deadline))

    def open_page(self, width: int, height: int) -> None:
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.send("Network.enable")
        self.send("Page.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def close(self) -> None:
        with suppress(OSError, EOFError, TimeoutError, RuntimeError):
            self.send("Browser.close", timeout=10)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


@contextmanager
def devtools() -> Iterator[DevTools]:
    binary = chromium_path()
    with tempfile.TemporaryDirectory(prefix="scythe-chromium-") as profile:
        browser = DevTools(binary, Path(profile))
        try:
            yield browser
        finally:
            browser.close()


IMAGES_JS = """
JSON.stringify(Array.from(document.images).map(img => {
  const r = img.getBoundingClientRect();
  return {alt: img.alt, complete: img.complete, naturalWidth: img.naturalWidth,
          x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width,
          height: r.height};
}))
"""


def render_page(page: Path, width: int = 1400) -> tuple[bytes, list[dict[str, Any]], list[str]]:
    """Open ``page`` (a local file) and return a full-page PNG screenshot, the bounding box
    and load state of every ``<img>``, and the URL of every request the page made."""
    with devtools() as browser:
        browser.open_page(width, 900)
        browser.send("Page.navigate", url=page.resolve().as_uri())
        browser.wait_for_event("Page.loadEventFired")
        images = json.loads(
            browser.send("Runtime.evaluate", expression=IMAGES_JS, returnByValue=True)["result"][
                "value"
            ]
        )
        size = browser.send("Page.getLayoutMetrics")["cssContentSize"]
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=int(size["height"]) + 1,
            deviceScaleFactor=1,
            mobile=False,
        )
        shot = browser.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        requests = [
            e["params"]["request"]["url"]
            for e in browser.events
            if e.get("method") == "Network.requestWillBeSent"
        ]
    return base64.b64decode(shot["data"]), images, requests
