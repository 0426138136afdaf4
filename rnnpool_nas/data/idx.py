"""MNIST-format ``idx`` files and folders (Fashion-MNIST, MNIST, KMNIST, ...), parsed with numpy.

An idx file is a 4-byte magic number ``0x00 0x00 TYPE NDIM``, then ``NDIM`` big-endian uint32
dimensions, then the data in C order. Only ``TYPE = 0x08`` (unsigned bytes) is read, which is
what image and label files use: images are ``0x00000803`` (N, rows, cols; data at offset 16),
labels ``0x00000801`` (N; data at offset 8). The magic number, the header and the data size are
all checked: a file that is truncated, has trailing bytes or the wrong magic is a
:class:`~rnnpool_nas.errors.UserError` naming the file, never a traceback.

A folder holds the four files of the MNIST distribution, each gzipped (``.gz``) or not:
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte`` (the training split) and
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (the test split, used for validation).
When both the plain and the gzipped file exist the plain one is read.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnpool_nas.errors import UserError

#: Magic numbers of unsigned-byte idx files with 1 (labels) and 3 (images) dimensions.
LABELS_MAGIC = 0x00000801
IMAGES_MAGIC = 0x00000803

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
VAL_IMAGES = "t10k-images-idx3-ubyte"
VAL_LABELS = "t10k-labels-idx1-ubyte"
FILE_STEMS = (TRAIN_IMAGES, TRAIN_LABELS, VAL_IMAGES, VAL_LABELS)


@dataclass(frozen=True)
class IdxSplits:
    """The two splits of an idx folder: images (N, H, W, 1) uint8 and labels (N,) int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def _read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped when its name ends in ``.gz``; a UserError if unreadable."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        kind = "gzip file" if path.suffix == ".gz" else "file"
        raise UserError(f"{path}: not a readable {kind} ({_one_line(e)})") from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """The array stored in the idx file ``path`` (gunzipped if it ends in ``.gz``), uint8.

    ``magic`` is the expected magic number (:data:`IMAGES_MAGIC` or :data:`LABELS_MAGIC`); the
    result has as many dimensions as its low byte says. Raises UserError naming the file if the
    magic differs, the header is cut short, or the data is shorter or longer than the header's
    dimensions say.
    """
    path = Path(path)
    raw = _read_bytes(path)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < 4:
        raise UserError(f"{path}: truncated idx file ({len(raw)} bytes, no magic number)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise UserError(
            f"{path}: not an idx file of this kind (magic number 0x{found:08X}, expected 0x{magic:08X})"
        )
    if len(raw) < header:
        raise UserError(f"{path}: truncated idx file ({len(raw)} bytes, header needs {header})")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64))
    got = len(raw) - header
    if got != expected:
        shape = "x".join(map(str, dims))
        what = "truncated" if got < expected else "malformed"
        raise UserError(
            f"{path}: {what} idx file (header says {shape} = {expected} bytes of data, file holds {got})"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def find_idx_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` if it is a file, else ``folder/stem.gz`` if that is, else None."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def load_idx_folder(folder: str | Path, *, what: str, hint: str = "") -> IdxSplits:
    """Read the four MNIST-format files of ``folder`` (see the module docstring).

    ``what`` names the data set in error messages (``"fashion-mnist"``, ``"idx"``) and ``hint``,
    if given, is appended to the message for a missing folder or file, in parentheses. Raises
    UserError (one line) for a missing folder or file, a malformed file, or image and label
    files whose counts differ; images of the two splits must share their size.
    """
    folder = Path(folder)
    suffix = f" ({hint})" if hint else ""
    if not folder.is_dir():
        raise UserError(
            f"{what}: expected {TRAIN_IMAGES}(.gz) in {folder}, which is not a folder{suffix}"
        )
    paths: dict[str, Path] = {}
    for stem in FILE_STEMS:
        found = find_idx_file(folder, stem)
        if found is None:
            raise UserError(f"{what}: expected {stem}(.gz) in {folder}{suffix}")
        paths[stem] = found
    splits = []
    for images_stem, labels_stem in ((TRAIN_IMAGES, TRAIN_LABELS), (VAL_IMAGES, VAL_LABELS)):
        x = read_idx(paths[images_stem], IMAGES_MAGIC)
        y = read_idx(paths[labels_stem], LABELS_MAGIC)
        if len(x) != len(y):
            raise UserError(
                f"{what}: {paths[images_stem]} holds {len(x)} images but {paths[labels_stem]} holds {len(y)} labels"
            )
        splits.append((x[..., None], y.astype(np.int64)))
    (x_train, y_train), (x_val, y_val) = splits
    if x_train.shape[1:] != x_val.shape[1:]:
        raise UserError(
            f"{what}: images in {paths[TRAIN_IMAGES]} are {x_train.shape[1]}x{x_train.shape[2]} but those in "
            f"{paths[VAL_IMAGES]} are {x_val.shape[1]}x{x_val.shape[2]}"
        )
    return IdxSplits(x_train, y_train, x_val, y_val)
