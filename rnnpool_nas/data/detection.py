"""Face-detection data: images with face boxes, loaded by name with :func:`load_detection_dataset`.

Names (see :func:`list_detection_datasets`):

- ``faces-synth``: always available offline (:mod:`rnnpool_nas.data.faces_synth`): real 25x25
  face crops from scikit-image's bundled LFW subset pasted onto its bundled photographs and onto
  noise, with exact boxes, generated on access from ``seed`` at any size (default 240x320x1, the
  RNNPool-Face-M4 input); 10000 train / 1000 val images. For tests and the demo: real
  face-detection results need WIDER FACE.
- ``wider-face:PATH``: WIDER FACE as distributed (:mod:`rnnpool_nas.data.wider_face`);
  12880 train / 3226 val images of their own sizes, RGB.
- ``scut-head:PATH``: SCUT-HEAD (Part B is the paper's RNNPool-Face-M4 fine-tuning set) in its
  Pascal-VOC layout (:mod:`rnnpool_nas.data.scut_head`); head boxes, RGB.

As in :func:`rnnpool_nas.data.load_dataset`, the folder may be given after the colon or as
``data_dir`` (not both, unless they agree); unknown names suggest the closest ones.

Boxes are float32 (K, 4) arrays ``x1, y1, x2, y2`` in pixels of the image as returned, in
continuous coordinates: pixel (row r, column c) covers ``[c, c+1) x [r, r+1)``, so a box over
columns a..b (inclusive) has ``x1 = a, x2 = b + 1`` and an image W pixels wide spans
``[0, W]``. Resizing an image scales its boxes by the same factors, exactly. Every box has
``x2 > x1`` and ``y2 > y1`` and lies inside its image (loaders clip boxes that stick out).
``ignore`` (bool (K,)) marks boxes a detector should neither be rewarded nor punished for
(SCUT-HEAD's ``difficult`` objects, and boxes the augmentation shrinks below its minimum); the
matcher should exclude them from both positives and negatives. Images may have no box at all.

Images are uint8 (H, W, C), C = ``channels`` (1 or 3; default: 1 for faces-synth, 3 for the
file-based sets); files are decoded with Pillow as RGB and converted with the classification
rules (:func:`~rnnpool_nas.data.adapt_images`: BT.601 luma, bilinear resize). ``size`` (rows,
columns) resizes every image to that shape (aspect ratio not kept, boxes scaled); without it the
file-based sets keep each image's own size (what S3FD's augmentation wants: it crops before it
resizes), and faces-synth uses 240x320.

Splits (:class:`DetectionSplit`) are lazy: the file-based loaders parse the annotations and read
each image's header at load (so a box can be checked against its image), and decode an image
only when it is asked for; faces-synth draws each image's layout (and so its boxes) at load and
paints its pixels on access. ``preload=True`` decodes (or paints) everything at load instead.
``limit`` keeps a seeded random subset of at most ``limit`` images per split, in annotation
order (faces-synth: exactly the first ``limit`` images of each split).

Validation split (``holdout``, what the search uses): the ``val`` split is each set's test
set (WIDER FACE's val, faces-synth's val stream), so with ``holdout=f`` it is not returned:
``val`` is instead a seeded fraction ``f`` of the training split (after ``limit``; its
``rows`` give the training rows it came from), and ``train`` the rest. faces-synth generates
its validation images from an independent stream of their own (``holdout`` split: seeds
(seed, 2, i), the training face crops, ``round(1000 * f / 0.1)`` capped at 1000 images).

Bad input: a missing folder or annotation file, or a malformed annotation line that loses the
file's structure, is a :class:`~rnnpool_nas.errors.UserError` (one line naming the file and the
line). A bad sample (an image file that is missing or not an image, a box wholly outside its
image, a malformed per-image annotation) is skipped and counted: each split keeps
``bad`` (where, why) and ``skipped``, and one :class:`~rnnpool_nas.data.DataWarning` per split
names the count and the first one. An image that passes the header check but fails to decode
when it is read is skipped then (counted and warned about once): :meth:`DetectionSplit.get`
returns None for it, and indexing returns the next image that decodes.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Callable

import numpy as np

from rnnpool_nas.data.types import (  # noqa: F401 (the shared types, importable from here as before)
    CLASSES,
    DetectionDataset,
    DetectionSample,
    DetectionSplit,
    FileReader,
    UnreadableImage,
    clip_boxes,
    image_header,
    read_image,
    seeded_order,
    warn_bad,
)
from rnnpool_nas.errors import UserError

_DESCRIPTIONS = {
    "faces-synth": "LFW face crops pasted on photographs and noise, exact boxes, 240x320x1 by default (10000/1000)",
    "wider-face:PATH": "WIDER FACE as distributed (WIDER_train, WIDER_val, wider_face_split), RGB",
    "scut-head:PATH": "SCUT-HEAD (e.g. Part B) in its Pascal-VOC layout (Annotations, JPEGImages, ImageSets/Main), RGB",
}


def list_detection_datasets() -> dict[str, str]:
    """The accepted names (``:PATH`` marks those that need a folder) and a one-line description."""
    return dict(_DESCRIPTIONS)


def holdout_split(train: DetectionSplit, fraction: float, seed: int) -> tuple[DetectionSplit, DetectionSplit]:
    """(rest, held out): a seeded ``fraction`` of ``train``'s images (at least one, never all
    of two or more) as a validation split; ``rows`` of each say which training rows they are."""
    n = len(train)
    k = min(max(n - 1, 0), max(1 if n > 1 else 0, round(n * fraction)))
    held = np.sort(np.random.default_rng([seed, 6]).choice(n, size=k, replace=False)) if k else np.zeros(0, np.int64)
    mask = np.ones(n, dtype=bool)
    mask[held] = False
    base = train.name.split(":")[0]
    return train.subset(np.flatnonzero(mask)), train.subset(held, f"{base}:holdout")


def _load_faces_synth(path, *, seed, size, channels, limit, splits, holdout=None) -> DetectionDataset:
    from rnnpool_nas.data import faces_synth

    return faces_synth.load(seed=seed, size=size, channels=channels, limit=limit, splits=splits, holdout=holdout)


def _load_wider(path, *, seed, size, channels, limit, splits) -> DetectionDataset:
    from rnnpool_nas.data import wider_face

    return wider_face.load(path, seed=seed, size=size, channels=channels, limit=limit, splits=splits)


def _load_scut(path, *, seed, size, channels, limit, splits) -> DetectionDataset:
    from rnnpool_nas.data import scut_head

    return scut_head.load(path, seed=seed, size=size, channels=channels, limit=limit, splits=splits)


#: kind -> (loader, whether a folder is required, default channels)
_LOADERS: dict[str, tuple[Callable[..., DetectionDataset], bool, int]] = {
    "faces-synth": (_load_faces_synth, False, 1),
    "wider-face": (_load_wider, True, 3),
    "scut-head": (_load_scut, True, 3),
}
#: The split names each kind knows (the first two are the defaults for train and val).
SPLITS = {
    "faces-synth": ("train", "val"),
    "wider-face": ("train", "val"),
    "scut-head": ("train", "val", "trainval", "test"),
}


def is_detection_name(name: str) -> bool:
    """Whether ``name`` (``kind`` or ``kind:PATH``) names a detection data set."""
    return name.partition(":")[0].strip().lower() in _LOADERS


def _check_size(kind: str, size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    ok = (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in size)
    )
    if not ok:
        raise UserError(f"{kind}: size must be (height, width) of positive integers, got {size!r}")
    return int(size[0]), int(size[1])


def load_detection_dataset(
    name: str,
    *,
    data_dir: str | Path | None = None,
    seed: int = 0,
    size: tuple[int, int] | int | None = None,
    channels: int | None = None,
    limit: int | None = None,
    splits: tuple[str, str] = ("train", "val"),
    preload: bool = False,
    holdout: float | None = None,
) -> DetectionDataset:
    """Load the face-detection data set ``name`` (see the module docstring).

    ``size`` is (height, width) (an int means square); ``channels`` is 1 or 3 (None: the set's
    own, 1 for faces-synth, 3 otherwise); ``splits`` names the annotation sets used as train and
    val (``scut-head`` also has ``trainval`` and ``test``; WIDER's test set has no boxes);
    ``preload`` reads every image at load; ``holdout`` (a fraction in (0, 1)) validates on
    images held out of the training split and drops the test split (module docstring). Deterministic: the same arguments give the same
    images and boxes. Raises UserError (one line) for an unknown name (suggesting the closest),
    a bad argument, or a missing or malformed data set.
    """
    kind, sep, rest = str(name).partition(":")
    kind = kind.strip().lower()
    if kind not in _LOADERS:
        close = difflib.get_close_matches(kind, list(_LOADERS), n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise UserError(f"unknown detection data set {name!r}: {hint}known: {', '.join(_DESCRIPTIONS)}")
    loader, needs_path, default_channels = _LOADERS[kind]
    path: Path | None = None
    if needs_path:
        given = [Path(p).expanduser() for p in (rest if sep else None, data_dir) if p]
        if len(given) == 2 and given[0] != given[1]:
            raise UserError(f"{kind}: two folders given ({given[0]} in the name, {given[1]} as data_dir); give one")
        if not given:
            raise UserError(f"{kind}: needs a folder: use {kind}:PATH or pass --data-dir")
        path = given[0]
    elif sep:
        raise UserError(f"{kind}: a synthetic data set takes no path, got {name!r}")
    size = _check_size(kind, size)
    if channels is None:
        channels = default_channels
    if isinstance(channels, bool) or channels not in (1, 3):
        raise UserError(f"{kind}: channels must be 1 or 3, got {channels!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
        raise UserError(f"{kind}: limit must be a positive integer, got {limit!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"{kind}: seed must be a non-negative integer, got {seed!r}")
    if isinstance(splits, str) or len(splits) != 2 or any(s not in SPLITS[kind] for s in splits):
        raise UserError(f"{kind}: splits must name two of {', '.join(SPLITS[kind])} (train, val), got {splits!r}")
    if holdout is not None and (isinstance(holdout, bool) or not isinstance(holdout, (int, float))
                                or not 0.0 < holdout < 1.0):
        raise UserError(f"{kind}: the validation fraction must be between 0 and 1 (exclusive), got {holdout!r}")
    limit = None if limit is None else int(limit)
    if kind == "faces-synth":
        ds = loader(path, seed=int(seed), size=size, channels=int(channels), limit=limit, splits=tuple(splits),
                    holdout=holdout)
    else:
        ds = loader(path, seed=int(seed), size=size, channels=int(channels), limit=limit, splits=tuple(splits))
        if holdout is not None:
            ds.train, ds.val = holdout_split(ds.train, float(holdout), int(seed))
    if preload:
        ds.train, ds.val = ds.train.preload(), ds.val.preload()
    return ds
