"""The training recipe, in one place: what ``rnnpool-nas train``, the search's trials and export share.

- :meth:`TrainConfig.for_spec <rnnpool_nas.train.loop.TrainConfig.for_spec>` knows the
  classifier's and the detector's defaults (batch, learning rate, warm-up).
- :func:`load_data` loads the data set a spec trains on (a detector's face-detection set at the
  spec's channels, faces-synth painted at its input size) and refuses a detector with
  classification data or the reverse, with one line.
- :func:`make_trainer` picks the trainer (classification :class:`~rnnpool_nas.train.trainer.Trainer`
  or :class:`~rnnpool_nas.train.detection.DetectionTrainer`); :func:`train` builds and fits it.
- :func:`score_int8` quantizes a trained model exactly as every command does (the same
  calibration images) and scores float against int8 on the validation images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..arch.spec import ArchSpec
from ..errors import UserError
from .loop import EpochMetrics, EverySeconds, TrainConfig, TrainLoop, TrainResult, print_progress

#: How many training images calibrate the int8 model: classifiers, detectors.
CALIBRATION_IMAGES = {"classification": 512, "detection": 128}


def check_data(spec: ArchSpec, dataset_name: str, label: str | None = None) -> None:
    """A detector needs face-detection data and a classifier classification data: a one-line
    :class:`UserError` otherwise (naming the architecture ``label``, default its name)."""
    from ..data import is_detection_name

    name = label or spec.name or "this architecture"
    if spec.detection is not None and not is_detection_name(dataset_name):
        raise UserError(f"{name} is a face detector: train it on a face-detection data set "
                        f"(faces-synth, wider-face:PATH, scut-head:PATH), not {dataset_name!r}")
    if spec.detection is None and is_detection_name(dataset_name):
        raise UserError(f"{dataset_name} is a face-detection data set but {name} is a classifier: use a detector "
                        "(rnnpool-face-m4, rnnpool-face-quant, ... or an --arch with detection heads)")


def load_data(spec: ArchSpec, name: str, *, data_dir: str | None = None, seed: int = 0, limit: int | None = None,
              holdout: float | None = None):
    """The data set ``spec`` trains and is scored on (see the module docstring). ``holdout``: score
    on that seeded fraction of the training images instead of the test set (the search's rule)."""
    from ..data import load_dataset, load_detection_dataset

    check_data(spec, name)
    if spec.detection is None:
        return load_dataset(name, data_dir=data_dir, seed=seed, limit=limit, holdout=holdout)
    h, w, c = spec.input
    synthetic = name.strip().lower().startswith("faces-synth")  # painted at any size; real sets are cropped later
    return load_detection_dataset(name, data_dir=data_dir, seed=seed, size=(h, w) if synthetic else None,
                                  channels=c, limit=limit, holdout=holdout)


def make_trainer(spec: ArchSpec, dataset, config: TrainConfig, *, checkpoint: str | os.PathLike | None = None,
                 resume: bool = False) -> TrainLoop:
    """The trainer of ``spec``: a detector's for a spec with detection heads, else a classifier's."""
    if spec.detection is not None:
        from .detection import DetectionTrainer

        return DetectionTrainer(spec, dataset, config, checkpoint=checkpoint, resume=resume)
    from .trainer import Trainer

    return Trainer(spec, dataset, config, checkpoint=checkpoint, resume=resume)


def train(spec: ArchSpec, dataset, config: TrainConfig, *, checkpoint: str | os.PathLike | None = None,
          resume: bool = False, callback: Callable[[EpochMetrics], bool | None] | None = None,
          progress: Callable[[int, int], None] | None = None) -> tuple[TrainLoop, TrainResult]:
    """Train ``spec`` on ``dataset`` with ``config`` (usually :meth:`TrainConfig.for_spec`);
    returns the trainer (its ``model``, ``config``, a detector's ``last_scores``) and the result.
    ``callback``/``progress`` as :meth:`TrainLoop.fit` takes them."""
    trainer = make_trainer(spec, dataset, config, checkpoint=checkpoint, resume=resume)
    return trainer, trainer.fit(callback=callback, progress=progress)


def calibration_images(dataset, input_shape: tuple[int, int, int], count: int = 512, seed: int = 0) -> np.ndarray:
    """The calibration set every int8 score and export uses: ``count`` training images drawn
    with ``seed`` (in their original order), adapted to ``input_shape``, uint8 NHWC."""
    from ..data import adapt_images

    h, w, c = input_shape
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(dataset.x_train), size=min(count, len(dataset.x_train)), replace=False)
    return adapt_images(dataset.x_train[np.sort(idx)], h, w, c)


