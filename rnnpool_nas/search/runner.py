"""The search: Optuna proposes, the cost model filters, Ray Tune trains, the Pareto front comes out.

Optuna's ask/tell is driven from a Ray Tune ``Searcher``, so each side does what it is for:

- Optuna (NSGA-II by default, TPE or random) proposes a candidate from the search space. The
  cost model scores it at once; a candidate over any budget is told to Optuna as infeasible
  (its costs as objectives, accuracy 0, and its budget excess as trial constraints so the
  sampler learns the feasible region) and recorded, never trained. Specs the space cannot
  build are recorded as ``invalid`` and told as failed.
- Ray Tune runs the feasible ones, ``workers`` at a time, each with its share of the cores,
  with ASHA early stopping on validation accuracy. A trial the scheduler stops is told to Optuna
  as *pruned* and recorded as ``stopped`` with the epochs it trained: multi-objective Optuna
  would otherwise take its last intermediate accuracy as a final one, so a stopped trial never
  enters the Pareto front. A trial that fails is recorded with its reason and the search goes on.
- Everything lands in the run directory (``run/store.py``) as it happens. ``resume`` continues an
  interrupted run: finished trials are kept, a trial that was running is told to Optuna as failed
  and its hyperparameters are asked again, resuming from its last epoch checkpoint.
"""

from __future__ import annotations

import json
from collections import Counter
import math
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from ..arch.spec import ArchSpec
from ..errors import UserError
from ..run.status import FINAL
from ..units import format_bytes
from ..run.budget import Budget
from ..run.pareto import OBJECTIVE_COLUMNS, accuracy_ram_hypervolume, direction
from ..cluster import check_address, start_ray
from .searcher import OptunaAskTell, tell_like
from ..run.store import CONFIG, STUDY, RunStore, check_writable_folder, has_files, trial_path, write_atomic

SAMPLERS = ("nsga2", "tpe", "random")


@dataclass
class SearchConfig:
    space: str
    budget: Budget
    out: str
    dataset: str | None = None
    data_dir: str | None = None
    trials: int = 20
    epochs: int = 2
    workers: int = 2
    objectives: list[str] = field(default_factory=lambda: ["accuracy", "peak_ram"])
    #: multi-objective TPE: benchmarks/bench_search.py measured it above random search (and NSGA-II)
    sampler: str = "tpe"
    seed: int = 0
    limit: int | None = None  # training/validation images per trial (None: all)
    #: the seeded, stratified fraction of the training images the trials are scored on (the
    #: test set never reaches the search); None only for runs made before it existed
    val_fraction: float | None = 0.1
    batch_size: int | None = None  # None: the recipe's (TrainConfig.for_spec: 128 classifiers, 16 detectors)
    lr: float | None = None  # None: the recipe's (0.05 classifiers, 0.01 detectors)
    early_stopping: bool = True
    address: str | None = None
    cost_only: bool = False  # score candidates with the cost model only: nothing is trained
    #: the sampler's first trials are feasible networks spread over the RAM budget
    #: (``SearchSpace.spread``) instead of random ones; not for ``sampler="random"``
    warm_start: bool = True
    resume: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["budget"] = self.budget.to_dict()
        return out


@dataclass
class SearchResult:
    run_dir: Path
    finalists: list[dict[str, Any]]
    counts: dict[str, int]
    wall_time: float
    train_time: float
    #: where the wall time went: "setup" (space, data check, study), "ray_start", "tune" (trials
    #: running), "ray_stop", in seconds; benchmarks/bench_search.py prints them
    phases: dict[str, float] = field(default_factory=dict)
    #: the most common reason of the failed trials ("" if none failed)
    failure_reason: str = ""
    #: planned candidates with no final row when the search returned: it was interrupted (Ctrl-C
    #: reaches Ray Tune, which ends the experiment cleanly) and ``--resume`` runs the rest
    unfinished: int = 0


