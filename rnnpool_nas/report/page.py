"""The report page: one self-contained HTML file per run, ``runs/<name>/report.html``.

The page works offline: plotly.js is embedded once in ``<head>`` (what plotly's
``include_plotlyjs=True`` embeds; no CDN), and every figure is a JSON document in a
``<script type="application/json" data-plot=ID>`` block that one small script hands to
``Plotly.newPlot``. So a reader can pull any figure's numbers out of the page as JSON, and the
plots exist in the DOM only if plotly.js ran.

Sections: a summary (budget, trials per status, best accuracy under budget, hypervolume), the
Pareto scatter plots (accuracy against peak RAM, MAdds and latency when known), the finalists
with the command that exports each, each finalist's per-stage RAM profile, the hyperparameters
in parallel coordinates, and hypervolume / best accuracy over trials. A run without a completed
trial gets a page that says so.
"""

from __future__ import annotations

import functools
import html
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

import plotly.graph_objects as go

from ..arch.spec import SpecError, load_spec
from ..errors import UserError
from ..units import format_bytes
from ..run.store import STUDY, write_atomic
from . import plots
from .run import STATUS_LABELS, RunView, display_path

REPORT = "report.html"

PLOT_CONFIG = {"responsive": True, "displaylogo": False}

CSS = """
:root { --fg: #1d2430; --muted: #5b6473; --line: #e3e7ee; --accent: #1f77b4; --bad: #d62728; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--fg); background: #f6f7f9; }
main { max-width: 1360px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 30px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
a { color: var(--accent); }
.meta { color: var(--muted); margin: 0; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 16px 0 4px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px; min-width: 120px; }
.card b { display: block; font-size: 20px; }
.card span { color: var(--muted); font-size: 13px; }
.notice { background: #fff8e1; border: 1px solid #f3d37a; border-radius: 8px; padding: 12px 16px; margin: 16px 0; }
.panel { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 6px; margin: 10px 0; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 12px; }
.grid .panel { margin: 0; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: 14px; }
th, td { border-bottom: 1px solid var(--line); padding: 6px 10px; text-align: right; vertical-align: top;
         white-space: nowrap; }
th { background: #eef1f5; font-weight: 600; }
td.left, th.left { text-align: left; white-space: normal; }
code { font: 13px/1.4 ui-monospace, "DejaVu Sans Mono", monospace; background: #eef1f5; padding: 2px 5px;
       border-radius: 4px; overflow-wrap: anywhere; }
details summary { cursor: pointer; color: var(--muted); }
.params { font: 12px/1.5 ui-monospace, "DejaVu Sans Mono", monospace; color: var(--muted); text-align: left; }
footer { margin-top: 32px; color: var(--muted); font-size: 13px; }
"""

RENDER_JS = """
window.rnnpoolPlotted = Promise.all(Array.from(document.querySelectorAll('script[type="application/json"][data-plot]'))
  .map(function (node) {
    var fig = JSON.parse(node.textContent);
    return Plotly.newPlot(document.getElementById(node.dataset.plot), fig.data, fig.layout, %s);
  }));
""" % json.dumps(PLOT_CONFIG)


@functools.lru_cache(maxsize=1)
def plotly_js() -> str:
    """plotly.js, as ``include_plotlyjs=True`` embeds it (read once per process)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def figure_json(fig: go.Figure) -> str:
    """A figure as JSON safe inside a ``<script>`` element (every ``<`` escaped)."""
    return fig.to_json(validate=False).replace("<", "\\u003c")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


class _Figures:
    """Collects the page's figures: ``block`` returns the div and its JSON."""

    def __init__(self) -> None:
        self.count = 0

    def block(self, fig: go.Figure, plot_id: str, kind: str) -> str:
        self.count += 1
        return (f'<div class="panel"><div id="{_e(plot_id)}" class="plot" data-kind="{_e(kind)}"></div></div>\n'
                f'<script type="application/json" data-plot="{_e(plot_id)}" data-kind="{_e(kind)}">'
                f"{figure_json(fig)}</script>\n")


def _card(value: str, label: str) -> str:
    return f'<div class="card"><b>{_e(value)}</b><span>{_e(label)}</span></div>'


