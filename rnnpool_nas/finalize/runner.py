"""``rnnpool-nas finalize RUN``: retrain a search's finalists fully, quantize them, test them once.

The search scores candidates on a short proxy (a few epochs, a subset, a validation split held
out of the training images). Finalize takes the chosen finalists (``top`` of the Pareto front by
search accuracy, or the given trials) and for each one:

1. retrains it from scratch on the full training set (validation images included) with the full
   recipe: the paper's SGD + cosine schedule and the trainer's augmentation, for ``epochs``
   (default per data set, :data:`DEFAULT_EPOCHS`); the test set is not looked at while it trains
   (the curve is the training loss and learning rate per epoch);
2. quantizes it to int8 exactly as ``export`` does (the same calibration images, so the exported
   model is the scored one); a classifier whose int8 loses more than 0.5 points on 2000
   training images is fine-tuned for :data:`QAT_EPOCHS` epochs with int8 rounding in the loop
   (:mod:`rnnpool_nas.train.qat`) and quantized again (its checkpoint then holds those weights);
   then float and int8 are evaluated once on the test set (classification: top-1 accuracy on
   the data set's test split; detection: AP at IoU 0.5 on its val split);
3. writes ``RUN/final/NNNN/`` (:mod:`rnnpool_nas.finalize.results`).

The finalists train as Ray Tune trials, ``workers`` at a time (``address``: an existing Ray
cluster, as for the search). A finalize that is interrupted (Ctrl-C, a kill, a lost node) is
resumed by running it again: finished finalists are kept, an unfinished one continues from its
last epoch checkpoint (the recipe must be the same; a different one is a UserError).

A ``time_budget`` (``--time-budget 18min``) caps the epochs so that the whole finalize fits it:
each finalist gets an equal share of the workers' time (the budget divided by the rounds of
``workers`` finalists it takes), less :data:`PLAN_OVERHEAD_S` for loading, quantizing and
testing, and trains as many whole epochs (at most ``epochs``, at least 1) as fit in that share
at the training speed the search measured for it (``images_per_second`` in its trial's
``metrics.json``), taken :data:`PLAN_SLOWDOWN` times slower. The plan is made from the run directory alone, so a resumed finalize makes
the same one; each finalist's ``metrics.json`` holds its epochs in ``recipe``. Fine-tuning with
int8 rounding, when needed, comes on top (:data:`QAT_EPOCHS` epochs).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..cluster import start_ray
from ..errors import UserError
from ..run.final import FINAL_DIR, SUMMARY, final_dir, read_final, train_rows
from ..run.store import plain, trial_path
from ..units import kib

#: Epochs of the full training when ``--epochs`` is not given, by data set kind (the part of the
#: name before ``:``). Fashion-MNIST: see the README's main job for the measured curve.
DEFAULT_EPOCHS = {"fashion-mnist": 30, "idx": 30, "cifar10": 60, "imagefolder": 30, "lines": 10, "shapes": 10,
                  "faces-synth": 30, "wider-face": 100, "scut-head": 100}
#: int8 may lose at most this much accuracy (0.5 points) on training images after post-training
#: quantization before finalize fine-tunes with int8 rounding in the loop (QAT_EPOCHS epochs), and
#: on the test set before the summary flags it.
INT8_TOLERANCE = 0.005
QAT_EPOCHS = 2
#: Training images (evenly spaced, unaugmented) the post-training int8 drop is measured on.
PTQ_CHECK_IMAGES = 2000
#: Seconds a finalist spends besides its training epochs, set aside when a time budget is
#: planned: loading the data, the int8 check on training images, quantizing, and scoring the test
#: set in float and int8 (Fashion-MNIST's 10,000 test images: about 15 s on this project's 2-core
#: machine; see ``test_seconds`` in each finalist's metrics.json).
PLAN_OVERHEAD_S = 60.0
#: How much slower a finalize epoch may run than the search's measured speed says, planned for so
#: that the time budget holds: two fresh-clone main jobs trained at 0.95-1.13x the search's
#: figure (trial 29: 42 s planned, 40 s run; 38 s planned, 43 s run, 1.5 min over an 18-min budget).
PLAN_SLOWDOWN = 1.15


@dataclass
class FinalizeConfig:
    run: str
    top: int | None = None  # the K most accurate finalists of the front (default 3 when no trials are given)
    trials: list[int] = field(default_factory=list)
    epochs: int | None = None  # None: DEFAULT_EPOCHS for the run's data set
    workers: int = 2
    batch_size: int | None = None  # None: 128 (detectors 16)
    lr: float | None = None  # None: 0.05 (detectors 0.01, the paper's)
    warmup: float | None = None  # epochs of linear warm-up; None: 0 (detectors: min(5, epochs / 10))
    address: str | None = None
    limit: int | None = None  # training images (tests and smoke runs only: None is the full set)
    int8_tolerance: float = INT8_TOLERANCE  # fine-tune with int8 rounding when PTQ loses more (training images)
    time_budget: float | None = None  # seconds the whole finalize may take: caps each finalist's epochs (see above)


@dataclass
class FinalizeResult:
    run_dir: Path
    finalists: list[dict[str, Any]]
    wall_time: float


def _kind(dataset: str) -> str:
    return dataset.partition(":")[0].strip().lower()


def _is_detection(dataset: str) -> bool:
    from ..data.detection import is_detection_name

    return is_detection_name(dataset)


def recipe(cfg: FinalizeConfig, dataset: str) -> dict[str, Any]:
    """The training recipe of every finalist of this finalize (plain data, stored with each)."""
    detection = _is_detection(dataset)
    epochs = cfg.epochs or DEFAULT_EPOCHS.get(_kind(dataset), 30)
    warmup = cfg.warmup if cfg.warmup is not None else (min(5.0, epochs / 10) if detection else 0.0)
    return {"epochs": int(epochs), "batch_size": int(cfg.batch_size or (16 if detection else 128)),
            "lr": float(cfg.lr or (0.01 if detection else 0.05)), "warmup_epochs": float(warmup),
            "limit": cfg.limit, "int8_tolerance": float(cfg.int8_tolerance)}


def _validate(cfg: FinalizeConfig) -> None:
    for name in ("top", "epochs", "workers", "batch_size", "limit"):
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if cfg.lr is not None and not cfg.lr > 0:
        raise UserError(f"--lr must be positive, got {cfg.lr}")
    if cfg.warmup is not None and cfg.warmup < 0:
        raise UserError(f"--warmup must be non-negative, got {cfg.warmup}")
    if cfg.time_budget is not None and not (cfg.time_budget > 0 and math.isfinite(cfg.time_budget)):
        raise UserError(f"--time-budget must be a positive duration, got {cfg.time_budget}")
    if cfg.top is not None and cfg.trials:
        raise UserError("give either --top K or --trial ID ..., not both")


def select_finalists(store, cfg: FinalizeConfig) -> list[dict[str, Any]]:
    """The rows of the trials to finalize: the given ones, or the ``top`` most accurate of the
    Pareto front on the run's objectives."""
    from ..run.pareto import OBJECTIVE_COLUMNS, pareto_front

    trained = {n: r for n, r in store.rows.items() if r.get("status") in ("complete", "stopped")}
    complete = [r for r in trained.values() if r.get("status") == "complete" and r.get("feasible")]
    if not complete:
        raise UserError(f"{store.root} has no complete trial to finalize (run or resume the search first)")
    if cfg.trials:
        missing = [t for t in cfg.trials if t not in trained]
        if missing:
            known = ", ".join(str(n) for n in sorted(r["trial"] for r in complete))
            raise UserError(f"{store.root} has no trained trial {missing[0]} (complete trials: {known})")
        return [trained[t] for t in dict.fromkeys(cfg.trials)]
    objectives = store.config.get("objectives") or ["accuracy", "peak_ram"]
    columns = [OBJECTIVE_COLUMNS[o] for o in objectives]
    front = sorted(pareto_front(complete, columns), key=lambda r: (-float(r["accuracy"]), int(r["trial"])))
    return front[: cfg.top or 3]


