"""Bad arguments give a ValueError that names the argument and its value."""

from __future__ import annotations

import pytest
import torch

from rnnpool_nas.ops import FastGRNNCell, RNNPoolLayer


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(in_channels=0), "in_channels"),
        (dict(h1=0), "h1"),
        (dict(h2=-2), "h2"),
        (dict(patch_size=0), "patch_size"),
        (dict(patch_size=(3, -1)), "patch_size"),
        (dict(stride=0), "stride"),
        (dict(padding="full"), "padding"),
        (dict(padding=-1), "padding"),
        (dict(gate_nonlinearity="relu6"), "gate_nonlinearity"),
        (dict(w_rank=0), "w_rank"),
    ],
)
def test_constructor_rejects(kwargs, needle):
    args = dict(in_channels=3, patch_size=4, stride=2, h1=4, h2=4) | kwargs
    with pytest.raises(ValueError, match=needle) as info:
        RNNPoolLayer(**args)
    assert str(list(kwargs.values())[0]) in str(info.value)


def test_wrong_channel_count():
    with pytest.raises(ValueError, match=r"in_channels.*expects 3 channels, got 5"):
        RNNPoolLayer(3, 4, 2, 4, 4)(torch.randn(1, 5, 8, 8))


def test_patch_larger_than_input():
    with pytest.raises(ValueError, match=r"patch_size 9 is larger than the input \(8\) along rows"):
        RNNPoolLayer(3, 9, 2, 4, 4)(torch.randn(1, 3, 8, 20))


def test_not_a_batch_of_maps():
    with pytest.raises(ValueError, match="input must be"):
        RNNPoolLayer(3, 4, 2, 4, 4)(torch.randn(3, 8, 8))


def test_cell_rejects_sizes():
    with pytest.raises(ValueError, match="hidden_size must be a positive integer, got 0"):
        FastGRNNCell(3, 0)
    with pytest.raises(ValueError, match="input_size: expected 3 features, got 4"):
        FastGRNNCell(3, 2)(torch.randn(2, 4))
