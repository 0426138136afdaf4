"""The report's figures: plotly ``Figure`` builders, one per kind of plot, all pure functions.

Every builder reads a :class:`~rnnpool_nas.report.run.RunView` (or a spec's ``Costs``) and
returns a ``plotly.graph_objects.Figure`` whose numbers are the trial table's, in the units the
axis titles state (RAM in KiB = bytes / 1024, MAdds in millions, latency in ms). Scatter traces
carry each point's trial number in ``customdata`` so a reader (or a test) can map every point
back to its row of ``trials.parquet``.
"""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..cost import Costs
from ..run.budget import Budget
from ..run.pareto import pareto_front
from ..run.status import FINAL, STYLES
from ..run.status import UNTRAINED as _UNTRAINED
from ..units import KIB
from .run import STATUS_LABELS, RunView, plain

TEMPLATE = "plotly_white"

#: Per finished status: colour and marker symbol (``run.status.STYLES``).
STATUS_STYLE: dict[str, tuple[str, str]] = {s.value: (STYLES[s].color, STYLES[s].symbol) for s in FINAL}

#: The cost axes a Pareto plot can have: column -> (axis title, unit, scale from the column's
#: unit). The axes are logarithmic: costs span orders of magnitude.
COST_AXES: dict[str, tuple[str, str, float]] = {
    "peak_ram_bytes": ("peak RAM (KiB)", "KiB", 1 / KIB),
    "madds": ("MAdds (millions)", "M", 1e-6),
    "latency_ms": ("latency (ms)", "ms", 1.0),
}

FRONT_COLOR = "#2ca02c"
BUDGET_COLOR = "#d62728"
UNTRAINED = tuple(s.value for s in _UNTRAINED)  # no accuracy: drawn in the strip under the scatter


def budget_limit(budget: Budget, column: str) -> float | None:
    """The budget on ``column`` in the plot's unit (KiB, millions, ms), ``None`` if unlimited."""
    if column == "peak_ram_bytes" and budget.ram_bytes:
        return budget.ram_bytes / KIB
    if column == "madds" and budget.madds:
        return budget.madds / 1e6
    if column == "latency_ms" and budget.latency_s:
        return budget.latency_s * 1e3
    return None


def _fmt(value: Any, spec: str = "g") -> str:
    value = plain(value)
    if value is None:
        return "–"
    if isinstance(value, float) and spec == "g" and value.is_integer():
        return str(int(value))
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def hover_text(row: dict[str, Any], params: list[str]) -> str:
    """A point's hover box: trial, status, accuracy, costs, then every hyperparameter."""
    status = STATUS_LABELS.get(str(row.get("status")), str(row.get("status")))
    lines = [f"<b>trial {int(row['trial'])}</b> · {status}"]
    accuracy = plain(row.get("accuracy"))
    if accuracy is not None:
        lines.append(f"accuracy {accuracy:.4f} ({_fmt(row.get('epochs_trained'))} epoch(s))")
    ram = plain(row.get("peak_ram_bytes"))
    if ram is not None:
        lines.append(f"peak RAM {ram / KIB:,.2f} KiB · {_fmt(plain(row.get('madds')) and row['madds'] / 1e6, '.3f')}M MAdds")
        lines.append(f"{_fmt(row.get('params'), ',.0f')} params · model {_fmt(plain(row.get('model_bytes')) and row['model_bytes'] / KIB, ',.1f')} KiB")
    latency = plain(row.get("latency_ms"))
    if latency is not None:
        lines.append(f"latency {latency:.2f} ms")
    why = row.get("violations") if row.get("status") == "infeasible" else row.get("reason")
    if why:
        lines.append(f"<i>{str(why)[:90]}</i>")
    lines.append("")
    for column in params:
        value = plain(row.get(column))
        if value is not None:
            lines.append(f"{column[6:]} = {_fmt(value)}")
    return "<br>".join(lines)


