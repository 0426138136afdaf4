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
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from rnnpool_nas.data.registry import DataWarning, adapt_images
from rnnpool_nas.errors import UserError

#: Class names of every detection set: index 0 is the background.
CLASSES = ("background", "face")


class UnreadableImage(Exception):
    """An image file that Pillow cannot open or decode; the message says why."""


def image_header(path: Path) -> tuple[int, int]:
    """(height, width) of an image file from its header, or UnreadableImage."""
    try:
        with Image.open(path) as im:
            width, height = im.size
    except FileNotFoundError:
        raise UnreadableImage("missing image file") from None
    except Exception as e:  # Pillow's plugins raise many types for bad files; all mean "skip"
        raise UnreadableImage(f"not a readable image ({type(e).__name__}: {' '.join(str(e).split())})") from None
    return int(height), int(width)


def read_image(path: Path) -> np.ndarray:
    """An image file decoded as RGB, uint8 (H, W, 3), or UnreadableImage."""
    try:
        with Image.open(path) as im:
            im.load()
            rgb = im.convert("RGB")
    except FileNotFoundError:
        raise UnreadableImage("missing image file") from None
    except Exception as e:
        raise UnreadableImage(f"cannot decode ({type(e).__name__}: {' '.join(str(e).split())})") from None
    return np.asarray(rgb, dtype=np.uint8)


