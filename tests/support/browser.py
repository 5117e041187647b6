"""A headless Chromium (Debian's ``chromium``) with no network but this machine, driven over
the Chrome DevTools protocol: open a page, run JavaScript in it, see what it requested."""

import asyncio
import contextlib
import itertools
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.support.processes import die_with_parent

# Every name resolves to nothing and every request that is not to loopback goes to a proxy on
# the discard port, where nothing listens: a page can reach this machine and nothing else.
OFFLINE_FLAGS = (
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
)


class DevToolsPage:
    """One page of the browser, over its DevTools WebSocket."""

    def __init__(self, socket: websockets.ClientConnection) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self.requested: list[str] = []
        self.console_errors: list[str] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result, noting the events on the way."""
        call_id = next(self._ids)
        await self._socket.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(await self._socket.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self._note(message)

    def _note(self, event: dict[str, Any]) -> None:
        params = event.get("params", {})
        if event.get("method") == "Network.requestWillBeSent":
            self.requested.append(params["request"]["url"])
        elif event.get("method") == "Runtime.exceptionThrown":
            self.console_errors.append(json.dumps(params["exceptionDetails"])[:500])

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited if it is a promise)."""
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, *, timeout_s: float = 20.0) -> Any:
        """Evaluate ``expression`` until it is truthy; its value."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{expression} stayed falsy for {timeout_s:g} s")
            await asyncio.sleep(0.1)


def _devtools_port(profile: Path, process: subprocess.Popen[bytes]) -> int:
    # Chromium writes the port it picked for --remote-debugging-port=0 into the profile.
    active_port = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while not active_port.exists() or not active_port.read_text().strip():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("Chromium did not start its DevTools endpoint")
        time.sleep(0.05)
    return int(active_port.read_text().split()[0])


def _start_chromium(profile: Path) -> subprocess.Popen[bytes]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("needs Chromium (`chromium` on PATH): install the Debian package chromium")
    command = [
        chromium,
        "--headless",
        "--no-sandbox",  # the tests may run as root, where Chromium's sandbox refuses to start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        *OFFLINE_FLAGS,
        "about:blank",
    ]
    return subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,  # noqa: PLW1509 (one prctl call, allocation-free)
    )


@contextlib.asynccontextmanager
async def offline_chromium(profile: Path) -> AsyncIterator[DevToolsPage]:
    """A blank page in a headless Chromium that reaches only loopback; skips the test, naming
    the Debian package, when there is no Chromium."""
    process = _start_chromium(profile)
    try:
        port = await asyncio.to_thread(_devtools_port, profile, process)
        async with httpx.AsyncClient() as http:
            targets = (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
        page = next(target for target in targets if target["type"] == "page")
        async with websockets.connect(page["webSocketDebuggerUrl"], max_size=None) as socket:
            devtools = DevToolsPage(socket)
            await devtools.call("Network.enable")
            await devtools.call("Runtime.enable")
            await devtools.call("Page.enable")
            yield devtools
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
