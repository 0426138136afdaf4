"""Anchors of a detection spec, in the order :class:`~rnnpool_nas.arch.build.SpecNet` predicts.

One square anchor per position of each head's prediction map (S3FD tiles one anchor per
location, Zhang et al. 2017, section 3.1). Heads come in source order; within a head the
positions are row-major, exactly the ``permute(0, 2, 3, 1).reshape`` of ``build.Head``.

Units: **input pixels** of the network's input image (not normalised to [0, 1]); ground-truth
boxes, the regression encoding and the detections in :mod:`.nms` all use the same units.

Centres: the anchor of map position ``(i, j)`` sits at ``((j + 0.5) * stride_x,
(i + 0.5) * stride_y)`` with ``stride = input size / map size`` per axis, taken from the real
map shapes (:func:`rnnpool_nas.arch.spec.source_shapes`). The maps are not always exact
divisions of the input (RNNPool's replicate padding, odd sizes before a stride-2 layer: a
480-row input gives a 15-row map and then an 8-row one), so a stride can be fractional and
differ between the axes; this spreads the anchors evenly over the whole image.
"""

from __future__ import annotations

import numpy as np

from ..arch.spec import ArchSpec, source_shapes
from ..errors import UserError


def anchors_for(spec: ArchSpec) -> np.ndarray:
    """The anchors of ``spec``'s detection heads.

    Args:
        spec: An architecture with ``detection`` sources.

    Returns:
        ``float64`` array ``(A, 4)`` of ``(cx, cy, w, h)`` in input pixels, ``w = h =`` the
        source's ``anchor``; ``A`` equals the number of predictions ``SpecNet`` returns for one
        image, in the same order.

    Raises:
        UserError: ``spec`` has no detection heads.
    """
    if spec.detection is None:
        raise UserError(f"architecture {spec.name or '(unnamed)'} has no detection heads, so it has no anchors")
    height, width = spec.input[0], spec.input[1]
    levels = []
    for src, (_, pred, _) in zip(spec.detection.sources, source_shapes(spec)):
        rows, cols = pred[0], pred[1]
        cy = (np.arange(rows, dtype=np.float64) + 0.5) * (height / rows)
        cx = (np.arange(cols, dtype=np.float64) + 0.5) * (width / cols)
        grid_y, grid_x = np.meshgrid(cy, cx, indexing="ij")  # row-major: i outer, j inner
        side = np.full(rows * cols, float(src.anchor))
        levels.append(np.stack((grid_x.ravel(), grid_y.ravel(), side, side), axis=1))
    return np.concatenate(levels, axis=0)


__all__ = ["anchors_for"]
