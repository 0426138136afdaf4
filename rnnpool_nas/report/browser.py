"""Check a page in headless Chromium: console errors, what the DOM holds, a screenshot.

Talks to Chromium over the DevTools protocol on ``--remote-debugging-pipe`` (file descriptors 3
and 4, JSON messages ended by a NUL byte), standard library only. Over the pipe console messages
keep their level, so ``console.error``, uncaught exceptions and failed loads are told apart from
``console.log`` (Chromium's ``--enable-logging`` stderr log prints them all as INFO).

    check = check_page("http://127.0.0.1:8765/", screenshot="index.png")
    check.errors        # [] when the page logged no error
    check.plots         # how many divs plotly.js turned into plots (class js-plotly-plot)

Chromium is Debian's ``chromium`` (``/usr/bin/chromium``; ``RNNPOOL_NAS_CHROMIUM`` overrides).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

#: What the page is asked once it has loaded and its plots are drawn (a report sets
#: ``window.rnnpoolPlotted``, the promise of every ``Plotly.newPlot``): a JSON string back.
PROBE = r"""Promise.resolve(window.rnnpoolPlotted).catch(() => null).then(() => JSON.stringify({
  title: document.title,
  plots: document.querySelectorAll('.js-plotly-plot').length,
  svgs: document.querySelectorAll('.js-plotly-plot .main-svg').length,
  points: document.querySelectorAll('.js-plotly-plot .scatterlayer .point').length,
  bars: document.querySelectorAll('.js-plotly-plot .barlayer .point').length,
  parcoords: document.querySelectorAll('.js-plotly-plot .parcoords').length,
  empty: Array.from(document.querySelectorAll('div.plot')).filter(d => !d.classList.contains('js-plotly-plot')).length,
  ids: Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => d.id),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href')),
  height: document.documentElement.scrollHeight,
  axes: Object.fromEntries(Array.from(document.querySelectorAll('.js-plotly-plot'))
    .filter(d => d.querySelector('.cartesianlayer .subplot')).map(d => {
      const texts = sel => Array.from(d.querySelectorAll(sel)).map(t => t.textContent.trim()).filter(t => t);
      const titles = re => Array.from(d.querySelectorAll('.infolayer g'))
        .filter(g => re.test(g.getAttribute('class') || '')).map(g => g.textContent.trim()).filter(t => t);
      return [d.id, {xticks: texts('[class^="x"][class$="tick"] text'), yticks: texts('[class^="y"][class$="tick"] text'),
                     xtitles: titles(/^g-x\d*title$/), ytitles: titles(/^g-y\d*title$/)}];
    })),
}))"""


def find_chromium() -> str:
    """The Chromium executable, or a one-line :class:`UserError` saying how to get it."""
    explicit = os.environ.get("RNNPOOL_NAS_CHROMIUM")
    if explicit:
        if shutil.which(explicit):
            return str(shutil.which(explicit))
        raise UserError(f"RNNPOOL_NAS_CHROMIUM={explicit} is not an executable")
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise UserError("Chromium is not installed: `apt-get install chromium` (Debian; `make install` does it as root), "
                    "or point RNNPOOL_NAS_CHROMIUM at a Chrome/Chromium executable")


@dataclass
class PageCheck:
    """What :func:`check_page` saw: ``errors`` (console errors, uncaught exceptions and
    error-level log entries, one line each), ``console`` (every console message as
    ``level: text``) and the DOM probe (``plots``, ``svgs``, ``points``, ``bars``,
    ``parcoords``, ``empty`` plot divs plotly.js did not fill, ``ids``, ``links``, ``title``,
    ``height``, and ``axes``: per cartesian plot id, its non-empty ``xticks``/``yticks`` labels and
    ``xtitles``/``ytitles``)."""

    url: str
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    probe: dict[str, Any] = field(default_factory=dict)
    screenshot: Path | None = None

    def __getattr__(self, name: str) -> Any:
        probe = self.__dict__.get("probe", {})
        if name in probe:
            return probe[name]
        raise AttributeError(name)


def _high(fds: tuple[int, int]) -> tuple[int, int]:
    """Both descriptors moved to numbers >= 10 (close-on-exec)."""
    out = tuple(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds)
    for fd in fds:
        os.close(fd)
    return out  # type: ignore[return-value]


class _Pipe:
    """One Chromium process and its DevTools pipe."""

    def __init__(self, executable: str, width: int, height: int) -> None:
        self.profile = tempfile.TemporaryDirectory(prefix="rnnpool-nas-chromium-")
        to_chrome_r, self.to_chrome = _high(os.pipe())
        self.from_chrome, from_chrome_w = _high(os.pipe())
        args = [executable, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
                "--enable-unsafe-swiftshader",  # software WebGL (plotly's parcoords) without a warning
                "--remote-debugging-pipe", f"--user-data-dir={self.profile.name}", f"--window-size={width},{height}",
                "about:blank"]
        # The protocol wants the pipe on fds 3 (commands in) and 4 (answers out); bash moves
        # them there (our ends are >= 10, so no collision) and execs Chromium.
        shell = f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w} {to_chrome_r}<&- {from_chrome_w}>&-'
        self.proc = subprocess.Popen(["/bin/bash", "-c", shell, *args], pass_fds=(to_chrome_r, from_chrome_w),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_chrome, json.dumps(message).encode() + b"\0")
        return self.next_id

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self.from_chrome], [], [], left)
            if ready:
                chunk = os.read(self.from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe: " + self._stderr_tail())
                self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict[str, Any]:
        wanted = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            message = self._read(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error'].get('message')}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait_event(self, method: str, session: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for i, event in enumerate(self.events):
            if event["method"] == method and event.get("sessionId") == session:
                return self.events.pop(i)
        while True:
            message = self._read(deadline)
            if "method" in message:
                if message["method"] == method and message.get("sessionId") == session:
                    return message
                self.events.append(message)

    def drain(self, seconds: float) -> None:
        """Collect events for ``seconds`` (late console messages)."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                message = self._read(deadline)
                if "method" in message:
                    self.events.append(message)
        except TimeoutError:
            pass

    def _stderr_tail(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(still running)"
        lines = self.proc.stderr.read().decode(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:])

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.send("Browser.close")
                self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            for fd in (self.to_chrome, self.from_chrome):
                try:
                    os.close(fd)
                except OSError:
                    pass
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            self.profile.cleanup()


