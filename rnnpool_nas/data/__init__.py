"""Data sets: load any supported source by name into one in-memory :class:`Dataset`.

One registry answers for every name (:mod:`rnnpool_nas.data.registry`: :func:`load_any`, or
:func:`load_dataset` for classification and :func:`load_detection_dataset` for face detection,
whose names and loaders live in :mod:`rnnpool_nas.data.detection`); one module per source
(``idx``, ``cifar``, ``imagefolder``, ``synthetic``; ``faces_synth``, ``wider_face``,
``scut_head``); the shared detection types in ``types``, image adaptation in ``images``,
S3FD's augmentation in ``augment``. numpy and Pillow only: nothing here imports torch.
"""

from rnnpool_nas.data.registry import (
    DataWarning,
    Dataset,
    adapt_images,
    is_detection_name,
    list_all_datasets,
    list_datasets,
    list_detection_datasets,
    load_any,
    load_dataset,
    load_detection_dataset,
)
from rnnpool_nas.data.types import DetectionDataset, DetectionSample, DetectionSplit

__all__ = [
    "DataWarning",
    "Dataset",
    "DetectionDataset",
    "DetectionSample",
    "DetectionSplit",
    "adapt_images",
    "is_detection_name",
    "list_all_datasets",
    "list_datasets",
    "list_detection_datasets",
    "load_any",
    "load_dataset",
    "load_detection_dataset",
]
