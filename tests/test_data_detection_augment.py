"""S3FD's augmentation: boxes follow the pixels exactly through crop, resize and flip."""

from __future__ import annotations

import numpy as np
import pytest

from rnnpool_nas.data import load_detection_dataset
from rnnpool_nas.data.augment import (
    ColourDistortion,
    S3FDAugment,
    apply_geometry,
    choose_crop,
    crop_boxes,
    hflip,
    resize_sample,
)


def painted(height: int, width: int, box) -> np.ndarray:
    """A black (H, W, 1) image with one integer box filled white."""
    a = np.zeros((height, width, 1), np.uint8)
    x1, y1, x2, y2 = (int(v) for v in box)
    a[y1:y2, x1:x2] = 255
    return a


def region(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """x1, y1, x2, y2 (exclusive) of the pixels at least half white, or None."""
    rows, cols = np.nonzero(image[:, :, 0] >= 128)
    if len(rows) == 0:
        return None
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def random_boxes(rng: np.random.Generator, height: int, width: int, n: int) -> np.ndarray:
    boxes = []
    for _ in range(n):
        w, h = (int(v) for v in rng.integers(4, min(width, height) // 2, size=2))
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        boxes.append((x, y, x + w, y + h))
    return np.array(boxes, np.float32)


@pytest.mark.parametrize("out_size", [(48, 64), (64, 64), (30, 40)])
def test_transformed_boxes_bound_the_painted_pixels(out_size):
    checked = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        height, width = (int(v) for v in rng.integers(50, 200, size=2))
        boxes = random_boxes(rng, height, width, int(rng.integers(1, 5)))
        ignore = np.zeros(len(boxes), bool)
        window = choose_crop(height, width, boxes, rng, out_size)
        flip = bool(rng.random() < 0.5)
        _, all_boxes, _ = apply_geometry(np.zeros((height, width, 3), np.uint8), boxes, ignore, window, flip, out_size)
        singles = []
        for box in boxes:
            out, moved, _ = apply_geometry(painted(height, width, box), box[None], ignore[:1], window, flip, out_size)
            assert out.shape == (*out_size, 1) and moved.dtype == np.float32
            x0, y0, w, h = window
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            assert len(moved) == int(x0 <= cx < x0 + w and y0 <= cy < y0 + h)  # kept iff its centre is in the window
            if len(moved) == 0:
                continue
            singles.append(moved[0])
            b = moved[0]
            if min(b[2] - b[0], b[3] - b[1]) < 3:  # too small for the half-white test after shrinking
                continue
            got = region(out)
            assert got is not None
            assert np.abs(np.array(got) - b).max() <= 1.0, (seed, window, flip, b, got)
            checked += 1
        assert np.array_equal(all_boxes, np.array(singles, np.float32).reshape(-1, 4))
    assert checked > 40


def test_window_holds_a_whole_face_and_keeps_the_aspect():
    for seed in range(50):
        rng = np.random.default_rng(100 + seed)
        boxes = random_boxes(rng, 120, 200, 3)
        x0, y0, w, h = choose_crop(120, 200, boxes, rng, (30, 40))
        assert 0 <= x0 and x0 + w <= 200 and 0 <= y0 and y0 + h <= 120
        assert abs(w / h - 40 / 30) < 0.05 and h >= round(0.3 * 120) - 1
        inside = (boxes[:, 0] >= x0) & (boxes[:, 1] >= y0) & (boxes[:, 2] <= x0 + w) & (boxes[:, 3] <= y0 + h)
        assert inside.any()
    rng = np.random.default_rng(0)
    # the largest window of an image with the output's aspect is the image; S3FD's square for square outputs
    assert choose_crop(60, 80, np.zeros((0, 4)), rng, (30, 40), scales=(1.0, 1.0)) == (0, 0, 80, 60)
    x0, y0, w, h = choose_crop(60, 80, np.zeros((0, 4)), rng, (32, 32), random_windows=0)
    assert (w, h) == (60, 60) and y0 == 0
    # no window can hold a face as wide as the image: the whole image is used
    assert choose_crop(60, 120, np.array([[0, 10, 120, 50]]), rng, (32, 32)) == (0, 0, 120, 60)


def test_crop_clips_and_carries_ignore_flags():
    boxes = np.array([[5, 5, 25, 25], [28, 0, 50, 20], [60, 60, 70, 70]], np.float32)
    kept, flags = crop_boxes(boxes, np.array([False, True, False]), (10, 0, 30, 30))
    assert kept.tolist() == [[0, 5, 15, 25], [18, 0, 30, 20]] and flags.tolist() == [False, True]


def test_flip_and_resize_are_exact():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    boxes = np.array([[1, 2, 11, 12], [30.5, 0, 40, 30]], np.float32)
    flipped, fb = hflip(image, boxes)
    assert np.array_equal(flipped, image[:, ::-1]) and fb.tolist() == [[29, 2, 39, 12], [0, 0, 9.5, 30]]
    back, bb = hflip(flipped, fb)
    assert np.array_equal(back, image) and np.array_equal(bb, boxes)
    big, sb = resize_sample(image, boxes, (60, 120))
    assert big.shape == (60, 120, 3) and sb.tolist() == [[3, 4, 33, 24], [91.5, 0, 120, 60]]


def test_colour_distortion_changes_pixels_not_boxes():
    ds = load_detection_dataset("faces-synth", channels=3, limit=3)
    sample = ds.train[1]
    plain = S3FDAugment((120, 160), colour=None)
    full = S3FDAugment((120, 160))
    a = plain.sample(sample, np.random.default_rng(5))
    b = full.sample(sample, np.random.default_rng(5))
    c = full.sample(sample, np.random.default_rng(5))
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.ignore, b.ignore)  # colour comes after geometry
    assert np.array_equal(b.image, c.image) and np.array_equal(b.boxes, c.boxes)  # same generator, same result
    assert b.image.shape == (120, 160, 3) and b.image.dtype == np.uint8
    always = ColourDistortion(brightness=(1, 0.125), contrast=(1, 0.5), saturation=(1, 0.5), hue=(1, 18))
    changed = [not np.array_equal(always(a.image, np.random.default_rng(s)), a.image) for s in range(5)]
    assert all(changed)
    grey = load_detection_dataset("faces-synth", limit=1).train[0]
    out = S3FDAugment((60, 80)).sample(grey, np.random.default_rng(2))
    assert out.image.shape == (60, 80, 1)


def test_small_faces_become_ignored_not_dropped():
    image = np.zeros((100, 100, 1), np.uint8)
    boxes = np.array([[10, 10, 14, 14], [40, 40, 90, 90]], np.float32)
    aug = S3FDAugment((25, 25), scales=(1.0, 1.0), random_windows=0, colour=None, min_face=2.0)
    _, out, flags = aug(image, boxes, None, np.random.default_rng(0))
    assert len(out) == 2 and flags.tolist() == [True, False]  # the 4-pixel face is 1 pixel after the 4x shrink
