"""The Ray Tune searcher that drives Optuna's ask/tell: Optuna proposes, the cost model filters.

Ray Tune pickles its search algorithm (into the experiment state, when a ``Tuner`` is made), and
what an Optuna sampler can pickle changes between releases (optuna 5.1's ``NSGAIISampler`` holds a
thread lock). So the Optuna study never travels: it lives on the driver, attached to the searcher
with :meth:`OptunaAskTell.attach`. What :class:`OptunaAskTell` pickles is its own explicit state
(the run directory, the search settings, the numbers of the trials in flight), plain data only; a
copy restored from a pickle re-attaches the study from the run's ``study.db`` on first use.

Contract:

- :meth:`OptunaAskTell.propose` asks Optuna until a candidate fits the budget and returns it as a
  :class:`Proposal` (its trial directory holds ``arch.json``), or ``None`` when every trial is
  asked. Candidates over budget are told to Optuna as infeasible (their costs as objectives,
  accuracy 0, their budget excess as trial constraints) and recorded, never trained; specs the
  space cannot build are recorded as ``invalid``.
- A candidate whose built spec equals an earlier trial's (inactive hyperparameters differ, the
  network does not) never trains again: it is recorded as ``duplicate`` with ``duplicate_of``
  pointing at the first trial, and Optuna is told that trial's result when Optuna is told the
  first trial's.
- :meth:`OptunaAskTell.finish` takes a trained trial's ``metrics.json``, records it at once, and
  tells Optuna: a complete trial its objectives, a trial the scheduler stopped *pruned*
  (multi-objective Optuna would take its last intermediate accuracy as final), a failed one
  *failed*.
- Reproducible order (``lag``): the k-th candidate that trains is asked only when Optuna has been
  told the results of exactly the trained candidates 0 .. k-``lag`` (:meth:`ready` is false until
  those have finished), and a result is told no earlier than that, however the workers' trials
  happen to finish. So with the same seed a search proposes the same candidates every time (with
  ``workers`` in parallel, ``lag`` = 2·workers - 1: a free worker waits only for a trial that is
  slower than ``lag`` - 1 trials started after it). Early stopping (ASHA) still depends on timing.
  Once every trial is asked, results are told as they come; with ``lag=None`` (random search,
  whose proposals never depend on results) always.
- Every row goes to the run directory as it changes and to ``on_record`` (progress, report).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..arch.spec import ArchSpec, SpecError
from ..errors import UserError
from ..run.status import REUSABLE
from ..run.budget import Budget
from ..run.pareto import OBJECTIVE_COLUMNS
from ..run.store import RunStore, new_row



def spec_key(spec: ArchSpec) -> str:
    """The ``spec_key`` column: :meth:`ArchSpec.network_key`."""
    return spec.network_key()


@dataclass
class Proposal:
    """A candidate that fits the budget and should be trained."""

    number: int
    spec: ArchSpec
    row: dict[str, Any]
    trial_dir: Path


def untrained_values(row: dict[str, Any], objectives: list[str]) -> list[float]:
    """What Optuna is told of a candidate that never trained: accuracy 0 and its costs."""
    return [0.0 if c == "accuracy" else float(row[OBJECTIVE_COLUMNS[c]] or 0) for c in objectives]


def trained_values(row: dict[str, Any], objectives: list[str]) -> list[float]:
    return [float(row["accuracy"]) if c == "accuracy" else float(row[OBJECTIVE_COLUMNS[c]]) for c in objectives]


def tell_like(study, number: int, row: dict[str, Any], objectives: list[str]) -> None:
    """Tell Optuna that trial ``number`` ended as ``row`` did: a complete trial's objectives, a
    cost-only one's costs with accuracy 0, a stopped one *pruned*, anything else *failed*."""
    from optuna.trial import TrialState

    status = row.get("status")
    if status == "complete":
        study.tell(number, trained_values(row, objectives))
    elif status == "scored":
        study.tell(number, untrained_values(row, objectives))
    else:
        study.tell(number, state=TrialState.PRUNED if status == "stopped" else TrialState.FAIL)


def cost_columns(costs) -> dict[str, Any]:
    return {"peak_ram_bytes": costs.peak_ram_bytes, "madds": costs.madds, "params": costs.params,
            "model_bytes": costs.model_bytes,
            "latency_ms": costs.latency_ms if costs.latency_ms is not None else math.nan}


