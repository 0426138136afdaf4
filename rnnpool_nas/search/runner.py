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
- Everything lands in the run directory (``store.py``) as it happens. ``resume`` continues an
  interrupted run: finished trials are kept, a trial that was running is told to Optuna as failed
  and its hyperparameters are asked again, resuming from its last epoch checkpoint.
"""

from __future__ import annotations

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
from .budget import Budget
from .pareto import OBJECTIVE_COLUMNS, accuracy_ram_hypervolume, direction
from .searcher import OptunaAskTell, failure_injection
from .store import RunStore

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
    sampler: str = "nsga2"
    seed: int = 0
    limit: int | None = None  # training/validation images per trial (None: all)
    batch_size: int | None = None  # None: the recipe's (TrainConfig.for_spec: 128 classifiers, 16 detectors)
    lr: float | None = None  # None: the recipe's (0.05 classifiers, 0.01 detectors)
    early_stopping: bool = True
    address: str | None = None
    cost_only: bool = False  # score candidates with the cost model only: nothing is trained
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


def _validate(cfg: SearchConfig) -> None:
    for name in ("trials", "epochs", "workers", "batch_size"):
        if getattr(cfg, name) is not None and getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    if cfg.sampler not in SAMPLERS:
        raise UserError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {cfg.sampler!r}")
    unknown = [o for o in cfg.objectives if o not in OBJECTIVE_COLUMNS]
    if unknown or not cfg.objectives:
        raise UserError(f"unknown objective {unknown[0] if unknown else '(none)'!r}; use {', '.join(OBJECTIVE_COLUMNS)}")
    if "accuracy" not in cfg.objectives:
        raise UserError("--objectives must include accuracy")
    if cfg.budget.ram_bytes is None and cfg.budget.madds is None and cfg.budget.latency_s is None:
        raise UserError("give a budget: --ram-budget, --madds-budget, --latency-budget or --constraints")


def _sampler(name: str, seed: int, trials: int):
    """The constrained samplers read the budget excess each trial records with
    ``Trial.set_constraint`` (Optuna 5's replacement for ``constraints_func``)."""
    import optuna

    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, trials // 4)))
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=max(4, min(10, trials // 4)))
    return optuna.samplers.RandomSampler(seed=seed)


# ------------------------------------------------------------------------------ the trainable


_DATASETS: dict[tuple, Any] = {}


def _dataset_for(spec: ArchSpec, config: dict[str, Any]):
    """Trials run in reused Ray actors (``reuse_actors=True``): a worker loads its data once (the
    last two kept). A detection set depends on the candidate's input shape (faces-synth is painted
    at it), a classification set does not."""
    from ..train.recipe import load_data

    key = (config["dataset"], config["data_dir"], config["seed"], config["limit"],
           tuple(spec.input) if spec.detection is not None else None)
    if key not in _DATASETS:
        while len(_DATASETS) >= 2:
            _DATASETS.pop(next(iter(_DATASETS)))
        _DATASETS[key] = load_data(spec, config["dataset"], data_dir=config["data_dir"], seed=config["seed"],
                                   limit=config["limit"])
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
        if config.get("fail"):
            raise RuntimeError("failure injected by RNNPOOL_NAS_FAIL_TRIALS")
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


def run_search(cfg: SearchConfig, printer: Callable[[str], None] = print,
               on_record: Callable[[dict[str, Any]], None] | None = None) -> SearchResult:
    """Run (or resume) a search; see the module docstring. ``printer`` gets the progress lines;
    ``on_record(row)`` hears every row of ``trials.parquet`` as it is written (the CLI refreshes
    the report page from it: the search itself knows nothing of reports)."""
    import optuna

    from .space import SearchSpace

    _validate(cfg)
    start = time.perf_counter()
    out = Path(cfg.out)
    if cfg.resume:
        store = RunStore.open(out)
        saved = store.config
        cfg.space, cfg.dataset, cfg.objectives = saved["space_path"], saved["dataset"], saved["objectives"]
        cfg.epochs, cfg.sampler, cfg.seed, cfg.limit = saved["epochs"], saved["sampler"], saved["seed"], saved["limit"]
        space = SearchSpace.load(cfg.space)
    else:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise UserError(f"{out} already exists; pass --resume to continue that run, or choose another --out")
        space = SearchSpace.load(cfg.space)
        cfg.dataset = cfg.dataset or space.dataset
    budget = cfg.budget
    _, cheapest = space.cheapest(budget)
    if not budget.fits(cheapest):
        raise UserError(
            f"no candidate of {space.name} fits the budget: the smallest reachable is peak RAM "
            f"{format_bytes(cheapest.peak_ram_bytes)}, {cheapest.madds / 1e6:.1f}M MAdds ({budget.dtype}, "
            f"{budget.convention} convention) ({'; '.join(budget.violations(cheapest))})"
        )
    if not cfg.resume and not cfg.cost_only:
        from ..data import load_dataset
        from ..data.detection import is_detection_name, load_detection_dataset

        detection_data = bool(cfg.dataset) and is_detection_name(cfg.dataset)
        if (space.task == "detection") != detection_data:
            raise UserError(f"{space.name} is a {space.task} space but {cfg.dataset!r} is "
                            f"{'a detection' if detection_data else 'not a detection'} data set")
        if detection_data:  # fail before starting anything
            load_detection_dataset(cfg.dataset, data_dir=cfg.data_dir, seed=cfg.seed, limit=1)
        else:
            load_dataset(cfg.dataset, data_dir=cfg.data_dir, seed=cfg.seed, limit=1)
    if not cfg.resume:
        config = cfg.to_dict() | {"space_path": str(cfg.space), "space": space.to_dict(),
                                  "param_order": space.param_names(), "version": __version__,
                                  "created": time.strftime("%Y-%m-%d %H:%M:%S")}
        store = RunStore.create(out, config)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = [direction(OBJECTIVE_COLUMNS[o]) for o in cfg.objectives]
    study = optuna.create_study(storage=store.storage_url, study_name="search", directions=directions,
                                sampler=_sampler(cfg.sampler, cfg.seed, cfg.trials), load_if_exists=True)
    if cfg.resume:
        _requeue_interrupted(study, store, printer)
    remaining = cfg.trials - len(store.final_rows())
    phases = {"setup": time.perf_counter() - start}
    if remaining <= 0:
        printer(f"{out}: all {cfg.trials} trials are done")
    elif cfg.cost_only or store.config.get("cost_only"):
        _score_only(space, budget, store, cfg, study, printer, on_record)
    else:
        _run_tune(space, budget, store, cfg, study, printer, phases, on_record)
    finalists = store.write_pareto(cfg.objectives)
    rows = store.final_rows()
    counts = {s.value: sum(1 for r in rows if r.get("status") == s) for s in FINAL}
    result = SearchResult(out, finalists, counts, time.perf_counter() - start,
                          sum(float(r.get("wall_time_s") or 0) for r in rows), phases)
    _summary(result, store, cfg, budget, printer)
    return result


def _ask_tell(space, budget: Budget, store: RunStore, cfg: SearchConfig, printer,
              on_record: Callable[[dict[str, Any]], None] | None = None) -> OptunaAskTell:
    """The search's ask/tell over this run; every row it writes is printed as a progress line and
    handed to ``on_record``."""
    started = time.perf_counter()

    def record(row: dict[str, Any]) -> None:
        printer(_progress_line(row, store, cfg, budget, time.perf_counter() - started))
        if on_record is not None:
            on_record(row)

    trial_config = {"dataset": cfg.dataset, "data_dir": cfg.data_dir, "limit": cfg.limit, "epochs": cfg.epochs,
                    "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed}
    return OptunaAskTell(space, budget, store, trials=cfg.trials, objectives=cfg.objectives, epochs=cfg.epochs,
                         on_record=record, trial_config=trial_config)


def _score_only(space, budget: Budget, store: RunStore, cfg: SearchConfig, study, printer, on_record=None) -> None:
    """``--cost-only``: the sampler proposes, the cost model scores, nothing trains. Rows are
    ``scored`` (within budget) or ``infeasible``; the sampler sees the costs (accuracy 0) and the
    budget excess, so it still learns the cheap, feasible region."""
    ask_tell = _ask_tell(space, budget, store, cfg, printer, on_record).attach(study)
    printer(f"scoring {cfg.trials} candidates of {space.name} with the cost model only (nothing is trained)")
    while (proposal := ask_tell.propose()) is not None:
        ask_tell.settle_untrained(proposal, "scored", "cost-only search: not trained")


def _requeue_interrupted(study, store: RunStore, printer) -> None:
    """Trials left running by an interrupted driver: failed in Optuna, asked again (same
    hyperparameters) so they resume from their last epoch checkpoint."""
    from optuna.trial import TrialState

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
              phases: dict[str, float], on_record=None) -> None:
    import logging

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    started_here = False
    tick = time.perf_counter()
    if not ray.is_initialized():
        try:
            if cfg.address:
                ray.init(address=cfg.address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.ERROR)
            else:
                ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                         logging_level=logging.ERROR)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UserError(f"cannot reach the Ray cluster {cfg.address or '(local)'}: {str(exc).splitlines()[0]}") from None
        started_here = True
    phases["ray_start"] = time.perf_counter() - tick
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = max(1, min(cfg.workers, cpus)) if not cfg.address else max(cfg.workers, 1)
        per_trial = max(1, cpus // workers)
        if cfg.address:
            workers = max(1, cpus // per_trial)
        from .tune_searcher import TuneSearcher

        ask_tell = _ask_tell(space, budget, store, cfg, printer, on_record).attach(study)
        searcher = TuneSearcher(ask_tell, per_trial, failure_injection())
        scheduler = (ASHAScheduler(metric="accuracy", mode="max", max_t=cfg.epochs, grace_period=max(1, cfg.epochs // 3),
                                   reduction_factor=3, time_attr="epoch")
                     if cfg.early_stopping and cfg.epochs >= 3 else FIFOScheduler())
        printer(f"searching {cfg.trials} candidates: {workers} worker(s) x {per_trial} core(s) on "
                f"{'cluster ' + cfg.address if cfg.address else 'this machine'}, {cfg.epochs} epoch(s) each, "
                f"{cfg.sampler} sampler; results in {store.root}/")
        tuner = tune.Tuner(
            tune.with_resources(train_trial, {"cpu": per_trial}),
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
    printer(f"done in {result.wall_time / 60:.1f} min: {c['complete']} complete, {c['stopped']} stopped early, "
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