def _summary(view: RunView) -> str:
    counts = view.counts()
    planned = view.planned_trials
    done = len(view.trials)
    cards = [_card(f"{done}" + (f" / {planned}" if planned else ""), "trials finished")]
    for status, n in counts.items():
        if n or status in ("complete", "infeasible"):
            cards.append(_card(str(n), STATUS_LABELS[status]))
    if view.running:
        cards.append(_card(str(view.running), "running now"))
    best = view.best_under_budget()
    cards.append(_card(f"{best['accuracy']:.4f}" if best else "–",
                       f"best accuracy under budget (trial {int(best['trial'])})" if best else "best accuracy under budget"))
    hv = view.hypervolume()
    if hv is not None:
        cards.append(_card(f"{hv:.4f}", "accuracy/RAM hypervolume"))
    cards.append(_card(str(len(view.finalists)), "finalists"))
    return f'<div class="cards">{"".join(cards)}</div>'


def _notice(view: RunView) -> str:
    if view.completed():
        return ""
    counts = view.counts()
    if not len(view.trials):
        what = "No trial has finished yet"
    else:
        parts = ", ".join(f"{n} {STATUS_LABELS[s]}" for s, n in counts.items() if n)
        what = f"No trial has completed within the budget yet ({parts})"
    running = f"; {view.running} running" if view.running else ""
    return (f'<div class="notice" id="no-complete"><b>{_e(what + running)}</b>, so there is no Pareto front and no '
            "finalist yet. The plots show what has finished; this page is rewritten as the search goes on.</div>")


def _finalists(view: RunView) -> str:
    table = view.finalists_table()
    if not table:
        return '<p class="meta">No finalist yet: finalists are the complete trials within budget that no other beats.</p>'
    has_latency = any(f["latency_ms"] is not None for f in table)
    has_final = any(f.get("final_int8_accuracy") is not None for f in table)
    head = ("<tr><th>trial</th><th>accuracy</th><th>peak RAM</th><th>MAdds</th><th>params</th><th>model</th>"
            + ("<th>latency</th>" if has_latency else "")
            + ("<th>test float</th><th>test int8</th>" if has_final else "")
            + '<th>epochs</th><th class="left">export it with</th></tr>')
    body = []
    for f in table:
        params = ", ".join(f"{k}={plots._fmt(v)}" for k, v in f["hyperparameters"].items() if v is not None)
        latency = f"<td>{f['latency_ms']:.2f} ms</td>" if has_latency and f["latency_ms"] is not None else (
            "<td>–</td>" if has_latency else "")
        body.append(
            f'<tr id="finalist-{f["trial"]}"><td>{f["trial"]}</td><td>{f["accuracy"]:.4f}</td>'
            f"<td>{_e(format_bytes(f['peak_ram_bytes'], 'KiB'))}</td><td>{f['madds'] / 1e6:.3f}M</td>"
            f"<td>{f['params']:,}</td><td>{_e(format_bytes(f['model_bytes'], 'KiB'))}</td>{latency}"
            + ("".join("<td>–</td>" if f.get(k) is None else f"<td>{f[k]:.4f}</td>"
                       for k in ("final_float_accuracy", "final_int8_accuracy")) if has_final else "")
            + f"<td>{plots._fmt(f['epochs_trained'])}</td>"
            f'<td class="left"><code class="export">{_e(f["export_command"])}</code>'
            f'<details><summary>hyperparameters</summary><div class="params">{_e(params)}</div></details></td></tr>')
    return f'<table id="finalists">{head}{"".join(body)}</table>'


def _ram_profiles(view: RunView, figures: _Figures) -> str:
    blocks = []
    for f in view.finalists:
        trial = int(f["trial"])
        path = view.spec_path(trial)
        if path is None:
            blocks.append(f'<div class="panel meta">trial {trial}: arch.json is missing, no RAM profile</div>')
            continue
        try:
            costs = view.budget.costs(load_spec(str(path)), profile=True)
        except (SpecError, UserError) as exc:
            blocks.append(f'<div class="panel meta">trial {trial}: {_e(exc)}</div>')
            continue
        fig = plots.ram_profile_figure(costs, view.budget, f"trial {trial}")
        blocks.append(figures.block(fig, f"ram-profile-t{trial}", "ram_profile"))
    if not blocks:
        return ""
    return (f"<h2>RAM profile of each finalist</h2><p class='meta'>Peak RAM per stage ({_e(view.budget.dtype)}, "
            f"{_e(view.budget.convention)} convention); the red bar is the block that sets the peak.</p>"
            f'<div class="grid">{"".join(blocks)}</div>')


