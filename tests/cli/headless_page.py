"""A page in headless Chromium, driven over the DevTools protocol on a pipe (--remote-debugging-pipe): no websocket
client is needed, messages are NUL-terminated JSON on fds 3 (to Chromium) and 4 (from it)."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--remote-debugging-pipe")
REPLY_TIMEOUT_S = 60


def find_chromium() -> str | None:
    return next(filter(None, map(shutil.which, BROWSERS)), None)


class HeadlessPage:
    """One tab: `open(url)`, `upload(selector, file)`, `evaluate(js)`, `wait_for(js)`."""

    def __init__(self, chromium: str, profile: Path) -> None:
        self.log = profile / "chromium.log"
        profile.mkdir(parents=True, exist_ok=True)
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # Chromium reads fd 3 and writes fd 4: move the pipe ends there in the child (bash does the dup2).
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w}', chromium, *FLAGS,
             f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(to_browser_r, from_browser_w), stdout=subprocess.DEVNULL, stderr=self.log.open("wb"))
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer, self._next_id, self.session = b"", 0, None
        page = next(t for t in self._call("Target.getTargets")["targetInfos"] if t["type"] == "page")
        self.session = self._call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "DOM"):
            self._call(f"{domain}.enable")

    def close(self) -> None:
        self.process.kill()
        self.process.wait(10)
        os.close(self._to_browser)
        os.close(self._from_browser)

    def open(self, url: str) -> None:
        self._call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")

    def upload(self, selector: str, file: Path) -> None:
        """Sets the <input type=file> to `file` and fires its change event, as picking the file does."""
        root = self._call("DOM.getDocument")["root"]["nodeId"]
        node = self._call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        self._call("DOM.setFileInputFiles", nodeId=node, files=[str(file)])

    def evaluate(self, expression: str) -> Any:
        answer = self._call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in answer:
            raise AssertionError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"the page never made {expression} true in {timeout:.0f} s")

    def _call(self, method: str, **params: Any) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session is not None:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            if not select.select([self._from_browser], [], [], REPLY_TIMEOUT_S)[0]:
                raise AssertionError(f"Chromium did not answer in {REPLY_TIMEOUT_S} s: {self.log.read_text()[-2000:]}")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise AssertionError(f"Chromium exited: {self.log.read_text()[-2000:]}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)
