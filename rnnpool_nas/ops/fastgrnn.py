"""FastGRNN, the RNN inside RNNPool (facts file, section 1).

Parameters are named and shaped as the EdgeML C reference holds them, so weights move between
the two without transposition::

    W            (hidden, input)      or W1 (w_rank, input) and W2 (hidden, w_rank): W = W2 @ W1
    U            (hidden, hidden)     or U1 (u_rank, hidden) and U2 (hidden, u_rank): U = U2 @ U1
    bias_gate    (hidden,)
    bias_update  (hidden,)
    zeta, nu     scalars, stored before the sigmoid

    pre = W x_t + U h_{t-1};  z = gate(pre + bias_gate);  c = update(pre + bias_update)
    h_t = (sigmoid(zeta) * (1 - z) + sigmoid(nu)) * c + z * h_{t-1}

:func:`fastgrnn_sweep` runs the recurrence over many sequences at once from precomputed input
projections ``W x`` and returns the final states; it uses the fused C++ kernel when available.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from ._kernel import load_kernel

NONLINEARITIES = ("sigmoid", "tanh", "quantSigmoid", "quantTanh")
_CODE = {name: i for i, name in enumerate(NONLINEARITIES)}


def quant_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear sigmoid for 8-bit deployment: ``clip((x + 1) / 2, 0, 1)``."""
    return ((x + 1) * 0.5).clamp(0.0, 1.0)


