"""``lines`` and ``shapes`` through the registry: deterministic, well-formed, labels match pixels."""

from __future__ import annotations

import numpy as np
import pytest

from rnnpool_nas.data import load_dataset
from rnnpool_nas.data.synthetic import SHAPE_CLASSES, make_shapes


@pytest.mark.parametrize("name,side", [("lines", 32), ("shapes", 64)])
def test_deterministic_from_seed(name, side):
    a = load_dataset(name, seed=5, limit=40)
    b = load_dataset(name, seed=5, limit=40)
    c = load_dataset(name, seed=6, limit=40)
    assert a.x_train.shape == (40, side, side, 1) and a.x_val.shape == (40, side, side, 1)
    assert a.x_train.dtype == np.uint8
    for field in ("x_train", "y_train", "x_val", "y_val"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.x_train, c.x_train) and not np.array_equal(a.x_val, c.x_val)
    assert not np.array_equal(a.x_train[:10], a.x_val[:10])  # two streams, not one


def test_default_counts_and_size():
    ds = load_dataset("lines")
    assert (len(ds.x_train), len(ds.x_val)) == (20000, 2000)
    assert ds.input_shape == (32, 32, 1) and ds.num_classes == 9 and ds.classes[1] == "20deg"
    assert ds.y_train.dtype == np.int64 and not ds.multi_label
    assert load_dataset("lines", size=48, limit=3).input_shape == (48, 48, 1)


def test_shapes_is_multi_label():
    ds = load_dataset("shapes", limit=100)
    assert ds.multi_label and ds.classes == list(SHAPE_CLASSES) and ds.num_classes == 5
    assert ds.y_train.shape == (100, 5) and ds.y_train.dtype == np.uint8
    assert set(np.unique(ds.y_train)) == {0, 1} and (ds.y_train.sum(axis=1) >= 1).all()
    assert ds.input_shape == (64, 64, 1)
    # a limit gives a prefix of the full set, across the 1000-image generation blocks
    big = load_dataset("shapes", limit=1100)
    np.testing.assert_array_equal(big.x_val[:100], ds.x_val)
    np.testing.assert_array_equal(big.y_train[:100], ds.y_train)
    assert len(big.x_train) == 1100 and not np.array_equal(big.x_train[:100], big.x_train[1000:1100])


def _components(mask: np.ndarray) -> np.ndarray:
    """8-connected component labels of ``mask`` (0 = background), by min-label propagation."""
    big = mask.size + 1
    lab = np.where(mask, np.arange(1, mask.size + 1).reshape(mask.shape), big)
    while True:
        pad = np.pad(lab, 1, constant_values=big)
        new = np.minimum.reduce([pad[1 + dy : pad.shape[0] - 1 + dy, 1 + dx : pad.shape[1] - 1 + dx]
                                 for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
        new = np.where(mask, new, big)
        if np.array_equal(new, lab):
            return np.where(mask, lab, 0)
        lab = new


def test_shapes_drawn_match_labels():
    """One blob per label; the circle and the triangle are recognisable by their radius ratio."""
    images, labels = make_shapes(60, seed=11)
    rows, cols = np.mgrid[:64, :64]
    for image, label in zip(images, labels):
        mask = image == 255
        comps = _components(mask)
        ids = [i for i in np.unique(comps) if i]
        assert len(ids) == label.sum()
        ratios = []
        for i in ids:
            inside = comps == i
            cy, cx = rows[inside].mean(), cols[inside].mean()
            dist = np.hypot(rows - cy, cols - cx)
            ratios.append(dist[inside].max() / dist[~mask].min())  # circumradius / inradius
        # circle ~1.0, hexagon >= 1.04, ..., triangle ~2.0 (pixelised)
        assert any(r < 1.035 for r in ratios) == bool(label[SHAPE_CLASSES.index("circle")])
        assert any(r > 1.44 for r in ratios) == bool(label[SHAPE_CLASSES.index("triangle")])


def test_every_non_empty_subset_occurs():
    _, labels = make_shapes(2000, seed=0)
    codes = labels @ (1 << np.arange(5))
    assert set(codes.tolist()) == set(range(1, 32))


def test_make_shapes_rejects_tiny_images():
    with pytest.raises(ValueError, match="size"):
        make_shapes(2, size=16)
