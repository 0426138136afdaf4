"""Train one architecture spec on one classification data set: the paper's recipe, deterministic, resumable.

Recipe (facts file, section 4): SGD with momentum 0.9 and weight decay 4e-5, a cosine learning
rate schedule per step (optionally after a linear warm-up), batch norm after every convolution
(the builder's). Images live in memory as uint8 at the candidate's input shape (resized once by
``data.adapt_images``) and are augmented on the fly: a random crop from the image zero-padded by
``H // 8`` pixels and, where the data set allows, a horizontal flip. Inputs are pixels / 255.

The loop itself (optimizer, schedule, checkpoints, resume, failure handling) is
:class:`~rnnpool_nas.train.loop.TrainLoop`, shared with the face-detection trainer
(:mod:`rnnpool_nas.train.detection`). Determinism: the same seed, thread count and data give the
same metrics; a run resumed from a checkpoint (model, optimizer, scheduler, epoch, every RNG
state) ends exactly where an uninterrupted one does. A NaN/inf loss or an exception ends the run
as ``failed`` with the reason; :meth:`Trainer.fit` never raises for them.
"""

from __future__ import annotations

import os
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from ..arch.spec import ArchSpec
from ..data import Dataset, adapt_images
from .loop import EpochMetrics, TrainConfig, TrainingFailed, TrainLoop, TrainResult, normalise

__all__ = ["EpochMetrics", "ImageData", "TrainConfig", "Trainer", "TrainingFailed", "TrainResult"]


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

    normalise = staticmethod(normalise)

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


class Trainer(TrainLoop):
    """Trains ``spec`` on a classification ``dataset``; see :class:`~rnnpool_nas.train.loop.TrainLoop`
    for the contract (``fit(callback, progress)``, checkpoints, resume)."""

    def __init__(
        self,
        spec: ArchSpec,
        dataset: Dataset,
        config: TrainConfig | None = None,
        checkpoint: str | os.PathLike | None = None,
        resume: bool = False,
        data: ImageData | None = None,
    ) -> None:
        super().__init__(spec, config, checkpoint, resume)
        self.data = data or ImageData(dataset, tuple(spec.input), self.config.val_limit)

    def num_train(self) -> int:
        return len(self.data.x_train)

    def _batch_loss(self, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = self.data.x_train[idx]
        if self.config.augment:
            x = self.data.augment(x, generator)
        x, y = self.data.normalise(x), self.data.y_train[idx]
        return _loss(self.model(x), y, self.data.multi_label)

    def _norm_batches(self, index: torch.Tensor) -> Iterable[torch.Tensor]:
        for idx in index.split(self.config.batch_size):
            yield self.data.normalise(self.data.x_train[idx])

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
