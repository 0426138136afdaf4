"""The run directory, the search's record and the meeting point of report, browse and export.

    runs/<name>/
      config.json        the resolved search configuration (space, budget, data, sampler, ...)
      study.db           the Optuna study (SQLite; `optuna-dashboard sqlite:///runs/<name>/study.db`)
      trials.parquet     one row per candidate: trial, status (complete / stopped / infeasible /
                         invalid / failed / scored (--cost-only) / duplicate (same network as trial
                         duplicate_of, its result reused)), param_* (every hyperparameter), accuracy,
                         peak_ram_bytes, madds, params, model_bytes, latency_ms, epochs_trained,
                         wall_time_s, violations, reason, spec_path, checkpoint_path, node
      pareto.json        the finalists: non-dominated, feasible, complete trials
      trials/NNNN/       arch.json, checkpoint.pt, metrics.json of each trained candidate

Every file is written atomically (a temporary file, then a rename), so a crash or a kill never
leaves a half-written table; ``open`` refuses a folder that is not a run, with one line.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import UserError
from ..run.status import FINAL
from .pareto import OBJECTIVE_COLUMNS, pareto_front

CONFIG, STUDY, TRIALS, PARETO = "config.json", "study.db", "trials.parquet", "pareto.json"
#: The finished statuses (``run.status``: scored is --cost-only's; duplicate the same network as an
#: earlier trial, ``duplicate_of``, not retrained)
FINAL_STATES = frozenset(FINAL)


def write_atomic(path: Path, data: bytes | str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class RunStore:
    """Reads and writes one run directory (see the module docstring)."""

    def __init__(self, root: Path, config: dict[str, Any], rows: dict[int, dict[str, Any]]) -> None:
        self.root = root
        self.config = config
        self.rows = rows

    # ------------------------------------------------------------------------- creation

    @classmethod
    def create(cls, root: str | os.PathLike, config: dict[str, Any]) -> "RunStore":
        root = Path(root)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise UserError(f"{root} already exists; pass --resume to continue that run, or choose another --out")
        root.mkdir(parents=True, exist_ok=True)
        (root / "trials").mkdir(exist_ok=True)
        write_atomic(root / CONFIG, json.dumps(config, indent=2, default=str))
        return cls(root, config, {})

    @classmethod
    def open(cls, root: str | os.PathLike) -> "RunStore":
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"{root} is not a run directory (no such folder)")
        try:
            config = json.loads((root / CONFIG).read_text())
        except FileNotFoundError:
            raise UserError(f"{root} is not a run directory (no {CONFIG})") from None
        except (OSError, ValueError) as exc:
            raise UserError(f"{root}/{CONFIG} is corrupt ({exc.__class__.__name__}); the run cannot be resumed") from None
        if not isinstance(config, dict) or "space" not in config or "budget" not in config:
            raise UserError(f"{root}/{CONFIG} is not a search configuration")
        rows: dict[int, dict[str, Any]] = {}
        if (root / TRIALS).exists():
            try:
                frame = pd.read_parquet(root / TRIALS)
            except Exception as exc:  # pyarrow raises many types for a damaged file
                raise UserError(f"{root}/{TRIALS} is corrupt ({exc.__class__.__name__}); the run cannot be resumed") from None
            rows = {int(r["trial"]): r for r in frame.to_dict("records")}
        (root / "trials").mkdir(exist_ok=True)
        return cls(root, config, rows)

    # ---------------------------------------------------------------------------- access

    @property
    def storage_url(self) -> str:
        return f"sqlite:///{(self.root / STUDY).resolve()}"

    def trial_dir(self, number: int) -> Path:
        path = self.root / "trials" / f"{number:04d}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def final_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.rows.values() if r.get("status") in FINAL_STATES]

    def frame(self) -> pd.DataFrame:
        """The trial table. A hyperparameter whose choices mix types (placement: none or an
        int) is stored as text, so the column has one type."""
        rows = sorted(self.rows.values(), key=lambda r: int(r["trial"]))
        frame = pd.DataFrame(rows)
        for col in frame.columns:
            if frame[col].dtype == object:
                kinds = {type(v) for v in frame[col] if v is not None and v == v}
                if len(kinds) > 1:
                    frame[col] = frame[col].map(lambda v: v if v is None or v != v else str(v))
        return frame

    # --------------------------------------------------------------------------- writing

    def record(self, row: dict[str, Any]) -> None:
        """Add or replace one candidate's row and rewrite the table atomically."""
        self.rows[int(row["trial"])] = row
        self.save()

    def forget(self, number: int) -> None:
        """Drop a row (a trial that was running when the run was interrupted)."""
        self.rows.pop(number, None)
        self.save()

    def save(self) -> None:
        tmp = self.root / f".{TRIALS}.tmp"
        self.frame().to_parquet(tmp, index=False)
        os.replace(tmp, self.root / TRIALS)

    def write_pareto(self, objectives: list[str]) -> list[dict[str, Any]]:
        columns = [OBJECTIVE_COLUMNS[o] for o in objectives]
        complete = [r for r in self.rows.values() if r.get("status") == "complete" and r.get("feasible")]
        front = sorted(pareto_front(complete, columns), key=lambda r: -float(r["accuracy"]))
        keep = ("trial", "accuracy", "peak_ram_bytes", "madds", "params", "model_bytes", "latency_ms",
                "epochs_trained", "spec_path", "checkpoint_path")
        finalists = []
        for r in front:
            item = {k: _plain(r.get(k)) for k in keep}
            item["hyperparameters"] = {k[6:]: _plain(v) for k, v in r.items() if k.startswith("param_")}
            finalists.append(item)
        doc = {"objectives": objectives, "columns": columns, "budget": self.config.get("budget"), "finalists": finalists}
        write_atomic(self.root / PARETO, json.dumps(doc, indent=2))
        return finalists

    def copy_checkpoint(self, source: Path, number: int) -> None:
        """Carry an interrupted trial's checkpoint into the trial that resumes it."""
        if (source / "checkpoint.pt").exists():
            shutil.copy2(source / "checkpoint.pt", self.trial_dir(number) / "checkpoint.pt")


def new_row(number: int, params: dict[str, Any]) -> dict[str, Any]:
    """A candidate's row of ``trials.parquet`` before it is scored: every column, hyperparameters
    as ``param_*`` (values that are not plain scalars as text)."""
    row: dict[str, Any] = {"trial": number, "status": "", "accuracy": math.nan, "peak_ram_bytes": math.nan,
                           "madds": math.nan, "params": math.nan, "model_bytes": math.nan, "latency_ms": math.nan,
                           "epochs_trained": 0, "wall_time_s": 0.0, "feasible": False, "violations": "",
                           "reason": "", "spec_path": "", "checkpoint_path": "", "node": "", "ray_node_id": "",
                           "spec_key": "", "duplicate_of": -1}
    for key, value in params.items():
        row[f"param_{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return row


def _plain(value: Any) -> Any:
    """numpy/pandas scalars -> JSON; NaN -> None."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value
