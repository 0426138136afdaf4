"""A run directory as the report sees it: read-only, built on the public reader ``RunStore``.

:class:`RunView` holds what every page and table needs from ``runs/<name>/``: the resolved
config and budget, the finished trials (``trials.parquet`` without the rows still running), the
finalists (``pareto.json``), and the summaries derived from them (counts per status, the best
accuracy under budget, hypervolume and best accuracy over trials). It never writes to the run
(the report page itself is written by ``page.write_report``) and never imports the search's
runner; the Pareto front and hypervolume are ``run.pareto``'s.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import UserError
from ..run.final import final_columns, final_results, read_final
from ..run.budget import Budget
from ..run.pareto import OBJECTIVE_COLUMNS, accuracy_ram_hypervolume, pareto_front
from ..run.status import FINAL, STYLES
from ..run.store import CONFIG, PARETO, RunStore, plain, trial_path

#: Every status a finished trial can have, in the order pages list them (``run.status.FINAL``).
STATUSES: tuple[str, ...] = tuple(s.value for s in FINAL)

#: What a page calls each status.
STATUS_LABELS: dict[str, str] = {s.value: style.label for s, style in STYLES.items()}

#: The columns a finalist row carries (as ``pareto.json`` writes them).
FINALIST_FIELDS: tuple[str, ...] = ("trial", "accuracy", "peak_ram_bytes", "madds", "params", "model_bytes",
                                    "latency_ms", "epochs_trained", "spec_path", "checkpoint_path")


def is_run(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like a run directory (a folder with ``config.json``)."""
    return (Path(path) / CONFIG).is_file()


def display_path(path: Path) -> str:
    """``path`` as a user would type it here: relative to the current directory when it is
    inside it (``runs/NAME``), absolute otherwise."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(resolved)


def export_command(run_dir: str | os.PathLike, trial: int) -> str:
    """The command that exports finalist ``trial`` of a run:
    ``rnnpool-nas export runs/NAME --trial ID --out export/NAME-tID``."""
    root = Path(run_dir)
    name = root.resolve().name
    return (f"rnnpool-nas export {shlex.quote(display_path(root))} --trial {int(trial)} "
            f"--out {shlex.quote(f'export/{name}-t{int(trial)}')}")


def _number(value: Any) -> float:
    """A float, NaN when missing."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


