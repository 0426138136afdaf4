"""The training loop every trainer shares: recipe, schedule, checkpoints, resume, failure handling.

:class:`TrainLoop` owns what does not depend on the task: SGD with momentum and weight decay, a
cosine learning-rate schedule per step after an optional linear warm-up, the epoch loop with its
step budget, batch-norm recalibration before each evaluation, the atomic checkpoint written after
every epoch (model, optimizer, scheduler, epoch, step, every RNG state, history, spec, config),
exact resume from it, and turning a NaN/inf loss or an exception into a ``failed``
:class:`TrainResult` instead of raising. A task supplies four things: how many training images
there are, the loss of a batch of them (augmentation included), batches of unaugmented training
inputs for the norms, and ``evaluate() -> (val_loss, val_accuracy)``.

Two tasks use it: classification (:class:`~rnnpool_nas.train.trainer.Trainer`) and face detection
(:class:`~rnnpool_nas.train.detection.DetectionTrainer`, whose "accuracy" is the AP). Both have
the same public contract, so the search runner and the exporter take either.

Determinism: every random draw of a run (shuffling, augmentation) comes from one
``torch.Generator`` seeded with ``config.seed`` (a task may seed its own numpy generators from
it), so the same seed, thread count and data give the same metrics, and a run resumed from a
checkpoint ends exactly where an uninterrupted one does.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from ..arch.build import build
from ..cost.memory import check_fits_memory
from ..arch.spec import ArchSpec


@dataclass
class TrainConfig:
    epochs: int = 10
    max_steps: int | None = None  # a budget in optimizer steps instead of (or below) epochs
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-5
    warmup_epochs: float = 0.0
    seed: int = 0
    threads: int | None = None
    augment: bool = True
    val_limit: int | None = None  # evaluate on the first N validation images only

    @classmethod
    def for_spec(cls, spec: ArchSpec, *, epochs: int = 10, batch_size: int | None = None, lr: float | None = None,
                 warmup_epochs: float | None = None, **fields: Any) -> "TrainConfig":
        """The recipe for ``spec``: a classifier's (batch 128, lr 0.05, no warm-up) or, for a spec
        with detection heads, a detector's (batch 16, the paper's lr 0.01, a linear warm-up of 5
        epochs capped at a tenth of the run). ``None`` takes the recipe's value; the rest of
        ``fields`` (``seed``, ``threads``, ``max_steps``, ``val_limit``, ...) are passed through.
        ``rnnpool-nas train``, the search's trials and export all start here."""
        recipe = DETECTOR_RECIPE if spec.detection is not None else CLASSIFIER_RECIPE
        warmup = recipe["warmup_epochs"](epochs) if warmup_epochs is None else warmup_epochs
        return cls(epochs=epochs, batch_size=batch_size or recipe["batch_size"], lr=lr or recipe["lr"],
                   warmup_epochs=warmup, **fields)


#: The classifier's recipe (SGD, momentum 0.9, weight decay 4e-5, cosine schedule: the paper's).
CLASSIFIER_RECIPE: dict[str, Any] = {"batch_size": 128, "lr": 0.05, "warmup_epochs": lambda epochs: 0.0}
#: A face detector's: the paper's lr 0.01 for detection, batch 16, warm-up min(5, epochs / 10).
DETECTOR_RECIPE: dict[str, Any] = {"batch_size": 16, "lr": 0.01, "warmup_epochs": lambda epochs: min(5.0, epochs / 10)}


@dataclass
class EpochMetrics:
    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    val_accuracy: float  # detection: AP at IoU 0.5
    lr: float
    seconds: float
    images_per_second: float


@dataclass
class TrainResult:
    status: str  # "complete", "stopped" (the callback asked), "failed"
    reason: str
    epochs_trained: int
    val_accuracy: float | None
    wall_time: float
    history: list[EpochMetrics] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TrainingFailed(RuntimeError):
    pass


def normalise(x: torch.Tensor) -> torch.Tensor:
    """uint8 NCHW pixels -> [0, 1], channels-last (about 1.3x faster convolutions on CPU). No
    mean/std: the first convolution's batch norm absorbs it, and the int8 model then reads raw
    pixels (``q = pixel - 128``) with nothing to undo."""
    return (x.float() / 255).contiguous(memory_format=torch.channels_last)


class EverySeconds:
    """A ``progress(done, total)`` callback passed on at most every ``seconds`` (the first time after
    ``seconds``), and once more at the end (``done == total``) if it was passed on before: a job
    shorter than ``seconds`` stays silent."""

    def __init__(self, progress: Callable[[int, int], Any], seconds: float = 5.0) -> None:
        self.progress, self.seconds = progress, seconds
        self.last = time.perf_counter()
        self.called = False

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if now - self.last >= self.seconds or (done >= total and self.called):
            self.progress(done, total)
            self.last, self.called = now, True


