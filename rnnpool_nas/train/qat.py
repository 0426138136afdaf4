"""Quantization-aware fine-tuning of a trained classifier (what ``finalize`` runs when
post-training int8 loses more than its tolerance).

The float model is fine-tuned with the int8 rounding in its forward pass, straight-through in
its backward pass (the gradient of the rounding is taken as 1):

- every convolution's and linear layer's weight is rounded to int8, symmetric per output
  channel (``scale = max|w| / 127``), as ``quant.quantize`` rounds it. Batch norm stays frozen
  (eval mode), so folding it into the convolution multiplies each output channel by a constant
  and the per-channel grid is the same one the folded weights are quantized on;
- every activation ``quant.quantize`` quantizes (the outputs of the modules it observes) is
  rounded to its int8 grid, ranges calibrated once on the calibration images beforehand.

RNNPool's FastGRNN cells keep float weights here (the integer reference holds them in int8 per
row and its states in Q24). Afterwards the model is a plain float model again (the hooks and
parametrizations are removed) whose weights sit near the int8 grid; ``quant.quantize`` then
quantizes it as usual.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..quant.convert import ActivationRanges, QParams, observed_modules


class _WeightFakeQuant(nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        flat = w.detach().abs().reshape(w.shape[0], -1).amax(dim=1)
        scale = torch.where(flat > 0, flat / 127, torch.ones_like(flat)).reshape(-1, *[1] * (w.ndim - 1))
        q = torch.clamp(torch.round(w / scale), -127, 127) * scale
        return w + (q - w).detach()


def _act_hook(qp: QParams):
    def hook(_module, _inputs, y):
        if not isinstance(y, torch.Tensor):
            return y
        q = torch.clamp(torch.round(y / qp.scale) + qp.zero_point, -128, 127)
        return y + ((q - qp.zero_point) * qp.scale - y).detach()

    return hook


def finetune(model: nn.Module, data, calibration: np.ndarray, *, epochs: int = 2, lr: float = 0.005,
             batch_size: int = 128, seed: int = 0, progress: Callable[[int, int], None] | None = None) -> dict:
    """Fine-tune ``model`` (a trained classifier) in place with int8 rounding in the loop on
    ``data`` (an :class:`~rnnpool_nas.train.trainer.ImageData`), SGD with momentum and a cosine
    schedule from ``lr``; returns what it did."""
    from .trainer import _loss

    model.eval()
    ranges = ActivationRanges()
    observed = observed_modules(model)
    handles = [m.register_forward_hook(ranges.hook) for m in observed]
    with torch.no_grad():
        for i in range(0, len(calibration), 256):
            model(torch.from_numpy(calibration[i : i + 256]).permute(0, 3, 1, 2).float() / 255)
    for h in handles:
        h.remove()
    handles = [m.register_forward_hook(_act_hook(ranges.qparams(m))) for m in observed]
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for m in layers:
        parametrize.register_parametrization(m, "weight", _WeightFakeQuant())
    try:
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9,
                                    weight_decay=4e-5)
        n = len(data.x_train)
        steps = epochs * math.ceil(n / batch_size)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
        losses = []
        for epoch in range(epochs):
            total, seen = 0.0, 0
            for idx in torch.randperm(n, generator=generator).split(batch_size):
                x = data.augment(data.x_train[idx], generator)
                loss = _loss(model(data.normalise(x)), data.y_train[idx], data.multi_label)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total += loss.item() * len(idx)
                seen += len(idx)
            losses.append(total / max(1, seen))
            if progress is not None:
                progress(epoch + 1, epochs)
    finally:
        for h in handles:
            h.remove()
        for m in layers:
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
    model.eval()
    return {"epochs": epochs, "lr": lr, "train_loss": losses}