def _validate(cfg: SearchConfig) -> None:
    for name in ("trials", "epochs", "workers", "batch_size"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {cfg.seed}")
    if cfg.limit is not None and cfg.limit < 1:
        raise UserError(f"--limit must be at least 1 (images per trial), got {cfg.limit}")
    if cfg.lr is not None and not (isinstance(cfg.lr, (int, float)) and math.isfinite(cfg.lr) and cfg.lr > 0):
        raise UserError(f"the learning rate must be a positive number, got {cfg.lr}")
    if cfg.sampler not in SAMPLERS:
        raise UserError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {cfg.sampler!r}")
    unknown = [o for o in cfg.objectives if o not in OBJECTIVE_COLUMNS]
    if unknown or not cfg.objectives:
        raise UserError(f"unknown objective {unknown[0] if unknown else '(none)'!r}; use {', '.join(OBJECTIVE_COLUMNS)}")
    if cfg.val_fraction is not None and not 0.0 < cfg.val_fraction < 1.0:
        raise UserError(f"--val-fraction must be between 0 and 1 (exclusive), got {cfg.val_fraction}")
    if "accuracy" not in cfg.objectives:
        raise UserError("--objectives must include accuracy")
    if cfg.budget.ram_bytes is None and cfg.budget.madds is None and cfg.budget.latency_s is None:
        raise UserError("give a budget: --ram-budget, --madds-budget, --latency-budget or --constraints")


def _first_generation(name: str, trials: int) -> int:
    """NSGA-II's population size, TPE's start-up trials: what a warm start fills."""
    return max(4, min(50, trials // 4)) if name == "nsga2" else max(4, min(10, trials // 4))


def _sampler(name: str, seed: int, trials: int):
    """The constrained samplers read the budget excess each trial records with
    ``Trial.set_constraint`` (Optuna 5's replacement for ``constraints_func``)."""
    import optuna

    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=_first_generation(name, trials))
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=_first_generation(name, trials))
    return optuna.samplers.RandomSampler(seed=seed)


# ------------------------------------------------------------------------------ the trainable


_DATASETS: dict[tuple, Any] = {}


def _dataset_for(spec: ArchSpec, config: dict[str, Any]):
    """Trials run in reused Ray actors (``reuse_actors=True``): a worker loads its data once (the
    last two kept). A detection set depends on the candidate's input shape (faces-synth is painted
    at it), a classification set does not."""
    from ..train.recipe import load_data

    key = (config["dataset"], config["data_dir"], config["seed"], config["limit"],
           tuple(spec.input) if spec.detection is not None else None, config.get("val_fraction"))
    if key not in _DATASETS:
        while len(_DATASETS) >= 2:
            _DATASETS.pop(next(iter(_DATASETS)))
        _DATASETS[key] = load_data(spec, config["dataset"], data_dir=config["data_dir"], seed=config["seed"],
                                   limit=config["limit"], holdout=config.get("val_fraction"))
    return _DATASETS[key]


def train_trial(config: dict[str, Any]) -> None:
    """One Ray Tune trial: train a spec with its recipe (``TrainConfig.for_spec``: a detector's
    for a face detector), report accuracy every epoch, leave metrics.json (with ``train_config``,
    the recipe it trained with)."""
    from ..train.recipe import TrainConfig, train

    trial_dir = Path(config["dir"])
    start = time.perf_counter()
    metrics: dict[str, Any] = {"node": socket.gethostname(), "pid": os.getpid(), "started_at": time.time()}
    try:
        import ray

        if ray.is_initialized():
            metrics["ray_node_id"] = ray.get_runtime_context().get_node_id()
        spec = ArchSpec.from_dict(config["spec"])
        dataset = _dataset_for(spec, config)
        train_cfg = TrainConfig.for_spec(spec, epochs=config["epochs"], batch_size=config.get("batch_size"),
                                         lr=config.get("lr"), seed=config["seed"], threads=config.get("threads"))
        metrics["train_config"] = asdict(train_cfg)

        def report(m) -> None:
            from ray import tune

            # metrics.json first: a scheduler may stop the trial inside tune.report (ASHA stops
            # every trial that reaches max_t there), and then this function never returns
            history.append(asdict(m))
            done = m.epoch >= train_cfg.epochs
            metrics.update(status="complete" if done else "running", reason="", epochs_trained=m.epoch,
                           accuracy=m.val_accuracy, history=history)
            _write_metrics(trial_dir, metrics, start)
            tune.report({"accuracy": m.val_accuracy, "val_loss": m.val_loss, "epoch": m.epoch})

        history: list[dict[str, Any]] = []
        _, result = train(spec, dataset, train_cfg, checkpoint=trial_dir / "checkpoint.pt", resume=True,
                          callback=report)
        metrics.update(status=result.status, reason=result.reason, epochs_trained=result.epochs_trained,
                       accuracy=result.val_accuracy, history=[asdict(h) for h in result.history])
    except Exception as exc:  # recorded as failed; the search goes on
        metrics.update(status="failed", reason=f"{type(exc).__name__}: {exc}", epochs_trained=0, accuracy=None)
    _write_metrics(trial_dir, metrics, start)


def _write_metrics(trial_dir: Path, metrics: dict[str, Any], start: float) -> None:
    import json

    metrics["wall_time_s"] = time.perf_counter() - start
    metrics["ended_at"] = time.time()
    tmp = trial_dir / ".metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2))
    os.replace(tmp, trial_dir / "metrics.json")


def _progress_line(row: dict, store: RunStore, cfg: SearchConfig, budget: Budget, elapsed: float) -> str:
    rows = store.final_rows()
    done = len(rows)
    feasible = sum(1 for r in rows if r.get("feasible"))
    complete = [r for r in rows if r.get("status") == "complete"]
    best = max(complete, key=lambda r: r["accuracy"], default=None)
    status = row["status"]
    what = f"trial {row['trial']} {status}"
    if status == "complete":
        what += f": accuracy {row['accuracy']:.4f}, RAM {format_bytes(row['peak_ram_bytes'])}, {row['madds'] / 1e6:.1f}M MAdds"
    elif status == "infeasible":
        what += f": {row['violations']}"
    elif status in ("failed", "invalid", "stopped"):
        what += f": {row['reason'][:80]}"
    best_txt = f"best {best['accuracy']:.4f} (trial {best['trial']})" if best else "best -"
    eta = elapsed / done * (cfg.trials - done) if done else math.nan
    eta_txt = f"ETA {eta / 60:.1f} min" if eta == eta else "ETA -"
    return (f"[{done:>3}/{cfg.trials}] {what} | {best_txt} | feasible {feasible}, infeasible {done - feasible} "
            f"| {elapsed / 60:.1f} min, {eta_txt}")


# ---------------------------------------------------------------------------------- driver


#: what a resume restores from config.json; a flag given with another value contradicts the run
RESTORED = ("space", "budget", "dataset", "data_dir", "epochs", "limit", "objectives", "sampler", "seed",
            "batch_size", "lr", "early_stopping", "cost_only", "val_fraction")


def resume_config(out: str | os.PathLike, given: dict[str, Any], printer: Callable[[str], None] = print) -> SearchConfig:
    """The configuration of the run in ``out`` for ``search --resume``: everything in ``RESTORED``
    comes back from its config.json. ``given`` holds only what the user passed (flag name ->
    value; ``budget`` a Budget): a value that contradicts the run is one line (UserError); more
    ``trials`` than the run planned extend it (and say so); ``workers`` and ``address`` are free."""
    from .space import SearchSpace

    # config.json only, without the lock: trials.parquet may be mid-replace by a running writer,
    # whose lock run_search then reports ("in use by another rnnpool-nas process")
    saved = RunStore.read_config(out)
    try:
        budget = Budget.from_dict(saved["budget"])
        cfg = SearchConfig(space=saved.get("space_path") or saved["space"], budget=budget, out=str(out),
                           dataset=saved.get("dataset"), data_dir=saved.get("data_dir"),
                           trials=int(saved.get("trials", 20)), epochs=int(saved.get("epochs", 2)),
                           workers=int(saved.get("workers", 2)), objectives=list(saved.get("objectives") or
                                                                                 ["accuracy", "peak_ram"]),
                           sampler=saved.get("sampler", "nsga2"), seed=int(saved.get("seed", 0)),
                           limit=saved.get("limit"), batch_size=saved.get("batch_size"), lr=saved.get("lr"), early_stopping=bool(saved.get("early_stopping", True)),
                           address=saved.get("address"), cost_only=bool(saved.get("cost_only", False)), resume=True,
                           val_fraction=saved.get("val_fraction"))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{out}/config.json is not a search configuration this version can resume "
                        f"({type(exc).__name__}: {str(exc)[:80]})") from None
    for name, value in given.items():
        if value is None or name in ("workers", "address", "trials"):
            continue
        ours = getattr(cfg, name)
        if name == "budget":
            same = _same_budget(value, budget)
            value, ours = [value.describe()], [budget.describe()]  # shown unquoted
        elif name == "space":
            same = str(value) == str(ours) or SearchSpace.load(value).to_dict() == saved.get("space")
        elif name in ("data_dir", "dataset"):
            same = _absolute_data(str(value)) == ours if name == "dataset" else str(Path(value).resolve()) == ours
        else:
            same = value == ours
        if not same:
            flag = {"budget": "the budget flags give", "early_stopping": "--no-early-stopping", "cost_only": "--cost-only"}.get(
                name, "--" + name.replace("_", "-"))
            raise UserError(f"{flag} {_show(value)} contradicts the run in {out} ({_show(ours)}); a resume keeps its "
                            "configuration: drop the flag, or start a new run with another --out")
    if given.get("trials") is not None:
        if given["trials"] < cfg.trials:
            raise UserError(f"--trials {given['trials']} is fewer than the run's {cfg.trials}; a resume can only "
                            "extend a run (pass a larger --trials or none)")
        if given["trials"] > cfg.trials:
            printer(f"extending {out} from {cfg.trials} to {given['trials']} trials")
            cfg.trials = given["trials"]
    for name in ("workers", "address"):
        if given.get(name) is not None:
            setattr(cfg, name, given[name])
    return cfg


