"""The fast RNNPoolLayer equals the plain implementation, in values and gradients."""

from __future__ import annotations

import pytest
import torch

from rnnpool_nas.ops import FastGRNNCell, RNNPoolLayer, fastgrnn_sweep, rnnpool_plain
from rnnpool_nas.ops._kernel import load_kernel

CASES = [
    # (batch, channels, H, W, patch, stride, padding)
    pytest.param(1, 3, 12, 12, 4, 2, 0, id="square-stride<patch-batch1"),
    pytest.param(5, 3, 12, 12, 4, 4, 0, id="square-stride=patch"),
    pytest.param(2, 3, 13, 17, 3, 5, 0, id="stride>patch"),
    pytest.param(3, 4, 11, 14, (5, 3), (2, 3), "same", id="rect-patch-same"),
    pytest.param(2, 2, 10, 9, (2, 6), (3, 1), 1, id="rect-patch-int-padding"),
    pytest.param(4, 2, 17, 13, 6, 4, "reference", id="reference-padding"),
    pytest.param(7, 1, 8, 8, 8, 8, 0, id="whole-image"),
]
ACTS = [("sigmoid", "tanh"), ("quantSigmoid", "quantTanh"), ("tanh", "sigmoid"), ("sigmoid", "quantTanh")]


def _layer(c, patch, stride, padding, acts=("sigmoid", "tanh"), dtype=torch.float64, **kw):
    torch.manual_seed(0)
    layer = RNNPoolLayer(
        c, patch, stride, 5, 3, padding=padding, gate_nonlinearity=acts[0], update_nonlinearity=acts[1],
        zeta_init=0.7, nu_init=-1.3, **kw,
    )
    return layer.to(dtype)


def _values_and_grads(layer, fn, x, g):
    y = fn(x)
    grads = torch.autograd.grad(y, [x, *layer.parameters()], g)
    return y, grads


@pytest.mark.parametrize("acts", ACTS, ids=lambda a: "-".join(a))
@pytest.mark.parametrize("n,c,h,w,patch,stride,padding", CASES)
def test_fast_equals_plain(n, c, h, w, patch, stride, padding, acts):
    layer = _layer(c, patch, stride, padding, acts)
    x = torch.randn(n, c, h, w, dtype=torch.float64, requires_grad=True)
    y_fast = layer(x)
    g = torch.randn_like(y_fast)
    fast = _values_and_grads(layer, layer, x, g)
    plain = _values_and_grads(layer, lambda t: rnnpool_plain(layer, t), x, g)
    assert fast[0].shape == (n, 12, *layer.output_hw(h, w))
    torch.testing.assert_close(fast[0], plain[0], atol=1e-6, rtol=0)
    names = ["input", *(name for name, _ in layer.named_parameters())]
    for name, a, b in zip(names, fast[1], plain[1]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6, msg=lambda m, name=name: f"d/d {name}: {m}")


def test_float32_fast_equals_plain():
    layer = _layer(3, 6, 4, 0, dtype=torch.float32)
    x = torch.randn(4, 3, 30, 26)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), rnnpool_plain(layer, x), atol=1e-5, rtol=0)


def test_low_rank_cells():
    layer = _layer(4, 4, 3, "same", w_rank=2, u_rank=3)
    assert not hasattr(layer.rnn1, "W") and layer.rnn1.W1.shape == (2, 4) and layer.rnn1.W2.shape == (5, 2)
    assert layer.rnn1.U1.shape == (3, 5) and layer.rnn1.U2.shape == (5, 3)
    x = torch.randn(2, 4, 9, 10, dtype=torch.float64, requires_grad=True)
    g = torch.randn_like(layer(x))
    fast = _values_and_grads(layer, layer, x, g)
    plain = _values_and_grads(layer, lambda t: rnnpool_plain(layer, t), x, g)
    for a, b in zip((fast[0], *fast[1]), (plain[0], *plain[1])):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("use_kernel", [True, False], ids=["kernel", "eager"])
@pytest.mark.parametrize("acts", [("sigmoid", "tanh"), ("quantSigmoid", "quantTanh")], ids=lambda a: "-".join(a))
def test_gradcheck(use_kernel, acts):
    layer = _layer(2, (3, 2), (2, 1), "same", acts, use_kernel=use_kernel)
    with torch.no_grad():  # off the kinks of the clipped nonlinearities (bias 1 + zero padding sits on one)
        for cell in (layer.rnn1, layer.rnn2):
            cell.bias_gate.copy_(0.3 * torch.randn(cell.hidden_size))
            cell.bias_update.copy_(0.3 * torch.randn(cell.hidden_size))
    x = torch.randn(2, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    names = [name for name, _ in layer.named_parameters()]

    def fn(x, *params):
        return torch.func.functional_call(layer, dict(zip(names, params)), (x,))

    inputs = (x, *(p.detach().clone().requires_grad_(True) for p in layer.parameters()))
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5)


def test_kernel_is_built():
    """CI must exercise the fused kernel, not silently fall back to eager code."""
    assert load_kernel() is not None


def test_sweep_reads_sequences_in_place():
    """Negative steps read a sequence backwards; kernel and eager paths agree."""
    torch.manual_seed(1)
    cell = FastGRNNCell(3, 4).double()
    src = torch.randn(10, 4, dtype=torch.float64)
    offsets = torch.tensor([0, 36, 8])
    steps = torch.tensor([4, -4, 8])
    out_k = fastgrnn_sweep(cell, src, offsets, steps, 3, use_kernel=True)
    out_e = fastgrnn_sweep(cell, src, offsets, steps, 3, use_kernel=False)
    torch.testing.assert_close(out_k, out_e)
    h = torch.zeros(4, dtype=torch.float64)
    for t in (9, 8, 7):
        h = cell.step_from_projection(src[t], h)
    torch.testing.assert_close(out_k[1], h)


def test_cell_step_matches_the_formula():
    torch.manual_seed(2)
    cell = FastGRNNCell(3, 2, zeta_init=0.3, nu_init=-0.2).double()
    x, h = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    pre = x @ cell.W.t() + h @ cell.U.t()
    z, c = torch.sigmoid(pre + cell.bias_gate), torch.tanh(pre + cell.bias_update)
    expected = (torch.sigmoid(cell.zeta) * (1 - z) + torch.sigmoid(cell.nu)) * c + z * h
    torch.testing.assert_close(cell(x, h), expected)


def test_reference_initialisation():
    cell = FastGRNNCell(3, 4)
    assert torch.all(cell.bias_gate == 1) and torch.all(cell.bias_update == 1)
    assert (cell.zeta.item(), cell.nu.item()) == (1.0, -4.0)
    layer = RNNPoolLayer(3, 4, 2, 4, 4)
    assert (layer.rnn1.zeta.item(), layer.rnn2.nu.item()) == (100.0, -100.0)
    assert layer.rnn1.W.shape == (4, 3) and layer.rnn2.W.shape == (4, 4)


def test_output_channel_order():
    """Output = [rows fwd, rows bwd, cols fwd, cols bwd], each h2 wide."""
    layer = _layer(2, 4, 4, 0)
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        y = layer(x).flatten()
        y_t = layer(x.transpose(2, 3)).flatten()  # rows become columns
        y_f = layer(x.flip(2)).flatten()  # rows in reverse order
    h2 = 3
    torch.testing.assert_close(y_t[: 2 * h2], y[2 * h2 :])
    torch.testing.assert_close(y_f[:h2], y[h2 : 2 * h2])