def search_speed(store, number: int) -> float | None:
    """Training images per second the search measured for trial ``number`` (the mean over its
    epochs, training only), or ``None`` when its metrics.json has none."""
    try:
        history = json.loads((trial_path(store.root, number) / "metrics.json").read_text()).get("history") or []
        speeds = [float(h["images_per_second"]) for h in history if float(h.get("images_per_second") or 0) > 0]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return sum(speeds) / len(speeds) if speeds else None


def plan_epochs(speeds: dict[int, float], train_images: int, budget_s: float, workers: int,
                max_epochs: int) -> dict[int, int]:
    """Epochs per finalist (``speeds``: trial -> training images per second) so that a finalize
    of ``workers`` finalists at a time fits ``budget_s`` seconds: each finalist gets
    ``budget_s / ceil(n / workers)`` seconds, less :data:`PLAN_OVERHEAD_S`, and as many whole
    epochs of ``train_images`` as fit at its speed divided by :data:`PLAN_SLOWDOWN` (at least 1,
    at most ``max_epochs``)."""
    rounds = math.ceil(len(speeds) / max(1, workers)) if speeds else 1
    share = budget_s / rounds - PLAN_OVERHEAD_S
    return {n: int(min(max_epochs, max(1, math.floor(share * speed / PLAN_SLOWDOWN / max(1, train_images)))))
            for n, speed in speeds.items()}