def render_report(view: RunView) -> str:
    """The report page of ``view`` as one HTML string (see the module docstring)."""
    figures = _Figures()
    sections = []
    scatter_columns = [c for c in plots.COST_AXES if view.has_column(c)]
    if len(view.trials) and scatter_columns:
        blocks = [figures.block(plots.pareto_figure(view, c), f"pareto-{c}", "pareto") for c in scatter_columns]
        sections.append("<h2>Pareto front</h2><p class='meta'>Every finished trial; hover a point for its "
                        "hyperparameters and costs. Trials without an accuracy (over budget, failed) sit in the "
                        "strip under each plot; the dashed line is the budget.</p>" + "".join(blocks))
    sections.append(f"<h2>Finalists</h2><p class='meta'>accuracy: the search's, on its validation split; test "
                    "float / int8: after <code>rnnpool-nas finalize</code> (full training, the test set scored once)."
                    f"</p>{_finalists(view)}")
    final = plots.final_front_figure(view)
    if final is not None:
        sections.append("<h2>Final front</h2><p class='meta'>The finalized models' int8 and float test accuracy "
                        "against peak RAM, next to the search's validation accuracy.</p>"
                        + figures.block(final, "final-front", "pareto"))
    sections.append(_ram_profiles(view, figures))
    parallel = plots.parallel_figure(view) if len(view.trials) else None
    if parallel is not None:
        sections.append("<h2>Hyperparameters</h2>" + figures.block(parallel, "parallel", "parallel"))
    if len(view.trials):
        sections.append("<h2>Progress over trials</h2>" + figures.block(plots.progress_figure(view), "progress", "progress"))
    cfg = view.config
    meta = [f"space <b>{_e(view.space_name)}</b>"]
    if cfg.get("dataset"):
        meta.append(f"data set <b>{_e(cfg['dataset'])}</b>")
    meta.append(f"budget <b>{_e(view.budget.describe())}</b>")
    meta.append(f"objectives {_e(', '.join(view.objectives))}")
    if cfg.get("sampler"):
        meta.append(f"sampler {_e(cfg['sampler'])}")
    if cfg.get("epochs"):
        meta.append(f"{_e(cfg['epochs'])} epoch(s) per trial")
    meta.append(f"started {_e(view.created)}")
    where = display_path(view.root)
    footer = (f"Written {_e(time.strftime('%Y-%m-%d %H:%M:%S'))} from <code>{_e(where)}/trials.parquet</code> and "
              f"<code>pareto.json</code>. The Optuna study: <code>optuna-dashboard sqlite:///{_e(where)}/{STUDY}</code>. "
              f"Refresh: <code>rnnpool-nas report {_e(where)}</code>.")
    head_js = f"<script>{plotly_js()}</script>" if figures.count else ""
    tail_js = f"<script>{RENDER_JS}</script>" if figures.count else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{_e(view.name)}: rnnpool-nas report</title><link rel="icon" href="data:,">'
        f"<style>{CSS}</style>{head_js}</head>\n<body><main>"
        f"<h1>{_e(view.name)}</h1><p class='meta'>{' · '.join(meta)}</p>"
        f"{_summary(view)}{_notice(view)}{''.join(sections)}<footer>{footer}</footer></main>{tail_js}</body></html>\n"
    )


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write the report of the run in ``run_dir`` to ``out`` (default ``run_dir/report.html``,
    atomically) and return its path. A folder that is not a run is a one-line
    :class:`UserError`; a run without a completed trial gets a page that says so."""
    view = RunView.load(run_dir)
    path = Path(out) if out is not None else view.root / REPORT
    page = render_report(view)
    try:
        write_atomic(path, page)
    except OSError as exc:  # a read-only run, a full disk: one line, and nothing else is touched
        raise UserError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None
    return path


class ReportRefresher:
    """Rewrites a run's report while its search runs, cheaply.

    Calling it writes the report unless one was written less than ``interval_s`` seconds ago
    (or ten times the last write's duration, whichever is longer, so a large run never spends
    more than a tenth of its time on the page); ``force=True`` writes regardless. It never
    raises: a failure is printed as one line and the caller (the search) goes on.
    """

    def __init__(self, run_dir: str | os.PathLike, interval_s: float = 30.0,
                 printer: Callable[[str], None] = print) -> None:
        self.run_dir = Path(run_dir)
        self.interval_s = interval_s
        self.printer = printer
        self.next_at = -math.inf
        self.writes = 0

    def __call__(self, force: bool = False) -> Path | None:
        now = time.monotonic()
        if not force and now < self.next_at:
            return None
        try:
            path = write_report(self.run_dir)
        except Exception as exc:  # a report must never stop a search
            first = (str(exc).splitlines() or [""])[0]
            self.printer(f"report not written ({type(exc).__name__}: {first[:200]})")
            path = None
        took = time.monotonic() - now
        self.next_at = now + max(self.interval_s, 10 * took)
        self.writes += path is not None
        return path


__all__ = ["REPORT", "ReportRefresher", "figure_json", "render_report", "write_report"]

