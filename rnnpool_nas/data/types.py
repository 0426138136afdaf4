"""The shared types of face-detection data: samples, lazy splits, data sets, and the helpers every
source uses (image headers, decoding, box clipping, bad-sample warnings, seeded subsets).

One module that the sources (``faces_synth``, ``wider_face``, ``scut_head``), the augmentation and
the detection registry (:mod:`rnnpool_nas.data.detection`) import, and that imports none of them.
Box and image conventions are in :mod:`rnnpool_nas.data.detection`'s docstring.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from rnnpool_nas.data.images import DataWarning, adapt_images
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

    # The constructor's parameters on purpose, but with boxes and sizes at the images' native size
    # (``size`` rescales them and wraps ``read``): the constructor takes what the split returns.
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


def seeded_order(n: int, limit: int | None, seed: int, stream: int) -> Sequence[int]:
    """The order in which a loader tries rows: all in order, or (with ``limit``) a seeded permutation."""
    return range(n) if limit is None else np.random.default_rng([seed, stream]).permutation(n).tolist()


def files_split(name: str, kept: list[tuple[int, Path, np.ndarray, np.ndarray, tuple[int, int]]], *,
                size: tuple[int, int] | None, channels: int, bad: list[tuple[str, str]]) -> DetectionSplit:
    """The split of image files a loader kept, read lazily (:class:`FileReader`): ``kept`` holds
    ``(order, path, boxes, ignore, (height, width))`` per image, in the order of ``order``."""
    kept = sorted(kept, key=lambda t: t[0])
    paths = [t[1] for t in kept]
    return DetectionSplit.from_reader(name, [str(p) for p in paths], [t[2] for t in kept], [t[3] for t in kept],
                                      [t[4] for t in kept], FileReader(paths), size=size, channels=channels, bad=bad)


__all__ = ["CLASSES", "DetectionDataset", "DetectionSample", "DetectionSplit", "FileReader", "UnreadableImage",
           "clip_boxes", "files_split", "image_header", "read_image", "seeded_order", "warn_bad"]