def pareto_figure(view: RunView, column: str) -> go.Figure:
    """Accuracy against the cost ``column`` (a key of :data:`COST_AXES`).

    Top panel: trained trials (complete, stopped early) at their accuracy; the Pareto front of
    the complete, feasible ones on (accuracy, ``column``) as a step line; the finalists ringed
    and labelled ``tN``; the budget as a dashed vertical line. Bottom strip: trials without an
    accuracy (scored by a --cost-only search, infeasible, failed) at their cost. A panel with
    nothing to draw is left out (plotly.js draws no axes for an empty subplot, and an empty strip
    would take the shared x axis's tick labels and title with it): a run with no trained trial
    (``--cost-only``) is the strip alone, a run with every trial trained the top panel alone.
    Trials without a value in ``column`` are left out (an invalid trial has no costs)."""
    title, unit, scale = COST_AXES[column]
    params = view.param_columns
    rows = [r for r in view.rows() if plain(r.get(column)) is not None]
    strip = [s for s in UNTRAINED if any(r.get("status") == s for r in rows)]
    trained = any(r.get("status") not in UNTRAINED and plain(r.get("accuracy")) is not None for r in rows)
    if strip and trained:
        fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.84, 0.16], vertical_spacing=0.04)
        top, bottom = 1, 2
    else:
        fig = make_subplots(rows=1, cols=1)
        top = bottom = 1
    for status, (color, symbol) in STATUS_STYLE.items():
        group = [r for r in rows if r.get("status") == status]
        if status not in UNTRAINED:
            group = [r for r in group if plain(r.get("accuracy")) is not None]
        if not group:
            continue
        label = STATUS_LABELS[status]
        fig.add_trace(go.Scatter(
            x=[float(r[column]) * scale for r in group],
            y=[label] * len(group) if status in UNTRAINED else [float(r["accuracy"]) for r in group],
            customdata=[int(r["trial"]) for r in group],
            mode="markers", name=f"{label} ({len(group)})", legendgroup=status,
            marker=dict(color=color, symbol=symbol, size=8 if status in UNTRAINED else 9, opacity=0.85,
                        line=dict(width=1, color="white") if status not in UNTRAINED else dict(width=1.5, color=color)),
            hovertext=[hover_text(r, params) for r in group], hoverinfo="text",
            meta={"status": status},
        ), row=bottom if status in UNTRAINED else top, col=1)
    front = sorted(pareto_front(view.completed(), ["accuracy", column]), key=lambda r: (float(r[column]), float(r["accuracy"])))
    if front:
        fig.add_trace(go.Scatter(
            x=[float(r[column]) * scale for r in front], y=[float(r["accuracy"]) for r in front],
            customdata=[int(r["trial"]) for r in front], mode="lines", line=dict(color=FRONT_COLOR, width=2, shape="hv"),
            name="Pareto front", hoverinfo="skip", meta={"role": "front"},
        ), row=1, col=1)
    by_trial = {int(r["trial"]): r for r in rows}
    finalists = [by_trial[int(f["trial"])] for f in view.finalists if int(f["trial"]) in by_trial]
    if finalists:
        fig.add_trace(go.Scatter(
            x=[float(r[column]) * scale for r in finalists], y=[float(r["accuracy"]) for r in finalists],
            customdata=[int(r["trial"]) for r in finalists], mode="markers+text",
            text=[f"t{int(r['trial'])}" for r in finalists], textposition="top left",
            textfont=dict(size=12, color="#111"),
            marker=dict(size=17, symbol="circle-open", color="#111", line=dict(width=2)),
            name=f"finalists ({len(finalists)})", hovertext=[hover_text(r, params) for r in finalists],
            hoverinfo="text", meta={"role": "finalists"},
        ), row=1, col=1)
    limit = budget_limit(view.budget, column)
    if limit is not None:
        fig.add_vline(x=limit, line=dict(color=BUDGET_COLOR, dash="dash", width=1.5), row="all", col=1)
        # annotations on a log axis are placed in log10 units (shapes are not)
        fig.add_annotation(x=math.log10(limit), xref="x", y=1, yref="paper", text=f"budget {limit:,.4g} {unit}",
                           showarrow=False, xanchor="left", yanchor="bottom", font=dict(color=BUDGET_COLOR, size=12))
    fig.update_xaxes(type="log")
    fig.update_xaxes(title_text=f"{title}, log scale", showticklabels=True, row=bottom, col=1)
    if trained or not strip:
        fig.update_yaxes(title_text="accuracy", row=top, col=1)
    if strip:
        fig.update_yaxes(type="category", categoryorder="array", categoryarray=[STATUS_LABELS[s] for s in strip],
                         title_text="no accuracy" if trained else "status (no accuracy)",
                         title_font=dict(size=11) if trained else None, row=bottom, col=1)
    fig.update_layout(template=TEMPLATE, height=480, title=dict(text=f"accuracy against {title}", x=0.01),
                      margin=dict(l=70, r=20, t=60, b=50), hoverlabel=dict(align="left"))
    return fig