@dataclass
class RunView:
    """A read-only view of one run directory (see the module docstring).

    ``trials`` holds the finished rows only (status in :data:`STATUSES`), sorted by trial
    number, with the columns of ``trials.parquet``; ``running`` counts the rows still training.
    ``finalists`` are ``pareto.json``'s (computed with ``run.pareto.pareto_front`` when the
    file is missing), best accuracy first, each with ``hyperparameters``.
    """

    root: Path
    config: dict[str, Any]
    budget: Budget
    objectives: list[str]
    trials: pd.DataFrame
    finalists: list[dict[str, Any]]
    running: int

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> "RunView":
        """Read ``run_dir``. A folder that is not a run, a corrupt table or a bad budget in
        ``config.json`` is a one-line :class:`UserError`."""
        store = RunStore.open(run_dir)
        budget = Budget.from_dict(store.config["budget"])
        objectives = [o for o in store.config.get("objectives") or ["accuracy", "peak_ram"] if o in OBJECTIVE_COLUMNS]
        frame = store.frame() if store.rows else pd.DataFrame(columns=["trial", "status"])
        if "status" not in frame.columns:
            frame["status"] = ""
        running = int((frame["status"] == "running").sum())
        finished = frame[frame["status"].isin(STATUSES)].sort_values("trial").reset_index(drop=True)
        view = cls(store.root, store.config, budget, objectives, finished, [], running)
        view.finalists = view._read_finalists()
        return view

    # ----------------------------------------------------------------------- describing

    @property
    def name(self) -> str:
        return self.root.resolve().name

    @property
    def created(self) -> str:
        """When the run started (``config.json``'s ``created``, else the file's time)."""
        created = self.config.get("created")
        if created:
            return str(created)
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime((self.root / CONFIG).stat().st_mtime))

    @property
    def space_name(self) -> str:
        space = self.config.get("space")
        if isinstance(space, dict) and space.get("name"):
            return str(space["name"])
        return str(self.config.get("space_path") or "?")

    @property
    def planned_trials(self) -> int | None:
        planned = self.config.get("trials")
        return int(planned) if isinstance(planned, int) else None

    @functools.cached_property
    def param_columns(self) -> list[str]:
        """The ``param_*`` columns, in the space's suggestion order when ``config.json`` holds
        it (``param_order``, written by the search), table order otherwise."""
        columns = [c for c in self.trials.columns if c.startswith("param_")]
        order = self.config.get("param_order")
        if not isinstance(order, list):
            return columns
        rank = {f"param_{name}": i for i, name in enumerate(order)}
        return sorted(columns, key=lambda c: (rank.get(c, len(rank)), columns.index(c)))

    def rows(self) -> list[dict[str, Any]]:
        """The finished trials as dicts, in trial order."""
        return self.trials.to_dict("records")

    def counts(self) -> dict[str, int]:
        """Finished trials per status (every status of :data:`STATUSES`, zeros included)."""
        values = self.trials["status"].value_counts()
        return {s: int(values.get(s, 0)) for s in STATUSES}

    def has_column(self, column: str) -> bool:
        """Whether ``column`` exists and holds at least one number."""
        return column in self.trials.columns and pd.to_numeric(self.trials[column], errors="coerce").notna().any()

    def completed(self) -> list[dict[str, Any]]:
        """Complete, feasible trials with an accuracy: the ones a front is made of."""
        return [r for r in self.rows()
                if r.get("status") == "complete" and bool(r.get("feasible", True)) and _number(r.get("accuracy")) == _number(r.get("accuracy"))]

    def best_under_budget(self) -> dict[str, Any] | None:
        """The complete, feasible trial with the highest accuracy (lowest trial on ties)."""
        return max(self.completed(), key=lambda r: (float(r["accuracy"]), -int(r["trial"])), default=None)

    def hypervolume(self) -> float | None:
        """Accuracy/RAM hypervolume of the run (``None`` without a RAM budget)."""
        if not self.budget.ram_bytes:
            return None
        return accuracy_ram_hypervolume(self.rows(), self.budget.ram_bytes)

    def progress(self) -> pd.DataFrame:
        """Per finished trial, in trial order: ``trial``, ``best_accuracy`` (the best complete,
        feasible accuracy among trials up to this one, NaN before the first) and
        ``hypervolume`` (``accuracy_ram_hypervolume`` of those trials; NaN without a RAM
        budget). Recomputed only when a trial adds to the pool."""
        ram = self.budget.ram_bytes
        pool: list[dict[str, Any]] = []
        best = math.nan
        hv = 0.0 if ram else math.nan
        out = []
        for row in self.rows():
            accuracy = _number(row.get("accuracy"))
            if row.get("status") == "complete" and bool(row.get("feasible", True)) and accuracy == accuracy:
                pool.append(row)
                best = accuracy if best != best else max(best, accuracy)
                if ram:
                    hv = accuracy_ram_hypervolume(pool, ram)
            out.append({"trial": int(row["trial"]), "best_accuracy": best, "hypervolume": hv})
        return pd.DataFrame(out, columns=["trial", "best_accuracy", "hypervolume"])

    # ------------------------------------------------------------------------ finalists

    def _read_finalists(self) -> list[dict[str, Any]]:
        path = self.root / PARETO
        try:
            doc = json.loads(path.read_text())
            finalists = doc["finalists"]
            if isinstance(finalists, list) and all(isinstance(f, dict) and "trial" in f for f in finalists):
                return finalists
        except (OSError, ValueError, KeyError, TypeError):
            pass
        columns = [OBJECTIVE_COLUMNS[o] for o in self.objectives]
        front = sorted(pareto_front(self.completed(), columns), key=lambda r: -float(r["accuracy"]))
        out = []
        for row in front:
            item = {k: plain(row.get(k)) for k in FINALIST_FIELDS}
            item["hyperparameters"] = {k[6:]: plain(v) for k, v in row.items() if k.startswith("param_")}
            out.append(item)
        return out

    def spec_path(self, trial: int) -> Path | None:
        """Where trial ``trial``'s ``arch.json`` is: ``trials/NNNN/arch.json`` inside the run
        (a run directory can move), else the recorded ``spec_path``; ``None`` if neither
        exists."""
        inside = trial_path(self.root, trial) / "arch.json"
        if inside.is_file():
            return inside
        recorded = self.trials.loc[self.trials["trial"] == trial, "spec_path"] if "spec_path" in self.trials else []
        for value in list(recorded):
            if value and Path(str(value)).is_file():
                return Path(str(value))
        return None

    def export_command(self, trial: int) -> str:
        return export_command(self.root, trial)

    def finalists_table(self) -> list[dict[str, Any]]:
        """The finalists as plain dicts: :data:`FINALIST_FIELDS`, ``hyperparameters``, the
        finalized test accuracies (``final_float_accuracy``, ``final_int8_accuracy``,
        ``final_epochs``: None until ``rnnpool-nas finalize`` ran) and ``export_command``, best
        accuracy first."""
        out = []
        for f in self.finalists:
            item = {k: plain(f.get(k)) for k in FINALIST_FIELDS}
            item["hyperparameters"] = dict(f.get("hyperparameters") or {})
            item.update(final_columns(read_final(self.root, int(f["trial"]))))  # None until finalized
            item["export_command"] = self.export_command(int(f["trial"]))
            out.append(item)
        return out

    def summary(self) -> dict[str, Any]:
        """One line of the runs index: name, created, space, budget, trials done / planned,
        running, best accuracy under budget (and its trial), finalists, and the best finalized int8
        test accuracy (and its trial; None before ``rnnpool-nas finalize``)."""
        best = self.best_under_budget()
        finals = [(d.get("int8_test_accuracy"), n) for n, d in final_results(self.root).items()
                  if d.get("int8_test_accuracy") is not None]
        best_final = max(finals, default=(None, None))
        return {
            "name": self.name, "created": self.created, "space": self.space_name, "budget": self.budget.describe(),
            "trials": len(self.trials), "planned": self.planned_trials, "running": self.running,
            "best_accuracy": None if best is None else float(best["accuracy"]),
            "best_trial": None if best is None else int(best["trial"]), "finalists": len(self.finalists),
            "best_final_int8_accuracy": best_final[0], "best_final_trial": best_final[1],
        }


__all__ = ["RunView", "STATUSES", "STATUS_LABELS", "FINALIST_FIELDS", "display_path", "export_command", "is_run",
           "plain"]
