"""Open the rendered report in headless Chromium and check that it displays cleanly.

Chromium is driven through the DevTools protocol over a pipe (--remote-debugging-pipe:
JSON messages separated by NUL bytes on file descriptors 3 and 4), so no websocket
client, driver download or network access is needed. The test loads the report from a
file:// URL, collects console errors, uncaught exceptions and browser log errors, checks
that every <img> decoded (naturalWidth > 0) and that neither the page nor a table
overflows sideways at 1280 px, and saves a full-page screenshot to
results/report_screenshot.png (repo root).

CI installs the browser with `apt-get install -y chromium`; without /usr/bin/chromium
the test is skipped.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from test_report import render_fixture

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "results" / "report_screenshot.png"
WIDTH = 1280
TIMEOUT_S = 30.0

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless check needs Chromium at /usr/bin/chromium (apt-get install -y chromium)",
)

# Every image decoded, and neither the page nor a table needs a horizontal scrollbar.
PAGE_CHECK = """(async () => {
  const images = Array.from(document.images);
  await Promise.all(images.map((img) => img.decode().catch(() => null)));
  return {
    images: images.map((img) => ({
      alt: img.alt, naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
      shownWidth: img.getBoundingClientRect().width, complete: img.complete,
    })),
    // Tables sit in scrollable boxes; at desktop width none should need to scroll.
    overflowing: Array.from(document.querySelectorAll(".scroll"))
      .filter((box) => box.scrollWidth > box.clientWidth + 1)
      .map((box) => box.querySelector("th") ? box.querySelector("tr").innerText : "?"),
    // The setup tables share a grid row; a long value must wrap, not run under the next column.
    setupOverflowing: Array.from(document.querySelectorAll(".setup section"))
      .filter((s) => s.querySelector("table") && s.querySelector("table").getBoundingClientRect().right
                     > s.getBoundingClientRect().right + 1)
      .map((s) => s.querySelector("h3").innerText),
    scrollWidth: document.documentElement.scrollWidth,
    clientWidth: document.documentElement.clientWidth,
    height: document.documentElement.scrollHeight,
    title: document.title,
  };
})()"""


class DevTools:
    """A minimal Chrome DevTools Protocol client over --remote-debugging-pipe."""

    def __init__(self, user_data_dir: Path):
        command = [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--remote-debugging-pipe",
            f"--user-data-dir={user_data_dir}",
            f"--window-size={WIDTH},900",
            "about:blank",
        ]
        # The browser reads commands on fd 3 and writes replies on fd 4; the shell maps
        # them to our pipes and keeps the browser's own stdout off the protocol stream.
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()
        self.process = subprocess.Popen(
            ["/bin/sh", "-c", 'exec "$@" 3<&0 4>&1 0</dev/null 1>&2', "sh", *command],
            stdin=to_browser_read,
            stdout=from_browser_write,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self.events: queue.Queue[dict] = queue.Queue()
        self._incoming: queue.Queue[dict | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        with open(self._from_browser, "rb", buffering=0) as stream:
            while chunk := stream.read(65536):
                buffer += chunk
                *messages, buffer = buffer.split(b"\0")
                for message in messages:
                    self._incoming.put(json.loads(message))
        self._incoming.put(None)  # the browser closed its end

    def _pump(self, deadline: float) -> None:
        message = self._incoming.get(timeout=max(0.01, deadline - time.monotonic()))
        if message is None:
            raise RuntimeError("Chromium closed the DevTools pipe")
        if "id" in message:
            self._replies[message["id"]] = message
        else:
            self.events.put(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        while self._next_id not in self._replies:
            self._pump(deadline)
        reply = self._replies.pop(self._next_id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def wait_for(self, method: str, seen: list[dict]) -> dict:
        """Wait for an event, keeping every event that arrives meanwhile in `seen`."""
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            while not self.events.empty():
                event = self.events.get()
                seen.append(event)
                if event["method"] == method:
                    return event
            self._pump(deadline)

    def drain(self, seen: list[dict]) -> None:
        while not self.events.empty():
            seen.append(self.events.get())

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, OSError, queue.Empty):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)


def problems(events: list[dict]) -> list[str]:
    """Console errors, uncaught exceptions and browser-side error log entries."""
    found = []
    for event in events:
        params = event.get("params", {})
        if event["method"] == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            found.append(f"exception: {details.get('exception', {}).get('description', details)}")
        elif event["method"] == "Runtime.consoleAPICalled" and params["type"] in (
            "error",
            "assert",
        ):
            found.append(f"console.{params['type']}: {params['args']}")
        elif event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
            found.append(f"log: {params['entry']['text']} ({params['entry'].get('url', '')})")
    return found


@pytest.fixture(scope="module")
def browser_check(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("report_browser")
    render_fixture(out)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        devtools = DevTools(Path(profile))
        try:
            target = devtools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = devtools.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
                "sessionId"
            ]
            for domain in ("Page", "Runtime", "Log"):
                devtools.send(f"{domain}.enable", session=session)
            devtools.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": WIDTH, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                session=session,
            )
            events: list[dict] = []
            url = (out / "report.html").as_uri()
            navigation = devtools.send("Page.navigate", {"url": url}, session=session)
            assert "errorText" not in navigation, navigation
            devtools.wait_for("Page.loadEventFired", events)
            page = devtools.send(
                "Runtime.evaluate",
                {"expression": PAGE_CHECK, "awaitPromise": True, "returnByValue": True},
                session=session,
            )["result"]["value"]
            shot = devtools.send(
                "Page.captureScreenshot",
                {"format": "png", "captureBeyondViewport": True},
                session=session,
            )
            devtools.drain(events)
        finally:
            devtools.close()
    png = base64.b64decode(shot["data"])
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.write_bytes(png)
    return {"page": page, "events": events, "png": png}


def test_report_loads_without_console_errors(browser_check):
    assert problems(browser_check["events"]) == []
    assert browser_check["page"]["title"] == "Parameter-efficient fine-tuning for summarization"


def test_every_image_decodes(browser_check):
    images = browser_check["page"]["images"]
    assert len(images) == 4
    for image in images:
        assert image["complete"] and image["naturalWidth"] > 0 and image["naturalHeight"] > 0, image
        assert image["shownWidth"] > 0, image


def test_page_and_tables_fit_the_width(browser_check):
    page = browser_check["page"]
    assert page["scrollWidth"] <= page["clientWidth"], page
    assert page["overflowing"] == [], "tables wider than the page at 1280 px"
    assert page["setupOverflowing"] == [], "setup tables wider than their column"
