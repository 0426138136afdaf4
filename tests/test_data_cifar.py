"""``cifar10:PATH`` on a folder written here as CIFAR-10's python version is distributed."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from rnnpool_nas.data import load_dataset
from rnnpool_nas.errors import UserError

from .conftest import one_line_error

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_pickle(path: Path, obj: object, py2_numpy: bool = False) -> None:
    """Pickle ``obj``; ``py2_numpy`` writes numpy's module as ``numpy.core``, as the 2009 files do."""
    data = pickle.dumps(obj, protocol=2)
    if py2_numpy:
        data = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
        assert b"cnumpy.core.multiarray\n" in data
    path.write_bytes(data)


def make_cifar_folder(folder: Path, per_batch: int = 4, n_test: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """``data_batch_1..5``, ``test_batch`` (bytes keys, (N, 3072) uint8 CHW rows) and ``batches.meta``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, list] = {"train": [], "train_labels": []}
    for i in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        batch = {b"batch_label": f"training batch {i} of 5".encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img{i}_{j}.png".encode() for j in range(per_batch)]}
        write_pickle(folder / f"data_batch_{i}", batch, py2_numpy=(i % 2 == 1))
        out["train"].append(data)
        out["train_labels"] += labels
    test = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    test_labels = [int(v) for v in rng.integers(0, 10, n_test)]
    write_pickle(folder / "test_batch", {b"labels": test_labels, b"data": test})
    write_pickle(folder / "batches.meta", {b"num_cases_per_batch": per_batch, b"label_names": [n.encode() for n in NAMES],
                                           b"num_vis": 3072})
    return {"train": np.concatenate(out["train"]), "train_labels": np.array(out["train_labels"]),
            "test": test, "test_labels": np.array(test_labels)}


def test_loads_and_converts_chw_to_hwc(tmp_path):
    raw = make_cifar_folder(tmp_path / "cifar-10-batches-py")
    ds = load_dataset(f"cifar10:{tmp_path / 'cifar-10-batches-py'}")
    assert ds.x_train.shape == (20, 32, 32, 3) and ds.x_val.shape == (6, 32, 32, 3)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.classes == NAMES and ds.input_shape == (32, 32, 3)
    np.testing.assert_array_equal(ds.y_train, raw["train_labels"])
    np.testing.assert_array_equal(ds.y_val, raw["test_labels"])
    # row r, column c, channel k of image i is byte k*1024 + r*32 + c of its row
    i, r, c = 7, 5, 30
    for k in range(3):
        assert ds.x_train[i, r, c, k] == raw["train"][i, k * 1024 + r * 32 + c]
    np.testing.assert_array_equal(ds.x_val[2, :, :, 1], raw["test"][2, 1024:2048].reshape(32, 32))


def test_limit_size_and_data_dir(tmp_path):
    make_cifar_folder(tmp_path)
    ds = load_dataset("cifar10", data_dir=str(tmp_path), limit=3, size=16)
    assert ds.x_train.shape == (3, 16, 16, 3) and ds.x_val.shape == (3, 16, 16, 3)


@pytest.mark.parametrize("missing", ["data_batch_3", "test_batch", "batches.meta"])
def test_missing_file(tmp_path, missing):
    make_cifar_folder(tmp_path)
    (tmp_path / missing).unlink()
    with pytest.raises(UserError) as info:
        load_dataset(f"cifar10:{tmp_path}")
    one_line_error(info, f"expected {missing} in {tmp_path}")


def test_missing_folder(tmp_path):
    with pytest.raises(UserError) as info:
        load_dataset(f"cifar10:{tmp_path / 'nope'}")
    one_line_error(info, "data_batch_1", str(tmp_path / "nope"))


def test_truncated_and_garbage_pickles(tmp_path):
    make_cifar_folder(tmp_path)
    path = tmp_path / "data_batch_2"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(UserError) as info:
        load_dataset(f"cifar10:{tmp_path}")
    one_line_error(info, str(path), "not a readable CIFAR-10 pickle")
    path.write_bytes(b"\x00garbage\n\x01\x02")
    with pytest.raises(UserError) as info:
        load_dataset(f"cifar10:{tmp_path}")
    one_line_error(info, str(path), "not a readable CIFAR-10 pickle")


def test_refuses_to_run_code(tmp_path):
    make_cifar_folder(tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    write_pickle(tmp_path / "test_batch", {b"data": Evil(), b"labels": []})
    with pytest.raises(UserError) as info:
        load_dataset(f"cifar10:{tmp_path}")
    one_line_error(info, str(tmp_path / "test_batch"), "refusing")
    assert not marker.exists()


@pytest.mark.parametrize(
    "batch,needle",
    [
        ({b"data": np.zeros((4, 3000), np.uint8), b"labels": [0] * 4}, "(4, 3000)"),
        ({b"data": np.zeros((4, 3072), np.float32), b"labels": [0] * 4}, "float32"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 3}, "4 images but 3 labels"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 10]}, "expected 0..9"),
        ({b"data": np.zeros((4, 3072), np.uint8)}, "'labels'"),
        ([1, 2, 3], "holds a list"),
    ],
)
def test_ill_formed_batch(tmp_path, batch, needle):
    make_cifar_folder(tmp_path)
    write_pickle(tmp_path / "data_batch_5", batch)
    with pytest.raises(UserError) as info:
        load_dataset(f"cifar10:{tmp_path}")
    one_line_error(info, str(tmp_path / "data_batch_5"), needle)
