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
leaves a half-written table; ``open`` refuses a folder that is not a run, with one line. A
command that writes a run holds its lock (``lock.py``: ``create``/``open`` with ``lock=``), so a
second writer is refused instead of overwriting the first one's rows.
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
from .status import FINAL
from .lock import LOCK, RunLock, lock_run
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

    def __init__(self, root: Path, config: dict[str, Any], rows: dict[int, dict[str, Any]],
                 lock: RunLock | None = None) -> None:
        self.root = root
        self.config = config
        self.rows = rows
        #: the run's exclusive lock (``create``/``open`` with ``lock=COMMAND``); ``close`` releases it
        self.lock = lock

    def close(self) -> None:
        """Release the run's lock (if this store holds it)."""
        if self.lock is not None:
            self.lock.release()

    # ------------------------------------------------------------------------- creation

    @classmethod
    def create(cls, root: str | os.PathLike, config: dict[str, Any], lock: str | None = None) -> "RunStore":
        """A new run in ``root`` (absent or empty). ``lock``: take the run's lock for that command
        first, so two searches started on one new ``--out`` cannot both create it."""
        root = Path(root)
        check_writable_folder(root)
        if root.exists() and (not root.is_dir() or has_files(root)):
            raise UserError(f"{root} already exists; pass --resume to continue that run, or choose another --out")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the run directory {root}: {exc.strerror or type(exc).__name__}") from None
        held = lock_run(root, lock) if lock else None
        try:
            if has_files(root):  # another process created it between the check and the lock
                raise UserError(f"{root} already exists; pass --resume to continue that run, or choose another --out")
            (root / "trials").mkdir(exist_ok=True)
            write_atomic(root / CONFIG, json.dumps(config, indent=2, default=str))
        except BaseException:
            if held is not None:
                held.release()
            raise
        return cls(root, config, {}, held)

    @classmethod
    def open(cls, root: str | os.PathLike, lock: str | None = None) -> "RunStore":
        """An existing run. ``lock``: take the run's exclusive lock for that command (a writer)
        before reading anything; a read-only caller passes none and creates nothing."""
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"{root} is not a run directory (no such folder)")
        held = lock_run(root, lock) if lock else None
        try:
            return cls._read(root, held)
        except BaseException:
            if held is not None:
                held.release()
            raise

    @staticmethod
    def read_config(root: str | os.PathLike) -> dict[str, Any]:
        """The run's config.json alone, read without the lock and without touching trials.parquet
        (which a running writer may be replacing): what ``search --resume`` checks before it takes
        the lock. A missing folder or file, or a damaged one, is one UserError line."""
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"{root} is not a run directory (no such folder)")
        try:
            config = json.loads((root / CONFIG).read_text())
        except FileNotFoundError:
            raise UserError(f"{root} is not a run directory (no {CONFIG})") from None
        except (OSError, ValueError, RecursionError) as exc:
            raise UserError(f"{root}/{CONFIG} is corrupt ({exc.__class__.__name__}); the run cannot be resumed") from None
        if not isinstance(config, dict) or "space" not in config or "budget" not in config:
            raise UserError(f"{root}/{CONFIG} is not a search configuration")
        return config

    @classmethod
    def _read(cls, root: Path, held: RunLock | None) -> "RunStore":
        config = cls.read_config(root)
        rows: dict[int, dict[str, Any]] = {}
        if (root / TRIALS).exists():
            try:
                frame = pd.read_parquet(root / TRIALS)
            except Exception as exc:  # pyarrow raises many types for a damaged file
                raise UserError(f"{root}/{TRIALS} is corrupt ({exc.__class__.__name__}); the run cannot be resumed") from None
            rows = {int(r["trial"]): r for r in frame.to_dict("records")}
        if held is not None:
            (root / "trials").mkdir(exist_ok=True)
        return cls(root, config, rows, held)

    # ---------------------------------------------------------------------------- access

    @property
    def storage_url(self) -> str:
        return f"sqlite:///{(self.root / STUDY).resolve()}"

    def trial_dir(self, number: int) -> Path:
        """``trials/NNNN/`` of trial ``number``, created if missing."""
        path = trial_path(self.root, number)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def final_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.rows.values() if r.get("status") in FINAL_STATES]

    def completed_with_params(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """The first ``complete`` trial whose hyperparameters equal ``params`` (compared as
        ``new_row`` stores them), or None: a searcher looks a candidate up here before training
        it, so a resumed sampler never trains a duplicate of a complete trial."""
        wanted = {k: _param_text(v) for k, v in new_row(-1, params).items() if k.startswith("param_")}
        for number in sorted(self.rows):
            row = self.rows[number]
            if row.get("status") != "complete":
                continue
            have = {k: _param_text(v) for k, v in row.items() if k.startswith("param_") and not _missing(v)}
            if have and have == wanted:
                return row
        return None

    def trial_metrics(self, number: int) -> dict[str, Any] | None:
        """A trial's own ``metrics.json`` (what its worker wrote last), or None if absent or unreadable."""
        try:
            metrics = json.loads((trial_path(self.root, number) / "metrics.json").read_text())
        except (OSError, ValueError):
            return None
        return metrics if isinstance(metrics, dict) else None

    def reconcile(self, number: int, epochs: int, pruned: bool = False) -> dict[str, Any] | None:
        """A row left ``running`` (the driver was killed after the trial ended but before the table
        was written), finished from the trial's ``metrics.json``: ``complete`` if it trained all
        ``epochs``, ``failed`` with its reason if it failed, ``stopped`` if Optuna already heard it
        was stopped early (``pruned``); the updated row, recorded, or None when metrics.json does
        not show a finished trial (then it is really interrupted)."""
        row = self.rows.get(number)
        metrics = self.trial_metrics(number)
        if row is None or metrics is None:
            return None
        trained = int(metrics.get("epochs_trained") or 0)
        accuracy = metrics.get("accuracy")
        if metrics.get("status") == "complete" and trained >= epochs and isinstance(accuracy, (int, float)):
            status, reason = "complete", ""
        elif metrics.get("status") == "failed":
            status, reason = "failed", str(metrics.get("reason") or "failed")
        elif pruned and trained > 0:
            status, reason = "stopped", f"stopped early by the scheduler after {trained} epoch(s)"
        else:
            return None
        trial_dir = trial_path(self.root, number)
        row = dict(row, status=status, reason=reason, epochs_trained=trained,
                   accuracy=float(accuracy) if isinstance(accuracy, (int, float)) else math.nan,
                   wall_time_s=float(metrics.get("wall_time_s") or 0.0), node=str(metrics.get("node") or ""),
                   ray_node_id=str(metrics.get("ray_node_id") or ""),
                   checkpoint_path=str(trial_dir / "checkpoint.pt") if status != "failed" else "")
        self.record(row)
        return row

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
            item = {k: plain(r.get(k)) for k in keep}
            item["hyperparameters"] = {k[6:]: plain(v) for k, v in r.items() if k.startswith("param_")}
            finalists.append(item)
        doc = {"objectives": objectives, "columns": columns, "budget": self.config.get("budget"), "finalists": finalists}
        write_atomic(self.root / PARETO, json.dumps(doc, indent=2))
        return finalists

    def copy_checkpoint(self, source: Path, number: int) -> None:
        """Carry an interrupted trial's checkpoint into the trial that resumes it."""
        if (source / "checkpoint.pt").exists():
            shutil.copy2(source / "checkpoint.pt", self.trial_dir(number) / "checkpoint.pt")


def trial_path(root: str | os.PathLike, number: int) -> Path:
    """Where trial ``number`` of the run at ``root`` keeps its files: ``trials/NNNN/`` (not created)."""
    return Path(root) / "trials" / f"{int(number):04d}"


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


def _param_text(value: Any) -> str:
    """A hyperparameter as comparable text: the table stores a column mixing types as text and
    an integer column with gaps as floats (4 -> "4", 4.0 -> "4")."""
    value = plain(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def has_files(root: Path) -> bool:
    """Whether a folder holds anything but the lock file."""
    return root.is_dir() and any(p.name != LOCK for p in root.iterdir())


def check_writable_folder(path: Path, flag: str = "--out") -> None:
    """One line if ``path`` cannot become a folder we write: an existing file, a file on the way
    (``--out some.txt/run``) or a read-only parent."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a folder")
    parent = path
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{flag} {path} is below {parent}, which is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {parent} is not writable")


def plain(value: Any) -> Any:
    """numpy/pandas scalars -> Python; NaN -> ``None`` (for JSON and tables)."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value