def _same_budget(given: Budget, saved: Budget) -> bool:
    """Whether budget flags given on resume agree with the run's budget: the limits must be equal;
    the dtype and convention only when the flags set them (a Budget's defaults mean "not given"),
    and the profile's name never matters."""
    fresh = Budget()
    g, s = given.to_dict(), saved.to_dict()
    for key in g:
        if key == "name" or (key in ("dtype", "convention", "clock_mhz") and g[key] == fresh.to_dict()[key]):
            continue
        if g[key] != s.get(key):
            return False
    return True


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return repr(value) if isinstance(value, str) else str(value)


def _absolute_data(dataset: str | None) -> str | None:
    """``KIND:PATH`` with PATH made absolute: Ray workers may run in another folder (or on another
    machine with the same layout), where a relative path finds nothing."""
    if not dataset:
        return dataset
    kind, sep, rest = dataset.partition(":")
    if sep and rest.strip():
        return f"{kind}:{Path(rest.strip()).expanduser().resolve()}"
    return dataset


def run_search(cfg: SearchConfig, printer: Callable[[str], None] = print,
               on_record: Callable[[dict[str, Any]], None] | None = None, *,
               trainable: Callable[[dict[str, Any]], None] = train_trial) -> SearchResult:
    """Run (or resume) a search; see the module docstring. ``printer`` gets the progress lines;
    ``on_record(row)`` hears every row of ``trials.parquet`` as it is written (the CLI refreshes
    the report page from it: the search itself knows nothing of reports). ``trainable(config)``
    is what each Ray trial runs (:func:`train_trial`; a caller may wrap it, e.g. a test that makes
    chosen trials fail). The run directory is locked while it runs (``lock.py``): a second writer
    gets one line."""
    stores: list[RunStore] = []
    try:
        return _run_search(cfg, printer, stores, on_record, trainable)
    finally:
        for store in stores:
            store.close()


