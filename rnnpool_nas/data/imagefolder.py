"""A folder of image files, one subfolder per class, decoded with Pillow.

Layout: ``ROOT/<class>/<files>`` (files may sit in deeper folders under the class folder), or
``ROOT/train/<class>/...`` and ``ROOT/val/<class>/...`` for a split chosen by the user, either
optionally with ``ROOT/test/<class>/...``: a test set that only ``test`` (the search's holdout off,
what finalize scores once) reads; ``train/`` and ``test/`` alone split validation off ``train/``.
Classes are the subfolder names in sorted order (of ``train/`` in the split layouts; ``val/`` and
``test/`` may lack some but must not add any). Hidden files and folders (names starting with ".")
are ignored.

Without ``train/`` and ``val/`` the split is made here, per class (so the validation set covers
the classes in proportion): each class's files are shuffled with a generator seeded by ``seed``
and ``round(n * val_fraction)`` of them (at most ``n - 1``) go to validation. The split depends
only on the file names and the seed, never on which files decode.

Every image is converted to RGB (so the result has 3 channels) and, if ``size`` is given,
resized to ``size x size`` with Pillow's bilinear filter (aspect ratio is not kept). Without a
size all images must share one size; the first one that does not is a UserError that says to
pass a size. A file Pillow cannot decode (not an image, truncated, ...) is skipped and counted;
the caller warns with the count. ``limit`` keeps a seeded random subset of at most ``limit``
decodable images per split, in file order, and only decodes as many files as that needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from rnnpool_nas.errors import UserError

#: The names of the split subfolders that select the user-split layout.
TRAIN_DIR = "train"
VAL_DIR = "val"
TEST_DIR = "test"


@dataclass(frozen=True)
class FolderSplits:
    """Images (N, H, W, 3) uint8, labels (N,) int64, class names, and the skipped files."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: list[str]
    skipped: list[tuple[Path, str]]
    x_test: np.ndarray | None = None  # ROOT/test/ when present
    y_test: np.ndarray | None = None


def _visible(p: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in p.relative_to(root).parts)


