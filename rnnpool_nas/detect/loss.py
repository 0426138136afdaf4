"""The multibox loss of SSD and S3FD: classification with hard negative mining + box regression.

For a batch with predictions ``loc`` ``(N, A, 4)`` and ``conf`` ``(N, A, 2)`` (SpecNet's
outputs: class 0 background, after max-out, class 1 face) and a :class:`~.match.Matches`:

- Classification: softmax cross-entropy over the positive anchors and the hard negatives.
  Hard negative mining (SSD, Liu et al. 2016, section 2.2; kept by S3FD): in each image the
  background anchors are ranked by their background loss ``-log softmax(conf)[0]`` (highest
  first, ties by anchor index) and the top ``3 * P_i`` are kept, ``P_i`` being the image's
  positives, so negatives:positives is exactly 3:1 whenever the image has that many anchors.
  **Images without a positive** (no face, or crops that lost their faces) still contribute:
  they keep ``3 * max(P_i, 1) = 3`` negatives, their three most face-like anchors, so the
  network learns to suppress false positives on empty scenes (SSD's reference code keeps none).
  In every case at most ``A - P_i`` negatives exist.
- Localisation: smooth L1 (``beta = 1``, SSD's) on the :func:`~.boxes.encode`-d offsets of the
  positive anchors only (variances 0.1, 0.2).
- Both sums are divided by the batch's total positives ``max(sum_i P_i, 1)``; the total is
  ``loc + conf`` (SSD's weight alpha = 1).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .boxes import VARIANCES, encode
from .match import Matches

#: Hard negatives per positive (SSD, section 2.2; S3FD and EdgeML ``NEG_POS_RATIOS``).
NEG_POS_RATIO = 3


class MultiBoxLoss(NamedTuple):
    """The loss of one batch: ``total = loc + conf`` (tensors with gradients) and the counts
    of positive and mined negative anchors it was computed over."""

    total: torch.Tensor
    loc: torch.Tensor
    conf: torch.Tensor
    num_pos: int
    num_neg: int


def hard_negatives(conf: torch.Tensor, labels: torch.Tensor, neg_pos_ratio: int = NEG_POS_RATIO) -> torch.Tensor:
    """The mined negatives of each image (module docstring).

    Args:
        conf: Class logits ``(N, A, 2)``.
        labels: ``(N, A)``, 1 for positive anchors, 0 for background.
        neg_pos_ratio: Negatives per positive; an image without positives counts as having one.

    Returns:
        Boolean mask ``(N, A)`` of the negatives that enter the classification loss.
    """
    with torch.no_grad():
        pos = labels > 0
        background_loss = torch.logsumexp(conf, dim=-1) - conf[..., 0]
        background_loss = background_loss.masked_fill(pos, float("-inf"))
        order = torch.sort(background_loss, dim=1, descending=True, stable=True).indices
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
        num_pos = pos.sum(dim=1, keepdim=True)
        num_neg = torch.minimum(neg_pos_ratio * num_pos.clamp(min=1), pos.shape[1] - num_pos)
        return rank < num_neg


def multibox_loss(
    loc: torch.Tensor,
    conf: torch.Tensor,
    anchors: np.ndarray | torch.Tensor,
    matches: Matches,
    *,
    neg_pos_ratio: int = NEG_POS_RATIO,
    variances: tuple[float, float] = VARIANCES,
) -> MultiBoxLoss:
    """Multibox loss of a batch (module docstring).

    Args:
        loc: Predicted offsets ``(N, A, 4)``.
        conf: Class logits ``(N, A, 2)``, background first.
        anchors: ``(A, 4)`` ``(cx, cy, w, h)`` input pixels, the ones ``matches`` was made with.
        matches: :func:`~.match.match_anchors` of the batch's faces.
        neg_pos_ratio: Hard negatives per positive (3).
        variances: The box encoding's variances (0.1, 0.2).

    Returns:
        :class:`MultiBoxLoss`; ``total`` is a scalar on ``loc``'s device to call ``backward`` on.
    """
    device, dtype = loc.device, loc.dtype
    labels = matches.labels.to(device)
    pos = labels > 0
    num_pos = int(pos.sum())
    normaliser = max(num_pos, 1)
    if num_pos:
        anchors_t = torch.as_tensor(anchors, device=device).to(dtype)
        anchor_idx = torch.nonzero(pos)[:, 1]
        targets = encode(matches.boxes.to(device=device, dtype=dtype)[pos], anchors_t[anchor_idx], variances)
        loss_loc = F.smooth_l1_loss(loc[pos], targets, reduction="sum", beta=1.0) / normaliser
    else:
        loss_loc = loc.sum() * 0.0
    neg = hard_negatives(conf, labels, neg_pos_ratio)
    chosen = pos | neg
    loss_conf = F.cross_entropy(conf[chosen], labels[chosen], reduction="sum") / normaliser
    return MultiBoxLoss(loss_loc + loss_conf, loss_loc, loss_conf, num_pos, int(neg.sum()))


__all__ = ["MultiBoxLoss", "NEG_POS_RATIO", "hard_negatives", "multibox_loss"]
