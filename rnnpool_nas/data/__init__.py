"""Data sets: load any supported source by name into one in-memory :class:`Dataset`.

See :mod:`rnnpool_nas.data.registry` for the names, the arguments and the image-adaptation
rules; one module per source (``idx``, ``cifar``, ``imagefolder``, ``synthetic``). Face
detection (images with boxes) has its own entry point, :func:`load_detection_dataset`
(:mod:`rnnpool_nas.data.detection`; ``faces_synth``, ``wider_face``, ``scut_head``, and
``augment`` for S3FD's augmentation). numpy and Pillow only: nothing here imports torch.
"""

from rnnpool_nas.data.registry import DataWarning, Dataset, adapt_images, list_datasets, load_dataset
from rnnpool_nas.data.detection import (  # after the registry, which detection imports
    DetectionDataset,
    DetectionSample,
    DetectionSplit,
    list_detection_datasets,
    load_detection_dataset,
)

__all__ = [
    "DataWarning",
    "Dataset",
    "DetectionDataset",
    "DetectionSample",
    "DetectionSplit",
    "adapt_images",
    "list_datasets",
    "list_detection_datasets",
    "load_dataset",
    "load_detection_dataset",
]