def _planned_recipes(store, cfg: FinalizeConfig, rows: list[dict[str, Any]], rec: dict[str, Any],
                     dataset: str, printer) -> dict[int, dict[str, Any]]:
    """Each finalist's recipe: ``rec``, with its epochs capped by ``cfg.time_budget`` when given."""
    numbers = [int(r["trial"]) for r in rows]
    if cfg.time_budget is None:
        return {n: rec for n in numbers}
    speeds = {n: search_speed(store, n) for n in numbers}
    unknown = [n for n, v in speeds.items() if v is None]
    if unknown:
        raise UserError(f"--time-budget needs the training speed the search measured, and trial {unknown[0]} has "
                        f"none in its metrics.json; give --epochs alone")
    from ..arch.spec import load_spec

    spec = load_spec(trial_path(store.root, numbers[0]) / "arch.json")
    config = {"dataset": dataset, "data_dir": store.config.get("data_dir"), "seed": int(store.config.get("seed") or 0),
              "recipe": rec}
    data = _load(config, spec)
    images = len(data.train) if spec.detection is not None else len(data.x_train)
    workers = min(cfg.workers, len(numbers), cfg.workers if cfg.address else (os.cpu_count() or 1))
    epochs = plan_epochs(speeds, images, cfg.time_budget, workers, rec["epochs"])
    printer(f"time budget {cfg.time_budget / 60:.1f} min for {len(numbers)} finalist(s), {workers} at a time: "
            + ", ".join(f"trial {n} {epochs[n]} epoch(s) ({images / speeds[n]:.0f} s each as the search measured)"
                        for n in numbers))
    return {n: dict(rec, epochs=epochs[n], time_budget_s=float(cfg.time_budget)) for n in numbers}


# ---------------------------------------------------------------------------- the trainable


def _blind(cls):
    """``cls`` without its per-epoch evaluation: finalize trains on the full training set and
    looks at the test set once, at the end (``cls.evaluate`` is still reachable)."""

    class Blind(cls):
        def evaluate(self, *args, **kwargs):
            return math.nan, math.nan

    return Blind


def _write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, allow_nan=False, default=str))
    os.replace(tmp, path)


def _curve(history) -> list[dict[str, Any]]:
    return [{"epoch": h.epoch, "train_loss": h.train_loss, "lr": h.lr, "seconds": h.seconds,
             "images_per_second": h.images_per_second} for h in history]


