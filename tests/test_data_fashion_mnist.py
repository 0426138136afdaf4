"""The real Fashion-MNIST from Debian's dataset-fashion-mnist, when it is installed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from rnnpool_nas.data import load_dataset
from rnnpool_nas.data.registry import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR

pytestmark = pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(), reason=f"{FASHION_MNIST_DIR} absent (Debian package dataset-fashion-mnist)"
)


def test_real_fashion_mnist():
    start = time.perf_counter()
    ds = load_dataset("fashion-mnist")
    elapsed = time.perf_counter() - start
    assert elapsed < 10, f"loading took {elapsed:.1f} s"
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_val.shape == (10000, 28, 28, 1)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.input_shape == (28, 28, 1) and ds.num_classes == 10 and ds.classes == FASHION_MNIST_CLASSES
    for y, n in ((ds.y_train, 6000), (ds.y_val, 1000)):  # Fashion-MNIST is exactly balanced
        np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, n))
    assert 0 < ds.x_train.mean() < 255 and ds.x_train.max() == 255


def test_real_fashion_mnist_limited_and_resized():
    ds = load_dataset("fashion-mnist", limit=100, size=32)
    assert ds.x_train.shape == (100, 32, 32, 1) and ds.x_val.shape == (100, 32, 32, 1)
    assert set(np.unique(ds.y_train)) <= set(range(10))
