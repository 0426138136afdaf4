"""Output geometry of a strided patch operator (RNNPoolLayer); torch-free.

Shared by the operator and the analytical cost model so the two can never disagree about an
output shape. Padding rules, per spatial dimension of size ``n``, patch ``p``, stride ``s``:

- an ``int`` k (``0`` is the default, ``"valid"`` is the same): zero-pad k on both sides, then
  ``out = (n + 2k - p) // s + 1`` whole patches, exactly like ``nn.MaxPool2d(p, s, k)``.
- ``"same"``: ``out = ceil(n / s)``; the zero padding needed for the last patch is split as
  TensorFlow does (the extra pixel, if any, at the end).
- ``"reference"``: the EdgeML reference models' rule: whole patches only
  (``(n - p) // s + 1``), then the *output* is replicate-padded at the end (bottom/right) up to
  ``ceil(n / s)``. 112 px, patch 6, stride 4: 27 patches, padded to 28.

Zero padding feeds the RNNs zero pixels (a zero input projection), as a padded pooling layer would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

Padding = Union[int, str]
PADDING_MODES = ("valid", "same", "reference")


@dataclass(frozen=True)
class AxisGeometry:
    """How one spatial axis is covered by patches."""

    patches: int  # number of patch positions computed
    pad_before: int  # zero padding of the input, in pixels
    pad_after: int
    replicate: int  # output rows/columns copied from the last computed one (reference rule)

    @property
    def out(self) -> int:
        return self.patches + self.replicate


def axis_geometry(size: int, patch: int, stride: int, padding: Padding = 0, *, axis: str = "") -> AxisGeometry:
    """Cover ``size`` pixels with patches of ``patch`` at ``stride`` under ``padding``.

    Raises ``ValueError`` naming the offending argument when no whole patch fits.
    """
    where = f" along {axis}" if axis else ""
    for name, value in (("patch_size", patch), ("stride", stride)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{name} must be a positive integer{where}, got {value!r}")
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"input size must be a positive integer{where}, got {size!r}")
    if isinstance(padding, str):
        mode = padding
        if mode not in PADDING_MODES:
            raise ValueError(f"padding must be an int or one of {PADDING_MODES}, got {padding!r}")
        if mode == "same":
            out = math.ceil(size / stride)
            total = max((out - 1) * stride + patch - size, 0)
            return AxisGeometry(out, total // 2, total - total // 2, 0)
        if patch > size:
            raise ValueError(f"patch_size {patch} is larger than the input ({size}){where}")
        whole = (size - patch) // stride + 1
        if mode == "valid":
            return AxisGeometry(whole, 0, 0, 0)
        return AxisGeometry(whole, 0, 0, max(0, math.ceil(size / stride) - whole))
    if not isinstance(padding, int) or isinstance(padding, bool) or padding < 0:
        raise ValueError(f"padding must be a non-negative int or one of {PADDING_MODES}, got {padding!r}")
    if patch > size + 2 * padding:
        what = f"padded input ({size} + 2*{padding})" if padding else f"input ({size})"
        raise ValueError(f"patch_size {patch} is larger than the {what}{where}")
    return AxisGeometry((size + 2 * padding - patch) // stride + 1, padding, padding, 0)


def pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    """``6`` -> ``(6, 6)``; ``(6, 4)`` stays. ``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (rows, cols), got {value!r}")
        return int(value[0]), int(value[1])
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an int or a pair (rows, cols), got {value!r}")
    return value, value


def rnnpool_output_hw(
    height: int,
    width: int,
    patch_size: int | tuple[int, int],
    stride: int | tuple[int, int],
    padding: Padding = 0,
) -> tuple[AxisGeometry, AxisGeometry]:
    """Geometry of rows and columns for an ``height x width`` input."""
    pr, pc = pair(patch_size, "patch_size")
    sr, sc = pair(stride, "stride")
    return (
        axis_geometry(height, pr, sr, padding, axis="rows"),
        axis_geometry(width, pc, sc, padding, axis="columns"),
    )
