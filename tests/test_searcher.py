"""The search's ask/tell (search/searcher.py) and its Ray Tune face (search/tune_searcher.py):
what Ray pickles holds no Optuna object; a restored copy re-attaches the study from study.db;
a network trained once is never trained again."""

from __future__ import annotations

import hashlib
import json
import pickle
import random
from pathlib import Path

import optuna
import pytest
import ray.cloudpickle

from rnnpool_nas.run.budget import Budget, parse_bytes
from rnnpool_nas.search.runner import SearchConfig, make_ask_tell, _sampler
from rnnpool_nas.search.searcher import OptunaAskTell, spec_key
from rnnpool_nas.search.space import SearchSpace
from rnnpool_nas.run.store import RunStore
from rnnpool_nas.search.tune_searcher import TuneSearcher

from .conftest import TESTS

SPACE = str(TESTS / "data" / "tiny_space.yaml")


def _setup(tmp_path: Path, sampler: str = "nsga2", trials: int = 8, budget: str = "1MB"):
    cfg = SearchConfig(space=SPACE, budget=Budget(ram_bytes=parse_bytes(budget)), out=str(tmp_path / "run"),
                       trials=trials, epochs=1, sampler=sampler, seed=0)
    space = SearchSpace.load(SPACE)
    store = RunStore.create(cfg.out, {"space": {}, "budget": cfg.budget.to_dict()})
    study = optuna.create_study(directions=["maximize", "minimize"], storage=store.storage_url, study_name="search",
                                sampler=_sampler(sampler, 0, trials))
    return cfg, space, store, study


def _finish(searcher: TuneSearcher, trial_id: str, config: dict, accuracy: float = 0.5) -> None:
    (Path(config["dir"]) / "metrics.json").write_text(json.dumps(
        {"status": "complete", "epochs_trained": 1, "accuracy": accuracy, "wall_time_s": 0.1}))
    searcher.on_trial_complete(trial_id, {"accuracy": accuracy, "epoch": 1})


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "random"])
def test_the_tune_searcher_pickles_without_the_study_and_restores(tmp_path, sampler):
    """Ray Tune pickles its search algorithm: with every sampler (optuna 5.1's NSGA-II holds a
    thread lock) the pickle carries no Optuna object, and a restored copy goes on from study.db."""
    cfg, space, store, study = _setup(tmp_path, sampler)
    searcher = TuneSearcher(make_ask_tell(space, cfg.budget, store, cfg, lambda line: None).attach(study), 1)
    first = searcher.suggest("t0")
    with pytest.raises(TypeError) if sampler == "nsga2" and optuna.__version__ >= "5.1" else _no_raise():
        ray.cloudpickle.dumps(study)  # the very thing that broke Tuner(...) with optuna 5.1
    blob = ray.cloudpickle.dumps(searcher)
    assert b"optuna.study" not in blob and b"optuna.samplers" not in blob
    restored = pickle.loads(blob)
    assert restored.ask_tell._study is None and restored.numbers == {"t0": first["number"]}
    _finish(restored, "t0", first, accuracy=0.75)  # re-attaches the study from study.db
    reloaded = optuna.load_study(study_name="search", storage=store.storage_url)
    assert reloaded.trials[first["number"]].values[0] == 0.75
    second = restored.suggest("t1")  # and asks the next candidate of the same study
    assert second["number"] > first["number"]


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_network_is_trained_once(tmp_path, monkeypatch):
    """Candidates whose built spec equals an earlier trial's (whatever their inactive
    hyperparameters) are recorded as duplicates pointing at it and told its result; only the
    first trains."""
    cfg, space, store, study = _setup(tmp_path, "random", trials=6)
    fixed = _some_spec(space)
    monkeypatch.setattr(space, "build", lambda params: fixed)  # every proposal is the same network
    ask_tell = make_ask_tell(space, cfg.budget, store, cfg, lambda line: None, workers=2).attach(study)
    searcher = TuneSearcher(ask_tell, 1)
    first = searcher.suggest("t0")
    second = searcher.suggest("t1")  # the original is still training: the duplicate waits for it
    assert second == TuneSearcher.FINISHED and len(store.rows) == 6
    _finish(searcher, "t0", first, accuracy=0.8)
    rows = store.rows
    dups = [r for r in rows.values() if r["status"] == "duplicate"]
    assert len(dups) == 5 and all(r["duplicate_of"] == first["number"] for r in dups)
    assert all(r["accuracy"] == 0.8 for r in dups)
    assert [t.values[0] for t in study.trials] == [0.8] * 6  # Optuna heard the result for every one
    assert ask_tell.duplicates == 5
    assert [f["trial"] for f in store.write_pareto(["accuracy", "peak_ram"])] == [first["number"]]


