"""Looking at a run: the report page, the run browser and the finalists table.

Everything here only reads a run directory (``runs/<name>/``, written by the search) and writes
``report.html`` into it:

- :func:`write_report` (``rnnpool-nas report``): one self-contained, offline HTML page with
  the Pareto plots, the finalists and how to export them, their RAM profiles, the
  hyperparameters and the search's progress (``page.py``, figures in ``plots.py``).
- :func:`serve` (``rnnpool-nas browse``): an index of every run under a root, linking to each
  report, written on demand (``server.py``).
- :func:`finalists_table` (``rnnpool-nas pareto``): the finalists as plain dicts, each with the
  command that exports it.

``run.RunView`` is the read-only view of a run the three share; ``browser.py`` checks pages in
headless Chromium (tests, screenshots).
"""

from __future__ import annotations

import os
from typing import Any

from .page import REPORT, ReportRefresher, render_report, write_report
from .run import RunView, export_command
from .server import make_server, serve


def finalists_table(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The finalists of the run in ``run_dir``, best accuracy first: ``trial``, ``accuracy``,
    ``peak_ram_bytes``, ``madds``, ``params``, ``model_bytes``, ``latency_ms``,
    ``epochs_trained``, ``spec_path``, ``checkpoint_path``, ``hyperparameters`` and
    ``export_command``. Empty when no trial has completed within the budget; a folder that is
    not a run is a one-line :class:`~rnnpool_nas.errors.UserError`."""
    return RunView.load(run_dir).finalists_table()


__all__ = ["REPORT", "ReportRefresher", "RunView", "export_command", "finalists_table", "make_server",
           "render_report", "serve", "write_report"]
