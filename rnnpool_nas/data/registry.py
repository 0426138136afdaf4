"""One interface to every data set: :func:`load_dataset` by name, :class:`Dataset` in memory.

Names (see :func:`list_datasets`):

- ``fashion-mnist``: Debian's ``dataset-fashion-mnist`` files in
  ``/usr/share/datasets/fashion-mnist`` (or ``data_dir``); 60000 train, the 10000 test images
  as validation, 28x28x1, the ten real class names.
- ``idx:PATH``: any MNIST-format idx folder (:mod:`rnnpool_nas.data.idx`); classes "0".."K-1"
  where K is one more than the largest label.
- ``cifar10:PATH``: the python-pickle CIFAR-10 folder (:mod:`rnnpool_nas.data.cifar`).
- ``imagefolder:PATH``: one subfolder per class, optionally under ``train/`` and ``val/``
  (:mod:`rnnpool_nas.data.imagefolder`); always 3 channels.
- ``lines`` and ``shapes``: the paper's synthetic tasks (:mod:`rnnpool_nas.data.synthetic`),
  always available, 20000 train / 2000 val images generated from ``seed``; 1 channel; ``shapes``
  is multi-label. Train and val come from independent streams derived from the seed, each
  generated in blocks of 1000 images with their own seeds, so that ``limit=k`` gives exactly
  the first k images of the full set.

For the folder-based names the path may be given as ``data_dir`` instead of after the colon
(``fashion-mnist`` takes ``data_dir`` to override the Debian folder); giving two different paths
is an error. ``data_dir`` is ignored by the synthetic sets.

Common arguments: ``size`` resizes a file-based set to ``size x size`` (with :func:`adapt_images`
for idx and CIFAR, while decoding for an image folder) and sets the synthetic image side
(default 32 for lines, 64 for shapes). ``limit`` keeps at most ``limit`` images of each split: a
random subset drawn from ``seed``, kept in the split's order (synthetic sets generate only the
first ``limit``). ``val_fraction`` is only used to split an image folder that has no ``train/``/``val/``.

Validation split (``holdout``). Without it (the default) ``x_val`` is the data set's own
evaluation split: Fashion-MNIST's and an idx folder's 10,000 test images, CIFAR-10's test batch,
an image folder's ``val/`` (or its ``val_fraction`` split): the *test set*, what a finished model
is reported on. With ``holdout=f`` (what the search uses) that test set is never loaded into the
result: ``x_train``/``x_val`` are a seeded, stratified split of the training images, a fraction
``f`` of each class (rounded, at least one image of a class with two or more) held out as
validation, drawn from ``seed`` before ``limit`` is applied to each part. ``train_index`` and
``val_index`` then give the rows of the original training split each image came from (after
``limit``), so a caller can check that no test image reaches the search. The synthetic sets
generate their validation images from a third independent stream instead (their test images
are stream 1).

Errors a user can cause (missing folder or file, corrupt file, unknown name, bad argument) are
:class:`~rnnpool_nas.errors.UserError` with a one-line message naming what was expected where.

Image adaptation (:func:`adapt_images`), used by the trainer when a candidate network wants a
different input than the data set has:

- channels are converted first when going to 1 channel (so the resize works on less data) and
  last when going to 3; grey -> RGB repeats the grey channel three times; RGB -> grey is
  ITU-R BT.601 luma, ``(299 R + 587 G + 114 B) / 1000`` rounded half up, computed exactly in
  integers (Pillow's ``convert("L")`` uses a 16-bit fixed-point version and can differ by 1);
- resizing is Pillow's bilinear filter, image by image, on each channel at once (Pillow's
  bilinear widens its support when shrinking, so downscaling averages instead of aliasing);
  the aspect ratio is not kept; a constant image stays constant;
- the result is a new uint8 (N, height, width, channels) array, or ``x`` itself when it already
  has that shape.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from rnnpool_nas.data import cifar, idx, imagefolder, synthetic
from rnnpool_nas.data.detection import is_detection_name, list_detection_datasets, load_detection_dataset
from rnnpool_nas.data.images import DataWarning, adapt_images
from rnnpool_nas.errors import UserError

#: Where Debian's ``dataset-fashion-mnist`` package puts its files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
#: Images per split of the synthetic sets, before ``limit``.
SYNTHETIC_TRAIN, SYNTHETIC_VAL = 20000, 2000
#: Synthetic images are generated in blocks of this many, each from its own seed.
SYNTHETIC_BLOCK = 1000


@dataclass
class Dataset:
    """A data set held in memory.

    ``x_train`` and ``x_val`` are uint8 (N, H, W, C) (HWC, C = 1 or 3). For a single-label set
    ``y_*`` are int64 (N,) class indices into ``classes``; for a multi-label one
    (``multi_label``) they are (N, K) 0/1 arrays (uint8), K = ``len(classes)``. ``skipped``
    counts files that could not be decoded (image folders only). ``hflip`` says whether a
    horizontal flip keeps an image's label (the trainer's augmentation reads it): False for
    ``lines`` (a flip turns 20 degrees into 160) and for ``idx`` folders (usually digits or
    letters), True otherwise.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: list[str]
    multi_label: bool = False
    skipped: int = 0
    hflip: bool = True
    #: with ``holdout``: rows of the original training split that ``x_train`` / ``x_val`` hold
    train_index: np.ndarray | None = None
    val_index: np.ndarray | None = None
    #: what ``x_val`` is: "test" (the data set's evaluation split) or "holdout" (held out of train)
    val_source: str = "test"

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.x_train, self.y_train), ("val", self.x_val, self.y_val)):
            if x.dtype != np.uint8 or x.ndim != 4:
                raise ValueError(f"{self.name}: x_{split} must be uint8 (N, H, W, C), got {x.dtype} {x.shape}")
            if len(y) != len(x):
                raise ValueError(f"{self.name}: {len(x)} {split} images but {len(y)} labels")
            want = 2 if self.multi_label else 1
            if y.ndim != want or (self.multi_label and y.shape[1] != len(self.classes)):
                raise ValueError(f"{self.name}: y_{split} has shape {y.shape}, multi_label={self.multi_label}")
        if self.x_val.shape[1:] != self.x_train.shape[1:]:
            raise ValueError(f"{self.name}: train images {self.x_train.shape[1:]} but val {self.x_val.shape[1:]}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every image."""
        h, w, c = self.x_train.shape[1:]
        return int(h), int(w), int(c)

    @property
    def num_classes(self) -> int:
        """Number of classes (of labels, for a multi-label set)."""
        return len(self.classes)


_DESCRIPTIONS = {
    "fashion-mnist": "Fashion-MNIST, 60000/10000 28x28 grey images, 10 classes (Debian's dataset-fashion-mnist)",
    "idx:PATH": "an MNIST-format folder of train/t10k idx files (gzipped or not), 1 channel",
    "cifar10:PATH": "CIFAR-10's python folder (data_batch_1..5, test_batch, batches.meta), 32x32x3",
    "imagefolder:PATH": "one subfolder per class of image files (optionally under train/ and val/, test/ for finalize), RGB",
    "lines": "synthetic: one noisy line segment, 9 orientation classes, 32x32x1 (20000/2000)",
    "shapes": "synthetic multi-label: subset of 5 shapes, 64x64x1 (20000/2000)",
}


def list_datasets() -> dict[str, str]:
    """The accepted names (``:PATH`` marks those that need a folder) and a one-line description."""
    return dict(_DESCRIPTIONS)


def _limit_rows(n: int, limit: int | None, seed: int, stream: int) -> np.ndarray | None:
    """Sorted indices of a random subset of ``limit`` rows of ``n`` (seeded by seed and stream), or None for all."""
    if limit is None or limit >= n:
        return None
    return np.sort(np.random.default_rng([seed, stream]).choice(n, size=limit, replace=False))


def stratified_holdout(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train rows, validation rows) of labels ``y``: per class (per label pattern for a
    multi-label ``y``), ``round(n * fraction)`` rows drawn with ``seed`` are held out (at least
    one when the class has two or more, never all of them)."""
    rng = np.random.default_rng([seed, 5])
    keys = y.reshape(len(y), -1)
    _, groups = np.unique(keys, axis=0, return_inverse=True)
    groups = groups.reshape(-1)
    held = []
    for g in range(int(groups.max(initial=-1)) + 1):
        rows = np.flatnonzero(groups == g)
        k = min(len(rows) - 1, max(1 if len(rows) > 1 else 0, round(len(rows) * fraction)))
        if k > 0:
            held.append(rng.choice(rows, size=k, replace=False))
    val = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    mask = np.ones(len(y), dtype=bool)
    mask[val] = False
    return np.flatnonzero(mask), val.astype(np.int64)


def _finish(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    classes: list[str],
    *,
    size: int | None,
    limit: int | None,
    seed: int,
    hflip: bool = True,
    holdout: float | None = None,
) -> Dataset:
    """Apply ``holdout`` (the test split ``x_val`` is dropped and validation is held out of the
    training images), then ``limit`` (before resizing, so it is cheap) and ``size``."""
    train_index = val_index = None
    if holdout is not None:
        train_index, val_index = stratified_holdout(y_train, holdout, seed)
        x_val, y_val = x_train[val_index], y_train[val_index]
        x_train, y_train = x_train[train_index], y_train[train_index]
    rows = _limit_rows(len(x_train), limit, seed, 3)
    if rows is not None:
        x_train, y_train = x_train[rows], y_train[rows]
        train_index = None if train_index is None else train_index[rows]
    rows = _limit_rows(len(x_val), limit, seed, 4)
    if rows is not None:
        x_val, y_val = x_val[rows], y_val[rows]
        val_index = None if val_index is None else val_index[rows]
    if size is not None:
        channels = x_train.shape[3]
        x_train = adapt_images(x_train, size, size, channels)
        x_val = adapt_images(x_val, size, size, channels)
    return Dataset(name, x_train, y_train, x_val, y_val, classes, hflip=hflip, train_index=train_index,
                   val_index=val_index, val_source="test" if holdout is None else "holdout")


def _check_labels(name: str, folder: Path, y: np.ndarray, num_classes: int) -> None:
    if len(y) and int(y.max()) >= num_classes:
        raise UserError(f"{name}: labels in {folder} go up to {int(y.max())}, expected 0..{num_classes - 1}")


def _load_fashion_mnist(path: Path | None, size: int | None, seed: int, val_fraction: float, limit: int | None,
                        holdout: float | None = None) -> Dataset:
    folder = FASHION_MNIST_DIR if path is None else path
    hint = "install Debian's dataset-fashion-mnist or pass --data-dir"
    s = idx.load_idx_folder(folder, what="fashion-mnist", hint=hint)
    for y in (s.y_train, s.y_val):
        _check_labels("fashion-mnist", folder, y, len(FASHION_MNIST_CLASSES))
    return _finish(
        "fashion-mnist", s.x_train, s.y_train, s.x_val, s.y_val, list(FASHION_MNIST_CLASSES),
        size=size, limit=limit, seed=seed, holdout=holdout,
    )


def _load_idx(path: Path | None, size: int | None, seed: int, val_fraction: float, limit: int | None,
              holdout: float | None = None) -> Dataset:
    assert path is not None
    s = idx.load_idx_folder(path, what="idx")
    k = int(max(s.y_train.max(initial=0), s.y_val.max(initial=0))) + 1
    classes = [str(i) for i in range(k)]
    return _finish(
        f"idx:{path}", s.x_train, s.y_train, s.x_val, s.y_val, classes, size=size, limit=limit, seed=seed, hflip=False,
        holdout=holdout,
    )


def _load_cifar10(path: Path | None, size: int | None, seed: int, val_fraction: float, limit: int | None,
                  holdout: float | None = None) -> Dataset:
    assert path is not None
    s = cifar.load_cifar10(path)
    return _finish(f"cifar10:{path}", s.x_train, s.y_train, s.x_val, s.y_val, s.classes, size=size, limit=limit,
                   seed=seed, holdout=holdout)


def _load_imagefolder(path: Path | None, size: int | None, seed: int, val_fraction: float, limit: int | None,
                      holdout: float | None = None) -> Dataset:
    assert path is not None
    name = f"imagefolder:{path}"
    if (path / imagefolder.TEST_DIR).is_dir():  # the user's own test set: the holdout never reads it
        s = imagefolder.load_image_folder(path, size=size, seed=seed, limit=limit,
                                          val_fraction=val_fraction if holdout is None else holdout)
        _warn_skipped(path, s.skipped)
        assert s.x_test is not None and s.y_test is not None
        if holdout is not None:  # search: train/ (less the split) against val/ (or the split)
            return Dataset(name, s.x_train, s.y_train, s.x_val, s.y_val, s.classes, skipped=len(s.skipped),
                           val_source="holdout")
        return Dataset(name, np.concatenate([s.x_train, s.x_val]), np.concatenate([s.y_train, s.y_val]),
                       s.x_test, s.y_test, s.classes, skipped=len(s.skipped), val_source="test")
    if holdout is not None:  # split every training image (limit after the holdout, like the others)
        s = imagefolder.load_image_folder(path, size=size, seed=seed, val_fraction=val_fraction, limit=None)
        ds = _finish(f"imagefolder:{path}", s.x_train, s.y_train, s.x_val, s.y_val, s.classes, size=None,
                     limit=limit, seed=seed, holdout=holdout)
        ds.skipped = len(s.skipped)
        return ds
    s = imagefolder.load_image_folder(path, size=size, seed=seed, val_fraction=val_fraction, limit=limit)
    _warn_skipped(path, s.skipped)
    return Dataset(name, s.x_train, s.y_train, s.x_val, s.y_val, s.classes, skipped=len(s.skipped))


def _warn_skipped(path: Path, skipped: list) -> None:
    if skipped:
        first, reason = skipped[0]
        warnings.warn(
            f"imagefolder: skipped {len(skipped)} file(s) under {path} that Pillow could not decode "
            f"(first: {first}: {reason})",
            DataWarning,
            stacklevel=4,
        )


def _generate(
    make: Callable[..., tuple[np.ndarray, np.ndarray]], n: int, side: int, seed: int, split: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` (>= 1) of a stream of blocks of :data:`SYNTHETIC_BLOCK` images from ``make``.

    Block b is seeded by (seed, split, b), so a smaller ``n`` gives a prefix of a larger one, and
    train (split 0) and val (split 1) are independent streams.
    """
    xs, ys = [], []
    for b in range(-(-n // SYNTHETIC_BLOCK)):  # whole blocks, cut to n at the end
        block_seed = int(np.random.SeedSequence([seed, split, b]).generate_state(1)[0])
        x, y = make(SYNTHETIC_BLOCK, size=side, seed=block_seed)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs)[:n, ..., None], np.concatenate(ys)[:n]


def _load_synthetic(
    kind: str, make: Callable[..., tuple[np.ndarray, np.ndarray]], side: int, seed: int, limit: int | None,
    holdout: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train is stream 0, the test images stream 1; with ``holdout`` validation is stream 2."""
    n_train, n_val = (SYNTHETIC_TRAIN, SYNTHETIC_VAL) if limit is None else (min(limit, SYNTHETIC_TRAIN), min(limit, SYNTHETIC_VAL))
    try:
        return (*_generate(make, n_train, side, seed, 0), *_generate(make, n_val, side, seed, 1 if holdout is None else 2))
    except ValueError as e:
        raise UserError(f"{kind}: {e}") from None


def _load_lines(path: Path | None, size: int | None, seed: int, val_fraction: float, limit: int | None,
                holdout: float | None = None) -> Dataset:
    arrays = _load_synthetic("lines", synthetic.make_lines, 32 if size is None else size, seed, limit, holdout)
    return Dataset("lines", *arrays, [f"{a}deg" for a in synthetic.LINE_ANGLES_DEG], hflip=False,
                   val_source="test" if holdout is None else "holdout")


def _load_shapes(path: Path | None, size: int | None, seed: int, val_fraction: float, limit: int | None,
                 holdout: float | None = None) -> Dataset:
    arrays = _load_synthetic("shapes", synthetic.make_shapes, 64 if size is None else size, seed, limit, holdout)
    return Dataset("shapes", *arrays, list(synthetic.SHAPE_CLASSES), multi_label=True,
                   val_source="test" if holdout is None else "holdout")


_Loader = Callable[[Path | None, int | None, int, float, int | None, float | None], Dataset]
#: kind -> (loader, whether a folder is required, whether a folder is accepted)
_LOADERS: dict[str, tuple[_Loader, bool, bool]] = {
    "fashion-mnist": (_load_fashion_mnist, False, True),
    "idx": (_load_idx, True, True),
    "cifar10": (_load_cifar10, True, True),
    "imagefolder": (_load_imagefolder, True, True),
    "lines": (_load_lines, False, False),
    "shapes": (_load_shapes, False, False),
}


def load_dataset(
    name: str,
    *,
    data_dir: str | None = None,
    seed: int = 0,
    size: int | None = None,
    val_fraction: float = 0.1,
    limit: int | None = None,
    holdout: float | None = None,
) -> Dataset:
    """Load the data set ``name`` (see the module docstring for names and arguments).

    ``holdout`` (a fraction in (0, 1)): validate on that fraction of the training images, held
    out stratified and seeded, and leave the test split out entirely (what the search does).

    Deterministic: the same arguments give the same arrays. Raises UserError (one line) for an
    unknown name (suggesting the closest ones), a missing path, a bad argument, or a missing or
    malformed data set.
    """
    kind, sep, rest = name.partition(":")
    kind = kind.strip().lower()
    if kind not in _LOADERS:
        if is_detection_name(kind):
            raise UserError(
                f"{kind} is a face-detection data set (images with face boxes, not class labels): "
                "load it with rnnpool_nas.data.load_detection_dataset"
            )
        close = difflib.get_close_matches(kind, list(_LOADERS), n=3, cutoff=0.5)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise UserError(f"unknown data set {name!r}: {hint}known: {', '.join(_DESCRIPTIONS)}")
    loader, needs_path, takes_path = _LOADERS[kind]
    if sep and not takes_path:
        raise UserError(f"{kind}: a synthetic data set takes no path, got {name!r}")
    path: Path | None = None
    if takes_path:
        given = [Path(p).expanduser() for p in (rest if sep else None, data_dir) if p]
        if len(given) == 2 and given[0] != given[1]:
            raise UserError(f"{kind}: two folders given ({given[0]} in the name, {given[1]} as data_dir); give one")
        path = given[0] if given else None
        if needs_path and path is None:
            raise UserError(f"{kind}: needs a folder: use {kind}:PATH or pass --data-dir")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise UserError(f"{kind}: size must be a positive integer, got {size!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise UserError(f"{kind}: limit must be a positive integer, got {limit!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"{kind}: seed must be a non-negative integer, got {seed!r}")
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"{kind}: val_fraction must be between 0 and 1 (exclusive), got {val_fraction!r}")
    if holdout is not None and (isinstance(holdout, bool) or not isinstance(holdout, (int, float))
                                or not 0.0 < holdout < 1.0):
        raise UserError(f"{kind}: the validation fraction must be between 0 and 1 (exclusive), got {holdout!r}")
    return loader(path, size, int(seed), float(val_fraction), limit, None if holdout is None else float(holdout))


def load_any(name: str, *, data_dir: str | Path | None = None, seed: int = 0, limit: int | None = None,
             size: tuple[int, int] | None = None, channels: int | None = None):
    """The one entry for any name this package knows: a face-detection set (``faces-synth``,
    ``wider-face:PATH``, ``scut-head:PATH``) through :func:`load_detection_dataset` (``size`` and
    ``channels`` as it takes them), anything else through :func:`load_dataset`."""
    if is_detection_name(name):
        return load_detection_dataset(name, data_dir=data_dir, seed=seed, size=size, channels=channels, limit=limit)
    return load_dataset(name, data_dir=data_dir, seed=seed, limit=limit)


def list_all_datasets() -> dict[str, str]:
    """Every accepted name (classification, then detection) and a one-line description."""
    return list_datasets() | list_detection_datasets()


__all__ = ["DataWarning", "Dataset", "adapt_images", "is_detection_name", "list_all_datasets", "list_datasets",
           "load_any", "load_dataset", "load_detection_dataset"]
