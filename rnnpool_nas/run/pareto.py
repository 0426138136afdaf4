"""The one Pareto function of the project, and the 2-D hypervolume used to compare searches.

Objectives are named columns with a direction: ``accuracy`` is maximised; ``peak_ram_bytes``,
``madds``, ``params``, ``model_bytes`` and ``latency_ms`` are minimised.
"""

from __future__ import annotations

from typing import Iterable, Sequence

MAXIMIZE = {"accuracy"}

#: The CLI's short objective names -> trial-table columns.
OBJECTIVE_COLUMNS = {
    "accuracy": "accuracy",
    "peak_ram": "peak_ram_bytes",
    "ram": "peak_ram_bytes",
    "madds": "madds",
    "params": "params",
    "model_size": "model_bytes",
    "latency": "latency_ms",
}


def direction(column: str) -> str:
    return "maximize" if column in MAXIMIZE else "minimize"


def _key(row: dict, columns: Sequence[str]) -> tuple[float, ...]:
    """The row's objectives, all turned into "smaller is better"."""
    return tuple(-float(row[c]) if c in MAXIMIZE else float(row[c]) for c in columns)


def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_front(rows: Iterable[dict], columns: Sequence[str]) -> list[dict]:
    """The rows no other row dominates on ``columns`` (ties kept), in input order. Rows with a
    missing or NaN objective are ignored."""
    candidates = []
    for row in rows:
        try:
            key = _key(row, columns)
        except (KeyError, TypeError, ValueError):
            continue
        if any(v != v for v in key):  # NaN
            continue
        candidates.append((key, row))
    return [row for key, row in candidates if not any(dominates(other, key) for other, _ in candidates)]


def hypervolume_2d(points: Iterable[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by ``points`` (both coordinates minimised) up to ``reference``."""
    pts = sorted({p for p in points if p[0] < reference[0] and p[1] < reference[1]})
    area, best_y = 0.0, reference[1]
    for x, y in pts:
        if y < best_y:
            area += (reference[0] - x) * (best_y - y)
            best_y = y
    return area


def accuracy_ram_hypervolume(rows: Iterable[dict], ram_limit: float) -> float:
    """Hypervolume of (1 - accuracy, peak RAM / limit) over complete, feasible rows, reference
    point (1, 1): 0 is nothing found, 1 is a perfect classifier using no RAM."""
    points = [
        (1.0 - float(r["accuracy"]), float(r["peak_ram_bytes"]) / ram_limit)
        for r in rows
        if r.get("status") == "complete" and r.get("accuracy") == r.get("accuracy") and r.get("feasible", True)
    ]
    return hypervolume_2d(points, (1.0, 1.0))
