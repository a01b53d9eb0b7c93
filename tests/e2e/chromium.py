"""Headless Debian Chromium, driven over the DevTools protocol with the ``websockets`` client.

Just enough of CDP for the live-page checks: open a URL, evaluate JavaScript, wait for a
condition in the page, take a screenshot, and collect console errors and uncaught exceptions
(a page that throws is a failing page, even if it renders).

    async with Chromium.launch() as browser:
        page = await browser.open("http://127.0.0.1:8080/")
        await page.wait_for("document.querySelectorAll('tr').length > 3", timeout=30)
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import websockets

from devstack.exits import describe_exit
from tests.infra.eventually import eventually

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
)


def chromium_path() -> str | None:
    """The Chromium binary, or None when it is not installed."""
    return CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")


class Page:
    """One tab: commands are awaited by id, events are kept for inspection."""

    def __init__(self, socket: websockets.ClientConnection) -> None:
        self._socket = socket
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.console_errors: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self._socket:
            message = json.loads(raw)
            future = self._waiting.pop(message.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(message)
            elif message.get("method") == "Runtime.exceptionThrown":
                details = message["params"]["exceptionDetails"]
                self.console_errors.append(
                    details.get("exception", {}).get("description") or details.get("text", "")
                )
            elif (
                message.get("method") == "Runtime.consoleAPICalled"
                and message["params"]["type"] == "error"
            ):
                self.console_errors.append(
                    " ".join(
                        str(a.get("value", a.get("description", "")))
                        for a in message["params"]["args"]
                    )
                )

    async def send(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        """Send one CDP command and return its result (raise on a protocol error)."""
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[self._next_id] = future
        await self._socket.send(
            json.dumps({"id": self._next_id, "method": method, "params": params})
        )
        reply = await asyncio.wait_for(future, timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable)."""
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(
                f"page error in {expression!r}: {result['exceptionDetails'].get('text')}"
            )
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 30.0, interval: float = 0.2) -> Any:
        """Poll until ``expression`` is truthy in the page; return its value, or raise
        :class:`~tests.infra.eventually.NotReached` (a TimeoutError) with the last value."""
        return await eventually(lambda: self.evaluate(expression), timeout, interval=interval,
                                what=f"page condition {expression}")

    async def screenshot(self, path: Path) -> Path:
        data = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    async def close(self) -> None:
        self._reader.cancel()
        await self._socket.close()


class Chromium:
    """A headless browser process with its own profile directory; closed with its process group."""

    def __init__(self, proc: subprocess.Popen[bytes], profile: str, port: int) -> None:
        self.proc = proc
        self.profile = profile
        self.port = port

    @classmethod
    @asynccontextmanager
    async def launch(
        cls, width: int = 1400, height: int = 900, timeout: float = 30.0
    ) -> AsyncIterator[Chromium]:
        binary = chromium_path()
        if binary is None:
            raise RuntimeError(
                "chromium is not installed (scripts/test_env.sh installs it: apt-get install chromium)"
            )
        profile = tempfile.mkdtemp(prefix="marketbridge-chromium-")
        proc = await asyncio.to_thread(
            subprocess.Popen,
            [
                binary,
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        browser: Chromium | None = None
        try:
            browser = cls(proc, profile, await _devtools_port(profile, proc, timeout))
            yield browser
        finally:
            _stop_group(proc)
            shutil.rmtree(profile, ignore_errors=True)

    async def open(self, url: str, width: int = 1400, height: int = 900) -> Page:
        """Attach to the first tab and navigate it to ``url``."""
        targets = await asyncio.to_thread(_get_json, f"http://127.0.0.1:{self.port}/json/list")
        tab = next(t for t in targets if t.get("type") == "page")
        socket = await websockets.connect(
            tab["webSocketDebuggerUrl"], max_size=None, open_timeout=10
        )
        page = Page(socket)
        await page.send("Runtime.enable")
        await page.send("Page.enable")
        await page.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        await page.send("Page.navigate", url=url)
        await page.wait_for("document.readyState === 'complete'", timeout=30)
        return page


async def _devtools_port(profile: str, proc: subprocess.Popen[bytes], timeout: float) -> int:
    """Chromium writes the port it chose to ``DevToolsActivePort`` in its profile."""
    marker = Path(profile) / "DevToolsActivePort"

    def written_port() -> int | None:
        if proc.poll() is not None:
            raise RuntimeError(
                f"chromium {describe_exit(proc.returncode)} before opening DevTools"
            )
        first_line = marker.read_text().splitlines()[:1] if marker.exists() else []
        return int(first_line[0]) if first_line and first_line[0].isdigit() else None

    port: int = await eventually(written_port, timeout, interval=0.1,
                                 what="chromium writing its DevTools port")
    return port


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop the browser and its helper processes (renderer, zygote): they share its group."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # helpers that outlived the browser
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)
