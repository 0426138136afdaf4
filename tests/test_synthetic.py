"""The synthetic lines task is deterministic and draws what its labels say."""

from __future__ import annotations

import numpy as np
import pytest

from rnnpool_nas.data.synthetic import LINE_CLASSES, make_lines


def test_deterministic_and_well_formed():
    a, la = make_lines(50, size=32, seed=3)
    b, lb = make_lines(50, size=32, seed=3)
    c, _ = make_lines(50, size=32, seed=4)
    assert a.dtype == np.uint8 and a.shape == (50, 32, 32)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(a, c)
    assert set(np.unique(make_lines(500, seed=0)[1])) == set(range(LINE_CLASSES))


@pytest.mark.parametrize("size", [32, 64])
def test_line_orientation_matches_label(size):
    images, labels = make_lines(200, size=size, seed=5)
    for image, label in zip(images, labels):
        rows, cols = np.nonzero(image == 255)
        assert len(rows) >= size // 4
        # principal axis of the drawn pixels, in degrees counter-clockwise from horizontal
        cov = np.cov(np.stack([cols, -rows]).astype(float))
        vx, vy = np.linalg.eigh(cov)[1][:, -1]
        angle = np.degrees(np.arctan2(vy, vx)) % 180
        diff = min(abs(angle - 20 * label), 180 - abs(angle - 20 * label))
        assert diff < 10, (label, angle)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        make_lines(3, size=4)
    with pytest.raises(ValueError, match="line lengths"):
        make_lines(3, size=32, min_length=40)
