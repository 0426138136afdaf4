"""Train one architecture spec on one data set: the paper's recipe, deterministic, resumable.

Recipe (facts file, section 4): SGD with momentum 0.9 and weight decay 4e-5, a cosine learning
rate schedule per step (optionally after a linear warm-up), batch norm after every convolution
(the builder's). Images live in memory as uint8 at the candidate's input shape (resized once by
``data.adapt_images``) and are augmented on the fly: a random crop from the image zero-padded by
``H // 8`` pixels and, where the data set allows, a horizontal flip. Inputs are pixels / 255.

Determinism: the same seed, thread count and data give the same metrics; a run resumed from a
checkpoint (model, optimizer, scheduler, epoch, every RNG state) ends exactly where an
uninterrupted one does. A NaN/inf loss or an exception ends the run as ``failed`` with the
reason; :meth:`Trainer.fit` never raises for them.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..arch.build import build
from ..arch.spec import ArchSpec
from ..data import Dataset, adapt_images


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


@dataclass
class EpochMetrics:
    epoch: int  # 1-based
    train_loss: float
    val_loss: float
    val_accuracy: float
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


class ImageData:
    """A data set's images at one input shape, as uint8 NCHW tensors."""

    def __init__(self, dataset: Dataset, input_shape: tuple[int, int, int], val_limit: int | None = None) -> None:
        h, w, c = input_shape
        self.input_shape = input_shape
        self.x_train = torch.from_numpy(np.ascontiguousarray(adapt_images(dataset.x_train, h, w, c).transpose(0, 3, 1, 2)))
        x_val = dataset.x_val if val_limit is None else dataset.x_val[:val_limit]
        y_val = dataset.y_val if val_limit is None else dataset.y_val[:val_limit]
        self.x_val = torch.from_numpy(np.ascontiguousarray(adapt_images(x_val, h, w, c).transpose(0, 3, 1, 2)))
        self.y_train = torch.from_numpy(np.asarray(dataset.y_train))
        self.y_val = torch.from_numpy(np.asarray(y_val))
        self.multi_label = dataset.multi_label
        self.hflip = getattr(dataset, "hflip", True)

    @staticmethod
    def normalise(x: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> [0, 1], channels-last (about 1.3x faster convolutions on CPU). No
        mean/std: the first convolution's batch norm absorbs it, and the int8 model then reads
        raw pixels (``q = pixel - 128``) with nothing to undo."""
        return (x.float() / 255).contiguous(memory_format=torch.channels_last)

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random crop of the zero-padded image, and a random horizontal flip when allowed."""
        n, c, h, w = x.shape
        pad = max(1, h // 8)
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
        out = _crop(padded, dy, dx, h, w)
        if self.hflip:
            flip = torch.rand(n, generator=generator) < 0.5
            out = torch.where(flip[:, None, None, None], out.flip(3), out)
        return out


def _crop(padded: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, h: int, w: int) -> torch.Tensor:
    n = padded.shape[0]
    rows = dy[:, None] + torch.arange(h)  # (n, h)
    cols = dx[:, None] + torch.arange(w)  # (n, w)
    batch = torch.arange(n)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _loss(logits: torch.Tensor, y: torch.Tensor, multi_label: bool) -> torch.Tensor:
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, y.float())
    return F.cross_entropy(logits, y)


def _correct(logits: torch.Tensor, y: torch.Tensor, multi_label: bool) -> float:
    """Correct predictions (multi-label: correct labels, so accuracy is per label)."""
    if multi_label:
        return ((logits > 0) == (y > 0)).float().sum().item() / y.shape[1]
    return (logits.argmax(1) == y).sum().item()


class Trainer:
    """Trains ``spec`` on ``dataset``; see the module docstring for the contract.

    ``callback(metrics) -> bool | None`` runs after every epoch; returning ``False`` stops the
    run (status ``stopped``). ``progress(step, steps_per_epoch)`` runs after every step.
    ``checkpoint`` (a file path) is written atomically after every epoch; with ``resume`` an
    existing one is loaded first.
    """

    def __init__(
        self,
        spec: ArchSpec,
        dataset: Dataset,
        config: TrainConfig | None = None,
        checkpoint: str | os.PathLike | None = None,
        resume: bool = False,
        data: ImageData | None = None,
    ) -> None:
        self.spec = spec
        self.config = config or TrainConfig()
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.resume = resume
        self.data = data or ImageData(dataset, tuple(spec.input), self.config.val_limit)
        self.model = build(spec)

    # ------------------------------------------------------------------------------ helpers

    def _steps_per_epoch(self) -> int:
        return math.ceil(len(self.data.x_train) / self.config.batch_size)

    def _total_steps(self) -> int:
        total = self.config.epochs * self._steps_per_epoch()
        return min(total, self.config.max_steps) if self.config.max_steps else total

    def _schedule(self) -> Callable[[int], float]:
        warmup = int(self.config.warmup_epochs * self._steps_per_epoch())
        total = max(1, self._total_steps())

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        return factor

    @torch.no_grad()
    def recalibrate_norms(self, images: int = 2048) -> None:
        """Recompute every batch norm's running statistics for the current weights, as exact
        averages over (at most) ``images`` evenly spaced, unaugmented training images. The
        exponential average of training drifts with the weights and needs hundreds of steps
        to forget its initial variance of 1, which RNNPool's tiny output variances cannot
        afford; training itself (batch statistics) is unaffected."""
        norms = [m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        n = len(self.data.x_train)
        index = torch.linspace(0, n - 1, min(n, images)).long()
        saved = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        self.model.train()
        for idx in index.split(self.config.batch_size):
            self.model(self.data.normalise(self.data.x_train[idx]))
        for m, momentum in zip(norms, saved):
            m.momentum = momentum

    @torch.no_grad()
    def evaluate(self, batch_size: int = 512) -> tuple[float, float]:
        """(loss, accuracy) on the validation images."""
        self.model.eval()
        loss_sum, correct, n = 0.0, 0.0, len(self.data.x_val)
        for i in range(0, n, batch_size):
            x = self.data.normalise(self.data.x_val[i : i + batch_size])
            y = self.data.y_val[i : i + batch_size]
            logits = self.model(x)
            loss_sum += _loss(logits, y, self.data.multi_label).item() * len(y)
            correct += _correct(logits, y, self.data.multi_label)
        return loss_sum / max(1, n), correct / max(1, n)

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
            state = torch.load(self.checkpoint, weights_only=False)
            self.model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            epoch, step = state["epoch"], state["step"]
            generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            history.extend(EpochMetrics(**m) for m in state["history"])
        total_steps, per_epoch = self._total_steps(), self._steps_per_epoch()
        n = len(self.data.x_train)
        while epoch < cfg.epochs and step < total_steps:
            self.model.train()
            t0 = time.perf_counter()
            order = torch.randperm(n, generator=generator)
            loss_sum, seen = 0.0, 0
            for k, idx in enumerate(order.split(cfg.batch_size)):
                if step >= total_steps:
                    break
                x = self.data.x_train[idx]
                if cfg.augment:
                    x = self.data.augment(x, generator)
                x, y = self.data.normalise(x), self.data.y_train[idx]
                loss = _loss(self.model(x), y, self.data.multi_label)
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
