"""The run browser: a small HTTP server over a runs root (``rnnpool-nas browse``).

``/`` is an index of the runs directly under the root (name, date, space, budget, trials, best
accuracy under budget), each linking to ``/<name>/report.html``. A report is written on demand
when it is missing or older than the run's ``trials.parquet``. Any other regular file inside
the root is served as it is; nothing outside it ever is: ``..`` segments (however encoded),
hidden files, and symlinks that resolve outside the root are refused (403 or 404).

Standard library only (``http.server.ThreadingHTTPServer``); it binds 127.0.0.1 unless told
otherwise. A port in use is a one-line :class:`UserError`. A request whose ``Host`` is not
127.0.0.1, localhost or the bound host is refused (403: a DNS-rebinding page cannot read the
runs), a path over ``MAX_PATH`` characters is a 414, a file-system error a 404, and request lines
reach the log with their control characters escaped.
"""

from __future__ import annotations

import errno
import html
import ipaddress
import mimetypes
import os
import socket
import socketserver
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote, unquote, urlsplit

from ..errors import UserError
from ..run.store import TRIALS
from .page import CSS, REPORT, write_report
from .run import RunView, display_path, is_run


#: the longest request path served (longer: 414); real paths are a run name and a file name
MAX_PATH = 2048


def escape_log(text: str) -> str:
    """``text`` with every non-printable character as a ``\\xNN``/``\\uNNNN`` escape, so a
    request line cannot move the console's cursor, change its colours or forge log lines."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def list_runs(root: Path) -> list[Path]:
    """The run directories directly under ``root`` (the root itself if it is one), newest
    first."""
    runs = [root] if is_run(root) else []
    try:
        children = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and is_run(p)]
    except OSError:
        children = []
    key = lambda p: (p / "config.json").stat().st_mtime  # noqa: E731
    return runs + sorted(children, key=key, reverse=True)


def report_is_stale(run_dir: Path) -> bool:
    """Whether ``run_dir/report.html`` is missing or older than its trial table."""
    report, table = run_dir / REPORT, run_dir / TRIALS
    if not report.exists():
        return True
    return table.exists() and table.stat().st_mtime > report.stat().st_mtime


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def render_index(root: Path) -> str:
    """The runs index page of ``root``."""
    rows = []
    for run in list_runs(root):
        href = quote(REPORT if run == root else f"{run.name}/{REPORT}")
        try:
            s = RunView.load(run).summary()
        except UserError as exc:
            rows.append(f'<tr class="broken"><td class="left">{_e(run.name)}</td>'
                        f'<td class="left" colspan="7">{_e(exc)}</td></tr>')
            continue
        trials = f"{s['trials']}" + (f" / {s['planned']}" if s["planned"] else "")
        if s["running"]:
            trials += f" ({s['running']} running)"
        best = f"{s['best_accuracy']:.4f} (trial {s['best_trial']})" if s["best_accuracy"] is not None else "–"
        final = (f"{s['best_final_int8_accuracy']:.4f} (trial {s['best_final_trial']})"
                 if s.get("best_final_int8_accuracy") is not None else "–")
        rows.append(f'<tr class="run"><td class="left"><a href="{href}">{_e(s["name"])}</a></td>'
                    f'<td class="left">{_e(s["created"])}</td><td class="left">{_e(s["space"])}</td>'
                    f'<td class="left">{_e(s["budget"])}</td><td>{_e(trials)}</td><td>{_e(best)}</td>'
                    f'<td>{s["finalists"]}</td><td>{_e(final)}</td></tr>')
    if rows:
        body = ('<table id="runs"><tr><th class="left">run</th><th class="left">started</th><th class="left">space</th>'
                '<th class="left">budget</th><th>trials</th><th>best accuracy under budget</th><th>finalists</th>'
                '<th>best int8 test (finalized)</th></tr>'
                + "".join(rows) + "</table>")
    else:
        body = (f'<div class="notice">No runs under <code>{_e(display_path(root))}</code> yet: '
                "<code>rnnpool-nas search --out runs/NAME ...</code> makes one.</div>")
    where = display_path(root)
    footer = (f"<footer>A run's Optuna study opens in optuna-dashboard: <code>optuna-dashboard "
              f"sqlite:///{_e(where)}/NAME/study.db</code>. Finalists on the command line: "
              f"<code>rnnpool-nas pareto {_e(where)}/NAME</code>.</footer>")
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>rnnpool-nas runs</title>'
            f'<link rel="icon" href="data:,"><style>{CSS}</style></head><body><main>'
            f'<h1>rnnpool-nas runs</h1><p class="meta">{_e(where)} · {len(rows)} run(s) · '
            f'{_e(time.strftime("%Y-%m-%d %H:%M:%S"))}</p>{body}{footer}</main></body></html>\n')


class _Handler(BaseHTTPRequestHandler):
    server: "RunsServer"
    server_version = "rnnpool-nas-browse"

    def do_HEAD(self) -> None:  # noqa: N802
        self._respond(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._respond(head=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.log is not None:  # a request line is the client's: never raw control characters
            line = escape_log(f"{self.address_string()} {format % args}")
            self.server.log(line if len(line) <= 400 else f"{line[:300]}...({len(line)} characters)")

    # ----------------------------------------------------------------------------------

    def _respond(self, head: bool) -> None:
        try:
            status, body, ctype, extra = self._route()
        except Exception as exc:  # a bug: answer 500 (the client learns nothing of it), log it, keep serving
            if self.server.log is not None:
                self.server.log(escape_log(f"internal error on {self.path[:200]}: {type(exc).__name__}: {exc}"[:500]))
            status, body, ctype, extra = self._text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _text(self, status: HTTPStatus, message: str) -> tuple[HTTPStatus, bytes, str, dict]:
        return status, f"{status.value} {status.phrase}: {message}\n".encode(), "text/plain; charset=utf-8", {}

    def _route(self) -> tuple[HTTPStatus, bytes, str, dict]:
        if not self.server.host_allowed(self.headers.get("Host")):
            # a DNS-rebinding page reaches us under its own name: answer only to names we listen as
            return self._text(HTTPStatus.FORBIDDEN, "unknown Host header (browse answers to 127.0.0.1, localhost "
                                                    "and the host it listens on)")
        if len(self.path) > MAX_PATH:
            return self._text(HTTPStatus.REQUEST_URI_TOO_LONG, f"paths are at most {MAX_PATH} characters")
        try:
            return self._serve(self.server.root, urlsplit(self.path).path)
        except OSError:  # a name too long for the file system, a permission, a vanished file
            return self._text(HTTPStatus.NOT_FOUND, "no such file")

    def _serve(self, root: Path, raw: str) -> tuple[HTTPStatus, bytes, str, dict]:
        path = unquote(raw)
        if "\x00" in path or "\\" in path:
            return self._text(HTTPStatus.BAD_REQUEST, "bad path")
        parts = [p for p in path.split("/") if p]
        if any(p in (".", "..") for p in parts):
            return self._text(HTTPStatus.FORBIDDEN, "outside the runs root")
        if any(p.startswith(".") for p in parts):
            return self._text(HTTPStatus.NOT_FOUND, "no such file")
        if not parts:
            return HTTPStatus.OK, render_index(root).encode(), "text/html; charset=utf-8", {}
        target = root.joinpath(*parts)
        resolved = target.resolve()
        if not resolved.is_relative_to(root):
            return self._text(HTTPStatus.FORBIDDEN, "outside the runs root")
        if resolved.is_dir():
            if is_run(resolved):
                return HTTPStatus.FOUND, b"", "text/plain", {"Location": "/" + quote("/".join(parts)) + "/" + REPORT}
            return self._text(HTTPStatus.NOT_FOUND, "not a run")
        if parts[-1] == REPORT and is_run(resolved.parent):
            try:
                self.server.ensure_report(resolved.parent)
            except UserError as exc:
                return self._text(HTTPStatus.NOT_FOUND, str(exc))
        if not resolved.is_file():
            return self._text(HTTPStatus.NOT_FOUND, "no such file")
        ctype = mimetypes.guess_type(resolved.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype == "application/json":
            ctype += "; charset=utf-8"
        return HTTPStatus.OK, resolved.read_bytes(), ctype, {}


class RunsServer(ThreadingHTTPServer):
    """The browse server of one runs root; :func:`make_server` builds it, ``serve_forever``
    runs it. ``url`` is where it listens; ``log`` (a one-argument callable or ``None``)
    receives one line per request."""

    daemon_threads = True

    def __init__(self, root: Path, host: str, port: int, log: Callable[[str], None] | None = None) -> None:
        self.root = root.resolve()
        self.log = log
        self.host = host
        self._lock = threading.Lock()
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host's name up (getfqdn), slow without DNS: skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    @property
    def url(self) -> str:
        host = self.server_name
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.server_port}/"

    def host_allowed(self, header: str | None) -> bool:
        """Whether a request's ``Host`` names this server: 127.0.0.1, localhost, ::1 or the host
        it was bound to (with or without the port). Bound to every interface (0.0.0.0, ::), an IP
        literal or this machine's name is also accepted: DNS rebinding needs a domain name. No
        Host header (HTTP/1.0 clients) is accepted, browsers always send one."""
        if header is None:
            return True
        name = header.strip().lower()
        if name.startswith("["):  # [::1]:8765
            name = name[1:].split("]", 1)[0]
        elif name.count(":") == 1:
            name, _, port = name.partition(":")
            if not port.isdigit():
                return False
        allowed = {"127.0.0.1", "localhost", "::1", str(self.host).lower(), str(self.server_name).lower()}
        if name in allowed:
            return True
        if self.host in ("0.0.0.0", "::", ""):
            try:
                ipaddress.ip_address(name)
                return True
            except ValueError:
                return name in {socket.gethostname().lower(), socket.getfqdn().lower()}
        return False

    def ensure_report(self, run_dir: Path) -> None:
        """Write ``run_dir``'s report if it is missing or stale (one writer at a time)."""
        with self._lock:
            if report_is_stale(run_dir):
                write_report(run_dir)


