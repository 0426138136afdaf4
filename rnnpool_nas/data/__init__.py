"""Data sets: load any supported source by name into one in-memory :class:`Dataset`.

See :mod:`rnnpool_nas.data.registry` for the names, the arguments and the image-adaptation
rules; one module per source (``idx``, ``cifar``, ``imagefolder``, ``synthetic``). numpy and
Pillow only: nothing here imports torch.
"""

from rnnpool_nas.data.registry import DataWarning, Dataset, adapt_images, list_datasets, load_dataset

__all__ = ["DataWarning", "Dataset", "adapt_images", "list_datasets", "load_dataset"]