def _run_search(cfg: SearchConfig, printer: Callable[[str], None], stores: list[RunStore],
                on_record: Callable[[dict[str, Any]], None] | None,
                trainable: Callable[[dict[str, Any]], None]) -> SearchResult:
    import optuna

    from .space import SearchSpace

    start = time.perf_counter()
    out = Path(cfg.out)
    if cfg.resume:
        store = RunStore.open(out, lock="search")
        stores.append(store)
        saved = store.config
        cfg.space, cfg.dataset, cfg.objectives = saved["space_path"], saved["dataset"], saved["objectives"]
        cfg.epochs, cfg.sampler, cfg.seed, cfg.limit = saved["epochs"], saved["sampler"], saved["seed"], saved["limit"]
        try:
            cfg.budget = Budget.from_dict(saved["budget"])
        except (KeyError, TypeError):
            raise UserError(f"{out}/config.json holds no budget; the run cannot be resumed") from None
        for name in ("data_dir", "batch_size", "lr", "early_stopping", "cost_only"):
            if name in saved:
                setattr(cfg, name, saved[name])
        _validate(cfg)
        cfg.val_fraction = saved.get("val_fraction")  # absent: a run from before the split, scored on test
        space = SearchSpace.load(cfg.space)
    else:
        _validate(cfg)
        if out.exists() and (not out.is_dir() or has_files(out)):
            raise UserError(f"{out} already exists; pass --resume to continue that run, or choose another --out")
        check_writable_folder(out)
        space = SearchSpace.load(cfg.space)
        cfg.dataset = _absolute_data(cfg.dataset or space.dataset)
        if cfg.data_dir:
            cfg.data_dir = str(Path(cfg.data_dir).expanduser().resolve())
    budget = cfg.budget
    _, cheapest = space.cheapest(budget)
    if not budget.fits(cheapest):
        raise UserError(
            f"no candidate of {space.name} fits the budget: the smallest reachable is peak RAM "
            f"{format_bytes(cheapest.peak_ram_bytes)}, {cheapest.madds / 1e6:.1f}M MAdds ({budget.dtype}, "
            f"{budget.convention} convention) ({'; '.join(budget.violations(cheapest))})"
        )
    if not cfg.cost_only:
        _check_data(space, cfg)
        if cfg.address:
            check_address(cfg.address)
    if not cfg.resume:
        config = cfg.to_dict() | {"space_path": str(cfg.space), "space": space.to_dict(),
                                  "param_order": space.param_names(), "version": __version__,
                                  "created": time.strftime("%Y-%m-%d %H:%M:%S")}
        store = RunStore.create(out, config, lock="search")
        stores.append(store)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = [direction(OBJECTIVE_COLUMNS[o]) for o in cfg.objectives]
    try:
        study = optuna.create_study(storage=store.storage_url, study_name="search", directions=directions,
                                    sampler=_sampler(cfg.sampler, cfg.seed, cfg.trials), load_if_exists=True)
        asked = len(study.get_trials(deepcopy=False))
    except Exception as exc:  # sqlalchemy/optuna raise many types for a damaged or foreign study.db
        raise UserError(f"{out}/{STUDY} cannot be read as the run's Optuna study ({type(exc).__name__}); "
                        "the run cannot be resumed") from None
    if cfg.resume and asked:
        # a sampler seeded as at the start would propose the run's first candidates again: advance
        # its seed by the trials the study holds (deterministic, and a new stream each resume)
        study.sampler = _sampler(cfg.sampler, cfg.seed + asked, cfg.trials)
        _requeue_interrupted(study, store, printer, cfg.epochs)
    if cfg.resume and cfg.trials > int(store.config.get("trials") or 0):
        # an extended run: the next resume restores the new count
        store.config = dict(store.config, trials=cfg.trials)
        write_atomic(out / CONFIG, json.dumps(store.config, indent=2, default=str))
    if not cfg.resume and cfg.warm_start and cfg.sampler != "random" and not cfg.cost_only:
        seeds = space.spread(budget, min(cfg.trials, _first_generation(cfg.sampler, cfg.trials)), seed=cfg.seed)
        for params in seeds:
            study.enqueue_trial(params)
        printer(f"warm start: the first {len(seeds)} trials are feasible networks spread over the budget")
    remaining = cfg.trials - len(store.final_rows())
    phases = {"setup": time.perf_counter() - start}
    if remaining <= 0:
        printer(f"{out}: all {cfg.trials} trials are done")
    elif cfg.cost_only or store.config.get("cost_only"):
        _score_only(space, budget, store, cfg, study, printer, on_record)
    else:
        _run_tune(space, budget, store, cfg, study, printer, phases, on_record, trainable)
    finalists = store.write_pareto(cfg.objectives)
    rows = store.final_rows()
    counts = {s.value: sum(1 for r in rows if r.get("status") == s) for s in FINAL}
    reasons = Counter(str(r.get("reason") or "unknown") for r in rows if r.get("status") == "failed")
    result = SearchResult(out, finalists, counts, time.perf_counter() - start,
                          sum(float(r.get("wall_time_s") or 0) for r in rows), phases,
                          reasons.most_common(1)[0][0][:200] if reasons else "",
                          max(0, int(store.config.get("trials") or cfg.trials) - len(rows)))
    _summary(result, store, cfg, budget, printer)
    return result


