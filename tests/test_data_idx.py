"""idx folders (``idx:PATH`` and ``fashion-mnist`` with a data_dir), on files written here in
the real MNIST format, gzipped and plain; every malformed file is a one-line UserError."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from rnnpool_nas.data import load_dataset
from rnnpool_nas.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from rnnpool_nas.data.registry import FASHION_MNIST_CLASSES
from rnnpool_nas.errors import UserError

from .conftest import one_line_error

STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "val_images": "t10k-images-idx3-ubyte",
    "val_labels": "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8) in the idx format: magic 0x0000080N, N big-endian uint32 dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_file(path: Path, data: bytes, gz: bool) -> Path:
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def make_idx_folder(
    folder: Path, n_train: int = 30, n_val: int = 10, side: int = 28, classes: int = 10, gz: bool | dict = True, seed: int = 0
) -> dict[str, np.ndarray]:
    """Write the four MNIST files to ``folder``; ``gz`` may be a dict per file key. Returns the arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % classes).astype(np.uint8),
        "val_images": rng.integers(0, 256, (n_val, side, side), dtype=np.uint8),
        "val_labels": (np.arange(n_val) % classes).astype(np.uint8),
    }
    for key, array in arrays.items():
        write_file(folder / STEMS[key], idx_bytes(array), gz[key] if isinstance(gz, dict) else gz)
    return arrays




@pytest.mark.parametrize("gz", [True, False, {"train_images": True, "train_labels": False, "val_images": False, "val_labels": True}])
def test_idx_folder_round_trip(tmp_path, gz):
    arrays = make_idx_folder(tmp_path / "d", gz=gz, classes=7)
    ds = load_dataset(f"idx:{tmp_path / 'd'}")
    assert ds.x_train.shape == (30, 28, 28, 1) and ds.x_train.dtype == np.uint8
    assert ds.x_val.shape == (10, 28, 28, 1)
    assert ds.y_train.dtype == np.int64 and ds.input_shape == (28, 28, 1)
    np.testing.assert_array_equal(ds.x_train[..., 0], arrays["train_images"])
    np.testing.assert_array_equal(ds.y_val, arrays["val_labels"])
    assert ds.classes == [str(i) for i in range(7)] and ds.num_classes == 7
    assert not ds.multi_label and not ds.hflip  # idx folders are usually digits or letters


