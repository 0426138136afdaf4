"""The report and the runs index in a real browser (headless Chromium over the DevTools pipe):
no console errors, every plot drawn by plotly.js, and a screenshot to look at.

Slow (Chromium takes seconds to start), so it runs in `make test`'s second pass (`pytest -m
slow`), which CI runs. Without Chromium it fails, saying how to install it; only
RNNPOOL_NAS_NO_BROWSER=1 skips it.
"""

from __future__ import annotations

import os
import struct
import threading

import pytest

from rnnpool_nas.errors import UserError
from rnnpool_nas.report import make_server
from rnnpool_nas.report.browser import check_page, find_chromium
from rnnpool_nas.run.budget import Budget

from .report_fixture import FIGURE_RE, make_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium() -> str:
    if os.environ.get("RNNPOOL_NAS_NO_BROWSER") == "1":
        pytest.skip("RNNPOOL_NAS_NO_BROWSER=1")
    try:
        return find_chromium()
    except UserError as exc:
        pytest.fail(f"{exc} (set RNNPOOL_NAS_NO_BROWSER=1 to skip the browser tests)")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser") / "runs"
    make_run(root / "fm-8k", trials=40)
    make_run(root / "none-done", trials=8, complete=False)
    make_run(root / "cost-only", trials=16, outcome="scored")  # a search --cost-only: nothing trained
    make_run(root / "all-done", trials=8, budget=Budget(ram_bytes=4 * 2**20, name="roomy"), outcome="complete")
    srv = make_server(root, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv, root
    srv.shutdown()
    srv.server_close()


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_the_report_renders_without_errors(chromium, served, tmp_path):
    server, root = served
    shot = tmp_path / "report.png"
    check = check_page(server.url + "fm-8k/report.html", screenshot=shot)
    print(f"\nscreenshot of the report: {shot}")
    assert check.errors == [], check.errors
    expected = [plot_id for plot_id, _, _ in FIGURE_RE.findall((root / "fm-8k" / "report.html").read_text())]
    assert check.ids == expected and len(expected) >= 8  # every figure became a plot, in page order
    assert check.empty == 0 and check.svgs >= 2 * len(expected)
    assert check.parcoords == 1 and check.points > 40 and check.bars > 0
    assert check.title == "fm-8k: rnnpool-nas report"
    width, height = png_size(shot)
    assert width == 1400 and height >= 2400


@pytest.mark.parametrize("name", ["fm-8k", "cost-only", "all-done", "none-done"])
def test_every_plot_can_be_read(chromium, served, name):
    """Every cartesian plot shows tick labels and a title on both axes, whatever the run holds: a
    mixed run, a --cost-only run (no accuracy at all), a run where nothing is over budget or
    failed (no strip under the Pareto plots), a run with nothing complete."""
    server, root = served
    check = check_page(server.url + f"{name}/report.html")
    assert check.errors == [], check.errors
    pareto = [i for i in check.ids if i.startswith("pareto-")]
    assert pareto and set(pareto) <= set(check.axes) and "progress" in check.axes
    for plot_id, axes in check.axes.items():
        for what in ("xticks", "yticks", "xtitles", "ytitles"):
            assert axes[what], (name, plot_id, what, axes)
    for plot_id in pareto:
        assert any(t.endswith("log scale") for t in check.axes[plot_id]["xtitles"]), check.axes[plot_id]


def test_the_index_and_an_empty_report_render_without_errors(chromium, served, tmp_path):
    server, _ = served
    shot = tmp_path / "index.png"
    index = check_page(server.url, screenshot=shot, height=800)
    print(f"\nscreenshot of the index: {shot}")
    assert index.errors == [], index.errors
    assert {"fm-8k/report.html", "none-done/report.html"} <= set(index.links)
    empty = check_page(server.url + "none-done/report.html")
    assert empty.errors == [], empty.errors
    assert empty.plots >= 3 and empty.empty == 0


def test_the_check_sees_errors(chromium, tmp_path):
    """The harness is not blind: console.error and uncaught exceptions are caught."""
    page = tmp_path / "bad.html"
    page.write_text('<html><body><div class="plot"></div><script>console.log("fine"); console.error("boom");'
                    "missingFunction();</script></body></html>")
    check = check_page(page.as_uri())
    assert "boom" in check.errors and any("missingFunction" in e for e in check.errors)
    assert "log: fine" in check.console and check.plots == 0 and check.empty == 1


def test_the_screenshot_script(chromium, served, capsys):
    """scripts/screenshot_report.py, what a user runs to get runs/NAME/report.png."""
    import importlib.util
    from pathlib import Path

    _, root = served
    script = Path(__file__).parents[1] / "scripts" / "screenshot_report.py"
    spec = importlib.util.spec_from_file_location("screenshot_report", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([str(root / "none-done")]) == 0
    out = capsys.readouterr().out
    assert "0 not drawn, 0 console error(s)" in out
    assert png_size(root / "none-done" / "report.png")[0] == 1400