def clip_boxes(boxes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(boxes clipped to a ``height x width`` image, which of them were wholly outside it).

    A box is wholly outside when nothing of positive area is left after clipping.
    """
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    np.clip(b[:, 0::2], 0, width, out=b[:, 0::2])
    np.clip(b[:, 1::2], 0, height, out=b[:, 1::2])
    outside = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
    return b, outside


class FileReader:
    """``reader(i)`` decodes ``paths[i]`` as RGB (:func:`read_image`); picklable, for DataLoader workers."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __call__(self, i: int) -> np.ndarray:
        return read_image(self.paths[i])


class _Adapted:
    """Reads image i at its native size and converts it to the split's size and channels."""

    def __init__(self, read: Callable[[int], np.ndarray], native: list[tuple[int, int]], sizes: list[tuple[int, int]], channels: int):
        self.read, self.native, self.sizes, self.channels = read, native, sizes, channels

    def __call__(self, i: int) -> np.ndarray:
        image = self.read(i)
        if image.shape[:2] != self.native[i]:
            nh, nw = self.native[i]
            raise UnreadableImage(f"decoded as {image.shape[1]}x{image.shape[0]} but its header says {nw}x{nh}")
        h, w = self.sizes[i]
        return adapt_images(image[None], h, w, self.channels)[0]


@dataclass(frozen=True)
class DetectionSample:
    """One image (uint8 (H, W, C)), its boxes (float32 (K, 4) x1, y1, x2, y2), ignore flags (bool (K,)), where from."""

    image: np.ndarray
    boxes: np.ndarray
    ignore: np.ndarray
    source: str


class _Rows:
    """Reads row ``rows[i]`` of another split's reader (picklable when that reader is)."""

    def __init__(self, read: Callable[[int], np.ndarray], rows: np.ndarray) -> None:
        self.read, self.rows = read, rows

    def __call__(self, i: int) -> np.ndarray:
        return self.read(int(self.rows[i]))


class DetectionSplit(Sequence[DetectionSample]):
    """The images of one split with their boxes; images are read (or painted) on access.

    ``boxes[i]``/``ignore[i]``/``sources[i]``/``image_size(i)`` are known without reading the
    image, in the coordinates of the image as returned (after ``size``). ``bad`` lists the
    samples skipped so far as (where, why), at load and on access; ``skipped`` is its length.

    Build one with :meth:`from_reader` (lazy) or :meth:`from_arrays` (in memory).
    """

    def __init__(
        self,
        name: str,
        sources: list[str],
        boxes: list[np.ndarray],
        ignore: list[np.ndarray],
        sizes: list[tuple[int, int]],
        read: Callable[[int], np.ndarray],
        channels: int,
        bad: list[tuple[str, str]] | None = None,
    ) -> None:
        if not len(sources) == len(boxes) == len(ignore) == len(sizes):
            counts = f"{len(sources)} sources, {len(boxes)} box arrays, {len(ignore)} ignore arrays, {len(sizes)} sizes"
            raise ValueError(f"{name}: {counts}")
        for b, g in zip(boxes, ignore):
            if b.dtype != np.float32 or b.ndim != 2 or b.shape[1] != 4 or g.dtype != np.bool_ or g.shape != (len(b),):
                raise ValueError(
                    f"{name}: boxes must be float32 (K, 4) with bool (K,) ignore flags, got {b.dtype} {b.shape}, {g.dtype} {g.shape}"
                )
        self.name = name
        self.sources = sources
        self.boxes = boxes
        self.ignore = ignore
        self.channels = channels
        self.bad: list[tuple[str, str]] = list(bad or [])
        self._sizes = sizes
        self._read = read
        self._failed: set[int] = set()
        #: with ``subset``: the rows of the split this one was cut from
        self.rows: np.ndarray | None = None

    def subset(self, rows: Sequence[int], name: str | None = None) -> DetectionSplit:
        """The images ``rows`` of this split (read lazily through this split's reader)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = DetectionSplit(name or self.name, [self.sources[i] for i in rows], [self.boxes[i] for i in rows],
                             [self.ignore[i] for i in rows], [self._sizes[i] for i in rows],
                             _Rows(self._read, rows), self.channels)
        out.rows = rows if self.rows is None else self.rows[rows]
        return out

    @classmethod
    def from_reader(
        cls,
        name: str,
        sources: list[str],
        boxes: list[np.ndarray],
        ignore: list[np.ndarray],
        native_sizes: list[tuple[int, int]],
        read: Callable[[int], np.ndarray],
        *,
        size: tuple[int, int] | None,
        channels: int,
        bad: list[tuple[str, str]] | None = None,
    ) -> DetectionSplit:
        """A lazy split: ``read(i)`` returns image i at its native size (uint8 (H, W, 1 or 3)).

        ``boxes`` are in native pixels; with ``size`` they are scaled to it here and every image
        is resized to it on access. ``read`` raises :class:`UnreadableImage` for a bad image; it
        should be picklable (not a lambda) so that the split can go to DataLoader workers.
        """
        if size is not None:
            out_h, out_w = size
            scaled = []
            for b, (h, w) in zip(boxes, native_sizes):
                scale = np.array([out_w / w, out_h / h, out_w / w, out_h / h], dtype=np.float64)
                scaled.append((b.astype(np.float64) * scale).astype(np.float32))
            boxes, sizes = scaled, [size] * len(boxes)
        else:
            sizes = list(native_sizes)

        return cls(name, sources, boxes, ignore, sizes, _Adapted(read, list(native_sizes), sizes, channels), channels, bad)

    @classmethod
    def from_arrays(
        cls,
        name: str,
        images: list[np.ndarray],
        boxes: list[np.ndarray],
        ignore: list[np.ndarray] | None = None,
        sources: list[str] | None = None,
        bad: list[tuple[str, str]] | None = None,
    ) -> DetectionSplit:
        """A split held in memory: ``images`` uint8 (H, W, C), all with the same C."""
        channels = {int(im.shape[2]) for im in images if im.ndim == 3}
        if any(im.dtype != np.uint8 or im.ndim != 3 for im in images) or len(channels) > 1 or not channels <= {1, 3}:
            raise ValueError(f"{name}: images must be uint8 (H, W, C) with one C of 1 or 3")
        ignore = [np.zeros(len(b), bool) for b in boxes] if ignore is None else ignore
        sources = [f"{name}[{i}]" for i in range(len(images))] if sources is None else sources
        sizes = [(int(im.shape[0]), int(im.shape[1])) for im in images]
        return cls(name, sources, boxes, ignore, sizes, images.__getitem__, channels.pop() if channels else 3, bad)

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def skipped(self) -> int:
        """Samples skipped so far (at load and on access)."""
        return len(self.bad)

    @property
    def size(self) -> tuple[int, int] | None:
        """(height, width) shared by every image, or None when they differ (or the split is empty)."""
        shapes = set(self._sizes)
        return shapes.pop() if len(shapes) == 1 else None

    def image_size(self, i: int) -> tuple[int, int]:
        """(height, width) of image ``i`` as returned, without reading it."""
        return self._sizes[i]

    def get(self, i: int) -> DetectionSample | None:
        """Sample ``i``, or None if its image cannot be decoded (then counted and warned about once)."""
        if not 0 <= i < len(self):
            raise IndexError(f"{self.name}: index {i} out of range for {len(self)} images")
        if i in self._failed:
            return None
        try:
            image = self._read(i)
        except UnreadableImage as e:
            self._failed.add(i)
            self.bad.append((self.sources[i], str(e)))
            warnings.warn(f"{self.name}: skipping {self.sources[i]}: {e}", DataWarning, stacklevel=3)
            return None
        return DetectionSample(image, self.boxes[i], self.ignore[i], self.sources[i])

    def __getitem__(self, i: int) -> DetectionSample:  # type: ignore[override]
        """Sample ``i``; if its image cannot be decoded, the next one that can (wrapping round)."""
        n = len(self)
        if isinstance(i, slice) or not -n <= i < n:
            raise IndexError(f"{self.name}: index {i!r} out of range for {n} images")
        i %= n
        for k in range(n):
            sample = self.get((i + k) % n)
            if sample is not None:
                return sample
        raise UserError(f"{self.name}: not one of its {n} images can be decoded (first: {self.bad[0][0]}: {self.bad[0][1]})")

    def __iter__(self) -> Iterator[DetectionSample]:
        """Every sample whose image decodes, in order (bad ones skipped, not repeated)."""
        for i in range(len(self)):
            sample = self.get(i)
            if sample is not None:
                yield sample

    def preload(self) -> DetectionSplit:
        """The same split held in memory: every image read now, the ones that fail dropped."""
        images, boxes, ignore, sources = [], [], [], []
        for i in range(len(self)):
            sample = self.get(i)
            if sample is not None:
                images.append(sample.image)
                boxes.append(sample.boxes)
                ignore.append(sample.ignore)
                sources.append(sample.source)
        split = DetectionSplit.from_arrays(self.name, images, boxes, ignore, sources, self.bad)
        split.channels = self.channels
        return split

    def face_counts(self) -> np.ndarray:
        """Number of (non-ignored) boxes per image, int64 (N,)."""
        return np.array([int((~g).sum()) for g in self.ignore], dtype=np.int64)


@dataclass
class DetectionDataset:
    """A face-detection data set: ``train`` and ``val`` splits of images with face boxes."""

    name: str
    train: DetectionSplit
    val: DetectionSplit
    channels: int
    classes: list[str] = field(default_factory=lambda: list(CLASSES))

    @property
    def skipped(self) -> int:
        """Samples skipped so far in both splits."""
        return self.train.skipped + self.val.skipped

    @property
    def num_classes(self) -> int:
        """2: background and face."""
        return len(self.classes)

    @property
    def size(self) -> tuple[int, int] | None:
        """(height, width) shared by every image of both splits, or None when sizes vary."""
        sizes = {split.size for split in (self.train, self.val) if len(split)}
        return sizes.pop() if len(sizes) == 1 else None


def warn_bad(name: str, split: str, bad: list[tuple[str, str]], stacklevel: int = 3) -> None:
    """One DataWarning for the samples a loader skipped in a split (none if it skipped nothing)."""
    if bad:
        where, why = bad[0]
        message = f"{name}: skipped {len(bad)} bad {split} sample(s) (first: {where}: {why})"
        warnings.warn(message, DataWarning, stacklevel=stacklevel)


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


def seeded_order(n: int, limit: int | None, seed: int, stream: int) -> Sequence[int]:
    """The order in which a loader tries rows: all in order, or (with ``limit``) a seeded permutation."""
    return range(n) if limit is None else np.random.default_rng([seed, stream]).permutation(n).tolist()


_DESCRIPTIONS = {
    "faces-synth": "LFW face crops pasted on photographs and noise, exact boxes, 240x320x1 by default (10000/1000)",
    "wider-face:PATH": "WIDER FACE as distributed (WIDER_train, WIDER_val, wider_face_split), RGB",
    "scut-head:PATH": "SCUT-HEAD (e.g. Part B) in its Pascal-VOC layout (Annotations, JPEGImages, ImageSets/Main), RGB",
}


def list_detection_datasets() -> dict[str, str]:
    """The accepted names (``:PATH`` marks those that need a folder) and a one-line description."""
    return dict(_DESCRIPTIONS)


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