def _class_dirs(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _files(class_dir: Path) -> list[Path]:
    return sorted(p for p in class_dir.rglob("*") if p.is_file() and _visible(p, class_dir))


def _scan(root: Path, classes: list[str] | None) -> tuple[list[str], list[Path], np.ndarray]:
    """(class names, files, labels) under ``root``; ``classes`` fixes the names if given."""
    dirs = _class_dirs(root)
    if not dirs:
        raise UserError(f"imagefolder: expected one subfolder per class in {root}, found none")
    names = [d.name for d in dirs]
    if classes is not None:
        extra = sorted(set(names) - set(classes))
        if extra:
            raise UserError(f"imagefolder: {root} has class folder(s) {extra} that {root.parent / TRAIN_DIR} lacks")
        names = classes
    index = {n: i for i, n in enumerate(names)}
    files: list[Path] = []
    labels: list[int] = []
    for d in dirs:
        found = _files(d)
        files += found
        labels += [index[d.name]] * len(found)
    if not files:
        raise UserError(f"imagefolder: expected image files in the class subfolders of {root}, found none")
    return names, files, np.asarray(labels, dtype=np.int64)


def _decode(path: Path, size: int | None) -> np.ndarray:
    """``path`` as an (H, W, 3) uint8 array, resized to ``size x size`` if given."""
    with Image.open(path) as im:
        im.load()
        rgb = im.convert("RGB")
    if size is not None and rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


class _Decoder:
    """Decodes files, checks they share one size when no size is given, records failures."""

    def __init__(self, size: int | None) -> None:
        self.size = size
        self.first: tuple[Path, tuple[int, ...]] | None = None
        self.skipped: list[tuple[Path, str]] = []

    def __call__(self, path: Path) -> np.ndarray | None:
        try:
            image = _decode(path, self.size)
        except Exception as e:  # Pillow's plugins raise many types for bad files; all mean "skip"
            self.skipped.append((path, f"{type(e).__name__}: {' '.join(str(e).split())}"))
            return None
        if self.first is None:
            self.first = (path, image.shape)
        elif image.shape != self.first[1]:
            (h0, w0, _), (h, w, _) = self.first[1], image.shape
            raise UserError(
                f"imagefolder: images differ in size ({self.first[0]} is {w0}x{h0}, {path} is {w}x{h}); "
                "pass a size to resize them all"
            )
        return image


def _take(
    files: list[Path], labels: np.ndarray, decode: _Decoder, limit: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray] | None:
    """Decode ``files`` (a seeded random subset of ``limit`` decodable ones if given), in order.

    None if not one of them decodes.
    """
    order = range(len(files)) if limit is None else rng.permutation(len(files))
    kept: list[tuple[int, np.ndarray]] = []
    for i in order:
        if limit is not None and len(kept) >= limit:
            break
        image = decode(files[i])
        if image is not None:
            kept.append((int(i), image))
    if not kept:
        return None
    kept.sort(key=lambda t: t[0])
    return np.stack([im for _, im in kept]), labels[[i for i, _ in kept]]


def _split(labels: np.ndarray, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val), each sorted: per class, ``round(n * val_fraction)`` (<= n - 1) to val."""
    val: list[np.ndarray] = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_val = min(int(round(len(members) * val_fraction)), len(members) - 1)
        val.append(rng.permutation(members)[:n_val])
    val_idx = np.sort(np.concatenate(val))
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return train_idx, val_idx


def load_image_folder(
    root: str | Path,
    *,
    size: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.1,
    limit: int | None = None,
) -> FolderSplits:
    """Read an image folder (see the module docstring for the layout and the rules).

    Raises UserError (one line) naming the folder when it is missing, has no class subfolders or
    no files, has ``train/`` without ``val/`` (or the reverse), when images differ in size and no
    ``size`` is given, when the split leaves no validation file, or when a split has no decodable
    image. Undecodable files are returned in ``skipped`` as (path, reason), not raised.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"imagefolder: expected a folder with one subfolder per class at {root}, which is not a folder")
    has_train, has_val, has_test = ((root / d).is_dir() for d in (TRAIN_DIR, VAL_DIR, TEST_DIR))
    decode = _Decoder(size)
    rng_train = np.random.default_rng([seed, 1])
    rng_val = np.random.default_rng([seed, 2])
    if has_test and not has_train:
        raise UserError(f"imagefolder: {root} has {TEST_DIR}/ but no {TRAIN_DIR}/ (a test set needs a training set)")
    if has_train and has_val:
        classes, train_files, train_labels = _scan(root / TRAIN_DIR, None)
        _, val_files, val_labels = _scan(root / VAL_DIR, classes)
    elif (has_train or has_val) and not has_test:
        present, absent = (TRAIN_DIR, VAL_DIR) if has_train else (VAL_DIR, TRAIN_DIR)
        raise UserError(
            f"imagefolder: {root} has {present}/ but no {absent}/ (give both, or only one subfolder per class)"
        )
    else:
        classes, files, labels = _scan(root / TRAIN_DIR if has_train else root, None)
        train_idx, val_idx = _split(labels, val_fraction, np.random.default_rng([seed, 0]))
        if len(val_idx) == 0:
            raise UserError(
                f"imagefolder: {root} has too few images per class to split off {val_fraction:g} for validation "
                f"(add images, raise val_fraction, or give {TRAIN_DIR}/ and {VAL_DIR}/ subfolders)"
            )
        train_files, train_labels = [files[i] for i in train_idx], labels[train_idx]
        val_files, val_labels = [files[i] for i in val_idx], labels[val_idx]
    splits = []
    for split, split_files, split_labels, rng in (
        ("training", train_files, train_labels, rng_train),
        ("validation", val_files, val_labels, rng_val),
    ):
        got = _take(split_files, split_labels, decode, limit, rng)
        if got is None:
            raise UserError(
                f"imagefolder: no decodable {split} image in {root} ({len(decode.skipped)} file(s) skipped)"
            )
        splits.append(got)
    x_test = y_test = None
    if has_test:
        _, test_files, test_labels = _scan(root / TEST_DIR, classes)
        got = _take(test_files, test_labels, decode, limit, np.random.default_rng([seed, 5]))
        if got is None:
            raise UserError(f"imagefolder: no decodable test image in {root / TEST_DIR} ({len(decode.skipped)} file(s) skipped)")
        x_test, y_test = got
    (x_train, y_train), (x_val, y_val) = splits
    return FolderSplits(x_train, y_train, x_val, y_val, classes, decode.skipped, x_test, y_test)