def quant_tanh(x: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear tanh for 8-bit deployment: ``clip(x, -1, 1)``."""
    return x.clamp(-1.0, 1.0)


_FUNCS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "quantSigmoid": quant_sigmoid, "quantTanh": quant_tanh}


def _check_positive(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class FastGRNNCell(nn.Module):
    """One FastGRNN cell; ``forward(x, h)`` is a single, plain PyTorch step.

    Initialisation follows the reference cell: W and U ``0.1 * randn``, both biases 1,
    ``zeta = 1`` and ``nu = -4`` unless given.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        gate_nonlinearity: str = "sigmoid",
        update_nonlinearity: str = "tanh",
        w_rank: int | None = None,
        u_rank: int | None = None,
        zeta_init: float = 1.0,
        nu_init: float = -4.0,
    ) -> None:
        super().__init__()
        _check_positive("input_size", input_size)
        _check_positive("hidden_size", hidden_size)
        for name, value in (("gate_nonlinearity", gate_nonlinearity), ("update_nonlinearity", update_nonlinearity)):
            if value not in _CODE:
                raise ValueError(f"{name} must be one of {NONLINEARITIES}, got {value!r}")
        for name, value in (("w_rank", w_rank), ("u_rank", u_rank)):
            if value is not None:
                _check_positive(name, value)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.gate_nonlinearity = gate_nonlinearity
        self.update_nonlinearity = update_nonlinearity
        self.w_rank = w_rank
        self.u_rank = u_rank
        if w_rank is None:
            self.W = nn.Parameter(0.1 * torch.randn(hidden_size, input_size))
        else:
            self.W1 = nn.Parameter(0.1 * torch.randn(w_rank, input_size))
            self.W2 = nn.Parameter(0.1 * torch.randn(hidden_size, w_rank))
        if u_rank is None:
            self.U = nn.Parameter(0.1 * torch.randn(hidden_size, hidden_size))
        else:
            self.U1 = nn.Parameter(0.1 * torch.randn(u_rank, hidden_size))
            self.U2 = nn.Parameter(0.1 * torch.randn(hidden_size, u_rank))
        self.bias_gate = nn.Parameter(torch.ones(hidden_size))
        self.bias_update = nn.Parameter(torch.ones(hidden_size))
        self.zeta = nn.Parameter(torch.tensor(float(zeta_init)))
        self.nu = nn.Parameter(torch.tensor(float(nu_init)))

    def input_matrix(self) -> torch.Tensor:
        """The full (hidden, input) matrix W (``W2 @ W1`` when low-rank)."""
        return self.W if self.w_rank is None else self.W2 @ self.W1

    def recurrent_matrix(self) -> torch.Tensor:
        """The full (hidden, hidden) matrix U (``U2 @ U1`` when low-rank)."""
        return self.U if self.u_rank is None else self.U2 @ self.U1

    def step_from_projection(self, wx: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step given ``wx = W x_t`` (shape (..., hidden)) and the previous state."""
        pre = wx + h @ self.recurrent_matrix().t()
        z = _FUNCS[self.gate_nonlinearity](pre + self.bias_gate)
        c = _FUNCS[self.update_nonlinearity](pre + self.bias_update)
        return (torch.sigmoid(self.zeta) * (1 - z) + torch.sigmoid(self.nu)) * c + z * h

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """One step: ``x`` (batch, input), ``h`` (batch, hidden) or ``None`` for zeros."""
        if x.shape[-1] != self.input_size:
            raise ValueError(f"input_size: expected {self.input_size} features, got {x.shape[-1]}")
        if h is None:
            h = x.new_zeros(*x.shape[:-1], self.hidden_size)
        return self.step_from_projection(x @ self.input_matrix().t(), h)

    def extra_repr(self) -> str:
        ranks = "".join(f", {n}={v}" for n, v in (("w_rank", self.w_rank), ("u_rank", self.u_rank)) if v)
        return (
            f"{self.input_size}, {self.hidden_size}, gate={self.gate_nonlinearity}, "
            f"update={self.update_nonlinearity}{ranks}"
        )


class _FusedRecurrence(torch.autograd.Function):
    """Autograd wrapper of the C++ recurrence kernel (forward and exact backward)."""

    @staticmethod
    def forward(ctx, src, U, bias_gate, bias_update, sz, sn, offsets, steps, length, codes):  # type: ignore[override]
        args = (offsets, steps, length)
        h = load_kernel().forward(src, *args, U, bias_gate, bias_update, float(sz), float(sn), *codes)
        ctx.save_for_backward(src, U, bias_gate, bias_update, sz, sn, offsets, steps)
        ctx.length, ctx.codes = length, codes
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h):  # type: ignore[override]
        src, U, bias_gate, bias_update, sz, sn, offsets, steps = ctx.saved_tensors
        dsrc, dU, dbg, dbh, dsz, dsn = load_kernel().backward(
            grad_h, src, offsets, steps, ctx.length, U, bias_gate, bias_update, float(sz), float(sn), *ctx.codes
        )
        return dsrc, dU, dbg, dbh, dsz.reshape(sz.shape), dsn.reshape(sn.shape), None, None, None, None


def fastgrnn_sweep(
    cell: FastGRNNCell,
    src: torch.Tensor,
    offsets: torch.Tensor,
    steps: torch.Tensor,
    length: int,
    use_kernel: bool = True,
) -> torch.Tensor:
    """Final hidden states of ``cell`` over many sequences read in place from ``src``.

    Sequence ``b`` at step ``t`` is the input projection ``W x_t`` (without biases) stored at
    ``src.flatten()[offsets[b] + t * steps[b] : ... + hidden]``; steps may be negative (a
    backward sweep). ``h_0 = 0``. Returns a (len(offsets), hidden) tensor.
    """
    src = src.contiguous()
    if use_kernel and src.device.type == "cpu" and load_kernel() is not None:
        codes = (_CODE[cell.gate_nonlinearity], _CODE[cell.update_nonlinearity])
        return _FusedRecurrence.apply(
            src,
            cell.recurrent_matrix().contiguous(),
            cell.bias_gate.contiguous(),
            cell.bias_update.contiguous(),
            torch.sigmoid(cell.zeta),
            torch.sigmoid(cell.nu),
            offsets,
            steps,
            length,
            codes,
        )
    t = torch.arange(length, device=src.device)
    index = (offsets[:, None] + t[None, :] * steps[:, None])[..., None] + torch.arange(cell.hidden_size)
    seq = src.reshape(-1)[index]  # (B, T, hidden)
    h = seq.new_zeros(seq.shape[0], cell.hidden_size)
    for k in range(length):
        h = cell.step_from_projection(seq[:, k], h)
    return h
