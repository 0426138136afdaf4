"""A trial's status: the one list of what a row of ``trials.parquet`` can be, with how pages show it.

Statuses are stored as their plain string values (``Status.COMPLETE == "complete"``), so the
table, ``pareto.json`` and code that compares with strings keep working. Every reader and writer
of a run (the store, the searcher, the report's tables and plots, the progress lines) takes its
statuses, labels, colours and groupings from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    RUNNING = "running"  # training now (the only non-final status)
    COMPLETE = "complete"  # trained for every epoch: a finalist when on the front
    STOPPED = "stopped"  # stopped early by the scheduler: never a finalist
    DUPLICATE = "duplicate"  # the same network as trial ``duplicate_of``: its result reused, not retrained
    SCORED = "scored"  # --cost-only: within budget, scored by the cost model, not trained
    INFEASIBLE = "infeasible"  # over a budget: never trained
    FAILED = "failed"  # training raised or diverged
    INVALID = "invalid"  # the space cannot build the spec: no costs

    @property
    def style(self) -> "StatusStyle":
        return STYLES[self]

    @property
    def label(self) -> str:
        return STYLES[self].label


@dataclass(frozen=True)
class StatusStyle:
    label: str  # what a page calls it
    color: str
    symbol: str  # plotly marker symbol


STYLES: dict[Status, StatusStyle] = {
    Status.RUNNING: StatusStyle("running", "#bcbd22", "hourglass"),
    Status.COMPLETE: StatusStyle("complete", "#1f77b4", "circle"),
    Status.STOPPED: StatusStyle("stopped early", "#ff9f1c", "diamond"),
    Status.DUPLICATE: StatusStyle("duplicate", "#17becf", "circle-dot"),
    Status.SCORED: StatusStyle("scored (not trained)", "#8c564b", "triangle-up"),
    Status.INFEASIBLE: StatusStyle("infeasible", "#9e9e9e", "x"),
    Status.FAILED: StatusStyle("failed", "#d62728", "x-thin-open"),
    Status.INVALID: StatusStyle("invalid", "#7f7f7f", "square-open"),
}

#: Finished statuses, in the order pages list them.
FINAL: tuple[Status, ...] = (Status.COMPLETE, Status.STOPPED, Status.DUPLICATE, Status.SCORED, Status.INFEASIBLE,
                             Status.FAILED, Status.INVALID)
#: Finished without an accuracy, but with costs: a Pareto plot draws them in the strip under it.
UNTRAINED: tuple[Status, ...] = (Status.SCORED, Status.INFEASIBLE, Status.FAILED)
#: Statuses whose result a duplicate can take over (a ``running`` original is waited for).
REUSABLE: frozenset[Status] = frozenset({Status.COMPLETE, Status.STOPPED, Status.FAILED, Status.RUNNING, Status.SCORED})


def is_final(status: object) -> bool:
    """Whether a row with this status is finished (anything but ``running`` or an unknown value)."""
    return status in FINAL


__all__ = ["FINAL", "REUSABLE", "STYLES", "Status", "StatusStyle", "UNTRAINED", "is_final"]
