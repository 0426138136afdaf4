"""Multiply-adds, parameters and deployed weight bytes of each layer (pure arithmetic).

MAdds are counted as in the MobileNetV2 paper: the multiply-adds of convolutions, depthwise
convolutions and fully connected layers; batch norm, activations, residual adds and pooling are
free. RNNPool is counted from its matrix-vector products as the C reference computes a patch:
RNN1 steps along every row and every column of every computed patch, each ``W x`` (``k * h1``)
plus ``U h`` (``h1 * h1``, the first step included), and RNN2's four sweeps, each step
``h1 * h2 + h2 * h2``; the elementwise gate math is not counted (consistently, as for other
nonlinearities). Low-rank ``W = W2 W1`` is counted as applied factor by factor.

Parameters are those of the built PyTorch module (batch norm's weight and bias included, also
the batch norm an RNNPool stage carries by default).
``weight_bytes`` is the deployed size: batch norm folded into the convolutions, weights at the
element size, plus per-output-channel biases (int32 or float32: 4 bytes) and, for int8,
per-output-channel float32 scales.
"""

from __future__ import annotations

from ..arch.spec import Layer, Source


#: (MAdds, parameters, deployed weight elements, deployed output channels), summed elementwise.
Count = tuple[int, int, int, int]
ZERO: Count = (0, 0, 0, 0)


def add(a: Count, b: Count) -> Count:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3])


def _conv(k: int, cin: int, cout: int, groups: int, h_out: int, w_out: int, bn: bool = True) -> Count:
    w = k * k * (cin // groups) * cout
    return (w * h_out * w_out, w + (2 * cout if bn else cout), w, cout)


def _rnn_cell(k: int, h: int, w_rank: int | None, u_rank: int | None) -> tuple[int, int]:
    """(MAdds of one step, parameters) of a FastGRNN cell."""
    w = k * h if w_rank is None else w_rank * (k + h)
    u = h * h if u_rank is None else u_rank * 2 * h
    return w + u, w + u + 2 * h + 2


def rnnpool_count(cin: int, patch: tuple[int, int], patches: tuple[int, int], h1: int, h2: int,
                  w_rank: int | None = None, u_rank: int | None = None) -> Count:
    r, c = patch
    step1, p1 = _rnn_cell(cin, h1, w_rank, u_rank)
    step2, p2 = _rnn_cell(h1, h2, w_rank, u_rank)
    per_patch = 2 * r * c * step1 + 2 * (r + c) * step2
    weights = p1 + p2 - 2 * (h1 + h2) - 4
    # deployed per-channel values: both biases of both cells and the 4*h2 output requantizations
    return (per_patch * patches[0] * patches[1], p1 + p2, weights, 2 * (h1 + h2) + 4 * h2)


def layer_count(layer: Layer) -> Count:
    """The layer's count, computed once per (immutable, cached) layer."""
    count = layer.count
    if count is None:
        count = layer.count = _layer_count(layer)
    return count


def _layer_count(layer: Layer) -> Count:
    a = layer.args
    (hi, wi, ci), (ho, wo, co) = layer.in_shape, layer.out_shape
    kind = layer.kind
    if kind == "conv":
        return _conv(a["kernel"], ci, co, a["groups"], ho, wo, a["batch_norm"])
    if kind == "bottleneck":
        hidden = a["t"] * ci
        k = a["kernel"]
        dw = k * k * hidden
        pw = hidden * co
        madds = (dw + pw) * ho * wo
        params = dw + pw + 2 * (hidden + co)
        weights, channels = dw + pw, hidden + co
        if a["t"] != 1:
            madds += ci * hidden * hi * wi
            params += ci * hidden + 2 * hidden
            weights += ci * hidden
            channels += hidden
        return (madds, params, weights, channels)
    if kind == "dwsep":
        return add(_conv(a["kernel"], ci, ci, ci, ho, wo), _conv(1, ci, co, 1, ho, wo))
    if kind == "rnnpool":
        count = rnnpool_count(ci, a["patch"], a["patches"], a["h1"], a["h2"], a["w_rank"], a["u_rank"])
        return add(count, (0, 2 * co, 0, 0)) if a["batch_norm"] else count
    if kind == "pool":
        if layer.is_rnnpool:
            return add(rnnpool_count(ci, a["kernel"], (ho, wo), a["h1"], a["h2"]), (0, 2 * co, 0, 0))
        return ZERO
    if kind == "linear":
        fan_in = hi * wi * ci
        return (fan_in * co, fan_in * co + co, fan_in * co, co)
    raise ValueError(f"unknown layer kind {kind!r}")


def head_count(source: Source, src_shape: tuple[int, int, int], pred_shape: tuple[int, int, int]) -> Count:
    """An S3FD head: optional L2Norm (a scale per channel), optional extra conv + ReLU (with
    bias), then 3x3 convs (with bias) to 4 box offsets and to 2 scores (4 with max-out)."""
    total = ZERO
    c = src_shape[2]
    if source.l2norm:
        total = add(total, (0, c, c, 0))
    if source.extra_conv is not None:
        ec = source.extra_conv
        total = add(total, _conv(ec.get("kernel", 3), c, ec["c"], 1, pred_shape[0], pred_shape[1], bn=False))
        c = ec["c"]
    scores = 4 if source.max_out else 2
    for out in (4, scores):
        total = add(total, _conv(3, c, out, 1, pred_shape[0], pred_shape[1], bn=False))
    return total
