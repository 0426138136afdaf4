"""RNNPoolLayer: the RNNPool operator strided over an activation map (facts file, section 1).

For each ``r x c`` patch, RNN1 summarises every row (a sweep along the row) and every column
(a sweep down the column) with the same weights; RNN2 then sweeps the ``r`` row summaries
forward and backward and the ``c`` column summaries forward and backward, again with one set of
weights. The patch's output is ``concat(rows fwd, rows bwd, cols fwd, cols bwd)``: ``4 * h2``
channels, the order of the C reference.

How the fast path computes it (the plain path, :func:`rnnpool_plain`, is the obvious loop and the
baseline the tests and the benchmark compare against):

1. ``W1 x`` is computed once per input pixel (a 1x1 convolution): the patches overlap and the
   row and column sweeps read the same pixels, so this is the only place RNN1 touches ``x``.
2. Patches are views (``Tensor.unfold``) of that projected map; row and column sweeps of a
   square patch are stacked into one batch and run as one recurrence.
3. ``W2 p`` is computed once per RNN1 summary; RNN2's four sweeps run as one recurrence.
4. The recurrence itself is the fused C++ kernel of :mod:`rnnpool_nas.ops.fastgrnn`.

Padding rules are those of :mod:`rnnpool_nas.ops.geometry` (default ``0``: whole patches only,
like ``nn.MaxPool2d``; ``"same"``; ``"reference"``, the EdgeML models' replicate padding).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from .fastgrnn import FastGRNNCell, fastgrnn_sweep
from .geometry import Padding, pair, rnnpool_output_hw


class RNNPoolLayer(nn.Module):
    """Pool an (N, C, H, W) map with RNNPool patches: output (N, 4*h2, H', W').

    Args:
        in_channels: channels ``C`` of the input.
        patch_size: ``r`` or ``(r, c)``.
        stride: ``s`` or ``(s_rows, s_cols)``; may exceed the patch size.
        h1, h2: hidden sizes of RNN1 (rows/columns) and RNN2 (summaries).
        padding: see :mod:`rnnpool_nas.ops.geometry`.
        gate_nonlinearity, update_nonlinearity, w_rank, u_rank: passed to both FastGRNN cells.
        zeta_init, nu_init: the reference RNNPool's 100 and -100 (sigmoid(zeta) ~ 1,
            sigmoid(nu) ~ 0).
        use_kernel: use the fused C++ recurrence when it is available.
    """

    # The FastGRNN cell's parameters (from gate_nonlinearity on) are passed on to both cells; the
    # defaults differ on purpose: zeta/nu start at the reference RNNPool's 100/-100, not the cell's 1/-4.
    def __init__(
        self,
        in_channels: int,
        patch_size: int | tuple[int, int],
        stride: int | tuple[int, int],
        h1: int,
        h2: int,
        padding: Padding = 0,
        gate_nonlinearity: str = "sigmoid",
        update_nonlinearity: str = "tanh",
        w_rank: int | None = None,
        u_rank: int | None = None,
        zeta_init: float = 100.0,
        nu_init: float = -100.0,
        use_kernel: bool = True,
    ) -> None:
        super().__init__()
        self.patch_size = pair(patch_size, "patch_size")
        self.stride = pair(stride, "stride")
        for name, value in (("patch_size", self.patch_size), ("stride", self.stride)):
            if min(value) <= 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        rnn = dict(
            gate_nonlinearity=gate_nonlinearity,
            update_nonlinearity=update_nonlinearity,
            w_rank=w_rank,
            u_rank=u_rank,
            zeta_init=zeta_init,
            nu_init=nu_init,
        )
        for name, value in (("in_channels", in_channels), ("h1", h1), ("h2", h2)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.rnn1 = FastGRNNCell(in_channels, h1, **rnn)
        self.rnn2 = FastGRNNCell(h1, h2, **rnn)
        self.in_channels = in_channels
        self.h1, self.h2 = h1, h2
        self.padding = padding
        self.use_kernel = use_kernel
        rnnpool_output_hw(max(self.patch_size), max(self.patch_size), self.patch_size, self.stride, padding)

    @property
    def out_channels(self) -> int:
        return 4 * self.h2

    def output_hw(self, height: int, width: int) -> tuple[int, int]:
        rows, cols = rnnpool_output_hw(height, width, self.patch_size, self.stride, self.padding)
        return rows.out, cols.out

    def _check_input(self, x: torch.Tensor):
        if x.dim() != 4:
            raise ValueError(f"input must be (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"in_channels: the layer expects {self.in_channels} channels, got {x.shape[1]}")
        return rnnpool_output_hw(int(x.shape[2]), int(x.shape[3]), self.patch_size, self.stride, self.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gy, gx = self._check_input(x)
        (r, c), (sr, sc) = self.patch_size, self.stride
        n, h1, h2 = x.shape[0], self.h1, self.h2
        wx = F.conv2d(x, self.rnn1.input_matrix()[:, :, None, None])  # W1 x, once per pixel
        wx = F.pad(wx, (gx.pad_before, gx.pad_after, gy.pad_before, gy.pad_after))
        wmap = wx.permute(0, 2, 3, 1).contiguous()  # (N, Hp, Wp, h1): sweeps read it in place
        py, px = gy.patches, gx.patches
        rows, cols = _rnn1_sequences(n, wmap.shape[1], wmap.shape[2], py, px, r, c, sr, sc, h1, x.device)
        sweep1 = lambda seq, length: fastgrnn_sweep(self.rnn1, wmap, *seq, length, self.use_kernel)  # noqa: E731
        if r == c:  # rows and columns in one call: (patch, [rows..., cols...]) order
            summaries = sweep1(_interleave(rows, cols, r, c), c)
        else:
            summaries = torch.cat(
                (sweep1(rows, c).view(-1, r, h1), sweep1(cols, r).view(-1, c, h1)), dim=1
            )
        proj = (summaries.view(-1, h1) @ self.rnn2.input_matrix().t()).contiguous()  # W2 p, once each
        fr, br, fc, bc = _rnn2_sequences(n * py * px, r, c, h2, x.device)
        sweep2 = lambda seq, length: fastgrnn_sweep(self.rnn2, proj, *seq, length, self.use_kernel)  # noqa: E731
        if r == c:
            out = sweep2(_cat_per_patch(fr, br, fc, bc), r)
        else:
            out = torch.cat(
                (sweep2(_cat_per_patch(fr, br), r).view(-1, 2, h2), sweep2(_cat_per_patch(fc, bc), c).view(-1, 2, h2)),
                dim=1,
            )
        # (patch, [rows fwd, rows bwd, cols fwd, cols bwd], h2) -> (N, 4*h2, Py, Px)
        out = out.view(n, py, px, 4 * h2).permute(0, 3, 1, 2).contiguous()
        return _replicate(out, gy.replicate, gx.replicate)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, patch_size={self.patch_size}, stride={self.stride}, "
            f"h1={self.h1}, h2={self.h2}, padding={self.padding!r}"
        )


Sequences = tuple[torch.Tensor, torch.Tensor]  # (offsets, steps), see fastgrnn_sweep


@functools.lru_cache(maxsize=64)
def _rnn1_sequences(n, hp, wp, py, px, r, c, sr, sc, h1, device) -> tuple[Sequences, Sequences]:
    """Rows (length c, one pixel apart) and columns (length r, one image row apart) of every
    patch of a channels-last (n, hp, wp, h1) map, ordered (image, patch row, patch col, i)."""
    ar = functools.partial(torch.arange, device=device, dtype=torch.long)
    top = (ar(n)[:, None] * hp + ar(py)[None, :] * sr)[:, :, None]  # (n, py, 1) first row of a patch
    left = (ar(px) * sc)[None, None, :]  # (1, 1, px) first column
    corner = (top * wp + left)[..., None]  # (n, py, px, 1), in pixels
    rows = ((corner + ar(r) * wp) * h1).reshape(-1)
    cols = ((corner + ar(c)) * h1).reshape(-1)
    return (rows, torch.full_like(rows, h1)), (cols, torch.full_like(cols, wp * h1))


@functools.lru_cache(maxsize=64)
def _rnn2_sequences(npatch, r, c, h2, device) -> tuple[Sequences, ...]:
    """RNN2's four sweeps over (npatch, r + c, h2) summaries: rows forward and backward,
    columns forward and backward."""
    base = torch.arange(npatch, device=device, dtype=torch.long) * (r + c) * h2
    step = torch.full_like(base, h2)
    return (
        (base, step),
        (base + (r - 1) * h2, -step),
        (base + r * h2, step),
        (base + (r + c - 1) * h2, -step),
    )


def _cat_per_patch(*seqs: Sequences) -> Sequences:
    """Sweeps of one patch next to each other: (patch, sweep) order."""
    return tuple(torch.stack([s[k] for s in seqs], 1).reshape(-1) for k in (0, 1))  # type: ignore[return-value]


def _interleave(rows: Sequences, cols: Sequences, r: int, c: int) -> Sequences:
    """(patch, [r rows, c columns]) order."""
    return tuple(  # type: ignore[return-value]
        torch.cat((rows[k].view(-1, r), cols[k].view(-1, c)), 1).reshape(-1) for k in (0, 1)
    )


def _replicate(out: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Replicate-pad the last ``rows`` rows and ``cols`` columns (the reference rule)."""
    if rows or cols:
        out = F.pad(out, (0, cols, 0, rows), mode="replicate")
    return out