def _categories(values: list[Any]) -> tuple[list[Any], list[str]]:
    """The distinct values of a hyperparameter column, sorted (numbers first), and their
    labels; a missing value (an inactive conditional) is the label ``–`` at the start."""
    present = {plain(v) for v in values}
    numbers = sorted(v for v in present if isinstance(v, (int, float)) and not isinstance(v, bool))
    others = sorted((v for v in present if v is not None and v not in numbers), key=str)
    ordered: list[Any] = ([None] if None in present else []) + numbers + others
    return ordered, [_fmt(v) for v in ordered]


def parallel_figure(view: RunView) -> go.Figure | None:
    """Parallel coordinates of the hyperparameters, then peak RAM (KiB) and accuracy, one line
    per trained trial with an accuracy (complete or stopped early, in trial order), coloured by
    accuracy. Each hyperparameter axis is categorical: ``values`` index ``ticktext``. ``None``
    when no trial has an accuracy yet."""
    rows = [r for r in view.rows() if plain(r.get("accuracy")) is not None]
    if not rows:
        return None
    dims = []
    for column in view.param_columns:
        ordered, labels = _categories([r.get(column) for r in rows])
        if len(ordered) < 2:
            continue
        index = {v: i for i, v in enumerate(ordered)}
        dims.append(dict(label=column[6:], values=[index[plain(r.get(column))] for r in rows],
                         tickvals=list(range(len(ordered))), ticktext=labels, range=[-0.25, len(ordered) - 0.75]))
    dims.append(dict(label="peak RAM (KiB)", values=[float(r["peak_ram_bytes"]) / KIB for r in rows]))
    dims.append(dict(label="accuracy", values=[float(r["accuracy"]) for r in rows]))
    accuracy = [float(r["accuracy"]) for r in rows]
    fig = go.Figure(go.Parcoords(
        dimensions=dims, labelangle=-25, labelside="top",
        line=dict(color=accuracy, colorscale="Viridis", showscale=True, colorbar=dict(title=dict(text="accuracy"))),
        meta={"trials": [int(r["trial"]) for r in rows]},
    ))
    fig.update_layout(template=TEMPLATE, height=440, margin=dict(l=60, r=40, t=110, b=30),
                      title=dict(text="hyperparameters of the trained trials, coloured by accuracy", x=0.01))
    return fig


def progress_figure(view: RunView) -> go.Figure:
    """Over trials (x: trial number): the accuracy/RAM hypervolume so far (with a RAM budget)
    and the best accuracy under budget so far, as step lines."""
    progress = view.progress()
    has_hv = view.budget.ram_bytes is not None
    titles = (["accuracy/RAM hypervolume (reference: accuracy 0, RAM = budget)"] if has_hv else []) + \
        ["best accuracy under budget"]
    fig = make_subplots(rows=len(titles), cols=1, shared_xaxes=True, subplot_titles=titles, vertical_spacing=0.12)
    trials = [int(t) for t in progress["trial"]]

    def series(values) -> list[float | None]:
        return [None if v != v else float(v) for v in values]

    if has_hv:
        fig.add_trace(go.Scatter(x=trials, y=series(progress["hypervolume"]), mode="lines+markers",
                                 line=dict(shape="hv", color="#6a3d9a"), marker=dict(size=4), name="hypervolume",
                                 meta={"role": "hypervolume"}), row=1, col=1)
    fig.add_trace(go.Scatter(x=trials, y=series(progress["best_accuracy"]), mode="lines+markers",
                             line=dict(shape="hv", color=STATUS_STYLE["complete"][0]), marker=dict(size=4),
                             name="best accuracy", meta={"role": "best_accuracy"}), row=len(titles), col=1)
    if has_hv:
        fig.update_yaxes(rangemode="tozero", title_text="hypervolume", row=1, col=1)
    fig.update_yaxes(title_text="accuracy", row=len(titles), col=1)
    if progress["best_accuracy"].isna().all():  # nothing completed yet: an empty 0..1 axis
        fig.update_yaxes(range=[0, 1], row=len(titles), col=1)
    fig.update_xaxes(title_text="trial", row=len(titles), col=1)
    fig.update_layout(template=TEMPLATE, height=420 if has_hv else 260, showlegend=False,
                      margin=dict(l=60, r=20, t=40, b=50))
    return fig


