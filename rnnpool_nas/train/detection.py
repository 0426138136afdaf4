"""Train a face detector (a spec with S3FD heads) and score it by average precision.

:class:`DetectionTrainer` has the public contract of the classification
:class:`~rnnpool_nas.train.trainer.Trainer` (constructor ``(spec, dataset, config, checkpoint=,
resume=)``, ``fit(callback=, progress=) -> TrainResult``, one :class:`EpochMetrics` per epoch,
the same checkpoint format, deterministic resume, a NaN loss or an exception ending the run as
``failed``), so the search runner and the exporter take it unchanged. Per epoch
``val_accuracy`` is the AP at IoU 0.5 on the validation split (all-point interpolation,
:func:`rnnpool_nas.detect.average_precision`; 0.0 when the split holds no face) and
``val_loss`` the multibox loss on it. The loop is :class:`~rnnpool_nas.train.loop.TrainLoop`.

Recipe (stated choices; the paper's appendix G and S3FD):

- SGD, momentum 0.9, weight decay **4e-5** (the paper's recipe for every model; S3FD itself uses
  5e-4), a cosine schedule per step after a linear warm-up (the paper: initial lr 0.01 and 5
  warm-up epochs for detection; ``rnnpool-nas train`` defaults to lr 0.01, batch 16 and a
  warm-up of 5 epochs capped at a tenth of the run). Inputs are pixels / 255, as for the
  classifiers, so the int8 model reads raw pixels.
- Training images: S3FD's augmentation (:class:`~rnnpool_nas.data.augment.S3FDAugment`: colour
  distortion, the crop that zooms in on small faces, flip, resize to the input), drawn from a
  numpy generator seeded per batch from the run's ``torch.Generator`` (so it is deterministic
  and resumes exactly). Without ``config.augment`` images are only resized. Validation images
  are only resized to the input (aspect ratio not kept, boxes scaled exactly). Images are read
  (or painted) on access, batch by batch, in this process; an image that fails to decode is
  replaced by the next one that does (:meth:`DetectionSplit.__getitem__`) in training and left
  out of the evaluation (counted).
- Targets: S3FD matching (:func:`~rnnpool_nas.detect.match_anchors`) per batch on the CPU,
  multibox loss with 3:1 hard negatives (:func:`~rnnpool_nas.detect.multibox_loss`). Boxes
  flagged ``ignore`` are not matched, and anchors overlapping one by the matching IoU (0.35)
  that are not positives are neither mined as negatives nor trained (their logits are replaced
  by constants before the loss, which gives them zero loss and zero gradient).
- Batch norms are recalibrated on 256 evenly spaced resized training images before each
  evaluation (:meth:`TrainLoop.recalibrate_norms`).

Evaluation (:func:`evaluate_detection`, float model or int8 :class:`QuantizedNet` alike):
detections decoded with EdgeML's test-time settings (:func:`~rnnpool_nas.detect.decode_detections`:
score > 0.05, NMS at 0.3, 750 per image) on the resized image, AP at IoU 0.5 over the split, AP
over the paper's subset of images with at most 3 annotated faces, the counts, and, given the
official WIDER FACE ground-truth folder (``wider_face_val.mat``, ``wider_{easy,medium,hard}_val.mat``),
the official easy/medium/hard APs (:func:`~rnnpool_nas.detect.wider_face_eval`) with the
predictions mapped back to the original image's pixels (single scale: the whole image resized
to the network's input; the official protocol scores every val image, so with a limit only the
evaluated images' ground truth is used, and the result says how many).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from ..arch.spec import ArchSpec
from ..data import adapt_images
from ..data.augment import S3FDAugment, resize_sample
from ..data.types import DetectionDataset, DetectionSplit, image_header
from ..detect import (
    MultiBoxLoss,
    anchors_for,
    average_precision,
    box_iou,
    cxcywh_to_xyxy,
    decode_detections,
    images_with_at_most,
    load_wider_ground_truth,
    match_anchors,
    multibox_loss,
    wider_face_eval,
)
from ..detect.match import MATCH_IOU
from ..errors import UserError
from .loop import EpochMetrics, EverySeconds, TrainConfig, TrainLoop, TrainResult, normalise
from ..quant.native import int8_runner
from ..quant.reference import QuantizedNet

__all__ = [
    "DetectionTrainer", "EpochMetrics", "Predictions", "TrainConfig", "TrainResult", "detection_calibration_images",
    "detection_loss", "evaluate_detection", "predict", "score_detections", "to_input",
]

#: Logits given to anchors that overlap an ignored box: zero background loss, so never mined
#: ahead of a real negative, and constants, so no gradient.
_NEUTRAL = (0.0, -1e4)


def to_input(image: np.ndarray, boxes: np.ndarray, size: tuple[int, int], channels: int) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (uint8 (H, W, C)) resized to ``size`` (rows, columns; aspect ratio not kept)
    with ``channels`` channels (the data sets' grey/RGB rules), and its boxes scaled with it."""
    image, boxes = resize_sample(image, boxes, size)
    return _channels(image, channels), boxes


