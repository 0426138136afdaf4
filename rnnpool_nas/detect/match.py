"""S3FD anchor matching: which anchors learn "face", and which box each regresses to.

S3FD (Zhang et al., "S3FD: Single Shot Scale-invariant Face Detector", ICCV 2017, section 3.3,
"scale compensation anchor matching strategy") matches in two stages, because faces whose size
falls between the discrete anchor sizes, and tiny faces, match too few anchors under SSD's rule:

1. Every face is matched to its best anchor (the anchor of highest IoU with it, as in SSD),
   and every anchor whose best IoU with any face is ``>= 0.35`` is matched to that face.
   S3FD lowers SSD's 0.5 to 0.35 "to increase the average number of matched anchors".
2. Scale compensation: a face that got fewer than ``N`` anchors in stage 1, where ``N`` is the
   average number of anchors per face from stage 1, additionally gets its highest-IoU anchors
   among those with IoU ``> 0.1`` (S3FD: "higher than 0.1") until it has ``N``.

Choices where the paper leaves room (stated so the numbers can be checked):

- ``N`` is ``floor(mean stage-1 anchors per face)`` over the faces of the *same image* (so an
  image's targets do not depend on the rest of its batch); ``compensate_n`` fixes it instead.
- A stage-2 candidate must be unmatched after stage 1 and have that face as its best face
  (highest IoU), so the result does not depend on the order of the faces; candidates are
  taken by IoU, highest first, ties by anchor index.
- When two faces share the same best anchor in stage 1, the later face (higher index) keeps it,
  as in SSD's and S3FD's reference code; a face that overlaps no anchor at all is not forced.
- Degenerate faces (width or height ``<= 0``) are ignored: they can be neither encoded nor
  detected.

Matching is torch (it runs in the training loop) and batched over images; an image may have no
faces (then every anchor is background).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import torch

from .boxes import box_iou, cxcywh_to_xyxy

#: S3FD stage-1 IoU threshold (section 3.3: lowered from SSD's 0.5).
MATCH_IOU = 0.35
#: S3FD stage-2 candidate IoU: anchors must overlap the face by more than this (section 3.3).
COMPENSATE_IOU = 0.1

BoxesLike = Union[torch.Tensor, np.ndarray, Sequence[Sequence[float]]]


@dataclass
class Matches:
    """The matching of a batch against one anchor set.

    Attributes:
        labels: ``int64`` ``(N, A)``, 1 where the anchor is a face, 0 background.
        boxes: ``float`` ``(N, A, 4)``, the matched face's ``xyxy`` box (input pixels) where
            ``labels == 1``, zeros elsewhere.
        gt_index: ``int64`` ``(N, A)``, index of the matched face in that image's box list
            where ``labels == 1``, -1 elsewhere.
    """

    labels: torch.Tensor
    boxes: torch.Tensor
    gt_index: torch.Tensor

    @property
    def num_positives(self) -> torch.Tensor:
        """Positive anchors per image, ``int64`` ``(N,)``."""
        return self.labels.sum(dim=1)


def _as_boxes(boxes: BoxesLike) -> torch.Tensor:
    """``(K, 4)`` float64 CPU tensor from a tensor, an array or nested lists (``K`` may be 0)."""
    if isinstance(boxes, torch.Tensor):
        return boxes.detach().cpu().to(torch.float64).reshape(-1, 4)
    return torch.from_numpy(np.asarray(boxes, dtype=np.float64).reshape(-1, 4))


def _match_image(
    anchors_xyxy: torch.Tensor, faces: torch.Tensor, iou_threshold: float, compensate_iou: float,
    compensate_n: int | None,
) -> torch.Tensor:
    """One image: the matched face's index per anchor, ``int64`` ``(A,)``, -1 for background."""
    num_anchors = anchors_xyxy.shape[0]
    gt_index = torch.full((num_anchors,), -1, dtype=torch.int64)
    valid = ((faces[:, 2] - faces[:, 0]) > 0) & ((faces[:, 3] - faces[:, 1]) > 0)
    kept = torch.nonzero(valid).flatten()
    if kept.numel() == 0:
        return gt_index
    iou = box_iou(faces[kept], anchors_xyxy)  # (K, A)
    best_face_iou, best_face = iou.max(dim=0)  # per anchor
    best_anchor_iou, best_anchor = iou.max(dim=1)  # per face
    # stage 1: threshold, then every face's best anchor (the later face wins a shared anchor)
    matched = best_face_iou >= iou_threshold
    assigned = best_face.clone()
    for k in range(kept.numel()):
        if best_anchor_iou[k] > 0:
            assigned[best_anchor[k]] = k
            matched[best_anchor[k]] = True
    # stage 2: scale compensation for faces under the average count
    counts = torch.bincount(assigned[matched], minlength=kept.numel())
    n = int(counts.double().mean().floor()) if compensate_n is None else int(compensate_n)
    for k in torch.nonzero(counts < n).flatten().tolist():
        free = (~matched) & (best_face == k) & (iou[k] > compensate_iou)
        candidates = torch.nonzero(free).flatten()
        if candidates.numel() == 0:
            continue
        order = torch.sort(iou[k, candidates], descending=True, stable=True).indices
        take = candidates[order[: n - int(counts[k])]]
        matched[take] = True
        assigned[take] = k
    gt_index[matched] = kept[assigned[matched]]
    return gt_index


def match_anchors(
    anchors: np.ndarray | torch.Tensor,
    gt_boxes: Sequence[BoxesLike],
    *,
    iou_threshold: float = MATCH_IOU,
    compensate_iou: float = COMPENSATE_IOU,
    compensate_n: int | None = None,
) -> Matches:
    """Match a batch of images' faces to the anchors, S3FD style (module docstring).

    Args:
        anchors: ``(A, 4)`` ``(cx, cy, w, h)`` in input pixels, from :func:`.anchors_for`.
        gt_boxes: One entry per image: its faces ``(K_i, 4)`` as ``(x1, y1, x2, y2)`` in input
            pixels (numpy, torch or nested lists); ``K_i`` may be 0.
        iou_threshold: Stage-1 IoU for an anchor to match its best face (S3FD: 0.35).
        compensate_iou: Stage-2 candidates must overlap the face by more than this (S3FD: 0.1).
        compensate_n: Fix stage 2's target count ``N`` instead of the per-image average;
            ``0`` turns scale compensation off (plain SSD matching at ``iou_threshold``).

    Returns:
        :class:`Matches` with ``N = len(gt_boxes)`` rows, on the CPU; ``boxes`` is ``float32``.
    """
    anchors_t = torch.as_tensor(anchors).to(torch.float64)
    anchors_xyxy = cxcywh_to_xyxy(anchors_t)
    num_anchors = anchors_t.shape[0]
    labels = torch.zeros((len(gt_boxes), num_anchors), dtype=torch.int64)
    boxes = torch.zeros((len(gt_boxes), num_anchors, 4), dtype=torch.float32)
    index = torch.full((len(gt_boxes), num_anchors), -1, dtype=torch.int64)
    for i, faces in enumerate(gt_boxes):
        faces_t = _as_boxes(faces)
        gt_index = _match_image(anchors_xyxy, faces_t, iou_threshold, compensate_iou, compensate_n)
        pos = gt_index >= 0
        labels[i, pos] = 1
        index[i] = gt_index
        boxes[i, pos] = faces_t[gt_index[pos]].to(torch.float32)
    return Matches(labels, boxes, index)


__all__ = ["COMPENSATE_IOU", "MATCH_IOU", "Matches", "match_anchors"]
