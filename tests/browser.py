"""A headless Chromium for page tests, driven through ChromeDriver's W3C WebDriver HTTP API (standard library only).

``.ci/run`` installs Debian's ``chromium`` and ``chromium-driver``. Where they are missing, ``browser()`` skips
locally and fails in CI (``TRAITSCOPE_REQUIRE_BROWSER=1``), so a page test can never pass unseen.
"""

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

import pytest

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


# The token viewer's panels as data: per panel and prompt, each token's text, score, colour and prefill flag.
PANEL_JS = """
const out = [];
document.querySelectorAll('.toks').forEach((t) => out.push({panel: t.dataset.panel, id: t.dataset.id,
  tokens: [...t.querySelectorAll('.tok')].map((s) => ({text: s.textContent, score: s.dataset.score === undefined ?
    null : Number(s.dataset.score), bg: getComputedStyle(s).backgroundColor, pre: s.classList.contains('pre')}))}));
return out;
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Browser:
    """One WebDriver session: open a page, run JavaScript in it, hover an element, take a screenshot."""

    def __init__(self, url: str, size: tuple[int, int] = (1400, 1000)) -> None:
        self.url = url
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": shutil.which("chromium") or "/usr/bin/chromium",
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-dev-shm-usage",
                            "--disable-gpu",
                            f"--window-size={size[0]},{size[1]}",
                        ],
                    },
                }
            }
        }
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body if body is not None else {}).encode() if method == "POST" else None
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.loads(resp.read())["value"]

    def _s(self, path: str) -> str:
        return f"/session/{self.session}{path}"

    def open(self, url: str) -> None:
        self._call("POST", self._s("/url"), {"url": url})

    def js(self, script: str, *args: Any) -> Any:
        """Run ``script`` (a function body; ``arguments`` holds ``args``) in the page and return its value."""
        return self._call("POST", self._s("/execute/sync"), {"script": script, "args": list(args)})

    def select(self, element_id: str, value: str) -> None:
        """Choose ``value`` in the ``<select id=element_id>`` as a user would (the change event fires)."""
        self.js(
            "const s = document.getElementById(arguments[0]); s.value = arguments[1];"
            "s.dispatchEvent(new Event('change'));",
            element_id,
            value,
        )

    def hover(self, css: str, index: int = 0) -> None:
        """Move the real pointer onto the ``index``-th element matching ``css``."""
        found = self._call("POST", self._s("/elements"), {"using": "css selector", "value": css})
        el = found[index]
        self._call(
            "POST",
            self._s("/actions"),
            {
                "actions": [
                    {
                        "type": "pointer",
                        "id": "mouse",
                        "parameters": {"pointerType": "mouse"},
                        "actions": [
                            {"type": "pointerMove", "duration": 0, "origin": {ELEMENT: el[ELEMENT]}, "x": 0, "y": 0}
                        ],
                    }
                ]
            },
        )

    def console_errors(self) -> list[str]:
        return self.js("return window.__errors || [];")

    def screenshot(self, path: str | Path) -> Path:
        Path(path).write_bytes(base64.b64decode(self._call("GET", self._s("/screenshot"))))
        return Path(path)

    def quit(self) -> None:
        self._call("DELETE", self._s(""))


@contextmanager
def browser(size: tuple[int, int] = (1400, 1000)) -> Iterator[Browser]:
    """A headless Chromium whose window is ``size`` (width, height) pixels."""
    driver = shutil.which("chromedriver")
    chromium = shutil.which("chromium")
    if not (driver and chromium):
        message = "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("TRAITSCOPE_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    port = _free_port()
    proc = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/status", timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        b = Browser(url, size)
        try:
            yield b
        finally:
            b.quit()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
