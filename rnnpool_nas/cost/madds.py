"""Multiply-adds, parameters and deployed weight bytes of each layer (pure arithmetic).

MAdds are counted as in the MobileNetV2 paper: the multiply-adds of convolutions, depthwise
convolutions and fully connected layers; batch norm, activations, residual adds and pooling are
free. RNNPool is counted from its matrix-vector products as the C reference computes a patch:
RNN1 steps along every row and every column of every computed patch, each ``W x`` (``k * h1``)
plus ``U h`` (``h1 * h1``, the first step included), and RNN2's four sweeps, each step
``h1 * h2 + h2 * h2``; the elementwise gate math is not counted (consistently, as for other
nonlinearities). Low-rank ``W = W2 W1`` is counted as applied factor by factor.

Parameters are those of the built PyTorch module (batch norm's weight and bias included).
``weight_bytes`` is the deployed size: batch norm folded into the convolutions, weights at the
element size, plus per-output-channel biases (int32 or float32: 4 bytes) and, for int8,
per-output-channel float32 scales.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..arch.spec import ArchSpec, Layer, Source


@dataclass
class Count:
    madds: int = 0
    params: int = 0
    weights: int = 0  # deployed weight elements (BN folded)
    channels: int = 0  # deployed output channels (one bias and, for int8, one scale each)

    def add(self, other: "Count") -> "Count":
        return Count(self.madds + other.madds, self.params + other.params, self.weights + other.weights,
                     self.channels + other.channels)


def _conv(k: int, cin: int, cout: int, groups: int, h_out: int, w_out: int, bn: bool = True) -> Count:
    w = k * k * (cin // groups) * cout
    return Count(w * h_out * w_out, w + (2 * cout if bn else cout), w, cout)


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
    return Count(per_patch * patches[0] * patches[1], p1 + p2, weights, 2 * (h1 + h2))


def layer_count(layer: Layer) -> Count:
    a = layer.args
    (hi, wi, ci), (ho, wo, co) = layer.in_shape, layer.out_shape
    if layer.kind == "conv":
        return _conv(a["kernel"], ci, co, a["groups"], ho, wo, a["batch_norm"])
    if layer.kind == "bottleneck":
        hidden = a["t"] * ci
        total = Count()
        if a["t"] != 1:
            total = total.add(_conv(1, ci, hidden, 1, hi, wi))
        total = total.add(_conv(a["kernel"], hidden, hidden, hidden, ho, wo))
        return total.add(_conv(1, hidden, co, 1, ho, wo))
    if layer.kind == "dwsep":
        return _conv(a["kernel"], ci, ci, ci, ho, wo).add(_conv(1, ci, co, 1, ho, wo))
    if layer.kind == "rnnpool":
        return rnnpool_count(ci, a["patch"], a["patches"], a["h1"], a["h2"], a["w_rank"], a["u_rank"])
    if layer.kind == "pool":
        if a["kind"] == "rnnpool":
            return rnnpool_count(ci, a["kernel"], (ho, wo), a["h1"], a["h2"])
        return Count()
    if layer.kind == "linear":
        fan_in = hi * wi * ci
        return Count(fan_in * co, fan_in * co + co, fan_in * co, co)
    raise ValueError(f"unknown layer kind {layer.kind!r}")


def head_count(source: Source, src_shape: tuple[int, int, int], pred_shape: tuple[int, int, int]) -> Count:
    """An S3FD head: optional L2Norm (a scale per channel), optional extra conv + ReLU (with
    bias), then 3x3 convs (with bias) to 4 box offsets and to 2 scores (4 with max-out)."""
    total = Count()
    c = src_shape[2]
    if source.l2norm:
        total = total.add(Count(0, c, c, 0))
    if source.extra_conv is not None:
        ec = source.extra_conv
        total = total.add(_conv(ec.get("kernel", 3), c, ec["c"], 1, pred_shape[0], pred_shape[1], bn=False))
        c = ec["c"]
    scores = 4 if source.max_out else 2
    for out in (4, scores):
        total = total.add(_conv(3, c, out, 1, pred_shape[0], pred_shape[1], bn=False))
    return total


def spec_count(spec: ArchSpec, layers: list[Layer]) -> Count:
    total = Count()
    for layer in layers:
        total = total.add(layer_count(layer))
    return total
