"""Reading a run's finalized trials (torch-free: the report, pareto and export read it).

    runs/<name>/final/
      NNNN/checkpoint.pt   the finalist retrained from scratch on the full training set (tensors
                           and plain data only: loads with ``torch.load(..., weights_only=True)``)
      NNNN/arch.json       its spec (a copy of trials/NNNN/arch.json)
      NNNN/metrics.json    status, the recipe, the training curve (train loss and learning rate
                           per epoch: the test set is not looked at while training), and the one
                           evaluation on the test set: float and int8 accuracy (detectors: AP)
      final.json           the finalists of the last ``rnnpool-nas finalize`` and their figures
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FINAL_DIR = "final"
SUMMARY = "final.json"


def final_dir(run_dir: str | os.PathLike, trial: int) -> Path:
    return Path(run_dir) / FINAL_DIR / f"{int(trial):04d}"


def read_final(run_dir: str | os.PathLike, trial: int) -> dict[str, Any] | None:
    """The metrics of a finalized trial, or None when it has not been finalized (or is unreadable)."""
    try:
        doc = json.loads((final_dir(run_dir, trial) / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def finalized_checkpoint(run_dir: str | os.PathLike, trial: int) -> Path | None:
    """The finalized checkpoint of ``trial`` when finalize completed it, else None."""
    doc = read_final(run_dir, trial)
    path = final_dir(run_dir, trial) / "checkpoint.pt"
    return path if doc is not None and doc.get("status") == "complete" and path.is_file() else None


def final_results(run_dir: str | os.PathLike) -> dict[int, dict[str, Any]]:
    """Every completed finalist of the run: trial number -> its metrics."""
    root = Path(run_dir) / FINAL_DIR
    out: dict[int, dict[str, Any]] = {}
    if not root.is_dir():
        return out
    for sub in sorted(root.iterdir()):
        if sub.is_dir() and sub.name.isdigit():
            doc = read_final(run_dir, int(sub.name))
            if doc is not None and doc.get("status") == "complete":
                out[int(sub.name)] = doc
    return out


def train_rows(n: int, limit: int | None, seed: int):
    """The training rows a finalize with ``--limit`` trains on (and calibrates int8 with), sorted;
    None for all of them."""
    import numpy as np

    if limit is None or limit >= n:
        return None
    return np.sort(np.random.default_rng([seed, 3]).choice(n, size=limit, replace=False))


def final_columns(doc: dict[str, Any] | None) -> dict[str, Any]:
    """The three figures a table shows next to the search's: float and int8 test accuracy (or
    None) and the epochs of the full training."""
    if not doc or doc.get("status") != "complete":
        return {"final_float_accuracy": None, "final_int8_accuracy": None, "final_epochs": None}
    return {"final_float_accuracy": doc.get("float_test_accuracy"), "final_int8_accuracy": doc.get("int8_test_accuracy"),
            "final_epochs": doc.get("epochs")}
