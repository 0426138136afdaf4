"""Run directories for the report and browse tests, made without running a search.

``make_run`` samples candidates from a real search space, scores them with the real cost model,
and records rows made by the search's own ``new_row`` through ``RunStore``: a mix of
complete, stopped early, infeasible, failed and invalid trials, with each trained candidate's
``arch.json``. Accuracies are made up (a deterministic function of the costs plus noise), so the
front is non-trivial.
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path
from typing import Any

from rnnpool_nas.arch.spec import SpecError
from rnnpool_nas.cost import evaluate
from rnnpool_nas.run.budget import Budget, parse_bytes
from rnnpool_nas.search.space import SearchSpace
from rnnpool_nas.run.store import RunStore, new_row

#: A figure embedded in a report page: plot id, kind, the figure's JSON.
FIGURE_RE = re.compile(r'<script type="application/json" data-plot="([^"]+)" data-kind="([^"]+)">(.*?)</script>', re.S)

SPACE = "fashion-mnist"
BUDGET = Budget(ram_bytes=parse_bytes("8KB"), name="fm-8k")


def run_config(space: SearchSpace, trials: int, budget: Budget = BUDGET) -> dict[str, Any]:
    """A resolved config like the search's (``SearchConfig.to_dict()`` plus what it adds)."""
    return {
        "space": space.to_dict(), "space_path": space.source, "param_order": space.param_names(), "budget": budget.to_dict(), "out": "",
        "dataset": space.dataset, "data_dir": None, "trials": trials, "epochs": 2, "workers": 2,
        "objectives": ["accuracy", "peak_ram"], "sampler": "nsga2", "seed": 0, "limit": 1000, "batch_size": 128,
        "lr": 0.05, "early_stopping": True, "address": None, "resume": False, "version": "test",
        "created": "2026-01-02 03:04:05",
    }


def make_run(root: Path, trials: int = 40, seed: int = 1, complete: bool = True, budget: Budget = BUDGET,
             pareto: bool = True, outcome: str | None = None) -> Path:
    """A run directory at ``root`` with ``trials`` finished candidates. ``complete=False``
    records every feasible candidate as stopped or failed (a run without a completed trial);
    ``outcome`` records every feasible candidate with that status instead (``"scored"``: a
    ``--cost-only`` run; ``"complete"``: a run where every trial within budget completed)."""
    space = SearchSpace.load(SPACE)
    store = RunStore.create(root, run_config(space, trials, budget))
    rng = random.Random(seed)
    for number in range(trials):
        params = space.random_params(rng)
        row = new_row(number, params)
        try:
            spec = space.build(params)
        except SpecError as exc:
            row.update(status="invalid", reason=str(exc))
            store.record(row)
            continue
        costs = evaluate(spec, budget.dtype, budget.convention, profile=False)
        row.update(peak_ram_bytes=costs.peak_ram_bytes, madds=costs.madds, params=costs.params,
                   model_bytes=costs.model_bytes, latency_ms=math.nan)
        violations = budget.violations(costs)
        row.update(feasible=not violations, violations="; ".join(violations))
        if violations:
            row.update(status="infeasible")
            store.record(row)
            continue
        trial_dir = store.trial_dir(number)
        (trial_dir / "arch.json").write_text(spec.to_json())
        accuracy = 0.62 + 0.25 * (1 - math.exp(-costs.madds / 1.5e6)) + rng.uniform(-0.03, 0.03)
        draw = rng.random()
        status = "complete" if complete and draw < 0.7 else ("stopped" if draw < 0.85 or not complete and draw < 0.9
                                                             else "failed")
        status = outcome or status
        if status == "scored":
            row.update(status=status, spec_path=str(trial_dir / "arch.json"), reason="cost-only search: not trained")
            store.record(row)
            continue
        row.update(status=status, spec_path=str(trial_dir / "arch.json"), wall_time_s=rng.uniform(5, 20),
                   node="test-node")
        if status == "complete":
            row.update(accuracy=round(accuracy, 4), epochs_trained=2, checkpoint_path=str(trial_dir / "checkpoint.pt"))
        elif status == "stopped":
            row.update(accuracy=round(accuracy - 0.05, 4), epochs_trained=1,
                       reason="stopped early by the scheduler after 1 epoch(s)",
                       checkpoint_path=str(trial_dir / "checkpoint.pt"))
        else:
            row.update(reason="RuntimeError: failure injected by the test fixture")
        store.record(row)
    if pareto:
        store.write_pareto(["accuracy", "peak_ram"])
    return Path(root)


def figures(page: str) -> dict[str, dict]:
    """Every figure embedded in a report page, by plot id (in page order)."""
    return {plot_id: json.loads(text) for plot_id, _, text in FIGURE_RE.findall(page)}
