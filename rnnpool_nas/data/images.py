"""Images as every loader hands them over: uint8 (N, H, W, C), adapted to a network's input.

:func:`adapt_images` is the one place pixels are resized (Pillow bilinear) and turned grey
(ITU-R BT.601 luma) or RGB (repeated); :class:`DataWarning` is what loaders warn with. numpy and
Pillow only. Both are re-exported by :mod:`rnnpool_nas.data` and :mod:`rnnpool_nas.data.registry`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


class DataWarning(UserWarning):
    """Something about the data the user should know but that does not stop loading."""


_GREY_CHUNK = 256


def _to_grey(x: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of (N, H, W, 3) uint8, rounded half up, as (N, H, W, 1) uint8."""
    out = np.empty((*x.shape[:3], 1), dtype=np.uint8)
    for start in range(0, len(x), _GREY_CHUNK):  # chunks keep the uint32 temporaries in cache
        c = x[start : start + _GREY_CHUNK].astype(np.uint32)
        out[start : start + _GREY_CHUNK, ..., 0] = (299 * c[..., 0] + 587 * c[..., 1] + 114 * c[..., 2] + 500) // 1000
    return out


def _resize(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pillow-bilinear resize of each (H, W, C) uint8 image of ``x`` to (height, width, C)."""
    n, _, _, c = x.shape
    out = np.empty((n, height, width, c), dtype=np.uint8)
    bilinear = Image.Resampling.BILINEAR
    for i in range(n):
        image = Image.fromarray(x[i, :, :, 0] if c == 1 else x[i])
        resized = np.asarray(image.resize((width, height), bilinear))
        out[i] = resized.reshape(height, width, c)
    return out


def adapt_images(x: np.ndarray, height: int, width: int, channels: int) -> np.ndarray:
    """``x`` (uint8 (N, H, W, C), C = 1 or 3) as uint8 (N, height, width, channels).

    The rules (bilinear resize, grey <-> RGB) are in the module docstring. Returns ``x`` itself
    when it already has the asked shape. Raises ValueError for a bad array or target.
    """
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] not in (1, 3):
        raise ValueError(f"adapt_images needs uint8 (N, H, W, 1 or 3), got {x.dtype} {x.shape}")
    if channels not in (1, 3) or height < 1 or width < 1:
        raise ValueError(f"adapt_images needs height, width >= 1 and channels 1 or 3, got {height}, {width}, {channels}")
    if x.shape[1:] == (height, width, channels):
        return x
    if x.shape[3] == 3 and channels == 1:
        x = _to_grey(x)
    if x.shape[1:3] != (height, width):
        x = _resize(x, height, width)
    if x.shape[3] == 1 and channels == 3:
        x = np.repeat(x, 3, axis=3)
    return x


__all__ = ["DataWarning", "adapt_images"]