def ram_profile_figure(costs: Costs, budget: Budget, title: str) -> go.Figure:
    """Per-stage RAM of one architecture (``costs`` from ``cost.evaluate`` with its stages),
    in KiB: the bar that sets the peak (``costs.bottleneck``) in red, the RAM budget as a
    dashed line."""
    names = [f"{s.name} {s.kind}" for s in costs.stages]
    colors = [BUDGET_COLOR if s.name == costs.bottleneck else "#4c78a8" for s in costs.stages]
    hover = [f"<b>{s.name} {s.kind}</b><br>output {'x'.join(map(str, s.out_shape))}<br>RAM {s.ram_bytes:,} bytes"
             f"<br>{s.madds:,} MAdds · {s.params:,} params" + (f"<br><i>{s.note}</i>" if s.note else "")
             for s in costs.stages]
    fig = go.Figure(go.Bar(x=names, y=[s.ram_bytes / KIB for s in costs.stages], marker_color=colors,
                           hovertext=hover, hoverinfo="text", name="RAM", meta={"bottleneck": costs.bottleneck}))
    limit = budget_limit(budget, "peak_ram_bytes")
    if limit is not None:
        fig.add_hline(y=limit, line=dict(color=BUDGET_COLOR, dash="dash", width=1.5),
                      annotation_text=f"budget {limit:,.1f} KiB", annotation_position="top left",
                      annotation_font_color=BUDGET_COLOR)
    peak = costs.peak_ram_bytes / KIB
    top = max([peak] + ([limit] if limit else []))
    fig.update_yaxes(title_text="RAM (KiB)", range=[0, top * 1.18 if top > 0 else 1])
    fig.update_xaxes(tickangle=-35, title_text="stage (block, kind)", automargin=True)
    fig.update_layout(template=TEMPLATE, height=340, showlegend=False, margin=dict(l=60, r=20, t=50, b=80),
                      title=dict(text=f"{title}: peak {peak:,.1f} KiB at {costs.bottleneck}", x=0.01, font=dict(size=14)))
    return fig


__all__ = ["COST_AXES", "STATUS_STYLE", "budget_limit", "hover_text", "parallel_figure", "pareto_figure",
           "progress_figure", "ram_profile_figure"]


def final_front_figure(view: RunView) -> go.Figure | None:
    """Finalized models (``rnnpool-nas finalize``): int8 and float test accuracy and the search's
    validation accuracy against peak RAM, the int8 front as a step line; None when none is finalized."""
    from ..run.final import final_results

    done = final_results(view.root)
    rows = {int(r["trial"]): r for r in view.rows()}
    points = [(n, rows[n], doc) for n, doc in sorted(done.items()) if n in rows]
    if not points:
        return None
    fig = go.Figure()
    ram = [float(r["peak_ram_bytes"]) / KIB for _, r, _ in points]
    labels = [f"trial {n}" for n, _, _ in points]
    for name, values, symbol in (
        ("search (validation)", [float(r["accuracy"]) for _, r, _ in points], "circle-open"),
        ("test, float", [d.get("float_test_accuracy") for _, _, d in points], "diamond"),
        ("test, int8", [d.get("int8_test_accuracy") for _, _, d in points], "square"),
    ):
        fig.add_trace(go.Scatter(x=ram, y=values, mode="markers", name=name, text=labels, marker={"symbol": symbol, "size": 10},
                                 hovertemplate="%{text}<br>%{x:.1f} KiB<br>%{y:.4f}<extra>" + name + "</extra>"))
    front = sorted(pareto_front([{"peak_ram_bytes": x, "accuracy": d.get("int8_test_accuracy") or 0.0}
                                 for x, (_, _, d) in zip(ram, points)], ["accuracy", "peak_ram_bytes"]),
                   key=lambda p: p["peak_ram_bytes"])
    fig.add_trace(go.Scatter(x=[p["peak_ram_bytes"] for p in front], y=[p["accuracy"] for p in front], mode="lines",
                             line={"shape": "hv"}, name="int8 test front"))
    fig.update_layout(xaxis_title="peak RAM (KiB)", yaxis_title="accuracy", height=420, margin={"t": 30})
    return fig
