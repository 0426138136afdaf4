"""Box arithmetic shared by matching, the loss, NMS and AP: conversions, IoU, SSD encoding.

Every function takes numpy arrays or torch tensors and returns the same kind (torch is never
imported here, so numpy-only evaluation stays light). Boxes are float arrays whose last axis
holds four numbers:

- ``xyxy``: ``(x1, y1, x2, y2)``, corners in input pixels, continuous coordinates: the box
  covers ``x1 <= x < x2``, so its width is ``x2 - x1`` (no "+1" pixel convention; only the
  official WIDER FACE protocol in :mod:`.ap` uses one, because its MATLAB code does).
- ``cxcywh``: ``(cx, cy, w, h)``, centre and size, the form anchors are kept in.

Box offsets follow SSD (Liu et al., ECCV 2016, eq. 2) as S3FD (Zhang et al., ICCV 2017) and the
EdgeML RNNPool face code use them, with the *variances* ``(0.1, 0.2)`` of SSD's reference
implementation: for a ground truth ``g`` matched to an anchor ``a``

    t_x = (g_cx - a_cx) / (0.1 * a_w)      t_w = log(g_w / a_w) / 0.2
    t_y = (g_cy - a_cy) / (0.1 * a_h)      t_h = log(g_h / a_h) / 0.2

The variances scale the regression targets to roughly unit spread; they are constants of the
encoding, not learned, and encode and decode must use the same pair.
"""

from __future__ import annotations

import sys
from typing import Any, TypeVar

import numpy as np

#: SSD's box-offset variances (centre, size), as in S3FD and EdgeML's ``cfg.VARIANCE``.
VARIANCES: tuple[float, float] = (0.1, 0.2)

Boxes = TypeVar("Boxes")  # np.ndarray or torch.Tensor; the result has the argument's kind


def _lib(x: Any) -> Any:
    """``torch`` when ``x`` is a tensor, else ``numpy`` (without importing torch)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return torch
    return np


def _split(boxes: Any) -> tuple[Any, Any, Any, Any]:
    return boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]


def xyxy_to_cxcywh(boxes: Boxes) -> Boxes:
    """Corners ``(..., 4)`` to centre and size ``(..., 4)``."""
    x1, y1, x2, y2 = _split(boxes)
    return _lib(boxes).stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), -1)


def cxcywh_to_xyxy(boxes: Boxes) -> Boxes:
    """Centre and size ``(..., 4)`` to corners ``(..., 4)``."""
    cx, cy, w, h = _split(boxes)
    return _lib(boxes).stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), -1)


def box_area(boxes: Boxes) -> Boxes:
    """Areas ``(...)`` of ``xyxy`` boxes ``(..., 4)``; inverted boxes count as 0."""
    x1, y1, x2, y2 = _split(boxes)
    return (x2 - x1).clip(min=0) * (y2 - y1).clip(min=0)


def box_iou(a: Boxes, b: Boxes) -> Boxes:
    """Intersection over union of every pair: ``a`` ``(M, 4)``, ``b`` ``(N, 4)`` ``xyxy`` ->
    ``(M, N)``. A pair with an empty union (two empty boxes) has IoU 0."""
    lib = _lib(a)
    lt = lib.maximum(a[:, None, :2], b[None, :, :2])
    rb = lib.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clip(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return inter / union.clip(min=1e-12)


def encode(matched: Boxes, anchors: Boxes, variances: tuple[float, float] = VARIANCES) -> Boxes:
    """Regression targets ``(..., 4)`` for ground-truth boxes ``matched`` (``xyxy``, positive
    sizes) against ``anchors`` (``cxcywh``, broadcastable), as in the module docstring."""
    lib = _lib(matched)
    g = xyxy_to_cxcywh(matched)
    centre = (g[..., :2] - anchors[..., :2]) / (variances[0] * anchors[..., 2:])
    size = lib.log(g[..., 2:] / anchors[..., 2:]) / variances[1]
    return lib.concatenate((centre, size), -1) if lib is np else lib.cat((centre, size), -1)


def decode(loc: Boxes, anchors: Boxes, variances: tuple[float, float] = VARIANCES) -> Boxes:
    """The inverse of :func:`encode`: predicted offsets ``(..., 4)`` and ``anchors``
    (``cxcywh``, broadcastable) to ``xyxy`` boxes in the anchors' units (input pixels)."""
    lib = _lib(loc)
    centre = anchors[..., :2] + loc[..., :2] * variances[0] * anchors[..., 2:]
    size = anchors[..., 2:] * lib.exp(loc[..., 2:] * variances[1])
    cxcywh = lib.concatenate((centre, size), -1) if lib is np else lib.cat((centre, size), -1)
    return cxcywh_to_xyxy(cxcywh)


__all__ = ["VARIANCES", "box_area", "box_iou", "cxcywh_to_xyxy", "decode", "encode", "xyxy_to_cxcywh"]