def _check_data(space, cfg: SearchConfig) -> None:
    """Before the first trial: the data set loads here (one image) and fits the space (task,
    classes), so a bad data set is one line instead of every trial failing in the workers."""
    from ..data import load_dataset
    from ..data.detection import is_detection_name, load_detection_dataset

    detection_data = bool(cfg.dataset) and is_detection_name(cfg.dataset)
    if (space.task == "detection") != detection_data:
        raise UserError(f"{space.name} is a {space.task} space but {cfg.dataset!r} is "
                        f"{'a detection' if detection_data else 'not a detection'} data set")
    if detection_data:  # fail before starting anything
        load_detection_dataset(cfg.dataset, data_dir=cfg.data_dir, seed=cfg.seed, limit=2, holdout=cfg.val_fraction)
        return
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, seed=cfg.seed, limit=1, holdout=cfg.val_fraction)
    if data.num_classes > space.num_classes:
        raise UserError(f"{cfg.dataset} has {data.num_classes} classes but the models of {space.name} have "
                        f"{space.num_classes} outputs: every trial would fail; use a space with num_classes: "
                        f"{data.num_classes} (or more)")


def make_ask_tell(space, budget: Budget, store: RunStore, cfg: SearchConfig, printer,
              on_record: Callable[[dict[str, Any]], None] | None = None, workers: int = 1) -> OptunaAskTell:
    """The search's ask/tell over this run; every row it writes is printed as a progress line and
    handed to ``on_record``. ``workers`` trials train at once: Optuna is told results with a lag
    of 2·workers - 1 trained candidates, so the proposals do not depend on which finishes first
    (random search, whose proposals never depend on results, hears them at once)."""
    started = time.perf_counter()

    def record(row: dict[str, Any]) -> None:
        printer(_progress_line(row, store, cfg, budget, time.perf_counter() - started))
        if on_record is not None:
            on_record(row)

    trial_config = {"dataset": cfg.dataset, "data_dir": cfg.data_dir, "limit": cfg.limit, "epochs": cfg.epochs,
                    "val_fraction": cfg.val_fraction, "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed}
    return OptunaAskTell(space, budget, store, trials=cfg.trials, objectives=cfg.objectives, epochs=cfg.epochs,
                         on_record=record, trial_config=trial_config,
                         lag=None if cfg.sampler == "random" else 2 * max(1, workers) - 1)


def _score_only(space, budget: Budget, store: RunStore, cfg: SearchConfig, study, printer, on_record=None) -> None:
    """``--cost-only``: the sampler proposes, the cost model scores, nothing trains. Rows are
    ``scored`` (within budget) or ``infeasible``; the sampler sees the costs (accuracy 0) and the
    budget excess, so it still learns the cheap, feasible region."""
    ask_tell = make_ask_tell(space, budget, store, cfg, printer, on_record).attach(study)
    printer(f"scoring {cfg.trials} candidates of {space.name} with the cost model only (nothing is trained)")
    while (proposal := ask_tell.propose()) is not None:
        ask_tell.settle_untrained(proposal, "scored", "cost-only search: not trained")


def _requeue_interrupted(study, store: RunStore, printer, epochs: int) -> None:
    """Trials the table calls ``running`` when a run resumes. A trial whose own metrics.json says
    it finished (the driver was killed after the trial ended, before or after Optuna heard of it,
    but before the table was written) is reconciled: recorded from metrics.json, told to Optuna
    if it was not, never trained again. The others were interrupted: failed in Optuna and asked
    again (same hyperparameters) so they resume from their last epoch checkpoint, which must load
    as plain data (``load_checkpoint``): a checkpoint holding anything else is refused with one line."""
    from optuna.trial import TrialState

    from ..train.checkpoint import check_training_checkpoint

    objectives = store.config.get("objectives", ["accuracy", "peak_ram"])
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    for number in sorted(n for n, r in store.rows.items() if r.get("status") == "running"):
        trial = trials.get(number)
        row = store.reconcile(number, epochs, pruned=trial is not None and trial.state == TrialState.PRUNED)
        if row is not None:
            if trial is not None and trial.state == TrialState.RUNNING:
                tell_like(study, number, row, objectives)
            printer(f"trial {number} had finished ({row['status']}) before the run stopped: recorded from its metrics.json")
    # recorded but not yet told (the searcher tells results in a fixed order, see searcher.py),
    # and duplicates that waited for such a trial: Optuna hears what the table says
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        row = store.rows.get(trial.number) or {}
        if row.get("status") == "duplicate":
            row = store.rows.get(int(row.get("duplicate_of", -1))) or {}
        if row.get("status") in ("complete", "stopped", "failed"):
            tell_like(study, trial.number, row, objectives)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        row = store.rows.get(trial.number)
        if row is not None and row.get("status") == "running":
            checkpoint = trial_path(store.root, trial.number) / "checkpoint.pt"
            if checkpoint.exists():
                check_training_checkpoint(checkpoint)  # refuse (one line) before anything is changed
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        row = store.rows.get(trial.number)
        if row is not None and row.get("status") == "running":
            study.enqueue_trial(dict(trial.params), user_attrs={"resume_from": str(store.trial_dir(trial.number))},
                                skip_if_exists=False)
            printer(f"trial {trial.number} was interrupted: its hyperparameters run again from its last checkpoint")
    for number in [n for n, r in store.rows.items() if r.get("status") == "running"]:
        store.forget(number)


def _run_tune(space, budget: Budget, store: RunStore, cfg: SearchConfig, study, printer,
              phases: dict[str, float], on_record=None, trainable: Callable[[dict[str, Any]], None] = train_trial) -> None:
    tick = time.perf_counter()
    started_here = start_ray(cfg.address)
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    phases["ray_start"] = time.perf_counter() - tick
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = max(1, min(cfg.workers, cpus)) if not cfg.address else max(cfg.workers, 1)
        per_trial = max(1, cpus // workers)
        if cfg.address:
            workers = max(1, cpus // per_trial)
        from .tune_searcher import TuneSearcher

        ask_tell = make_ask_tell(space, budget, store, cfg, printer, on_record, workers=workers).attach(study)
        searcher = TuneSearcher(ask_tell, per_trial)
        scheduler = (ASHAScheduler(metric="accuracy", mode="max", max_t=cfg.epochs, grace_period=max(1, cfg.epochs // 3),
                                   reduction_factor=3, time_attr="epoch")
                     if cfg.early_stopping and cfg.epochs >= 3 else FIFOScheduler())
        printer(f"searching {cfg.trials} candidates: {workers} worker(s) x {per_trial} core(s) on "
                f"{'cluster ' + cfg.address if cfg.address else 'this machine'}, {cfg.epochs} epoch(s) each, "
                f"{cfg.sampler} sampler; results in {store.root}/")
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": per_trial}),
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=cfg.trials,
                                        max_concurrent_trials=workers, reuse_actors=True),
            run_config=tune.RunConfig(name="ray", storage_path=str(store.root.resolve()), verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=0)),
        )
        tick = time.perf_counter()
        tuner.fit()
        phases["tune"] = time.perf_counter() - tick
    finally:
        tick = time.perf_counter()
        if started_here:
            ray.shutdown()
        phases["ray_stop"] = time.perf_counter() - tick


def _summary(result: SearchResult, store: RunStore, cfg: SearchConfig, budget: Budget, printer) -> None:
    c = result.counts
    share = 1 - result.train_time / max(result.wall_time, 1e-9) / max(1, cfg.workers)
    printer("")
    if result.unfinished:
        printer(f"interrupted: {result.unfinished} of the run's candidates did not run; "
                f"`rnnpool-nas search --out {store.root} --resume` runs them")
    printer(f"{'stopped' if result.unfinished else 'done'} in {result.wall_time / 60:.1f} min: {c['complete']} complete, {c['stopped']} stopped early, "
            f"{c['infeasible']} over budget (never trained), {c['failed']} failed, {c['invalid']} invalid"
            + (f", {c['scored']} scored within budget (cost only)" if c["scored"] else "")
            + (f", {c['duplicate']} duplicate(s) of an earlier trial's network not retrained" if c["duplicate"] else ""))
    if c["scored"]:
        cheap = sorted((r for r in store.final_rows() if r.get("status") == "scored"), key=lambda r: r["peak_ram_bytes"])
        printer("cheapest candidates within budget (cost only, untrained):")
        for r in cheap[:5]:
            printer(f"  trial {r['trial']:>4}: peak RAM {format_bytes(r['peak_ram_bytes'])}, {r['madds'] / 1e6:.1f}M MAdds, "
                    f"{r['params']:,} params, spec {r['spec_path']}")
    elif budget.ram_bytes:
        hv = accuracy_ram_hypervolume(store.final_rows(), budget.ram_bytes)
        printer(f"accuracy/RAM hypervolume {hv:.4f}; time not spent training about {max(0.0, share):.0%}")
    if result.finalists:
        printer("finalists (the Pareto front):")
        printer(f"  {'trial':>5}  {'accuracy':>8}  {'peak RAM':>12}  {'MAdds':>8}  {'params':>9}")
        for f in result.finalists:
            printer(f"  {f['trial']:>5}  {f['accuracy']:>8.4f}  {format_bytes(f['peak_ram_bytes']):>12}  "
                    f"{f['madds'] / 1e6:>7.2f}M  {f['params']:>9,}")
    else:
        printer("no trial completed within the budget, so there are no finalists yet")
    printer(f"results: {store.root}/trials.parquet, {store.root}/pareto.json, study {store.root}/study.db "
            f"(optuna-dashboard {store.storage_url})")
    sys.stdout.flush()