def _describe(event: dict[str, Any]) -> tuple[str, str] | None:
    """(level, text) of a console/log/exception event, else ``None``."""
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.consoleAPICalled":
        text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
        return params.get("type", "log"), text
    if method == "Runtime.exceptionThrown":
        details = params.get("exceptionDetails", {})
        text = details.get("exception", {}).get("description") or details.get("text", "exception")
        return "error", f"uncaught {text.splitlines()[0]} (line {details.get('lineNumber')})"
    if method == "Log.entryAdded":
        entry = params.get("entry", {})
        return entry.get("level", "info"), f"{entry.get('text', '')} {entry.get('url', '')}".strip()
    return None


def check_page(url: str, screenshot: str | os.PathLike | None = None, width: int = 1400, height: int = 2400,
               timeout: float = 90.0, settle: float = 0.5) -> PageCheck:
    """Load ``url`` in headless Chromium, wait for its load event (plus ``settle`` seconds),
    probe the DOM (:data:`PROBE`) and collect console errors; with ``screenshot``, write a PNG
    of the whole page, ``width`` pixels wide (at least ``height`` tall). Chromium missing is a
    one-line :class:`UserError`; a page that never loads raises ``TimeoutError``."""
    pipe = _Pipe(find_chromium(), width, height)
    check = PageCheck(url)
    try:
        target = pipe.call("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
        session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Runtime.enable", "Log.enable", "Page.enable"):
            pipe.call(method, session=session)
        pipe.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        navigated = pipe.call("Page.navigate", {"url": url}, session=session, timeout=timeout)
        if navigated.get("errorText"):
            check.errors.append(f"navigation failed: {navigated['errorText']}")
            return check
        pipe.wait_event("Page.loadEventFired", session, timeout)
        pipe.drain(settle)
        value = pipe.call("Runtime.evaluate", {"expression": PROBE, "returnByValue": True, "awaitPromise": True},
                          session=session, timeout=timeout)
        check.probe = json.loads(value["result"]["value"])
        if screenshot is not None:
            full = max(height, int(check.probe.get("height") or height))
            pipe.call("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": full, "deviceScaleFactor": 1, "mobile": False}, session=session)
            pipe.drain(settle)  # responsive plots redraw for the new viewport
            shot = pipe.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                             session=session, timeout=timeout)
            check.screenshot = Path(screenshot)
            check.screenshot.parent.mkdir(parents=True, exist_ok=True)
            check.screenshot.write_bytes(base64.b64decode(shot["data"]))
        pipe.drain(0.1)
    finally:
        for event in pipe.events:
            described = _describe(event)
            if described is None:
                continue
            level, text = described
            check.console.append(f"{level}: {text}")
            if level in ("error", "assert"):
                check.errors.append(text)
        pipe.close()
    return check


__all__ = ["PageCheck", "check_page", "find_chromium"]