def finalize_trial(config: dict[str, Any]) -> None:
    """One finalist (a Ray Tune trial): train, quantize, test once, leave ``metrics.json``.
    ``config["recipes"]`` maps each finalist (a string key) to its recipe."""
    if "recipes" in config:
        config = dict(config, recipe=config["recipes"][str(config["number"])])
    out = final_dir(config["run"], config["number"])
    start = time.perf_counter()
    metrics: dict[str, Any] = {"trial": config["number"], "status": "running", "reason": "",
                               "recipe": config["recipe"], "dataset": config["dataset"],
                               "node": socket.gethostname(), "started_at": time.time()}
    report = _reporter()
    try:
        metrics.update(train_and_test(config, out, report, lambda m: _write(out / "metrics.json", metrics | m)))
        metrics["status"] = "complete"
    except Exception as exc:  # recorded as failed; the other finalists go on
        metrics.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
    metrics["wall_time_s"] = time.perf_counter() - start
    metrics["ended_at"] = time.time()
    _write(out / "metrics.json", metrics)


def _reporter() -> Callable[[dict[str, Any]], None]:
    try:
        from ray import tune

        tune.get_context()  # raises outside a Tune trial
        return lambda m: tune.report(m)
    except Exception:
        return lambda m: None


def train_and_test(config: dict[str, Any], out: Path, report: Callable[[dict[str, Any]], None],
                   save: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Train ``out/arch.json`` with ``config['recipe']`` (resuming ``out/checkpoint.pt``), then
    score it on the test set in float and int8. Returns the metrics."""
    from ..arch.spec import load_spec
    from ..train.loop import TrainConfig

    spec = load_spec(out / "arch.json")
    r = config["recipe"]
    train_cfg = TrainConfig(epochs=r["epochs"], batch_size=r["batch_size"], lr=r["lr"],
                            warmup_epochs=r["warmup_epochs"], seed=config["seed"], threads=config["threads"])
    detection = spec.detection is not None
    dataset = _load(config, spec)
    if detection:
        from ..train.detection import DetectionTrainer as base
    else:
        from ..train.trainer import Trainer as base
    trainer = _blind(base)(spec, dataset, train_cfg, checkpoint=out / "checkpoint.pt", resume=True)
    curve: list[dict[str, Any]] = []

    def on_epoch(m) -> None:
        curve.append(_curve([m])[0])
        save({"epochs_trained": m.epoch, "curve": list(curve)})
        report({"epoch": m.epoch, "train_loss": m.train_loss, "phase": "train"})

    result = trainer.fit(callback=on_epoch)
    if result.status != "complete":
        raise RuntimeError(f"training {result.status}: {result.reason}")
    metrics: dict[str, Any] = {"epochs_trained": result.epochs_trained, "epochs": r["epochs"],
                               "curve": _curve(result.history), "train_images": trainer.num_train(),
                               "train_seconds": float(sum(h.seconds for h in result.history))}
    report({"epoch": result.epochs_trained, "phase": "test"})
    tick = time.perf_counter()
    if detection:
        metrics.update(_test_detector(trainer, dataset, spec, config, report))
    else:
        metrics.update(_test_classifier(trainer, dataset, spec, report, config, out))
    metrics["test_seconds"] = time.perf_counter() - tick
    drop = metrics["float_test_accuracy"] - metrics["int8_test_accuracy"]
    metrics["int8_drop"] = drop
    metrics["int8_within_tolerance"] = bool(drop <= INT8_TOLERANCE)
    return metrics


def _load(config: dict[str, Any], spec):
    """The full training set and the test set (``holdout`` off: the data set's own val split)."""
    name, data_dir, seed, limit = config["dataset"], config["data_dir"], config["seed"], config["recipe"]["limit"]
    if spec.detection is not None:
        from ..data.detection import load_detection_dataset

        h, w, c = spec.input
        size = (h, w) if name.strip().lower().startswith("faces-synth") else None
        return load_detection_dataset(name, data_dir=data_dir, seed=seed, size=size, channels=c, limit=limit)
    from ..data import load_dataset

    ds = load_dataset(name, data_dir=data_dir, seed=seed)
    rows = train_rows(len(ds.x_train), limit, seed)
    if rows is not None:  # tests and smoke runs: fewer training images, the whole test set
        ds.x_train, ds.y_train = ds.x_train[rows], ds.y_train[rows]
    if ds.num_classes != spec.num_classes:
        raise UserError(f"{name} has {ds.num_classes} classes but the architecture {spec.num_classes}")
    return ds


def _test_classifier(trainer, dataset, spec, report, config: dict[str, Any], out: Path) -> dict[str, Any]:
    """Quantize; when int8 loses more than the tolerance on training images (never the test
    set), fine-tune with int8 rounding in the loop (:mod:`rnnpool_nas.train.qat`) and quantize
    again; then score float and int8 once on the test set."""
    import numpy as np
    import torch

    from ..data import adapt_images
    from ..train.qat import finetune
    from ..train.quant import calibration_images, evaluate_int8, quantize

    h, w, c = spec.input
    model = trainer.model.eval()
    calibration = calibration_images(dataset, spec.input)
    qnet = quantize(model, calibration)
    rows = np.linspace(0, len(dataset.x_train) - 1, min(PTQ_CHECK_IMAGES, len(dataset.x_train))).astype(np.int64)
    check_x, check_y = adapt_images(dataset.x_train[rows], h, w, c), np.asarray(dataset.y_train)[rows]
    check = evaluate_int8(qnet, model, check_x, check_y)
    metrics: dict[str, Any] = {"ptq_train_check": {"images": len(rows), **check}}
    tolerance = config["recipe"].get("int8_tolerance", INT8_TOLERANCE)
    if check["float_accuracy"] - check["int8_accuracy"] > tolerance:
        report({"phase": "qat", "images": len(rows), "drop": check["float_accuracy"] - check["int8_accuracy"]})
        qat = finetune(model, trainer.data, calibration, epochs=QAT_EPOCHS, seed=config["seed"])
        qnet = quantize(model, calibration)
        after = evaluate_int8(qnet, model, check_x, check_y)
        metrics["qat"] = {**qat, "train_check": after}
        state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
        state["model"] = model.state_dict()  # what export ships: the fine-tuned weights
        state["qat"] = {"epochs": qat["epochs"], "lr": qat["lr"]}
        tmp = out / ".checkpoint.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, out / "checkpoint.pt")
    images = adapt_images(dataset.x_val, h, w, c)
    labels = np.asarray(dataset.y_val)
    scores = evaluate_int8(qnet, model, images, labels,
                           progress=lambda done, total: report({"phase": "int8", "images": done, "of": total}))
    return {**metrics, "metric": "top-1 accuracy", "test_images": len(images),
            "float_test_accuracy": scores["float_accuracy"], "int8_test_accuracy": scores["int8_accuracy"],
            "int8_agreement": scores["agreement"], "calibration_images": len(calibration)}


def _test_detector(trainer, dataset, spec, config, report) -> dict[str, Any]:
    from ..train.detection import detection_calibration_images, evaluate_detection
    from ..train.quant import quantize

    model = trainer.model.eval()
    qnet = quantize(model, detection_calibration_images(dataset.train, spec.input, seed=config["seed"]))
    fl = evaluate_detection(model, dataset.val, spec)
    i8 = evaluate_detection(qnet, dataset.val, spec, batch_size=4,
                            progress=lambda done, total: report({"phase": "int8", "images": done, "of": total}))
    return {"metric": "AP at IoU 0.5", "test_images": i8["images"], "float_test_accuracy": fl["ap"] or 0.0,
            "int8_test_accuracy": i8["ap"] or 0.0, "float_ap_at_most_3": fl["ap_at_most_3"],
            "int8_ap_at_most_3": i8["ap_at_most_3"], "calibration_images": 128}


# ---------------------------------------------------------------------------------- driver


def run_finalize(cfg: FinalizeConfig, printer: Callable[[str], None] = print) -> FinalizeResult:
    """Finalize (or resume finalizing) a run's finalists; see the module docstring."""
    from ..run.store import RunStore

    _validate(cfg)
    start = time.perf_counter()
    store = RunStore.open(cfg.run, lock="finalize")  # one writer per run: a live search or finalize refuses
    try:
        return _finalize(cfg, store, printer, start)
    finally:
        store.close()


def _finalize(cfg: FinalizeConfig, store, printer: Callable[[str], None], start: float) -> FinalizeResult:
    dataset = store.config.get("dataset") or "fashion-mnist"
    rows = select_finalists(store, cfg)
    base = recipe(cfg, dataset)
    recipes = _planned_recipes(store, cfg, rows, base, dataset, printer)
    root = store.root / FINAL_DIR
    root.mkdir(exist_ok=True)
    todo = []
    for row in rows:
        number = int(row["trial"])
        rec = recipes[number]
        out = final_dir(store.root, number)
        done = read_final(store.root, number)
        if done is not None and done.get("status") == "complete":
            printer(f"trial {number}: already finalized ({done['epochs']} epochs): float {done['float_test_accuracy']:.4f},"
                    f" int8 {done['int8_test_accuracy']:.4f} on the test set")
            continue
        if done is not None and (out / "checkpoint.pt").exists() and done.get("recipe") != rec:
            raise UserError(f"trial {number} was being finalized with {_describe(done.get('recipe'))}, not "
                            f"{_describe(rec)}: give the same options to resume it, or delete {out}")
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(trial_path(store.root, number) / "arch.json", out / "arch.json")
        if done is not None and (out / "checkpoint.pt").exists():
            printer(f"trial {number}: resuming its interrupted finalize from epoch {done.get('epochs_trained', 0)}")
        todo.append(number)
    if todo:
        _run_tune(store, cfg, {n: recipes[n] for n in todo}, dataset, printer)
    finalists = _table(store, rows)
    summary = base | ({"time_budget_s": float(cfg.time_budget)} if cfg.time_budget else {})
    _write(root / SUMMARY, {"recipe": summary, "dataset": dataset, "finalists": finalists})
    _summary(finalists, summary, dataset, time.perf_counter() - start, printer)
    failed = [f for f in finalists if f["status"] != "complete"]
    for f in failed:
        printer(f"trial {f['trial']}: finalize {f['status']}: {f['reason']}")
    return FinalizeResult(store.root, finalists, time.perf_counter() - start)


def _describe(rec: dict[str, Any] | None) -> str:
    if not rec:
        return "another recipe"
    return (f"--epochs {rec['epochs']} --batch-size {rec['batch_size']} --lr {rec['lr']:g} --warmup "
            f"{rec['warmup_epochs']:g}" + (f" --limit {rec['limit']}" if rec.get("limit") else "")
            + (f" (planned within --time-budget {rec['time_budget_s']:g}s)" if rec.get("time_budget_s") else ""))


def _table(store, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        number = int(row["trial"])
        doc = read_final(store.root, number) or {"status": "missing", "reason": "not finalized"}
        item = {"trial": number, "status": doc.get("status"), "reason": doc.get("reason", ""),
                "peak_ram_bytes": plain(row.get("peak_ram_bytes")), "madds": plain(row.get("madds")),
                "params": plain(row.get("params")), "latency_ms": plain(row.get("latency_ms")),
                "search_accuracy": plain(row.get("accuracy")), "search_epochs": plain(row.get("epochs_trained"))}
        for key in ("epochs", "float_test_accuracy", "int8_test_accuracy", "int8_drop", "int8_within_tolerance",
                    "test_images", "metric", "wall_time_s"):
            item[key] = doc.get(key)
        out.append(item)
    return out


def _summary(finalists, rec, dataset: str, wall: float, printer) -> None:
    printer("")
    epochs = sorted({f["epochs"] for f in finalists if f.get("epochs")}) or [rec["epochs"]]
    how = f"{epochs[0]} epochs" if len(epochs) == 1 else f"{epochs[0]}-{epochs[-1]} epochs"
    if rec.get("time_budget_s"):
        how += f" (at most {rec['epochs']}, as many as fit the {rec['time_budget_s'] / 60:g}-min time budget)"
    printer(f"finalized {sum(f['status'] == 'complete' for f in finalists)}/{len(finalists)} in {wall / 60:.1f} min "
            f"({how} on the full training set of {dataset}; test set scored once):")
    printer(f"  {'trial':>5}  {'peak RAM':>10}  {'MAdds':>7}  {'M4 ms':>7}  {'epochs':>6}  {'search val':>10}  "
            f"{'test float':>10}  {'test int8':>9}")
    for f in finalists:
        def acc(v):
            return "-" if v is None else f"{v:.4f}"
        lat = "-" if f["latency_ms"] is None else f"{f['latency_ms']:.1f}"
        printer(f"  {f['trial']:>5}  {kib(f['peak_ram_bytes']):>6} KiB  {f['madds'] / 1e6:>6.2f}M  {lat:>7}  "
                f"{f.get('epochs') or '-':>6}  {acc(f['search_accuracy']):>10}  {acc(f['float_test_accuracy']):>10}  "
                f"{acc(f['int8_test_accuracy']):>9}"
                + ("" if f.get("int8_within_tolerance") in (None, True) else "  (int8 loses more than 0.5 points)"))
    sys.stdout.flush()


def _run_tune(store, cfg: FinalizeConfig, recipes: dict[int, dict[str, Any]], dataset: str, printer) -> None:
    """Train the finalists ``recipes`` (trial -> its recipe) as Ray Tune trials."""
    todo = list(recipes)
    started_here = start_ray(cfg.address)  # the search's way: an --address is probed and gets its token
    import ray
    from ray import tune

    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = max(1, min(cfg.workers, cpus, len(todo))) if not cfg.address else max(1, min(cfg.workers, len(todo)))
        per_trial = max(1, cpus // workers)
        common = {"run": str(store.root.resolve()), "dataset": dataset, "data_dir": store.config.get("data_dir"), "seed": int(store.config.get("seed") or 0),
                  "recipes": {str(n): r for n, r in recipes.items()}, "threads": per_trial}
        epochs = sorted({r["epochs"] for r in recipes.values()})
        printer(f"finalizing {len(todo)} trial(s) ({', '.join(map(str, todo))}): "
                f"{epochs[0] if len(epochs) == 1 else f'{epochs[0]}-{epochs[-1]}'} epochs each on the full "
                f"training set, {workers} worker(s) x {per_trial} core(s); results in {store.root / FINAL_DIR}/")
        shutil.rmtree(store.root / FINAL_DIR / "ray", ignore_errors=True)  # Tune's bookkeeping only
        space = {"number": tune.grid_search(todo), **common}
        tuner = tune.Tuner(
            tune.with_resources(finalize_trial, {"cpu": per_trial}),
            param_space=space,
            tune_config=tune.TuneConfig(max_concurrent_trials=workers, reuse_actors=False),
            run_config=tune.RunConfig(name="ray", storage_path=str((store.root / FINAL_DIR).resolve()), verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=0),
                                      callbacks=[_progress_callback(printer, time.perf_counter())]),
        )
        tuner.fit()
    finally:
        if started_here:
            ray.shutdown()


def _progress_callback(printer, started: float):
    from ray.tune import Callback

    class Progress(Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            number = trial.config.get("number")
            elapsed = (time.perf_counter() - started) / 60
            if result.get("phase") == "train":
                epochs = trial.config["recipes"][str(number)]["epochs"]
                printer(f"trial {number}: epoch {result['epoch']}/{epochs}, train loss {result['train_loss']:.4f} "
                        f"({elapsed:.1f} min)")
            elif result.get("phase") == "test":
                printer(f"trial {number}: trained; scoring float and int8 on the test set ({elapsed:.1f} min)")
            elif result.get("phase") == "qat":
                printer(f"trial {number}: post-training int8 loses {result['drop'] * 100:.2f} points on "
                        f"{result['images']} training images: fine-tuning with int8 rounding ({QAT_EPOCHS} epochs)")
            elif result.get("phase") == "int8":
                printer(f"trial {number}: int8 on the test set, {result['images']}/{result['of']} images")

        def on_trial_complete(self, iteration, trials, trial, **info):
            number = trial.config.get("number")
            doc = read_final(trial.config["run"], number) or {}
            if doc.get("status") == "complete":
                printer(f"trial {number}: test accuracy float {doc['float_test_accuracy']:.4f}, int8 "
                        f"{doc['int8_test_accuracy']:.4f} ({doc.get('test_images')} images)")
            else:
                printer(f"trial {number}: finalize {doc.get('status', 'failed')}: {doc.get('reason', '')}")

    return Progress()