def test_idx_via_data_dir_and_plain_file_preferred(tmp_path):
    arrays = make_idx_folder(tmp_path, gz=False)
    # a stale .gz beside the plain file is ignored
    write_file(tmp_path / STEMS["train_images"], idx_bytes(arrays["train_images"] // 2), gz=True)
    ds = load_dataset("idx", data_dir=str(tmp_path))
    np.testing.assert_array_equal(ds.x_train[..., 0], arrays["train_images"])


def test_fashion_mnist_from_data_dir_has_class_names(tmp_path):
    make_idx_folder(tmp_path, classes=10)
    ds = load_dataset("fashion-mnist", data_dir=str(tmp_path))
    assert ds.classes == FASHION_MNIST_CLASSES and ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert ds.name == "fashion-mnist" and ds.hflip


def test_limit_and_size(tmp_path):
    arrays = make_idx_folder(tmp_path, n_train=50, n_val=20)
    a = load_dataset(f"idx:{tmp_path}", limit=8, seed=1)
    b = load_dataset(f"idx:{tmp_path}", limit=8, seed=1)
    c = load_dataset(f"idx:{tmp_path}", limit=8, seed=2)
    assert len(a.x_train) == 8 and len(a.x_val) == 8
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)
    # the subset is made of real rows, kept in order, with their own labels
    rows = [int(np.flatnonzero((arrays["train_images"] == im[..., 0]).all(axis=(1, 2)))[0]) for im in a.x_train]
    assert rows == sorted(rows)
    np.testing.assert_array_equal(a.y_train, arrays["train_labels"][rows])
    r = load_dataset(f"idx:{tmp_path}", size=16, limit=4)
    assert r.x_train.shape == (4, 16, 16, 1) and r.input_shape == (16, 16, 1)


def test_read_idx_checks_magic(tmp_path):
    path = write_file(tmp_path / "labels", idx_bytes(np.arange(5, dtype=np.uint8)), gz=False)
    np.testing.assert_array_equal(read_idx(path, LABELS_MAGIC), np.arange(5))
    with pytest.raises(UserError) as info:
        read_idx(path, IMAGES_MAGIC)
    one_line_error(info, str(path), "0x00000801", "0x00000803")


def _good_then(tmp_path: Path, key: str, data: bytes, gz: bool = True) -> Path:
    """A good gzipped folder whose file ``key`` is replaced by ``data``; returns that file."""
    make_idx_folder(tmp_path, gz=True)
    (tmp_path / f"{STEMS[key]}.gz").unlink()
    return write_file(tmp_path / STEMS[key], data, gz)


def _images(n: int = 30) -> bytes:
    return idx_bytes(np.zeros((n, 28, 28), np.uint8))


@pytest.mark.parametrize(
    "key,data,gz,needle",
    [
        ("train_images", b"\x00\x00\x08\x01" + _images()[4:], True, "magic number 0x00000801"),  # labels magic
        ("train_images", b"\x1f\x8b\x08\x08" + _images()[4:], False, "magic number 0x1F8B0808"),  # gzip, not named .gz
        ("train_images", _images()[:-100], True, "truncated idx file"),
        ("train_images", _images() + b"\x00", False, "malformed idx file"),
        ("train_labels", b"\x00\x00\x08\x01\x00", True, "truncated idx file"),  # header cut short
        ("val_labels", b"\x00\x00", False, "truncated idx file"),
        ("val_images", b"", True, "truncated idx file"),
    ],
)
def test_malformed_file_names_it(tmp_path, key, data, gz, needle):
    path = _good_then(tmp_path, key, data, gz)
    with pytest.raises(UserError) as info:
        load_dataset(f"idx:{tmp_path}")
    one_line_error(info, str(path), needle)


def test_corrupt_gzip_names_file(tmp_path):
    make_idx_folder(tmp_path, gz=True)
    path = tmp_path / f"{STEMS['train_images']}.gz"
    path.write_bytes(path.read_bytes()[:200])  # a truncated download
    with pytest.raises(UserError) as info:
        load_dataset(f"idx:{tmp_path}")
    one_line_error(info, str(path), "gzip")
    path.write_bytes(b"not gzip at all")
    with pytest.raises(UserError) as info:
        load_dataset(f"idx:{tmp_path}")
    one_line_error(info, str(path), "gzip")


def test_count_mismatch_and_size_mismatch(tmp_path):
    make_idx_folder(tmp_path, gz=False)
    write_file(tmp_path / STEMS["train_labels"], idx_bytes(np.zeros(29, np.uint8)), gz=False)
    with pytest.raises(UserError) as info:
        load_dataset(f"idx:{tmp_path}")
    one_line_error(info, "30 images", "29 labels", STEMS["train_labels"])
    make_idx_folder(tmp_path, gz=False)
    write_file(tmp_path / STEMS["val_images"], idx_bytes(np.zeros((10, 20, 20), np.uint8)), gz=False)
    with pytest.raises(UserError) as info:
        load_dataset(f"idx:{tmp_path}")
    one_line_error(info, "28x28", "20x20")


def test_missing_folder_and_file(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError) as info:
        load_dataset(f"idx:{missing}")
    one_line_error(info, str(missing), "train-images-idx3-ubyte(.gz)", "not a folder")
    make_idx_folder(tmp_path, gz=True)
    (tmp_path / f"{STEMS['val_labels']}.gz").unlink()
    with pytest.raises(UserError) as info:
        load_dataset(f"idx:{tmp_path}")
    one_line_error(info, "idx: expected t10k-labels-idx1-ubyte(.gz) in", str(tmp_path))


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(UserError) as info:
        load_dataset("fashion-mnist", data_dir=str(tmp_path))
    message = one_line_error(info, "fashion-mnist: expected train-images-idx3-ubyte(.gz) in", str(tmp_path))
    assert "dataset-fashion-mnist" in message and "--data-dir" in message


def test_fashion_mnist_rejects_labels_past_ten(tmp_path):
    make_idx_folder(tmp_path, classes=12)
    with pytest.raises(UserError) as info:
        load_dataset("fashion-mnist", data_dir=str(tmp_path))
    one_line_error(info, str(tmp_path), "up to 11", "0..9")