def _simulate(tmp_path: Path, durations_seed: int, workers: int = 2, trials: int = 24):
    """A search with ``workers`` trials at a time whose trials take random times (seeded by
    ``durations_seed``), so they finish in a different order for each seed; a trial's accuracy
    is a fixed function of its network. Returns what the run directory and the study end with."""
    cfg, space, store, study = _setup(tmp_path / f"run-{durations_seed}", "tpe", trials=trials, budget="2KB")
    ask_tell = make_ask_tell(space, cfg.budget, store, cfg, lambda line: None, workers=workers).attach(study)
    rng = random.Random(durations_seed)
    running: list[tuple[float, int]] = []  # (finish time, trial number)
    now, asked_all, waited = 0.0, False, 0
    while True:
        while not asked_all and len(running) < workers:
            if not ask_tell.ready():
                waited += 1
                break
            proposal = ask_tell.propose()
            if proposal is None:
                asked_all = True
                break
            running.append((now + rng.expovariate(1.0), proposal.number))
        if not running:
            break
        running.sort()
        now, number = running.pop(0)
        key = store.rows[number]["spec_key"]
        accuracy = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 16**8
        (store.trial_dir(number) / "metrics.json").write_text(json.dumps(
            {"status": "complete", "epochs_trained": 1, "accuracy": accuracy, "wall_time_s": 0.1}))
        ask_tell.finish(number, json.loads((store.trial_dir(number) / "metrics.json").read_text()))
    rows = sorted(({k: v for k, v in r.items() if k.startswith("param_") or k in ("trial", "status", "accuracy")}
                   for r in store.rows.values()), key=lambda r: r["trial"])
    told = [(t.number, t.state.name, t.values) for t in study.get_trials(deepcopy=False)]
    return rows, told, waited


def test_the_proposals_do_not_depend_on_which_trial_finishes_first(tmp_path):
    """Two workers, trials of random lengths: whatever order they finish in, TPE proposes the
    same candidates (Optuna is told results with a fixed lag), every trial is told in the end,
    and a free worker seldom waits."""
    runs = [_simulate(tmp_path, seed) for seed in (1, 2, 3)]
    rows, told, _ = runs[0]
    assert len(rows) == 24 and sum(r["status"] == "complete" for r in rows) >= 8
    assert all(state != "RUNNING" for _, state, _ in told)
    for other_rows, other_told, _ in runs[1:]:
        assert other_rows == rows and other_told == told
    assert sum(w for _, _, w in runs) <= 3 * 3


def test_random_search_never_waits(tmp_path):
    """Random proposals never depend on results: no worker waits, every result is told at once."""
    cfg, space, store, study = _setup(tmp_path, "random", trials=8, budget="1MB")
    ask_tell = make_ask_tell(space, cfg.budget, store, cfg, lambda line: None, workers=2).attach(study)
    first = ask_tell.propose()
    assert ask_tell.ready() and ask_tell.propose() is not None
    (store.trial_dir(first.number) / "metrics.json").write_text(json.dumps(
        {"status": "complete", "epochs_trained": 1, "accuracy": 0.5, "wall_time_s": 0.1}))
    ask_tell.finish(first.number, json.loads((store.trial_dir(first.number) / "metrics.json").read_text()))
    assert study.trials[first.number].state == optuna.trial.TrialState.COMPLETE