def evaluate_int8(qnet, model, images: np.ndarray, labels: np.ndarray, batch_size: int | None = None, *,
                  reference: bool = False, progress=None) -> dict[str, float]:
    """Float and int8 top-1 accuracy and their agreement on uint8 NHWC ``images``. The int8
    network runs compiled for the host (:func:`rnnpool_nas.quant.native.int8_runner`: the
    reference's values, on several threads, 256 images a batch; the numpy reference when there is
    no C compiler); ``reference=True`` runs the numpy integer reference itself (16 images a batch
    keep its int64 temporaries in cache). ``progress(done, total)`` is called every few seconds
    when scoring takes longer (:class:`~rnnpool_nas.train.loop.EverySeconds`)."""
    import torch

    from ..quant.native import int8_runner

    runner = qnet if reference else int8_runner(qnet)
    batch_size = batch_size or (16 if reference else 256)
    report = EverySeconds(progress) if progress is not None else None
    model.eval()
    agree = float_ok = int_ok = 0
    n = len(images)
    for i in range(0, n, batch_size):
        x = images[i : i + batch_size]
        with torch.no_grad():
            f = model(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255).argmax(1).numpy()
        q = runner.run(x).argmax(1)
        y = labels[i : i + batch_size]
        agree += int((f == q).sum())
        float_ok += int((f == y).sum())
        int_ok += int((q == y).sum())
        if report is not None:
            report(min(n, i + batch_size), n)
    n = max(1, n)
    return {"float_accuracy": float_ok / n, "int8_accuracy": int_ok / n, "agreement": agree / n}


@dataclass
class Int8Score:
    """A quantized network and its scores: a classifier's ``float_accuracy``, ``int8_accuracy``,
    ``agreement``; a detector's ``float_ap``, ``int8_ap``, ``float_ap_at_most_3``,
    ``int8_ap_at_most_3``, ``faces`` and the full ``float``/``int8`` evaluations; both
    ``images`` and ``calibration_images``."""

    qnet: Any
    scores: dict[str, Any]


def score_int8(model, spec: ArchSpec, dataset, *, seed: int = 0, val_limit: int | None = None,
               wider_gt: str | None = None, wider_protocol: str = "official",
               float_scores: dict[str, Any] | None = None) -> Int8Score:
    """Quantize ``model`` (a trained ``spec``) and score it, float against int8, on the first
    ``val_limit`` validation images. Calibration: 512 training images drawn with seed 0 for a
    classifier, 128 drawn with ``seed`` (resized as validation images are) for a detector: the
    same images whoever calls, so ``train``'s int8 score and export's model agree. A detector's
    ``float_scores`` (an evaluation already made on the same images, e.g. the last epoch's) are
    reused; ``wider_gt`` adds the official WIDER FACE protocol."""
    from ..quant.convert import quantize

    if spec.detection is None:
        from ..data import adapt_images

        calib = calibration_images(dataset, spec.input, count=CALIBRATION_IMAGES["classification"])
        qnet = quantize(model, calib)
        h, w, c = spec.input
        val = adapt_images(dataset.x_val[:val_limit], h, w, c)
        scores = evaluate_int8(qnet, model, val, np.asarray(dataset.y_val[:val_limit]),
                               progress=print_progress("int8 scoring"))
        return Int8Score(qnet, {**scores, "images": len(val), "calibration_images": len(calib)})

    from .detection import detection_calibration_images, evaluate_detection

    calib = detection_calibration_images(dataset.train, spec.input, count=CALIBRATION_IMAGES["detection"], seed=seed)
    qnet = quantize(model, calib)
    if float_scores is None or wider_gt:
        fl = evaluate_detection(model, dataset.val, spec, limit=val_limit, wider_gt=wider_gt,
                                wider_protocol=wider_protocol)
    else:
        fl = {k: v for k, v in float_scores.items() if k != "loss"}
    i8 = evaluate_detection(qnet, dataset.val, spec, limit=val_limit, batch_size=4, wider_gt=wider_gt,
                            wider_protocol=wider_protocol, progress=print_progress("int8 scoring"))
    return Int8Score(qnet, {
        "float_ap": fl["ap"], "int8_ap": i8["ap"], "float_ap_at_most_3": fl["ap_at_most_3"],
        "int8_ap_at_most_3": i8["ap_at_most_3"], "images": i8["images"], "faces": i8["faces"],
        "calibration_images": len(calib), "float": fl, "int8": i8})


__all__ = ["CALIBRATION_IMAGES", "Int8Score", "TrainConfig", "calibration_images", "check_data", "evaluate_int8",
           "load_data", "make_trainer", "score_int8", "train"]