def _channels(image: np.ndarray, channels: int) -> np.ndarray:
    if image.shape[2] == channels:
        return image
    return adapt_images(image[None], image.shape[0], image.shape[1], channels)[0]


def detection_calibration_images(split: DetectionSplit, input_shape: Sequence[int], count: int = 128,
                                 seed: int = 0) -> np.ndarray:
    """The int8 calibration set of a detector: ``count`` images of ``split`` (the training split)
    drawn with ``seed`` (kept in their order), resized to ``input_shape`` as validation images
    are, uint8 NHWC (the detection counterpart of :func:`~rnnpool_nas.train.recipe.calibration_images`).
    Images that fail to decode are left out."""
    h, w, c = input_shape
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(split), size=min(count, len(split)), replace=False))
    images = []
    for i in idx:
        sample = split.get(int(i))
        if sample is not None:
            images.append(to_input(sample.image, sample.boxes, (h, w), c)[0])
    if not images:
        raise UserError(f"{split.name}: no image to calibrate the int8 model on")
    return np.stack(images)


def detection_loss(
    loc: torch.Tensor, conf: torch.Tensor, anchors: torch.Tensor,
    faces: Sequence[np.ndarray], ignored: Sequence[np.ndarray] | None = None,
) -> MultiBoxLoss:
    """The multibox loss of a batch whose images hold ``faces`` (per image (K, 4) xyxy, input
    pixels) and boxes to ignore (module docstring)."""
    matches = match_anchors(anchors, faces)
    if ignored is not None and any(len(b) for b in ignored):
        corners = cxcywh_to_xyxy(anchors.to(torch.float64))
        mask = torch.zeros_like(matches.labels, dtype=torch.bool)
        for i, boxes in enumerate(ignored):
            if len(boxes):
                overlap = box_iou(torch.from_numpy(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)), corners)
                mask[i] = (overlap.max(dim=0).values >= MATCH_IOU) & (matches.labels[i] == 0)
        if mask.any():
            neutral = torch.tensor(_NEUTRAL, dtype=conf.dtype, device=conf.device)
            conf = torch.where(mask[..., None].to(conf.device), neutral, conf)
    return multibox_loss(loc, conf, anchors, matches)


