"""Ray Tune's view of the search's ask/tell (:class:`~.searcher.OptunaAskTell`).

A module of its own because it imports Ray (slow), and at module level so that a pickled
:class:`TuneSearcher` is found again by name. It holds no Optuna object: see ``searcher.py``.
"""

from __future__ import annotations

import json

from ray.tune.search import Searcher

from .searcher import OptunaAskTell


class TuneSearcher(Searcher):
    """One Ray Tune config per candidate that :meth:`OptunaAskTell.propose` says should train."""

    def __init__(self, ask_tell: OptunaAskTell, threads: int) -> None:
        super().__init__(metric="accuracy", mode="max")
        self.ask_tell = ask_tell
        self.threads = threads
        self.numbers: dict[str, int] = {}  # Ray's trial id -> Optuna's trial number

    def suggest(self, trial_id: str):
        if not self.ask_tell.ready():
            return None  # Ray asks again after the next trial ends (see OptunaAskTell's ``lag``)
        proposal = self.ask_tell.propose()
        if proposal is None:
            return Searcher.FINISHED
        self.numbers[trial_id] = proposal.number
        return dict(self.ask_tell.trial_config, number=proposal.number, spec=proposal.spec.to_dict(),
                    dir=str(proposal.trial_dir.resolve()), threads=self.threads)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass  # intermediate accuracies go to the scheduler, not to multi-objective Optuna

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        number = self.numbers.pop(trial_id, None)
        if number is None:
            return
        try:
            metrics = json.loads((self.ask_tell.store.trial_dir(number) / "metrics.json").read_text())
        except (OSError, ValueError):
            metrics = {}
        self.ask_tell.finish(number, metrics, error=error, result=result)
