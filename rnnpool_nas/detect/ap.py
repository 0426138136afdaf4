"""Average precision of face detections: the plain VOC-style AP and the official WIDER FACE one.

Two protocols, both numpy:

:func:`average_precision` (any data set: faces-synth, SCUT-HEAD, a WIDER subset)
    One class, IoU ``>= 0.5``. Detections of all images are ranked together by score (ties:
    image order, then detection order). Within an image each detection, best first, takes the
    *unmatched* non-ignored ground truth it overlaps most, if that IoU is ``>= 0.5`` (a true
    positive); otherwise, if it overlaps an ``ignore`` box by ``>= 0.5``, it is dropped (neither
    true nor false positive, and an ignore box can absorb any number of detections); otherwise
    it is a false positive. Ignored boxes do not count as faces to recall. (The VOC devkit
    compares a detection only with its single best ground truth, taken or not; matching the
    best *unmatched* one is COCO's rule and never turns a correct second detection of a pair
    of overlapping faces into a false positive.) AP is the area under the precision envelope
    with all-point interpolation (VOC 2010 onwards; the same as WIDER's ``VOCap.m``).

:func:`wider_face_eval` (WIDER FACE val, easy/medium/hard), two arithmetics (``protocol``)
    ``"official"`` (the default; what published WIDER FACE numbers are) computes what the
    official MATLAB ``eval_tools`` computes on its own ground truth, whose ``.mat`` boxes are
    int32. MATLAB turns a mixed int32/double expression into int32 (rounding half away from
    zero), so ``boxoverlap.m`` rounds each prediction corner where it meets a ground-truth
    corner (``max``/``min``), adds the int32 ground-truth area to the double prediction area
    and rounds, and divides intersection by union in integers, rounding: every overlap is 0
    or 1, and ``max`` then gives a prediction the *first* face it overlaps by a rounded IoU of
    at least 0.5, not the best one (:func:`wider_overlap_official`). ``norm_score.m`` keeps
    its running max and min in single precision, starting at ``realmin('single')`` and
    ``realmax('single')``: scores are normalised in single precision, and when every score is
    <= 0 the max stays at ``realmin``. ``"python"`` is the arithmetic of the common Python
    ports (WiderFace-Evaluation, Pytorch_Retinaface's ``widerface_evaluate``): float IoU, the
    best face, double-precision min-max normalisation. Checked in GNU Octave on the official
    files, the two differ by up to 0.015 AP on crowded sets with fractional boxes and by about
    0.0003 on the real val set with whole-pixel boxes.

    Both are a numpy transcription of the official MATLAB ``eval_tools`` (``evaluation.m``,
    ``norm_score.m``, ``boxoverlap.m``, ``VOCap.m``) reading the official ground-truth files
    ``wider_face_val.mat`` and ``wider_{easy,medium,hard}_val.mat``. Faithful to it in:
    scores min-max normalised over all evaluated predictions; per image, predictions by
    decreasing score, each compared with its single best ground truth (IoU with MATLAB's
    "+1" pixel convention, ``>= 0.5``): a face outside the setting's keep list (``gt_list``)
    makes that prediction neither TP nor FP, a kept face not yet recalled is recalled, anything
    else is a false positive; precision and recall at 1000 thresholds ``1 - t/1000``; images
    without ground truth or without predictions skipped (their kept faces still count in the
    recall's denominator); AP by ``VOCap``. Where it differs (the simplifications):
    predictions come as arrays, not as one text file per image, so scores are not rounded to
    the 3 decimals those files usually hold; ``xyxy`` boxes become WIDER's ``x y w h`` with
    ``w = x2 - x1``; any number of events (MATLAB hard-codes 61); when every score is equal
    the normalised scores are all 1 (MATLAB divides 0 by 0 and scores AP 0); with
    ``max_faces`` only the selected images are read, so the normalisation spans those.

The paper evaluates RNNPool-Face-M4 on WIDER FACE images with at most 3 faces:
:func:`images_with_at_most` selects them for :func:`average_precision`, and ``max_faces=3``
does the same inside :func:`wider_face_eval`. Faces are counted as annotated (all boxes of
the image, including ones a setting ignores).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import UserError
from .boxes import box_iou

#: IoU for a detection to count as finding a face (VOC, WIDER FACE).
IOU_THRESHOLD = 0.5
#: Score thresholds of the official WIDER FACE curve (``thresh_num`` in ``evaluation.m``).
WIDER_THRESHOLDS = 1000
#: The official settings and their ground-truth files.
WIDER_SETTINGS = ("easy", "medium", "hard")
#: The arithmetics of :func:`wider_face_eval`: the official MATLAB code's, and the Python ports'.
WIDER_PROTOCOLS = ("official", "python")

Detections = tuple[np.ndarray, np.ndarray]  # (boxes (K, 4) xyxy, scores (K,))


@dataclass
class PRCurve:
    """A precision/recall curve and its all-point interpolated AP.

    ``precision``/``recall`` are ordered by decreasing score threshold (recall non-decreasing);
    precision may hold NaN where nothing was predicted yet (WIDER's curve). ``ap`` is NaN when
    there is no face to recall. ``num_faces`` is the recall's denominator.
    """

    ap: float
    precision: np.ndarray
    recall: np.ndarray
    num_faces: int


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP (VOC 2010+, WIDER's ``VOCap.m``): the area under the
    precision envelope ``p(r) = max precision at recall >= r``, with the curve closed at
    recall 0 and 1 by precision 0. NaN precisions are skipped by the envelope (as MATLAB's
    ``max`` skips them)."""
    mrec = np.concatenate(([0.0], np.asarray(recall, dtype=np.float64), [1.0]))
    mpre = np.concatenate(([0.0], np.asarray(precision, dtype=np.float64), [0.0]))
    mpre = np.fmax.accumulate(mpre[::-1])[::-1]
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def _as_boxes(boxes: Any) -> np.ndarray:
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _match_image(boxes: np.ndarray, gts: np.ndarray, ignore: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Outcome per detection (given best first): 1 true positive, 0 false positive, -1 ignored."""
    outcome = np.zeros(len(boxes), dtype=np.int8)
    if len(boxes) == 0 or len(gts) == 0:
        return outcome
    iou = box_iou(boxes, gts)
    taken = np.zeros(len(gts), dtype=bool)
    for d in np.nonzero((iou >= iou_threshold).any(axis=1))[0]:  # the rest are false positives
        free = np.where(ignore | taken, -1.0, iou[d])
        best = int(np.argmax(free))
        if free[best] >= iou_threshold:
            taken[best] = True
            outcome[d] = 1
        elif (iou[d][ignore] >= iou_threshold).any():
            outcome[d] = -1
    return outcome


def average_precision(
    detections: Sequence[Detections],
    ground_truths: Sequence[Any],
    *,
    ignore: Sequence[Any] | None = None,
    iou_threshold: float = IOU_THRESHOLD,
) -> PRCurve:
    """AP over a data set (module docstring, first protocol).

    Args:
        detections: Per image ``(boxes (K, 4) xyxy, scores (K,))``.
        ground_truths: Per image faces ``(G, 4)`` ``xyxy`` in the detections' coordinates.
        ignore: Per image boolean ``(G,)``: faces that are neither to be found nor to be
            penalised (WIDER's invalid or out-of-setting faces). ``None``: no face is ignored.
        iou_threshold: IoU for a detection to find a face (0.5).

    Returns:
        :class:`PRCurve` with one point per counted (non-ignored) detection.
    """
    if len(detections) != len(ground_truths) or (ignore is not None and len(ignore) != len(ground_truths)):
        raise ValueError("detections, ground_truths and ignore must have one entry per image")
    scores, outcomes = [], []
    num_faces = 0
    for i, ((boxes, score), gts) in enumerate(zip(detections, ground_truths)):
        boxes, gts = _as_boxes(boxes), _as_boxes(gts)
        score = np.asarray(score, dtype=np.float64).reshape(-1)
        skip = np.zeros(len(gts), dtype=bool) if ignore is None else np.asarray(ignore[i], dtype=bool).reshape(-1)
        num_faces += int((~skip).sum())
        order = np.argsort(-score, kind="stable")
        outcome = np.empty(len(score), dtype=np.int8)
        outcome[order] = _match_image(boxes[order], gts, skip, iou_threshold)
        scores.append(score)
        outcomes.append(outcome)
    score_all = np.concatenate(scores) if scores else np.zeros(0)
    outcome_all = np.concatenate(outcomes) if outcomes else np.zeros(0, dtype=np.int8)
    outcome_all = outcome_all[np.argsort(-score_all, kind="stable")]
    outcome_all = outcome_all[outcome_all >= 0]
    tp = np.cumsum(outcome_all == 1)
    fp = np.cumsum(outcome_all == 0)
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / num_faces if num_faces else np.zeros(len(tp))
    ap = voc_ap(recall, precision) if num_faces else float("nan")
    return PRCurve(ap, precision, recall, num_faces)


def images_with_at_most(ground_truths: Sequence[Any], max_faces: int = 3) -> np.ndarray:
    """Indices of the images with at most ``max_faces`` annotated faces (the paper's WIDER
    subset uses 3); faces are counted as annotated, ignored ones included."""
    return np.asarray([i for i, g in enumerate(ground_truths) if len(_as_boxes(g)) <= max_faces], dtype=np.int64)


# ------------------------------------------------------------------------------ WIDER FACE


@dataclass
class WiderImage:
    """One WIDER FACE image of the official ground truth.

    Attributes:
        event: The event folder, e.g. ``"0--Parade"``.
        name: The file name without ``.jpg``, e.g. ``"0_Parade_marchingband_1_465"``.
        boxes: ``(G, 4)`` faces as WIDER's ``(x, y, w, h)`` in original image pixels.
        keep: Per setting (``"easy"``, ...) the 0-based indices of the faces that setting
            evaluates; the others are ignored.
    """

    event: str
    name: str
    boxes: np.ndarray
    keep: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``"event/name"``: the image's path under ``WIDER_val/images`` without ``.jpg``; the
        key of its predictions in :func:`wider_face_eval`."""
        return f"{self.event}/{self.name}"


def _cells(value: Any) -> list[Any]:
    return list(np.asarray(value, dtype=object).ravel())


def _text(value: Any) -> str:
    flat = np.asarray(value).ravel()
    return str(flat[0]) if flat.size else ""


def _loadmat(path: Path) -> dict[str, Any]:
    from scipy.io import loadmat

    if not path.is_file():
        raise UserError(f"WIDER FACE ground truth not found: {path}")
    try:
        return loadmat(str(path))
    except Exception as exc:  # scipy raises several types for a bad file
        raise UserError(f"cannot read {path} as a MATLAB file: {exc}") from None


def load_wider_ground_truth(gt_dir: str | Path, settings: Sequence[str] = WIDER_SETTINGS) -> list[WiderImage]:
    """Read the official ground truth (``eval_tools/ground_truth``).

    Args:
        gt_dir: Folder holding ``wider_face_val.mat`` (``event_list``, ``file_list``,
            ``face_bbx_list``) and ``wider_<setting>_val.mat`` (``gt_list``) per setting.
        settings: Which settings' keep lists to read.

    Returns:
        The images in the files' order (event by event).

    Raises:
        UserError: A file is missing, unreadable, or not in the official layout.
    """
    gt_dir = Path(gt_dir)
    main = _loadmat(gt_dir / "wider_face_val.mat")
    try:
        events = [_text(e) for e in _cells(main["event_list"])]
        files = [[_text(f) for f in _cells(fl)] for fl in _cells(main["file_list"])]
        boxes = [[np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in _cells(bl)] for bl in _cells(main["face_bbx_list"])]
    except (KeyError, ValueError) as exc:
        raise UserError(f"{gt_dir / 'wider_face_val.mat'}: not the WIDER FACE layout ({exc})") from None
    if not (len(events) == len(files) == len(boxes)) or any(len(f) != len(b) for f, b in zip(files, boxes)):
        raise UserError(f"{gt_dir / 'wider_face_val.mat'}: event_list, file_list and face_bbx_list disagree in length")
    images = [WiderImage(events[e], files[e][j], boxes[e][j]) for e in range(len(events)) for j in range(len(files[e]))]
    for setting in settings:
        path = gt_dir / f"wider_{setting}_val.mat"
        try:
            keep = [np.asarray(k, dtype=np.float64).ravel().astype(np.int64) - 1
                    for kl in _cells(_loadmat(path)["gt_list"]) for k in _cells(kl)]
        except (KeyError, ValueError) as exc:
            raise UserError(f"{path}: not the WIDER FACE layout ({exc})") from None
        if len(keep) != len(images):
            raise UserError(f"{path}: gt_list has {len(keep)} images, wider_face_val.mat has {len(images)}")
        for image, k in zip(images, keep):
            image.keep[setting] = k
    return images


def wider_overlap(gt_xywh: np.ndarray, pred_xyxy: np.ndarray) -> np.ndarray:
    """IoU ``(K, G)`` of predictions ``(K, 4)`` with ground truths ``(G, 4)`` as WIDER's
    ``boxoverlap.m`` computes it: both as ``[x1, y1, x2, y2]`` with ``x2 = x + w`` (for a
    prediction, ``w = x2 - x1``, so its corners are unchanged), in inclusive pixels (``+1`` on
    every side length), 0 where the boxes do not intersect."""
    g = np.asarray(gt_xywh, dtype=np.float64).reshape(-1, 4)
    p = np.asarray(pred_xyxy, dtype=np.float64).reshape(-1, 4)
    gx2, gy2 = g[:, 0] + g[:, 2], g[:, 1] + g[:, 3]
    w = np.minimum(gx2[None], p[:, 2:3]) - np.maximum(g[None, :, 0], p[:, 0:1]) + 1
    h = np.minimum(gy2[None], p[:, 3:4]) - np.maximum(g[None, :, 1], p[:, 1:2]) + 1
    inter = w * h
    g_area = (gx2 - g[:, 0] + 1) * (gy2 - g[:, 1] + 1)
    p_area = (p[:, 2] - p[:, 0] + 1) * (p[:, 3] - p[:, 1] + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (g_area[None] + p_area[:, None] - inter)
    iou[(w <= 0) | (h <= 0)] = 0.0
    return iou


def _matlab_round(x: np.ndarray) -> np.ndarray:
    """MATLAB's double -> int32 conversion: round half away from zero (int64 here)."""
    x = np.asarray(x, dtype=np.float64)
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)


def wider_overlap_official(gt_xywh: np.ndarray, pred_xyxy: np.ndarray) -> np.ndarray:
    """The overlap ``(K, G)`` that the official ``boxoverlap.m`` computes with int32 ground truth
    (``gt_bbx`` from ``wider_face_val.mat``, ``x2 = x + w`` in int32) and a double prediction:
    ``x1 = max(gx1, px1)`` and ``x2 = min(gx2, px2)`` are int32 (the prediction corner rounded),
    ``inter = w * h`` is int32, ``union = round(g_area + p_area) - inter`` (the prediction's area
    in double, ``+1`` pixel convention), and ``inter ./ union`` is an int32 division that rounds
    half away from zero: 1 when the IoU (of those rounded numbers) is at least 0.5, else 0."""
    g = _matlab_round(np.asarray(gt_xywh, dtype=np.float64).reshape(-1, 4))
    p = np.asarray(pred_xyxy, dtype=np.float64).reshape(-1, 4)
    gx2, gy2 = g[:, 0] + g[:, 2], g[:, 1] + g[:, 3]
    rp = _matlab_round(p)
    x1 = np.maximum(g[None, :, 0], rp[:, 0:1])
    y1 = np.maximum(g[None, :, 1], rp[:, 1:2])
    x2 = np.minimum(gx2[None], rp[:, 2:3])
    y2 = np.minimum(gy2[None], rp[:, 3:4])
    w, h = x2 - x1 + 1, y2 - y1 + 1
    inter = w * h
    g_area = (gx2 - g[:, 0] + 1) * (gy2 - g[:, 1] + 1)
    p_area = (p[:, 2] - p[:, 0] + 1) * (p[:, 3] - p[:, 1] + 1)  # double: the prediction is not rounded
    union = _matlab_round(g_area[None].astype(np.float64) + p_area[:, None]) - inter
    safe = np.where(union > 0, union, 1)
    o = np.where(union > 0, (2 * inter + safe) // (2 * safe), 0)  # round(inter / union), both positive
    o[(w <= 0) | (h <= 0)] = 0
    return o.astype(np.int64)


def norm_scores_official(scores: list[np.ndarray]) -> list[np.ndarray]:
    """``norm_score.m``: min-max normalisation in single precision, the running max starting at
    ``realmin('single')`` and the min at ``realmax('single')`` (so with every score <= 0 the max is
    ``realmin``); equal scores give NaN (0/0), which no threshold keeps. Returns float64 arrays
    holding the single-precision values."""
    f32 = np.float32
    hi, lo = f32(np.finfo(f32).tiny), f32(np.finfo(f32).max)
    for s in scores:
        if len(s):
            hi = max(hi, f32(np.max(s)))
            lo = min(lo, f32(np.min(s)))
    span = f32(hi - lo)
    with np.errstate(divide="ignore", invalid="ignore"):
        return [((np.asarray(s, dtype=f32) - lo) / span).astype(np.float64) for s in scores]


def _wider_image(hits: np.ndarray, best: np.ndarray, num_preds: int, scores: np.ndarray, kept: np.ndarray,
                 thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image_evaluation`` + ``image_pr_info`` of one image: (proposals, recalled faces) per
    threshold. ``hits`` are the predictions (best first) whose best ground truth ``best[h]``
    overlaps them by the IoU threshold or more; the others change nothing but the count."""
    recall_list = np.zeros(len(kept), dtype=np.int8)
    proposal = np.ones(num_preds, dtype=bool)
    recalled = np.zeros(num_preds, dtype=np.int64)
    found_so_far = 0
    for h in hits:
        idx = best[h]
        if not kept[idx]:  # a face outside the setting: the prediction is not counted
            recall_list[idx] = -1
            proposal[h] = False
        elif recall_list[idx] == 0:
            recall_list[idx] = 1
            found_so_far += 1
        recalled[h] = found_so_far
    recalled = np.maximum.accumulate(recalled) if num_preds else recalled  # never decreases
    ranked = np.where(np.isnan(scores), -np.inf, scores)  # NaN >= t is false, as in MATLAB
    count = np.searchsorted(-ranked, -thresholds, side="right")  # predictions scoring >= threshold
    last = np.maximum(count - 1, 0)
    proposals = np.where(count > 0, np.cumsum(proposal)[last], 0)
    found = np.where(count > 0, recalled[last], 0)
    return proposals, found


def wider_face_eval(
    ground_truth: str | Path | Sequence[WiderImage],
    predictions: Mapping[str, Detections],
    *,
    settings: Sequence[str] = WIDER_SETTINGS,
    max_faces: int | None = None,
    iou_threshold: float = IOU_THRESHOLD,
    thresh_num: int = WIDER_THRESHOLDS,
    protocol: str = "official",
) -> dict[str, PRCurve]:
    """The official WIDER FACE validation protocol (module docstring, second protocol).

    Args:
        ground_truth: The ``eval_tools/ground_truth`` folder, or its :func:`load_wider_ground_truth`.
        predictions: ``"event/name"`` (:attr:`WiderImage.key`) to ``(boxes (K, 4) xyxy,
            scores (K,))`` in *original image* pixels; a missing image has no detections.
        settings: The settings to score (each needs its keep list).
        max_faces: Only images with at most this many annotated faces (the paper: 3).
        iou_threshold: 0.5, as the official code.
        thresh_num: Score thresholds of the curve, 1000 as the official code.
        protocol: ``"official"`` (the MATLAB code's int32/single arithmetic, the default) or
            ``"python"`` (the Python ports'): see the module docstring.

    Returns:
        Per setting a :class:`PRCurve` of ``thresh_num`` points (thresholds decreasing).
    """
    if protocol not in WIDER_PROTOCOLS:
        raise UserError(f"the WIDER protocol must be one of {', '.join(WIDER_PROTOCOLS)}, got {protocol!r}")
    official = protocol == "official"
    images = load_wider_ground_truth(ground_truth, settings) if isinstance(ground_truth, (str, Path)) else list(ground_truth)
    if max_faces is not None:
        images = [im for im in images if len(im.boxes) <= max_faces]
    preds: list[tuple[np.ndarray, np.ndarray]] = []
    for im in images:
        boxes, scores = predictions.get(im.key, (np.zeros((0, 4)), np.zeros(0)))
        boxes, scores = _as_boxes(boxes), np.asarray(scores, dtype=np.float64).reshape(-1)
        order = np.argsort(-scores, kind="stable")  # read_pred.m sorts each image's predictions
        preds.append((boxes[order], scores[order]))
    every = np.concatenate([s for _, s in preds]) if preds else np.zeros(0)
    low, high = (float(every.min()), float(every.max())) if every.size else (0.0, 1.0)
    normalised = norm_scores_official([s for _, s in preds]) if official else None
    thresholds = 1.0 - np.arange(1, thresh_num + 1) / thresh_num
    # the setting-independent part of image_evaluation: each prediction's best face
    best_faces: list[tuple[np.ndarray, np.ndarray] | None] = []
    for im, (boxes, _) in zip(images, preds):
        if len(im.boxes) == 0 or len(boxes) == 0:  # evaluation.m skips these images
            best_faces.append(None)
            continue
        overlap = (wider_overlap_official if official else wider_overlap)(im.boxes, boxes)
        best = np.argmax(overlap, axis=1)  # the first maximum, as MATLAB's max
        hits = np.nonzero(overlap[np.arange(len(boxes)), best] >= iou_threshold)[0]
        best_faces.append((hits, best))
    out: dict[str, PRCurve] = {}
    for setting in settings:
        proposals_sum = np.zeros(thresh_num)
        found_sum = np.zeros(thresh_num)
        num_faces = 0
        for i, (im, (boxes, scores), matched) in enumerate(zip(images, preds, best_faces)):
            if setting not in im.keep:
                raise UserError(f"WIDER ground truth has no {setting!r} keep list for {im.key}")
            num_faces += len(im.keep[setting])
            if matched is None:
                continue
            kept = np.zeros(len(im.boxes), dtype=bool)
            kept[im.keep[setting]] = True
            if normalised is not None:
                norm = normalised[i]
            else:
                norm = (scores - low) / (high - low) if high > low else np.ones_like(scores)
            proposals, found = _wider_image(matched[0], matched[1], len(boxes), norm, kept, thresholds)
            proposals_sum += proposals
            found_sum += found
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = found_sum / proposals_sum
            recall = found_sum / num_faces if num_faces else np.full(thresh_num, np.nan)
        ap = voc_ap(recall, precision) if num_faces else float("nan")
        out[setting] = PRCurve(ap, precision, recall, num_faces)
    return out


__all__ = [
    "IOU_THRESHOLD", "PRCurve", "WIDER_PROTOCOLS", "WIDER_SETTINGS", "WIDER_THRESHOLDS", "WiderImage",
    "average_precision", "images_with_at_most", "load_wider_ground_truth", "norm_scores_official", "voc_ap",
    "wider_face_eval", "wider_overlap", "wider_overlap_official",
]