def make_server(root: str | os.PathLike = "runs", host: str = "127.0.0.1", port: int = 8765,
                log: Callable[[str], None] | None = None) -> RunsServer:
    """A :class:`RunsServer` bound to ``host:port`` (``port=0``: any free port), not yet
    serving. A root that is not a folder, a port in use or a host that cannot be bound is a
    one-line :class:`UserError`."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder of runs (no such folder)")
    if not 0 <= int(port) <= 65535:
        raise UserError(f"--port must be between 0 and 65535, got {port}")
    try:
        return RunsServer(root, host, int(port), log=log)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is in use (another browse?); pass --port N, "
                            "or --port 0 for any free port") from None
        if exc.errno == errno.EACCES:
            raise UserError(f"no permission to listen on port {port} (ports below 1024 need root); "
                            "pass --port 8765") from None
        if isinstance(exc, socket.gaierror) or exc.errno in (errno.EADDRNOTAVAIL,):
            raise UserError(f"cannot listen on host {host!r}: {exc.strerror or exc}") from None
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve(root: str | os.PathLike = "runs", host: str = "127.0.0.1", port: int = 8765,
          printer: Callable[[str], None] = print) -> None:
    """Serve the runs under ``root`` until Ctrl-C (see the module docstring)."""
    server = make_server(root, host, port, log=lambda line: print(line, file=sys.stderr))
    runs = len(list_runs(server.root))
    printer(f"serving {runs} run(s) from {display_path(server.root)} at {server.url} (Ctrl-C stops)")
    if host not in ("127.0.0.1", "localhost", "::1"):
        printer(f"note: listening on {host}, so other machines can read these runs")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        printer("stopped")
    finally:
        server.server_close()


__all__ = ["MAX_PATH", "RunsServer", "escape_log", "list_runs", "make_server", "render_index", "report_is_stale", "serve"]