def print_progress(what: str) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` printing ``what: done/total images`` on stdout."""
    return lambda done, total: print(f"{what}: {done}/{total} images", flush=True)


def cosine_factor(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """The learning-rate factor of step ``step``: linear warm-up to 1 over ``warmup_steps``, then
    a cosine down to 0 at ``total_steps`` (and 0 after it)."""
    total = max(1, total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


class TrainLoop:
    """Base of the trainers; see the module docstring for the contract.

    ``callback(metrics) -> bool | None`` runs after every epoch; returning ``False`` stops the
    run (status ``stopped``). ``progress(step, steps_per_epoch)`` runs after every step.
    ``checkpoint`` (a file path) is written atomically after every epoch; with ``resume`` an
    existing one is loaded first.

    Subclasses implement :meth:`num_train`, :meth:`_batch_loss`, :meth:`_norm_batches` and
    :meth:`evaluate`, and may change :attr:`recalibration_images`.
    """

    #: Training images (evenly spaced, unaugmented) the batch norms are recalibrated on.
    recalibration_images = 2048

    def __init__(self, spec: ArchSpec, config: TrainConfig | None, checkpoint: str | os.PathLike | None,
                 resume: bool) -> None:
        self.spec = spec
        self.config = config or TrainConfig()
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.resume = resume
        check_fits_memory(spec)  # one line, before a tensor is allocated
        self.model = build(spec)

    # ------------------------------------------------------------------- what a task supplies

    def num_train(self) -> int:
        raise NotImplementedError

    def _batch_loss(self, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The training loss of the training images ``idx`` (augmented with ``generator``)."""
        raise NotImplementedError

    def _norm_batches(self, index: torch.Tensor) -> Iterable[torch.Tensor]:
        """Normalised, unaugmented network inputs of the training images ``index``, in batches."""
        raise NotImplementedError

    def evaluate(self) -> tuple[float, float]:
        """(loss, accuracy) on the validation images."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------ helpers

    def _steps_per_epoch(self) -> int:
        return math.ceil(self.num_train() / self.config.batch_size)

    def _total_steps(self) -> int:
        total = self.config.epochs * self._steps_per_epoch()
        return min(total, self.config.max_steps) if self.config.max_steps else total

    def _schedule(self) -> Callable[[int], float]:
        return cosine_factor(int(self.config.warmup_epochs * self._steps_per_epoch()), self._total_steps())

    @torch.no_grad()
    def recalibrate_norms(self, images: int | None = None) -> None:
        """Recompute every batch norm's running statistics for the current weights, as exact
        averages over (at most) ``images`` evenly spaced, unaugmented training images. The
        exponential average of training drifts with the weights and needs hundreds of steps
        to forget its initial variance of 1, which RNNPool's tiny output variances cannot
        afford; training itself (batch statistics) is unaffected."""
        norms = [m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        n = self.num_train()
        index = torch.linspace(0, n - 1, min(n, images or self.recalibration_images)).long()
        saved = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        self.model.train()
        for x in self._norm_batches(index):
            self.model(x)
        for m, momentum in zip(norms, saved):
            m.momentum = momentum

    def _save(self, state: dict[str, Any]) -> None:
        assert self.checkpoint is not None
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint.with_suffix(self.checkpoint.suffix + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint)

    # ---------------------------------------------------------------------------------- fit

    def fit(
        self,
        callback: Callable[[EpochMetrics], bool | None] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> TrainResult:
        start = time.perf_counter()
        history: list[EpochMetrics] = []
        try:
            return self._fit(history, start, callback, progress)
        except TrainingFailed as exc:
            reason = str(exc)
        except Exception as exc:  # a failed trial must never crash the search
            reason = f"{type(exc).__name__}: {exc} ({traceback.extract_tb(exc.__traceback__)[-1].name})"
        accuracy = history[-1].val_accuracy if history else None
        return TrainResult("failed", reason, len(history), accuracy, time.perf_counter() - start, history)

    def _fit(self, history, start, callback, progress) -> TrainResult:
        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.model = build(self.spec).to(memory_format=torch.channels_last)  # same seed, same weights
        generator = torch.Generator().manual_seed(cfg.seed)
        optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._schedule())
        epoch, step = 0, 0
        if self.resume and self.checkpoint is not None and self.checkpoint.exists():
            from .checkpoint import check_training_checkpoint

            state = check_training_checkpoint(self.checkpoint)  # weights only: never runs a pickled object
            self.model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            epoch, step = state["epoch"], state["step"]
            generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            history.extend(EpochMetrics(**m) for m in state["history"])
        total_steps, per_epoch = self._total_steps(), self._steps_per_epoch()
        n = self.num_train()
        while epoch < cfg.epochs and step < total_steps:
            self.model.train()
            t0 = time.perf_counter()
            order = torch.randperm(n, generator=generator)
            loss_sum, seen = 0.0, 0
            for k, idx in enumerate(order.split(cfg.batch_size)):
                if step >= total_steps:
                    break
                loss = self._batch_loss(idx, generator)
                if not torch.isfinite(loss):
                    raise TrainingFailed(f"loss became {loss.item()} at epoch {epoch + 1}, step {k + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                step += 1
                loss_sum += loss.item() * len(idx)
                seen += len(idx)
                if progress is not None:
                    progress(k + 1, per_epoch)
            train_seconds = time.perf_counter() - t0
            self.recalibrate_norms()
            val_loss, val_acc = self.evaluate()
            epoch += 1
            metrics = EpochMetrics(epoch, loss_sum / max(1, seen), val_loss, val_acc, scheduler.get_last_lr()[0],
                                   time.perf_counter() - t0, seen / max(train_seconds, 1e-9))
            history.append(metrics)
            if self.checkpoint is not None:
                self._save({
                    "model": self.model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "epoch": epoch, "step": step,
                    "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                    "history": [asdict(m) for m in history], "spec": self.spec.to_dict(),
                    "config": asdict(cfg),
                })
            if callback is not None and callback(metrics) is False:
                return TrainResult("stopped", "stopped by the callback", epoch, val_acc,
                                   time.perf_counter() - start, history)
        accuracy = history[-1].val_accuracy if history else None
        return TrainResult("complete", "", epoch, accuracy, time.perf_counter() - start, history)


__all__ = ["EpochMetrics", "EverySeconds", "TrainConfig", "TrainLoop", "TrainResult", "TrainingFailed", "cosine_factor", "normalise",
           "print_progress"]
