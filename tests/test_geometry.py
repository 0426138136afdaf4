"""Output sizes and padding rules of RNNPoolLayer (shared with the cost model)."""

from __future__ import annotations

import pytest
import torch

from rnnpool_nas.ops import RNNPoolLayer
from rnnpool_nas.ops.geometry import axis_geometry, rnnpool_output_hw


@pytest.mark.parametrize(
    "size,patch,stride,expected",
    [(112, 6, 4, 28), (120, 8, 4, 30), (160, 8, 4, 40), (240, 8, 4, 60), (320, 8, 4, 80), (6, 6, 6, 1)],
)
def test_reference_rule_matches_the_paper_models(size, patch, stride, expected):
    g = axis_geometry(size, patch, stride, "reference")
    assert g.out == expected
    assert g.patches == (size - patch) // stride + 1


@pytest.mark.parametrize("size", range(5, 30))
@pytest.mark.parametrize("patch,stride,pad", [(3, 2, 0), (4, 4, 1), (5, 3, 2), (2, 5, 0)])
def test_int_padding_is_pooling_arithmetic(size, patch, stride, pad):
    if patch > size + 2 * pad:
        pytest.skip("no whole patch")
    ref = torch.nn.MaxPool2d(patch, stride, pad) if pad <= patch // 2 else None
    g = axis_geometry(size, patch, stride, pad)
    assert g.out == (size + 2 * pad - patch) // stride + 1
    if ref is not None:
        assert ref(torch.zeros(1, 1, size, size)).shape[-1] == g.out


@pytest.mark.parametrize("size", range(3, 40))
@pytest.mark.parametrize("patch,stride", [(3, 2), (6, 4), (4, 4), (2, 5)])
def test_same_padding_covers_the_input(size, patch, stride):
    g = axis_geometry(size, patch, stride, "same")
    assert g.out == -(-size // stride)
    assert (g.out - 1) * stride + patch <= size + g.pad_before + g.pad_after
    assert 0 <= g.pad_after - g.pad_before <= 1


def test_layer_output_shape_follows_the_geometry():
    layer = RNNPoolLayer(2, (5, 3), (2, 4), 3, 4, padding="reference")
    y = layer(torch.randn(1, 2, 15, 22))
    assert y.shape == (1, 16, *layer.output_hw(15, 22))
    rows, cols = rnnpool_output_hw(15, 22, (5, 3), (2, 4), "reference")
    assert (rows.out, cols.out) == y.shape[2:]


def test_reference_padding_replicates_the_last_row_and_column():
    layer = RNNPoolLayer(2, 6, 4, 3, 3, padding="reference")
    y = layer(torch.randn(1, 2, 112, 112))
    assert y.shape[-2:] == (28, 28)
    torch.testing.assert_close(y[..., 27, :], y[..., 26, :])
    torch.testing.assert_close(y[..., :, 27], y[..., :, 26])
