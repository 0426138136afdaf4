"""From network outputs to detections: scores, box decoding, greedy NMS (numpy).

Defaults are the test-time settings of the EdgeML RNNPool face code (``data/config.py`` /
``config_qvga.py``, inherited from S3FD.pytorch): keep faces scoring above 0.05
(``CONF_THRESH``), the 5000 best of those (``NMS_TOP_K``) go through NMS at IoU 0.3
(``NMS_THRESH``; S3FD's test-time overlap), and at most 750 survive (``TOP_K``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .boxes import VARIANCES, box_area, decode

#: Minimum face probability to keep a prediction (EdgeML/S3FD.pytorch ``CONF_THRESH``).
SCORE_THRESHOLD = 0.05
#: NMS overlap: a box is suppressed when its IoU with a kept box exceeds this (S3FD: 0.3).
NMS_IOU = 0.3
#: Predictions considered by NMS, the best-scoring first (``NMS_TOP_K``).
TOP_K = 5000
#: Detections kept per image after NMS (``TOP_K`` in the EdgeML config).
KEEP_K = 750


def nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = NMS_IOU,
    top_k: int | None = None, keep_k: int | None = None,
) -> np.ndarray:
    """Greedy non-maximum suppression.

    Boxes are visited by decreasing score (ties: lower index first); a box is kept unless its
    IoU with an already kept box is ``> iou_threshold``.

    Args:
        boxes: ``(K, 4)`` ``xyxy``.
        scores: ``(K,)``.
        iou_threshold: Suppression overlap.
        top_k: Only the ``top_k`` best-scoring boxes take part (``None``: all).
        keep_k: Stop after keeping this many (``None``: no limit).

    Returns:
        ``int64`` indices into ``boxes`` of the kept boxes, best score first.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    if top_k is not None:
        order = order[:top_k]
    limit = len(order) if keep_k is None else keep_k
    x1, y1, x2, y2 = boxes.T
    area = box_area(boxes)
    keep: list[int] = []
    while order.size and len(keep) < limit:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        w = (np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest])).clip(min=0)
        h = (np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest])).clip(min=0)
        inter = w * h
        overlap = inter / np.maximum(area[best] + area[rest] - inter, 1e-12)  # box_iou of one row
        order = rest[overlap <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def face_scores(conf: Any) -> np.ndarray:
    """Face probabilities ``softmax(conf)[..., 1]`` of logits ``(..., 2)`` (background first)."""
    conf = _numpy(conf)
    return 1.0 / (1.0 + np.exp(np.clip(conf[..., 0] - conf[..., 1], -700.0, 700.0)))


def decode_detections(
    loc: Any,
    conf: Any,
    anchors: np.ndarray,
    score_threshold: float = SCORE_THRESHOLD,
    nms_iou: float = NMS_IOU,
    top_k: int | None = TOP_K,
    keep_k: int | None = KEEP_K,
    variances: tuple[float, float] = VARIANCES,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Detections of a batch from SpecNet's outputs.

    Args:
        loc: Offsets ``(N, A, 4)`` (numpy or torch).
        conf: Class logits ``(N, A, 2)``, background first (numpy or torch).
        anchors: ``(A, 4)`` ``(cx, cy, w, h)`` input pixels (:func:`.anchors_for`).
        score_threshold: Keep predictions whose face probability is ``> score_threshold``.
        nms_iou: NMS suppression overlap.
        top_k: Best-scoring predictions that enter NMS (``None``: all).
        keep_k: Detections kept per image (``None``: all).
        variances: The box encoding's variances.

    Returns:
        One ``(boxes, scores)`` per image: ``float64`` ``(K, 4)`` ``xyxy`` in input pixels (not
        clipped to the image) and ``(K,)`` face probabilities, best first.
    """
    loc_np, scores = _numpy(loc), face_scores(conf)
    anchors = np.asarray(anchors, dtype=np.float64)
    out = []
    for i in range(loc_np.shape[0]):
        candidates = np.nonzero(scores[i] > score_threshold)[0]
        boxes = decode(loc_np[i, candidates], anchors[candidates], variances)
        keep = nms(boxes, scores[i, candidates], nms_iou, top_k, keep_k)
        out.append((boxes[keep], scores[i, candidates][keep]))
    return out


__all__ = ["KEEP_K", "NMS_IOU", "SCORE_THRESHOLD", "TOP_K", "decode_detections", "face_scores", "nms"]