class OptunaAskTell:
    """Optuna's ask/tell behind the interface a Ray Tune searcher needs (see the module doc).

    ``space``, ``budget`` and ``store`` are the search's; ``trials`` caps how many candidates
    are asked in all; ``trial_config`` is what every trained trial's config carries (data set,
    epochs, ...); ``on_record`` hears every row as it is written.
    """

    def __init__(self, space, budget: Budget, store: RunStore, *, trials: int, objectives: list[str],
                 epochs: int, on_record: Callable[[dict[str, Any]], None] | None = None,
                 trial_config: dict[str, Any] | None = None, lag: int | None = 1) -> None:
        self.space = space
        self.budget = budget
        self.run_dir = str(store.root)
        self.trials = trials
        self.objectives = list(objectives)
        self.epochs = epochs
        self.trial_config = dict(trial_config or {})
        self.asked = len(store.final_rows())
        self.in_flight: dict[int, dict[str, Any]] = {}  # trial number -> its row
        self.waiting: dict[int, list[int]] = {}  # original trial -> duplicates told when it is told
        self.lag = None if lag is None else max(1, int(lag))
        self.trained: list[int] = []  # the trial numbers of the candidates that train, in order
        self.held: list[int] = []  # finished and recorded, not yet told to Optuna (see ``lag``)
        self.train_seconds = 0.0
        self.duplicates = sum(1 for r in store.final_rows() if r.get("status") == "duplicate")
        self._store: RunStore | None = store
        self._study = None
        self._on_record = on_record

    # ------------------------------------------------------------------ driver-side objects

    def attach(self, study, store: RunStore | None = None,
               on_record: Callable[[dict[str, Any]], None] | None = None) -> "OptunaAskTell":
        """Give the searcher its Optuna study (and optionally the open store and a record callback)."""
        self._study = study
        if store is not None:
            self._store = store
        if on_record is not None:
            self._on_record = on_record
        return self

    @property
    def store(self) -> RunStore:
        if self._store is None:
            self._store = RunStore.open(self.run_dir)
        return self._store

    @property
    def study(self):
        if self._study is None:  # a copy restored from a pickle: the study is in study.db
            import optuna

            self._study = optuna.load_study(study_name="search", storage=self.store.storage_url)
        return self._study

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_store=None, _study=None, _on_record=None)
        return state

    # ------------------------------------------------------------------------- proposals

    def _must_know(self) -> list[int] | None:
        """The trained candidates Optuna must have been told of before the next ask (all but the
        last ``lag - 1``); ``None``: every result, as it comes (see the module doc)."""
        if self.lag is None or self.asked >= self.trials:
            return None
        return self.trained[: max(0, len(self.trained) - self.lag + 1)]

    def ready(self) -> bool:
        """Whether the next candidate may be asked: every trained candidate that Optuna must know
        of by then has finished."""
        due = self._must_know()
        return due is None or not any(n in self.in_flight for n in due)

    def propose(self) -> Proposal | None:
        """Ask Optuna until a candidate should train; ``None`` when all ``trials`` are asked.
        Call it only when :meth:`ready` (the searcher waits otherwise)."""
        from optuna.trial import TrialState

        study, store = self.study, self.store
        self._release()
        while self.asked < self.trials:
            trial = study.ask()
            self.asked += 1
            params = self.space.suggest(trial)
            row = new_row(trial.number, params)
            try:
                spec = self.space.build(params)
                costs = self.budget.costs(spec)
            except (SpecError, UserError) as exc:
                study.tell(trial, state=TrialState.FAIL)
                row.update(status="invalid", reason=str(exc), feasible=False)
                self._record(row)
                continue
            excess = self.budget.excess(costs)
            for name, value in zip(self.budget.constraint_names(), excess):
                trial.set_constraint(name, value)
            for name, value in cost_columns(costs).items():  # optuna-dashboard shows them
                if value == value:  # not NaN
                    trial.set_user_attr(name, value)
            row.update(cost_columns(costs), feasible=self.budget.fits(costs),
                       violations="; ".join(self.budget.violations(costs)), spec_key=spec_key(spec))
            if not row["feasible"]:
                study.tell(trial, untrained_values(row, self.objectives))
                row.update(status="infeasible")
                self._record(row)
                continue
            original = self._original_of(row["spec_key"], trial.number) or store.completed_with_params(params)
            if original is not None:
                self._duplicate(trial.number, row, original)
                continue
            trial_dir = store.trial_dir(trial.number)
            source = trial.user_attrs.get("resume_from")
            if source:
                store.copy_checkpoint(Path(source), trial.number)
            (trial_dir / "arch.json").write_text(spec.to_json())
            row.update(status="running", spec_path=str(trial_dir / "arch.json"))
            store.record(row)
            self.in_flight[trial.number] = row
            self.trained.append(trial.number)
            return Proposal(trial.number, spec, row, trial_dir)
        self._release()
        return None

    def _original_of(self, key: str, number: int) -> dict[str, Any] | None:
        for r in sorted(self.store.rows.values(), key=lambda r: int(r["trial"])):
            if int(r["trial"]) != number and r.get("spec_key") == key and r.get("status") in REUSABLE:
                return r
        return None

    def _duplicate(self, number: int, row: dict[str, Any], original: dict[str, Any]) -> None:
        """Record a repeat of ``original``'s network; tell Optuna its result now or when known."""
        row.update(status="duplicate", duplicate_of=int(original["trial"]),
                   reason=f"same network as trial {int(original['trial'])}: its result is reused, not retrained")
        self.duplicates += 1
        first = int(original["trial"])
        row.update(accuracy=original.get("accuracy", math.nan) if original.get("status") != "running" else math.nan,
                   epochs_trained=original.get("epochs_trained", 0))
        if first in self.in_flight or first in self.held:
            self.waiting.setdefault(first, []).append(number)
        else:
            self._tell_like(number, original)
        self._record(row)

    def _tell_like(self, number: int, original: dict[str, Any]) -> None:
        tell_like(self.study, number, original, self.objectives)

    # -------------------------------------------------------------------------- results

    def finish(self, number: int, metrics: dict[str, Any], error: bool = False,
               result: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Record how a trained trial ended (its ``metrics.json``) and the duplicates that waited
        for it; Optuna hears of them when ``lag`` allows. Returns the row, ``None`` for an
        unknown trial."""
        row = self.in_flight.pop(number, None)
        if row is None:
            return None
        trial_dir = self.store.trial_dir(number)
        result = result or {}
        epochs = int(metrics.get("epochs_trained") or result.get("epoch") or 0)
        accuracy = metrics.get("accuracy", result.get("accuracy"))
        if error or metrics.get("status") == "failed":
            status, reason = "failed", metrics.get("reason") or "the trial raised (see Ray's logs)"
        elif metrics.get("status") == "complete" and epochs >= self.epochs:
            status, reason = "complete", ""
        else:
            status, reason = "stopped", f"stopped early by the scheduler after {epochs} epoch(s)"
        row.update(status=status, reason=reason, epochs_trained=epochs,
                   accuracy=float(accuracy) if accuracy is not None else math.nan,
                   wall_time_s=float(metrics.get("wall_time_s", 0.0)), node=metrics.get("node", ""),
                   ray_node_id=metrics.get("ray_node_id", ""),
                   checkpoint_path=str(trial_dir / "checkpoint.pt") if status != "failed" else "")
        self.train_seconds += row["wall_time_s"]
        self._record(row)
        for dup in self.waiting.get(number, []):
            dup_row = self.store.rows[dup]
            dup_row.update(accuracy=row["accuracy"], epochs_trained=epochs)
            self._record(dup_row)
        self.held.append(number)
        self._release()
        return row

    def _release(self) -> None:
        """Tell Optuna the held results it may know now (see ``lag`` in the module doc), and
        the duplicates that waited for them."""
        due = self._must_know()
        for number in sorted(set(self.held) if due is None else set(due) & set(self.held)):
            self.held.remove(number)
            row = self.store.rows[number]
            self._tell_like(number, row)
            for dup in self.waiting.pop(number, []):
                self._tell_like(dup, row)

    def settle_untrained(self, proposal: Proposal, status: str, reason: str) -> None:
        """End a proposal without training it (``--cost-only``): Optuna hears its costs, accuracy 0."""
        self.in_flight.pop(proposal.number, None)
        self.study.tell(proposal.number, untrained_values(proposal.row, self.objectives))
        proposal.row.update(status=status, reason=reason)
        self._record(proposal.row)

    def _record(self, row: dict[str, Any]) -> None:
        self.store.record(row)
        self.store.write_pareto(self.objectives)
        if self._on_record is not None:
            self._on_record(row)


__all__ = ["OptunaAskTell", "Proposal", "cost_columns", "spec_key", "tell_like", "trained_values", "untrained_values"]