def _split_faces(boxes: np.ndarray, ignore: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    ignore = np.asarray(ignore, dtype=bool).reshape(-1)
    return boxes[~ignore], boxes[ignore]


# -------------------------------------------------------------------------------- evaluation


@dataclass
class Predictions:
    """A model's detections on some images of a split, with what they are scored against.

    ``detections`` per image ``(boxes (K, 4) xyxy, scores (K,))`` and ``boxes``/``ignore`` (the
    annotation) are in the network's input pixels; ``indices`` are the split's indices of the
    images (undecodable ones left out); ``loss`` is the mean multibox loss per image when asked.
    """

    detections: list[tuple[np.ndarray, np.ndarray]]
    boxes: list[np.ndarray]
    ignore: list[np.ndarray]
    indices: list[int]
    sources: list[str]
    loss: float | None = None


def predict(
    model: torch.nn.Module | QuantizedNet, split: DetectionSplit, spec: ArchSpec, *,
    indices: Iterable[int] | None = None, batch_size: int = 16, with_loss: bool = False,
    progress: Callable[[int, int], Any] | None = None,
) -> Predictions:
    """Detections of ``model`` (float :class:`SpecNet` or int8 :class:`QuantizedNet`, run compiled
    for the host by :func:`~rnnpool_nas.quant.native.int8_runner`: the reference's values) on the
    images ``indices`` of ``split`` (default: all), each resized to ``spec``'s input;
    ``progress(done, total)`` every few seconds when it takes longer."""
    h, w, c = spec.input
    anchors_np = anchors_for(spec)
    anchors = torch.from_numpy(anchors_np)
    quantized = isinstance(model, QuantizedNet)
    if quantized:
        runner = int8_runner(model)
    else:
        model.eval()
    out = Predictions([], [], [], [], [], 0.0 if with_loss else None)
    loss_sum = 0.0
    chosen = list(range(len(split)) if indices is None else indices)
    report = EverySeconds(progress) if progress is not None else None
    for start in range(0, len(chosen), batch_size):
        samples = [(i, split.get(i)) for i in chosen[start : start + batch_size]]
        samples = [(i, s) for i, s in samples if s is not None]
        if not samples:
            continue
        images, boxes = zip(*(to_input(s.image, s.boxes, (h, w), c) for _, s in samples))
        batch = np.stack(images)
        with torch.no_grad():
            if quantized:
                loc, conf = (torch.from_numpy(a) for a in runner.detections(batch))
            else:
                loc, conf = model(normalise(torch.from_numpy(batch).permute(0, 3, 1, 2)))
            if with_loss:
                faces, ignored = zip(*(_split_faces(b, s.ignore) for b, (_, s) in zip(boxes, samples)))
                loss_sum += detection_loss(loc, conf, anchors, faces, ignored).total.item() * len(samples)
        out.detections.extend(decode_detections(loc, conf, anchors_np))
        out.boxes.extend(boxes)
        out.ignore.extend(s.ignore for _, s in samples)
        out.indices.extend(i for i, _ in samples)
        out.sources.extend(s.source for _, s in samples)
        if report is not None:
            report(min(len(chosen), start + batch_size), len(chosen))
    if with_loss:
        out.loss = loss_sum / max(1, len(out.indices))
    return out


def _number(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def score_detections(
    detections: Sequence[tuple[np.ndarray, np.ndarray]], boxes: Sequence[np.ndarray],
    ignore: Sequence[np.ndarray] | None = None, *, max_faces: int = 3,
) -> dict[str, Any]:
    """AP at IoU 0.5 over all images and over those with at most ``max_faces`` annotated faces,
    with the counts; an AP is None when there is no face to find."""
    ignore = list(ignore) if ignore is not None else [np.zeros(len(b), bool) for b in boxes]
    curve = average_precision(detections, boxes, ignore=ignore)
    subset = images_with_at_most(boxes, max_faces)
    sub = average_precision([detections[i] for i in subset], [boxes[i] for i in subset],
                            ignore=[ignore[i] for i in subset])
    return {
        "ap": _number(curve.ap), f"ap_at_most_{max_faces}": _number(sub.ap),
        "images": len(boxes), "faces": curve.num_faces,
        f"images_at_most_{max_faces}": len(subset), f"faces_at_most_{max_faces}": sub.num_faces,
    }


def _wider_scores(pred: Predictions, input_size: tuple[int, int], gt_dir: str | Path, max_faces: int,
                  protocol: str = "official") -> dict[str, Any]:
    """The official WIDER FACE APs of ``pred`` (detections mapped to original image pixels), in the
    official MATLAB arithmetic or the Python ports' (``protocol``, :func:`~rnnpool_nas.detect.wider_face_eval`)."""
    h, w = input_size
    predictions = {}
    for (boxes, scores), source in zip(pred.detections, pred.sources):
        path = Path(source)
        native_h, native_w = image_header(path)
        scale = np.array([native_w / w, native_h / h, native_w / w, native_h / h])
        predictions[f"{path.parent.name}/{path.stem}"] = (boxes * scale, scores)
    images = [im for im in load_wider_ground_truth(gt_dir) if im.key in predictions]
    if not images:
        raise UserError(f"none of the {len(predictions)} evaluated images is in {Path(gt_dir) / 'wider_face_val.mat'}: "
                        "the official protocol needs the WIDER FACE val split")
    out: dict[str, Any] = {"images": len(images), "protocol": protocol}
    for suffix, limit in (("", None), (f"_at_most_{max_faces}", max_faces)):
        for setting, curve in wider_face_eval(images, predictions, max_faces=limit, protocol=protocol).items():
            out[setting + suffix] = _number(curve.ap)
    return out


def evaluate_detection(
    model: torch.nn.Module | QuantizedNet, split: DetectionSplit, spec: ArchSpec, *,
    limit: int | None = None, batch_size: int = 16, max_faces: int = 3, wider_gt: str | Path | None = None,
    with_loss: bool = False, wider_protocol: str = "official", progress: Callable[[int, int], Any] | None = None,
) -> dict[str, Any]:
    """Score a detector (float or int8) on ``split`` (its first ``limit`` images).

    Returns:
        ``ap`` (IoU 0.5, all-point), ``ap_at_most_3`` (images with at most 3 annotated faces),
        ``images``, ``faces``, ``images_at_most_3``, ``faces_at_most_3``, ``skipped`` (images
        that could not be decoded), ``loss`` with ``with_loss``, and with ``wider_gt`` (the
        official ground-truth folder) ``wider``: ``easy``/``medium``/``hard`` and the same
        ``_at_most_3``, with the number of images scored.
    """
    count = len(split) if limit is None else min(limit, len(split))
    pred = predict(model, split, spec, indices=range(count), batch_size=batch_size, with_loss=with_loss,
                   progress=progress)
    out = score_detections(pred.detections, pred.boxes, pred.ignore, max_faces=max_faces)
    out["skipped"] = count - len(pred.indices)
    if with_loss:
        out["loss"] = pred.loss
    if wider_gt is not None:
        out["wider"] = _wider_scores(pred, tuple(spec.input[:2]), wider_gt, max_faces, wider_protocol)
    return out


# ---------------------------------------------------------------------------------- training


class DetectionTrainer(TrainLoop):
    """Trains a detection ``spec`` on a :class:`DetectionDataset`; see the module docstring and
    :class:`~rnnpool_nas.train.loop.TrainLoop` for the contract. After :meth:`evaluate` (run by
    ``fit`` after every epoch) :attr:`last_scores` holds that evaluation's full scores."""

    recalibration_images = 256

    # Trainer's parameters on purpose (make_trainer calls either alike), a detection data set
    # instead of a classification one and no pre-built ``data``.
    def __init__(
        self,
        spec: ArchSpec,
        dataset: DetectionDataset,
        config: TrainConfig | None = None,
        checkpoint: str | os.PathLike | None = None,
        resume: bool = False,
    ) -> None:
        if spec.detection is None:
            raise UserError(f"{spec.name or 'this architecture'} has no detection heads: train it on a classification "
                            "data set (the detection trainer needs a face detector)")
        if not isinstance(dataset, DetectionDataset):
            raise UserError(f"{getattr(dataset, 'name', dataset)!r} is not a face-detection data set "
                            "(faces-synth, wider-face:PATH, scut-head:PATH)")
        if len(dataset.train) == 0:
            raise UserError(f"{dataset.name}: the training split has no image")
        super().__init__(spec, config, checkpoint, resume)
        self.dataset = dataset
        h, w, c = spec.input
        self.size, self.channels = (h, w), c
        self.anchors = torch.from_numpy(anchors_for(spec))
        self.augmentation = S3FDAugment(out_size=(h, w))
        limit = self.config.val_limit
        self.val_count = len(dataset.val) if limit is None else min(limit, len(dataset.val))
        self.last_scores: dict[str, Any] | None = None

    def num_train(self) -> int:
        return len(self.dataset.train)

    def _train_sample(self, i: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Training image ``i`` at the input shape: (image, faces, ignored boxes)."""
        s = self.dataset.train[i]
        if self.config.augment:
            image, boxes, ignore = self.augmentation(s.image, s.boxes, s.ignore, rng)
            image = _channels(image, self.channels)
        else:
            (image, boxes), ignore = to_input(s.image, s.boxes, self.size, self.channels), s.ignore
        return (image, *_split_faces(boxes, ignore))

    def _batch_loss(self, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
        images, faces, ignored = zip(*(self._train_sample(int(i), rng) for i in idx))
        x = normalise(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2))
        loc, conf = self.model(x)
        return detection_loss(loc, conf, self.anchors, faces, ignored).total

    def _norm_batches(self, index: torch.Tensor) -> Iterable[torch.Tensor]:
        for idx in index.split(self.config.batch_size):
            samples = [self.dataset.train[int(i)] for i in idx]
            images = [to_input(s.image, s.boxes, self.size, self.channels)[0] for s in samples]
            yield normalise(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2))

    def evaluate(self, batch_size: int = 16) -> tuple[float, float]:
        """(multibox loss, AP at IoU 0.5) on the validation images (0.0 AP without faces)."""
        self.last_scores = evaluate_detection(self.model, self.dataset.val, self.spec, limit=self.val_count,
                                              batch_size=batch_size, with_loss=True)
        ap = self.last_scores["ap"]
        return float(self.last_scores["loss"] or 0.0), 0.0 if ap is None else ap
