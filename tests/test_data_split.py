"""The search's validation split: held out of the training images, stratified and seeded; the
test set never reaches the search (asserted on indices)."""

from __future__ import annotations

import numpy as np
import pytest

from rnnpool_nas.data import load_dataset
from rnnpool_nas.data.detection import DetectionSplit, holdout_split, load_detection_dataset
from rnnpool_nas.data.registry import FASHION_MNIST_DIR, stratified_holdout
from rnnpool_nas.errors import UserError

from .conftest import one_line_error

needs_fashion = pytest.mark.skipif(not (FASHION_MNIST_DIR / "train-labels-idx1-ubyte.gz").exists(),
                                   reason="Debian's dataset-fashion-mnist is not installed")


def test_stratified_holdout_per_class_and_seeded():
    y = np.repeat(np.arange(4), [10, 20, 1, 7])
    train, val = stratified_holdout(y, 0.1, seed=3)
    assert np.intersect1d(train, val).size == 0
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(y)))
    assert [int((y[val] == c).sum()) for c in range(4)] == [1, 2, 0, 1]  # a lone image stays in train
    again = stratified_holdout(y, 0.1, seed=3)[1]
    other = stratified_holdout(y, 0.1, seed=4)[1]
    assert np.array_equal(val, again) and not np.array_equal(val, other)


@needs_fashion
def test_fashion_mnist_search_split_never_holds_a_test_image():
    full = load_dataset("fashion-mnist")  # what finalize uses: all 60000 training images, the test set as val
    assert full.val_source == "test" and len(full.x_train) == 60000 and len(full.x_val) == 10000
    ds = load_dataset("fashion-mnist", holdout=0.1)
    assert ds.val_source == "holdout" and len(ds.x_train) == 54000 and len(ds.x_val) == 6000
    # every image comes from the training split, by index, and train and validation are disjoint
    assert np.intersect1d(ds.train_index, ds.val_index).size == 0
    assert np.array_equal(np.sort(np.concatenate([ds.train_index, ds.val_index])), np.arange(60000))
    assert np.array_equal(ds.x_val, full.x_train[ds.val_index]) and np.array_equal(ds.y_val, full.y_train[ds.val_index])
    assert np.array_equal(ds.x_train, full.x_train[ds.train_index])
    assert np.bincount(ds.y_val, minlength=10).tolist() == [600] * 10  # stratified
    # with the main job's --limit: subsets of the same two disjoint sets
    small = load_dataset("fashion-mnist", holdout=0.1, limit=2000)
    assert len(small.x_train) == 2000 and len(small.x_val) == 2000
    assert set(small.val_index) <= set(ds.val_index) and set(small.train_index) <= set(ds.train_index)
    assert np.array_equal(small.x_val, full.x_train[small.val_index])


@needs_fashion
def test_search_trials_load_the_holdout(tmp_path):
    from rnnpool_nas.arch.presets import get_preset
    from rnnpool_nas.search.runner import _dataset_for

    spec = get_preset("rnnpool-tiny")
    ds = _dataset_for(spec, {"dataset": "fashion-mnist", "data_dir": None, "seed": 0, "limit": 1000,
                             "val_fraction": 0.1})
    assert ds.val_source == "holdout" and ds.val_index is not None and ds.val_index.max() < 60000


def test_synthetic_holdout_is_its_own_stream():
    test = load_dataset("lines", limit=50)
    val = load_dataset("lines", limit=50, holdout=0.1)
    assert np.array_equal(test.x_train, val.x_train)  # same training images
    assert not any((val.x_val[i] == test.x_val).all(axis=(1, 2, 3)).any() for i in range(50))
    assert val.val_source == "holdout" and test.val_source == "test"


def test_detection_holdout_rows_are_training_rows():
    images = [np.full((8, 8, 1), i, np.uint8) for i in range(20)]
    boxes = [np.array([[0, 0, 4, 4]], np.float32) for _ in range(20)]
    train = DetectionSplit.from_arrays("x:train", images, boxes)
    rest, held = holdout_split(train, 0.2, seed=1)
    assert len(held) == 4 and len(rest) == 16 and held.name == "x:holdout"
    assert np.intersect1d(rest.rows, held.rows).size == 0
    assert sorted(rest.rows.tolist() + held.rows.tolist()) == list(range(20))
    assert [int(held[i].image[0, 0, 0]) for i in range(4)] == held.rows.tolist()  # read through the rows


def test_faces_synth_holdout_is_an_independent_stream():
    ds = load_detection_dataset("faces-synth", size=(32, 32), limit=3, holdout=0.1)
    test = load_detection_dataset("faces-synth", size=(32, 32), limit=3)
    assert all(s.startswith("faces-synth:holdout[") for s in ds.val.sources)
    assert ds.train.sources == test.train.sources
    assert not any(np.array_equal(ds.val[i].image, test.val[j].image) for i in range(3) for j in range(3))


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, True])
def test_bad_fraction(bad):
    with pytest.raises(UserError) as info:
        load_dataset("lines", holdout=bad)
    one_line_error(info, "validation fraction")
    with pytest.raises(UserError) as info:
        load_detection_dataset("faces-synth", holdout=bad)
    one_line_error(info, "validation fraction")


def test_search_cli_rejects_a_bad_val_fraction(tmp_path, capsys):
    from rnnpool_nas.cli import main

    code = main(["search", "--ram-budget", "16KB", "--val-fraction", "1.5", "--out", str(tmp_path / "r")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--val-fraction" in err[0]
