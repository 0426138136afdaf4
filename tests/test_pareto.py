"""The Pareto front and hypervolume on hand-made tables."""

from __future__ import annotations

import math

import pytest

from rnnpool_nas.run.pareto import accuracy_ram_hypervolume, hypervolume_2d, pareto_front

ROWS = [
    {"trial": 0, "accuracy": 0.90, "peak_ram_bytes": 100, "madds": 50},
    {"trial": 1, "accuracy": 0.85, "peak_ram_bytes": 60, "madds": 40},
    {"trial": 2, "accuracy": 0.80, "peak_ram_bytes": 80, "madds": 30},  # dominated on acc/RAM by 1
    {"trial": 3, "accuracy": 0.92, "peak_ram_bytes": 150, "madds": 90},
    {"trial": 4, "accuracy": 0.85, "peak_ram_bytes": 60, "madds": 40},  # tie with 1: kept
    {"trial": 5, "accuracy": 0.70, "peak_ram_bytes": 20, "madds": 10},
    {"trial": 6, "accuracy": math.nan, "peak_ram_bytes": 10, "madds": 5},  # no accuracy: ignored
]


def test_two_objective_front():
    front = pareto_front(ROWS, ["accuracy", "peak_ram_bytes"])
    assert [r["trial"] for r in front] == [0, 1, 3, 4, 5]


def test_three_objective_front_keeps_what_madds_saves():
    front = pareto_front(ROWS, ["accuracy", "peak_ram_bytes", "madds"])
    assert [r["trial"] for r in front] == [0, 1, 2, 3, 4, 5]


def test_hypervolume():
    assert hypervolume_2d([(0.5, 0.5)], (1, 1)) == pytest.approx(0.25)
    assert hypervolume_2d([(0.5, 0.5), (0.25, 0.75), (0.6, 0.6)], (1, 1)) == pytest.approx(0.25 + 0.25 * 0.25)
    assert hypervolume_2d([(2, 0.1)], (1, 1)) == 0
    rows = [dict(r, status="complete", feasible=True) for r in ROWS[:2]]
    assert accuracy_ram_hypervolume(rows, 200) == pytest.approx(
        hypervolume_2d([(0.10, 0.5), (0.15, 0.3)], (1, 1)))
