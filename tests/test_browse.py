"""The run browser: index, reports written on demand, nothing served outside the runs root."""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from rnnpool_nas.cli import main
from rnnpool_nas.errors import UserError
from rnnpool_nas.report import make_server

from .conftest import one_line_error
from .report_fixture import make_run

SECRET = "top secret, outside the runs root"


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """base/secret.txt outside the root; base/runs/{fm-8k, none-done, notes/} and symlinks
    inside the root pointing out of it."""
    base = tmp_path_factory.mktemp("browse")
    (base / "secret.txt").write_text(SECRET)
    (base / "outside").mkdir()
    (base / "outside" / "secret.txt").write_text(SECRET)
    root = base / "runs"
    make_run(root / "fm-8k", trials=30, seed=2)
    make_run(root / "none-done", trials=8, complete=False)
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a run")
    (root / "fm-8k" / ".hidden").write_text("hidden")
    os.symlink(base / "outside", root / "link-dir")
    os.symlink(base / "secret.txt", root / "fm-8k" / "link-file.txt")
    return root


@pytest.fixture(scope="module")
def server(tree):
    srv = make_server(tree, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def get(server, path: str) -> tuple[int, str, dict]:
    """A raw GET (http.client sends the path as given: no normalisation of ``..``)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=30)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read().decode(errors="replace")
    conn.close()
    return resp.status, body, dict(resp.getheaders())


def test_listens_on_localhost_by_default(server):
    assert server.server_address[0] == "127.0.0.1" and server.url.startswith("http://127.0.0.1:")


def test_index_lists_every_run(server, tree):
    with urllib.request.urlopen(server.url, timeout=30) as resp:
        page = resp.read().decode()
    assert resp.status == 200
    assert 'href="fm-8k/report.html"' in page and 'href="none-done/report.html"' in page
    assert "notes" not in page  # not a run
    table = pd.read_parquet(tree / "fm-8k" / "trials.parquet")
    complete = table[(table["status"] == "complete") & table["feasible"]]
    best = complete.sort_values(["accuracy", "trial"], ascending=[False, True]).iloc[0]
    assert f"{best['accuracy']:.4f} (trial {best['trial']})" in page
    assert f"<td>{len(table)} / 30</td>" in page and "fm-8k: RAM &lt;= 8.0 KiB, int8, standard" in page
    assert "2026-01-02 03:04:05" in page and "fashion-mnist" in page


def test_reports_are_written_on_demand_and_when_stale(server, tree):
    run = tree / "fm-8k"
    report = run / "report.html"
    report.unlink(missing_ok=True)
    status, page, headers = get(server, "/fm-8k/report.html")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert report.exists() and 'data-plot="pareto-peak_ram_bytes"' in page
    written = report.stat().st_mtime_ns
    assert get(server, "/fm-8k/report.html")[0] == 200
    assert report.stat().st_mtime_ns == written  # fresh: served as it is
    later = time.time() + 5
    os.utime(run / "trials.parquet", (later, later))  # the search recorded a trial
    assert get(server, "/fm-8k/report.html")[0] == 200
    assert report.stat().st_mtime_ns > written
    status, page, _ = get(server, "/none-done/report.html")
    assert status == 200 and 'id="no-complete"' in page


def test_a_run_folder_redirects_to_its_report(server):
    status, _, headers = get(server, "/fm-8k")
    assert status == 302 and headers["Location"] == "/fm-8k/report.html"


def test_files_inside_the_root_are_served(server, tree):
    status, body, headers = get(server, "/fm-8k/pareto.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert body == (tree / "fm-8k" / "pareto.json").read_text()
    assert get(server, "/notes/readme.txt")[0] == 200


@pytest.mark.parametrize("path", [
    "/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E%2Fsecret.txt", "/fm-8k/../../secret.txt",
    "/fm-8k/%2e%2e/%2e%2e/secret.txt", "/link-dir/secret.txt", "/fm-8k/link-file.txt", "/fm-8k/.hidden",
    "/..%2f..%2fsecret.txt", "/fm-8k/%00", "/fm-8k/..%5c..%5csecret.txt", "/nothing-here", "/notes",
])
def test_nothing_outside_the_root_is_served(server, path):
    status, body, _ = get(server, path)
    assert status in (400, 403, 404), (path, status)
    assert SECRET not in body and "hidden" != body


def test_a_port_in_use_is_one_clear_error(tree, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(UserError) as excinfo:
            make_server(tree, "127.0.0.1", port)
        one_line_error(excinfo, f"port {port}", "in use", "--port")
        assert main(["browse", str(tree), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "in use" in err


def test_bad_roots_and_ports(tmp_path):
    with pytest.raises(UserError) as excinfo:
        make_server(tmp_path / "missing", "127.0.0.1", 0)
    one_line_error(excinfo, "not a folder of runs")
    with pytest.raises(UserError) as excinfo:
        make_server(tmp_path, "127.0.0.1", 70000)
    one_line_error(excinfo, "--port")


def test_an_empty_root_says_how_to_make_a_run(tmp_path):
    srv = make_server(tmp_path, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        status, page, _ = get(srv, "/")
    finally:
        srv.shutdown()
        srv.server_close()
    assert status == 200 and "No runs under" in page and "rnnpool-nas search" in page
