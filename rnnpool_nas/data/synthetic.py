"""The paper's synthetic probe tasks (facts file, section 5), generated from a seed; numpy only.

``lines``: monochrome 8-bit images with background noise and one line segment of random length
and position; the label is its orientation, one of 9 classes for 0, 20, ..., 160 degrees
(0 degrees is horizontal, angles grow counter-clockwise as on a page).

``shapes``: the multi-label shapes task, monochrome 8-bit images (64x64 in the paper) with
background noise holding a random non-empty subset of {circle, triangle, square, pentagon,
hexagon}, each drawn at most once, filled, at intensity 255. The label is a 0/1 vector over
:data:`SHAPE_CLASSES`. Every non-empty subset is equally likely. So that the shapes never touch,
the image is cut into a 3x3 grid of cells and each drawn shape gets its own cell, chosen at
random; inside its cell a shape has a random circumradius between 60% and 100% of
``size / 6 - 1``, a random position that keeps it in the cell, and (polygons) a random rotation.
A pixel is drawn when its centre lies inside the shape.

The same seed gives the same images on every machine (numpy's PCG64 stream).
"""

from __future__ import annotations

import numpy as np

LINE_CLASSES = 9
LINE_ANGLES_DEG = tuple(20 * k for k in range(LINE_CLASSES))


def make_lines(
    n: int,
    size: int = 32,
    seed: int = 0,
    noise: int = 64,
    min_length: float | None = None,
    max_length: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of ``size x size`` (uint8, shape (n, size, size)) and their labels (int64).

    The background is uniform noise in ``[0, noise)``; the segment is drawn at intensity 255,
    one pixel wide, with a length drawn uniformly from ``[min_length, max_length]`` (defaults:
    a quarter and three quarters of ``size``) and its centre placed so that it fits the image.
    """
    if n < 0 or size < 8:
        raise ValueError(f"need n >= 0 and size >= 8, got n={n}, size={size}")
    lo = size / 4 if min_length is None else float(min_length)
    hi = 3 * size / 4 if max_length is None else float(max_length)
    if not 1 <= lo <= hi <= size - 2:
        raise ValueError(f"line lengths must satisfy 1 <= min_length <= max_length <= size - 2, got {lo}, {hi}")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, LINE_CLASSES, size=n)
    length = rng.uniform(lo, hi, size=n)
    theta = np.deg2rad(20.0 * labels)
    dx, dy = np.cos(theta), -np.sin(theta)  # image rows grow downwards
    half_x, half_y = np.abs(dx) * length / 2, np.abs(dy) * length / 2
    margin = 0.5
    cx = rng.uniform(margin + half_x, size - 1 - margin - half_x)
    cy = rng.uniform(margin + half_y, size - 1 - margin - half_y)
    images = rng.integers(0, max(1, noise), size=(n, size, size), dtype=np.uint8)
    steps = int(np.ceil(hi * 4)) + 1  # quarter-pixel sampling along the longest segment
    t = np.linspace(-0.5, 0.5, steps)[None, :] * length[:, None]
    cols = np.rint(cx[:, None] + t * dx[:, None]).astype(np.int64)
    rows = np.rint(cy[:, None] + t * dy[:, None]).astype(np.int64)
    flat = (np.arange(n)[:, None] * size + rows) * size + cols
    images.reshape(-1)[flat.reshape(-1)] = 255
    return images, labels.astype(np.int64)


SHAPE_CLASSES = ("circle", "triangle", "square", "pentagon", "hexagon")
#: Number of sides of each class of :data:`SHAPE_CLASSES` (0 for the circle).
SHAPE_SIDES = (0, 3, 4, 5, 6)
_GRID = 3
_CHUNK = 4096  # shape instances rasterised at a time (bounds the temporary arrays to ~10 MB)


def make_shapes(n: int, size: int = 64, seed: int = 0, noise: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of ``size x size`` (uint8, (n, size, size)) and their labels (uint8, (n, 5)).

    ``labels[i, k]`` is 1 exactly when shape ``SHAPE_CLASSES[k]`` is drawn in image ``i``; every
    row has at least one 1. The background is uniform noise in ``[0, noise)``; shapes are filled
    at 255 (see the module docstring for the placement rules). ``size`` must be at least 24.
    """
    if n < 0 or size < 24:
        raise ValueError(f"need n >= 0 and size >= 24, got n={n}, size={size}")
    k = len(SHAPE_CLASSES)
    rng = np.random.default_rng(seed)
    subset = rng.integers(1, 2**k, size=n)  # a non-empty subset as a bit mask, uniformly
    labels = ((subset[:, None] >> np.arange(k)) & 1).astype(np.uint8)
    cells = np.argsort(rng.random((n, _GRID * _GRID)), axis=1)[:, :k]  # a distinct cell per class
    cell = size / _GRID
    r_max = cell / 2 - 1
    radius = rng.uniform(0.6 * r_max, r_max, size=(n, k))
    slack = cell / 2 - 0.5 - radius  # how far the centre may move from the cell's centre
    cx = (cells % _GRID + 0.5) * cell - 0.5 + rng.uniform(-1, 1, size=(n, k)) * slack
    cy = (cells // _GRID + 0.5) * cell - 0.5 + rng.uniform(-1, 1, size=(n, k)) * slack
    rotation = rng.uniform(0, 2 * np.pi, size=(n, k))
    images = rng.integers(0, max(1, noise), size=(n, size, size), dtype=np.uint8)

    half = int(np.ceil(r_max)) + 1
    offsets = np.arange(-half, half + 1)
    flat_images = images.reshape(-1)
    for cls, sides in enumerate(SHAPE_SIDES):
        (idx,) = np.nonzero(labels[:, cls])
        for start in range(0, len(idx), _CHUNK):
            i = idx[start : start + _CHUNK]
            x0, y0 = np.floor(cx[i, cls]).astype(np.int64), np.floor(cy[i, cls]).astype(np.int64)
            cols = x0[:, None] + offsets  # (m, w) pixel columns of each instance's window
            rows = y0[:, None] + offsets
            dx = (cols - cx[i, cls][:, None])[:, None, :]  # (m, 1, w)
            dy = (rows - cy[i, cls][:, None])[:, :, None]  # (m, w, 1)
            r = radius[i, cls][:, None, None]
            if sides == 0:
                inside = dx * dx + dy * dy <= r * r
            else:  # a convex regular polygon: inside every edge's half-plane
                apothem = r * np.cos(np.pi / sides)
                inside = np.ones(dx.shape[:1] + (len(offsets), len(offsets)), dtype=bool)
                for j in range(sides):
                    a = rotation[i, cls] + (2 * j + 1) * np.pi / sides  # outward normal of edge j
                    inside &= dx * np.cos(a)[:, None, None] + dy * np.sin(a)[:, None, None] <= apothem
            inside &= (rows[:, :, None] >= 0) & (rows[:, :, None] < size)
            inside &= (cols[:, None, :] >= 0) & (cols[:, None, :] < size)
            m, yy, xx = np.nonzero(inside)
            flat_images[(i[m] * size + rows[m, yy]) * size + cols[m, xx]] = 255
    return images, labels
