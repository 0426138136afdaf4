"""CIFAR-10 in its "python version" distribution (the ``cifar-10-batches-py`` folder).

The folder holds ``data_batch_1`` .. ``data_batch_5`` (the training split, 50000 images),
``test_batch`` (used for validation, 10000 images) and ``batches.meta``. Each batch is a pickled
dict with ``b'data'``, an (N, 3072) uint8 array of channel-major rows (1024 red values, then
1024 green, then 1024 blue, each 32x32 row-major), and ``b'labels'``, N ints; ``batches.meta``
has ``b'label_names'``, the class names. Images are returned as (N, 32, 32, 3) HWC uint8.

The pickles are read with an unpickler that only resolves the few numpy and codec globals a
CIFAR batch needs (``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``,
...), so a hostile file cannot run code. Any unreadable, truncated or ill-shaped pickle is a
:class:`~rnnpool_nas.errors.UserError` naming the file.
"""

from __future__ import annotations

import importlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnnpool_nas.errors import UserError

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
VAL_BATCH = "test_batch"
META = "batches.meta"
SIDE = 32
HINT = "the python version of CIFAR-10, as unpacked from cifar-10-python.tar.gz"

#: (module, name) pairs the unpickler resolves; ``numpy.core`` is numpy 1's name of ``numpy._core``.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


@dataclass(frozen=True)
class CifarSplits:
    """Images (N, 32, 32, 3) uint8 HWC, labels (N,) int64, and the class names."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: list[str]


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if module.startswith("numpy.core") and hasattr(np, "_core"):
            module = "numpy._core" + module[len("numpy.core") :]  # avoid numpy 2's deprecated alias
        return getattr(importlib.import_module(module), name)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _unpickle(path: Path) -> dict:
    """The dict pickled in ``path``; UserError naming the file if it cannot be read as one."""
    try:
        with path.open("rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except Exception as e:  # a corrupt pickle can fail in many ways; all mean "bad file"
        raise UserError(f"cifar10: {path} is not a readable CIFAR-10 pickle ({type(e).__name__}: {_one_line(e)})") from None
    if not isinstance(obj, dict):
        raise UserError(f"cifar10: {path} is not a readable CIFAR-10 pickle (holds a {type(obj).__name__}, not a dict)")
    return obj


def _get(d: dict, key: str, path: Path) -> Any:
    """``d[b'key']`` (as the python-2 pickles store it) or ``d['key']``; UserError if absent."""
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise UserError(f"cifar10: {path} has no '{key}' entry (is it a CIFAR-10 python batch?)")


def _read_batch(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(path)
    try:
        data = np.asarray(_get(d, "data", path))
        labels = np.asarray(_get(d, "labels", path), dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as e:
        raise UserError(f"cifar10: {path} holds ill-typed data or labels ({_one_line(e)})") from None
    if data.ndim != 2 or data.shape[1] != 3 * SIDE * SIDE or data.dtype != np.uint8:
        raise UserError(
            f"cifar10: {path} holds data of shape {data.shape} and type {data.dtype}, expected (N, 3072) uint8"
        )
    if labels.shape != (len(data),):
        raise UserError(f"cifar10: {path} holds {len(data)} images but {labels.size} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(
            f"cifar10: {path} has labels in [{labels.min()}, {labels.max()}], expected 0..{num_classes - 1}"
        )
    images = data.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def load_cifar10(folder: str | Path) -> CifarSplits:
    """Read a CIFAR-10 python-version folder (see the module docstring).

    Raises UserError (one line) naming the folder for a missing folder or file, and naming the
    file for a corrupt pickle, missing keys, wrong shapes or labels outside the class names.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"cifar10: expected {TRAIN_BATCHES[0]} in {folder}, which is not a folder ({HINT})")
    for name in (*TRAIN_BATCHES, VAL_BATCH, META):
        if not (folder / name).is_file():
            raise UserError(f"cifar10: expected {name} in {folder} ({HINT})")
    meta_path = folder / META
    names = _get(_unpickle(meta_path), "label_names", meta_path)
    try:
        classes = [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
    except (TypeError, UnicodeDecodeError) as e:
        raise UserError(f"cifar10: {meta_path} holds unreadable label names ({_one_line(e)})") from None
    if not classes:
        raise UserError(f"cifar10: {meta_path} lists no label names")
    train = [_read_batch(folder / name, len(classes)) for name in TRAIN_BATCHES]
    x_val, y_val = _read_batch(folder / VAL_BATCH, len(classes))
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return CifarSplits(x_train, y_train, x_val, y_val, classes)