def test_a_result_recorded_but_not_yet_told_reaches_optuna_on_resume(tmp_path):
    """A trial that finished while an earlier one still trained is recorded at once but told to
    Optuna later (the lag); if the run is killed in between, resuming tells Optuna what the
    table says instead of failing the trial, and requeues only the interrupted ones."""
    from rnnpool_nas.search.runner import _requeue_interrupted

    cfg, space, store, study = _setup(tmp_path, "tpe", trials=8, budget="1MB")
    ask_tell = make_ask_tell(space, cfg.budget, store, cfg, lambda line: None, workers=2).attach(study)
    proposals = [ask_tell.propose() for _ in range(3)]
    assert not ask_tell.ready()  # the 4th candidate waits for the 1st
    second = proposals[1].number
    (store.trial_dir(second) / "metrics.json").write_text(json.dumps(
        {"status": "complete", "epochs_trained": 1, "accuracy": 0.625, "wall_time_s": 0.1}))
    ask_tell.finish(second, json.loads((store.trial_dir(second) / "metrics.json").read_text()))
    assert store.rows[second]["status"] == "complete"
    assert study.trials[second].state == optuna.trial.TrialState.RUNNING  # held back
    _requeue_interrupted(study, store, lambda line: None, epochs=1)  # what --resume does first
    assert study.trials[second].state == optuna.trial.TrialState.COMPLETE and study.trials[second].values[0] == 0.625
    requeued = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.WAITING]
    assert sorted(t.user_attrs["resume_from"][-4:] for t in requeued) == sorted(
        f"{p.number:04d}" for p in (proposals[0], proposals[2]))


def test_spec_key_ignores_the_name_only():
    space = SearchSpace.load(SPACE)
    spec = _some_spec(space)
    renamed = type(spec).from_dict(spec.to_dict() | {"name": "other"})
    assert spec_key(renamed) == spec_key(spec)
    wider = spec.to_dict()
    wider["num_classes"] = wider["num_classes"] + 1
    assert spec_key(type(spec).from_dict(wider)) != spec_key(spec)


def _some_spec(space: SearchSpace):
    """One network of the space (a seeded random draw)."""
    return space.build(space.suggest(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()))


def test_ask_tell_state_is_plain(tmp_path):
    cfg, space, store, study = _setup(tmp_path)
    ask_tell = OptunaAskTell(space, cfg.budget, store, trials=4, objectives=["accuracy", "peak_ram"], epochs=1)
    ask_tell.attach(study, on_record=print)
    state = ask_tell.__getstate__()
    assert state["_study"] is None and state["_store"] is None and state["_on_record"] is None


def test_spread_gives_distinct_feasible_networks_across_the_budget():
    from rnnpool_nas.cost import evaluate

    space = SearchSpace.load("fashion-mnist")
    budget = Budget(ram_bytes=parse_bytes("16KB"), convention="runtime")
    picks = space.spread(budget, 8, samples=400, seed=1)
    assert 4 <= len(picks) <= 8
    costs = [evaluate(space.build(p), "int8", "runtime", profile=False) for p in picks]
    assert all(not budget.violations(c) for c in costs)
    rams = [c.peak_ram_bytes for c in costs]
    assert rams == sorted(rams) and rams[-1] - rams[0] > budget.ram_bytes / 3  # spread, not clustered
    assert len({spec_key(space.build(p)) for p in picks}) == len(picks)
    assert space.spread(budget, 0) == []


def test_the_first_trials_of_a_warm_search_are_the_spread(tmp_path):
    """run_search enqueues SearchSpace.spread as the sampler's first generation (not for random)."""
    from rnnpool_nas.search.runner import _first_generation

    cfg, space, store, study = _setup(tmp_path, "nsga2", trials=16, budget="2KB")
    picks = space.spread(cfg.budget, _first_generation("nsga2", 16), seed=0)
    for params in picks:
        study.enqueue_trial(params)
    ask_tell = make_ask_tell(space, cfg.budget, store, cfg, lambda line: None).attach(study)
    proposals = [ask_tell.propose() for _ in range(len(picks))]
    assert [space.active(p.row and {k[6:]: v for k, v in p.row.items() if k.startswith("param_")})
            for p in proposals] == [space.active(p) for p in picks]