def _run_plain(cell: FastGRNNCell, seq: torch.Tensor) -> torch.Tensor:
    """Final state of ``cell`` over ``seq`` (batch, time, features), one plain step at a time."""
    h = None
    for t in range(seq.shape[1]):
        h = cell(seq[:, t], h)
    return h


def rnnpool_plain(layer: RNNPoolLayer, x: torch.Tensor) -> torch.Tensor:
    """The same function as ``layer(x)``, computed the obvious way (the baseline).

    Unfold the patches, run RNN1 along every row and every column with a Python time loop
    (``W x`` inside every step), then RNN2 four times, everything batched over patches.
    """
    gy, gx = layer._check_input(x)
    (r, c), (sr, sc) = layer.patch_size, layer.stride
    n, ch = x.shape[:2]
    x = F.pad(x, (gx.pad_before, gx.pad_after, gy.pad_before, gy.pad_after))
    patches = x.unfold(2, r, sr).unfold(3, c, sc)  # (N, C, Py, Px, r, c)
    py, px = patches.shape[2], patches.shape[3]
    patches = patches.permute(0, 2, 3, 4, 5, 1).reshape(n * py * px, r, c, ch)
    p_r = _run_plain(layer.rnn1, patches.reshape(-1, c, ch)).view(-1, r, layer.h1)
    p_c = _run_plain(layer.rnn1, patches.transpose(1, 2).reshape(-1, r, ch)).view(-1, c, layer.h1)
    out = torch.cat(
        [
            _run_plain(layer.rnn2, p_r),
            _run_plain(layer.rnn2, p_r.flip(1)),
            _run_plain(layer.rnn2, p_c),
            _run_plain(layer.rnn2, p_c.flip(1)),
        ],
        dim=1,
    )
    out = out.view(n, py, px, 4 * layer.h2).permute(0, 3, 1, 2)
    return _replicate(out, gy.replicate, gx.replicate)
