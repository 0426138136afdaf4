"""RNNPoolLayer reproduces the EdgeML C reference on its conformance vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnpool_nas.ops import RNNPoolLayer, rnnpool_plain

from .conftest import SHARED_TRACE, TRACE


def load_trace_weights(layer: RNNPoolLayer, trace: dict, transpose_w: bool = False) -> None:
    """Copy the trace's weights into the layer, by name and without transposition."""
    with torch.no_grad():
        for k, cell in ((1, layer.rnn1), (2, layer.rnn2)):
            W = torch.from_numpy(trace[f"W{k}"])
            cell.W.copy_(W.t() if transpose_w else W)
            cell.U.copy_(torch.from_numpy(trace[f"U{k}"]))
            cell.bias_gate.copy_(torch.from_numpy(trace[f"Bg{k}"]))
            cell.bias_update.copy_(torch.from_numpy(trace[f"Bh{k}"]))
            cell.zeta.fill_(float(trace[f"zeta{k}"]))
            cell.nu.fill_(float(trace[f"nu{k}"]))


@pytest.fixture
def layer(trace) -> RNNPoolLayer:
    layer = RNNPoolLayer(8, patch_size=6, stride=6, h1=8, h2=8)
    load_trace_weights(layer, trace)
    return layer


def test_shipped_trace_is_the_shared_one():
    if not SHARED_TRACE.exists():
        pytest.skip("../shared is not beside this checkout")
    assert TRACE.read_bytes() == SHARED_TRACE.read_bytes()


def test_trace_dimensions(trace):
    assert (int(trace["INPUT_DIMS"]), int(trace["PATCH_DIM"])) == (8, 6)
    assert (int(trace["HIDDEN_DIMS1"]), int(trace["HIDDEN_DIMS2"])) == (8, 8)
    assert float(trace["sigmoid_zeta1"]) == pytest.approx(1 / (1 + np.exp(-float(trace["zeta1"]))), abs=1e-6)


@pytest.mark.parametrize("path", ["fast", "eager", "plain"])
def test_reproduces_reference_output(layer, trace, path):
    x = torch.from_numpy(trace["input_chw"])[None]
    with torch.no_grad():
        if path == "plain":
            y = rnnpool_plain(layer, x)
        else:
            layer.use_kernel = path == "fast"
            y = layer(x)
    assert y.shape == (1, 32, 1, 1)
    np.testing.assert_allclose(y.flatten().numpy(), trace["output"], atol=1e-5, rtol=0)


def test_input_hwc_is_the_same_patch(trace):
    np.testing.assert_array_equal(trace["input_hwc"].transpose(2, 0, 1), trace["input_chw"])


def _error(layer, x, trace) -> float:
    with torch.no_grad():
        return float(np.abs(layer(x).flatten().numpy() - trace["output"]).max())


def test_the_tolerance_catches_orientation_mistakes(layer, trace):
    """The reference README's error sizes: a test at 1e-5 cannot pass with these mistakes."""
    x = torch.from_numpy(trace["input_chw"])[None]
    assert _error(layer, x, trace) < 1e-5
    assert _error(layer, x.transpose(2, 3), trace) > 1e-2  # rows swapped with columns
    wrong = RNNPoolLayer(8, patch_size=6, stride=6, h1=8, h2=8)
    load_trace_weights(wrong, trace, transpose_w=True)
    assert _error(wrong, x, trace) > 0.5  # W transposed
    hwc_read_as_chw = torch.from_numpy(np.ascontiguousarray(trace["input_hwc"])).reshape(1, 8, 6, 6)
    assert _error(layer, hwc_read_as_chw, trace) > 0.5
