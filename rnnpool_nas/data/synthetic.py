"""The paper's synthetic probe tasks (facts file, section 5), generated from a seed; numpy only.

``lines``: monochrome 8-bit images with background noise and one line segment of random length
and position; the label is its orientation, one of 9 classes for 0, 20, ..., 160 degrees
(0 degrees is horizontal, angles grow counter-clockwise as on a page).

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
