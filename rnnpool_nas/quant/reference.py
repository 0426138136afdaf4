"""The exact int8 integer reference the C runtime must match: numpy only, no torch.

Used by the trainer's int8 scores, by the exporter (weights, multipliers and the expected outputs
of the generated C), by the host library and the LUT generator. A float model becomes one of these
networks in :mod:`rnnpool_nas.quant.convert` (torch). Every operation below is integer arithmetic
with a stated rounding, so the numpy reference here and the C kernels compute identical bytes.

Fixed-point rules
-----------------
- Activations: int8, per-tensor asymmetric: ``real = scale * (q - zero_point)``, q in [-128, 127].
  Ranges come from calibration (min/max of the float model's activations over training images,
  widened to include 0).
- Network input: the raw pixel shifted, ``q = pixel - 128`` (scale 1/255, zero point -128); the
  float model is trained on ``pixel / 255``, so no normalisation step is needed on the device.
- Weights: int8, per output channel symmetric, ``real = w_scale[c] * q``, q in [-127, 127].
  Batch norm is folded into the preceding convolution first.
- Biases: int32 at scale ``in_scale * w_scale[c]``.
- Requantization by a real multiplier M is ``requant(acc, m, s) = (acc * m + 2^(s-1)) >> s``
  in 64-bit arithmetic (``>>`` arithmetic, so halves round toward +inf), with ``m`` in
  [2^30, 2^31) and ``M = m * 2^-s``. Results are clamped to the activation's range; a fused
  ReLU6 clamps to the quantized [0, 6].
- Residual add: ``zp_out + requant(a - zp_a, m_a, s_a) + requant(b - zp_b, m_b, s_b)``, clamped.
- Global average pool: ``zp_out + requant(sum(q - zp_in), M = in_scale / (out_scale * count))``.
- RNNPool (FastGRNN) keeps its states, gates and pre-activations in int32 Q24 (real = q / 2^24,
  ONE = 2^24): RNNPool's information often lives in deviations of 1e-3 around a constant, which
  int16 states (Q14) measurably lose; the Cortex-M4's 32x32+64 multiply-accumulate makes the
  64-bit products cheap. Weights stay int8 per row. With ``requant15`` a requantization whose
  multiplier has 15 bits (|m| in [2^14, 2^15), so a 2^38 accumulator times it fits int64):
  ``pre = requant(W (x - zp_x), mW, sW) + requant15(U h, mU, sU)`` (RNN2: ``requant15(W2 h1)``),
  ``v = pre + bias``; quantSigmoid ``clamp((v + ONE + 1) >> 1, 0, ONE)``, quantTanh
  ``clamp(v, -ONE, ONE)``; sigmoid and tanh interpolate a 1025-entry Q24 table over [-8, 8]:
  ``u = clamp(v, -8 ONE, 8 ONE - 1) + 8 ONE``, ``i = u >> 18``, ``f = u & (2^18 - 1)``,
  ``y = T[i] + (((T[i+1] - T[i]) * f + 2^17) >> 18)``;
  ``g = ((sz (ONE - z) + ONE/2) >> 24) + sn``, ``h = (g c + z h_prev + ONE/2) >> 24`` (64-bit
  products), ``sz, sn`` the Q24 sigmoid(zeta), sigmoid(nu). The 4*h2 outputs, with the stage's
  batch norm folded in (``y = a[c] h + b[c]``), become int8 as
  ``clamp(zp + B[c] + requant(h, m[c], s[c]), -128, 127)``, ``m[c] / 2^s[c] = a[c] / (ONE out_scale)``
  (signed), ``B[c] = round(b[c] / out_scale)``.
- S3FD's L2Norm (detection heads): per pixel, ``d = x - zp_in`` (int32), ``ss = sum d^2``,
  ``r = isqrt(ss << 32)`` (floor; ``sqrt(ss) * 2^16``), then per channel
  ``q = clamp(zp_out + div_round(d * m[c], r))`` with ``m[c] = round(w[c] * 2^16 / out_scale)``
  (64-bit) and ``div_round`` rounding half away from zero; ``ss == 0`` gives ``zp_out``.
- Detection heads: box offsets and class scores are int8 maps of their own scales; a max-out
  head takes the int8 max of its three background scores (max commutes with quantization).
All accumulators are checked to fit int32 (as the C code's are).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ops.geometry import axis_geometry

Q = 24
ONE = 1 << Q  # 1.0 in Q24
LUT_BINS, LUT_SHIFT = 1024, Q - 6  # 1024 bins of 1/64 over [-8, 8]
INT32_MAX = 2**31 - 1


# ------------------------------------------------------------------------ fixed-point basics


def quantize_multiplier(real: float, bits: int = 31) -> tuple[int, int]:
    """``(m, s)`` with ``real ~= m * 2^-s`` and |m| in [2^(bits-1), 2^bits) (smaller only when s
    hits 62); a negative ``real`` gives a negative ``m``, zero gives ``(0, bits)``."""
    if not math.isfinite(real):
        raise ValueError(f"multiplier must be finite, got {real}")
    if real == 0:
        return 0, bits
    if real < 0:
        m, s = quantize_multiplier(-real, bits)
        return -m, s
    mant, exp = math.frexp(real)  # real = mant * 2^exp, mant in [0.5, 1)
    m = round(mant * (1 << bits))
    s = bits - exp
    if m == 1 << bits:
        m //= 2
        s -= 1
    if s > 62:
        m = round(real * 2.0**62)
        s = 62
    if s < 1:
        raise ValueError(f"multiplier {real} too large")
    return int(m), int(s)


def requant15(acc: np.ndarray, m: np.ndarray | int, s: np.ndarray | int) -> np.ndarray:
    """``(acc * m + 2^(s-1)) >> s`` for 64-bit ``acc`` (|acc| < 2^47) and 15-bit ``m``."""
    acc = np.asarray(acc, dtype=np.int64)
    if acc.size and np.abs(acc).max() >= 2**47:
        raise OverflowError("64-bit accumulator beyond 2^47 in the int8 reference")
    m = np.asarray(m, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    return (acc * m + (np.int64(1) << (s - 1))) >> s


def requant(acc: np.ndarray, m: np.ndarray | int, s: np.ndarray | int) -> np.ndarray:
    """``(acc * m + 2^(s-1)) >> s`` in int64 (acc must fit int32)."""
    acc = np.asarray(acc, dtype=np.int64)
    _check_int32(acc)
    m = np.asarray(m, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    return (acc * m + (np.int64(1) << (s - 1))) >> s


def _imatmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact integer ``a @ b`` through float64 BLAS: every product and partial sum here is an
    integer below 2^53 (int8 x int8/int16 terms, at most ~2^20 of them), so the result is exact."""
    out = a.astype(np.float64) @ b.astype(np.float64)
    if out.size and np.abs(out).max() >= 2.0**52:
        raise OverflowError("integer matmul beyond float64's exact range")
    return out.astype(np.int64)


def _check_int32(acc: np.ndarray) -> None:
    if acc.size and (acc.max() > INT32_MAX or acc.min() < -INT32_MAX - 1):
        raise OverflowError("int32 accumulator overflow in the int8 reference")


@dataclass(frozen=True)
class QParams:
    """An int8 activation's ``scale`` and ``zero_point``."""

    scale: float
    zero_point: int

    def quantize(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.round(x / self.scale) + self.zero_point, -128, 127).astype(np.int8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) - self.zero_point) * self.scale


INPUT_QPARAMS = QParams(1 / 255, -128)


def choose_qparams(lo: float, hi: float) -> QParams:
    """Asymmetric int8 parameters covering [lo, hi] (widened to include 0)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo < 1e-8:
        hi = lo + 1e-8
    scale = (hi - lo) / 255
    zero_point = int(np.clip(round(-128 - lo / scale), -128, 127))
    return QParams(scale, zero_point)


def quantize_per_channel(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 weights (symmetric, per output channel = axis 0) and their float scales."""
    flat = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    scales = np.where(flat > 0, flat / 127, 1.0).astype(np.float64)
    q = np.clip(np.round(w / scales.reshape(-1, *[1] * (w.ndim - 1))), -127, 127).astype(np.int8)
    return q, scales


def _multipliers(reals: np.ndarray, bits: int = 31) -> tuple[np.ndarray, np.ndarray]:
    pairs = [quantize_multiplier(float(r), bits) for r in np.asarray(reals).reshape(-1)]
    return np.array([p[0] for p in pairs], dtype=np.int64), np.array([p[1] for p in pairs], dtype=np.int64)


def _act_range(act: str, out: QParams) -> tuple[int, int]:
    if act == "relu6":
        return max(-128, out.zero_point), min(127, out.zero_point + round(6 / out.scale))
    if act == "relu":
        return max(-128, out.zero_point), 127
    return -128, 127


# --------------------------------------------------------------------------------- ops


def _windows(x: np.ndarray, k: int, stride: int, pad: int, pad_value: int) -> np.ndarray:
    """(N, Ho, Wo, k, k, C) windows of an NHWC map padded with ``pad_value``."""
    if pad:
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=pad_value)
    win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))  # (N, Ho', Wo', C, k, k)
    return win[:, ::stride, ::stride].transpose(0, 1, 2, 4, 5, 3)


@dataclass
class QConv:
    """Convolution (grouped, depthwise or dense) + folded batch norm + activation."""

    weight: np.ndarray  # int8 (Cout, k, k, Cin / groups)
    bias: np.ndarray  # int32 (Cout,)
    multiplier: np.ndarray  # int64 (Cout,)
    shift: np.ndarray  # int64 (Cout,)
    kernel: int
    stride: int
    groups: int
    input: QParams
    output: QParams
    act_min: int
    act_max: int
    kind: str = "conv"

    def run(self, x: np.ndarray) -> np.ndarray:
        k, g = self.kernel, self.groups
        if k == 1 and g == 1:  # pointwise: a plain matrix product over pixels
            xs = x[:, :: self.stride, :: self.stride].astype(np.int16) - self.input.zero_point
            acc = _imatmul(xs, self.weight.reshape(self.weight.shape[0], -1).T) + self.bias.astype(np.int64)
            out = requant(acc, self.multiplier, self.shift) + self.output.zero_point
            return np.clip(out, self.act_min, self.act_max).astype(np.int8)
        win = _windows(x.astype(np.int16) - self.input.zero_point, k, self.stride, k // 2, 0)
        n, ho, wo = win.shape[:3]
        cout = self.weight.shape[0]
        w = self.weight
        if g == 1:
            acc = _imatmul(win.reshape(n, ho, wo, -1), w.reshape(cout, -1).T)
        elif g == win.shape[-1] and g == cout:  # depthwise: exact in float64 as well
            prod = win.astype(np.float64) * w[..., 0].transpose(1, 2, 0).astype(np.float64)
            acc = prod.sum(axis=(3, 4)).astype(np.int64)
        else:
            cin_g, cout_g = win.shape[-1] // g, cout // g
            parts = [
                _imatmul(win[..., i * cin_g:(i + 1) * cin_g].reshape(n, ho, wo, -1),
                         w[i * cout_g:(i + 1) * cout_g].reshape(cout_g, -1).T)
                for i in range(g)
            ]
            acc = np.concatenate(parts, axis=-1)
        acc = acc + self.bias.astype(np.int64)
        out = requant(acc, self.multiplier, self.shift) + self.output.zero_point
        return np.clip(out, self.act_min, self.act_max).astype(np.int8)


@dataclass
class QAdd:
    """Residual add of two int8 maps into a third scale."""

    a: QParams
    b: QParams
    output: QParams
    m_a: int
    s_a: int
    m_b: int
    s_b: int
    kind: str = "add"

    def run2(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = (requant(x.astype(np.int64) - self.a.zero_point, self.m_a, self.s_a)
               + requant(y.astype(np.int64) - self.b.zero_point, self.m_b, self.s_b) + self.output.zero_point)
        return np.clip(out, -128, 127).astype(np.int8)


@dataclass
class QPool:
    """Average (sum, then one requantization) or max pooling over k x k windows, stride s."""

    pool: str  # "avg" | "max"
    kernel: tuple[int, int]
    stride: tuple[int, int]
    input: QParams
    output: QParams
    multiplier: int = 0
    shift: int = 0
    kind: str = "pool"

    def run(self, x: np.ndarray) -> np.ndarray:
        (kh, kw), (sh, sw) = self.kernel, self.stride
        win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
        if self.pool == "max":
            return win.max(axis=(-2, -1)).astype(np.int8)
        total = (win.astype(np.int64) - self.input.zero_point).sum(axis=(-2, -1))
        out = requant(total, self.multiplier, self.shift) + self.output.zero_point
        return np.clip(out, -128, 127).astype(np.int8)


@dataclass
class QRNN:
    """One FastGRNN cell in Q24 (see the module docstring)."""

    w: np.ndarray  # int8 (hidden, input)
    u: np.ndarray  # int8 (hidden, hidden)
    w_mult: np.ndarray  # 31-bit when the input is int8, 15-bit when it is a Q24 state
    w_shift: np.ndarray
    u_mult: np.ndarray  # 15-bit
    u_shift: np.ndarray
    bias_gate: np.ndarray  # Q24
    bias_update: np.ndarray
    sz: int  # Q24 sigmoid(zeta)
    sn: int
    gate: str
    update: str
    state_input: bool  # True for RNN2: its input is RNN1's Q24 states

    def step(self, wx: np.ndarray, h: np.ndarray) -> np.ndarray:
        """``wx``: requantized W x in Q24 (int64, (..., hidden)); ``h``: Q24 state."""
        pre = wx + requant15(_imatmul(h, self.u.T), self.u_mult, self.u_shift)
        _check_int32(pre)
        z = _nonlinearity(self.gate, pre + self.bias_gate)
        c = _nonlinearity(self.update, pre + self.bias_update)
        g = ((self.sz * (ONE - z) + ONE // 2) >> Q) + self.sn
        h_new = (g * c + z * h + ONE // 2) >> Q
        _check_int32(h_new)
        return h_new

    def project(self, x: np.ndarray, zero_point: int = 0) -> np.ndarray:
        """W (x - zero_point), requantized to Q24: (..., input) -> (..., hidden)."""
        acc = _imatmul(x.astype(np.int64) - zero_point, self.w.T)
        if self.state_input:
            return requant15(acc, self.w_mult, self.w_shift)
        return requant(acc, self.w_mult, self.w_shift)


def lut(name: str) -> np.ndarray:
    """The Q24 table of sigmoid or tanh at the 1025 edges of 1024 bins over [-8, 8]."""
    edges = np.arange(LUT_BINS + 1) / 64.0 - 8.0
    values = 1 / (1 + np.exp(-edges)) if name == "sigmoid" else np.tanh(edges)
    return np.round(values * ONE).astype(np.int64)


_LUTS = {name: (lut(name), np.diff(lut(name))) for name in ("sigmoid", "tanh")}  # values, slopes


def _nonlinearity(name: str, v: np.ndarray) -> np.ndarray:
    if name == "quantSigmoid":
        return np.clip((v + ONE + 1) >> 1, 0, ONE)
    if name == "quantTanh":
        return np.clip(v, -ONE, ONE)
    table, slope = _LUTS[name]
    u = np.clip(v, -8 * ONE, 8 * ONE - 1) + 8 * ONE
    i = u >> LUT_SHIFT
    u &= (1 << LUT_SHIFT) - 1  # the fraction within the bin
    u *= np.take(slope, i)
    u += 1 << (LUT_SHIFT - 1)
    u >>= LUT_SHIFT
    return u + np.take(table, i)


@dataclass
class QRNNPool:
    """RNNPoolLayer in integers: patch by patch, same geometry as the float layer."""

    rnn1: QRNN
    rnn2: QRNN
    patch: tuple[int, int]
    stride: tuple[int, int]
    padding: Any
    input: QParams
    output: QParams
    out_mult: np.ndarray  # int64 (4*h2,), signed
    out_shift: np.ndarray
    out_bias: np.ndarray  # int64 (4*h2,), in output steps
    kind: str = "rnnpool"

    def run(self, x: np.ndarray) -> np.ndarray:
        n, h, w, _ = x.shape
        (r, c), (sr, sc) = self.patch, self.stride
        gy = axis_geometry(h, r, sr, self.padding)
        gx = axis_geometry(w, c, sc, self.padding)
        x = np.pad(x, ((0, 0), (gy.pad_before, gy.pad_after), (gx.pad_before, gx.pad_after), (0, 0)),
                   constant_values=self.input.zero_point)
        wx_map = self.rnn1.project(x, self.input.zero_point)  # W x once per pixel, Q24 (padding: 0)
        win = np.lib.stride_tricks.sliding_window_view(wx_map, (r, c), axis=(1, 2))[:, ::sr, ::sc]
        wx = win[:, : gy.patches, : gx.patches].transpose(0, 1, 2, 4, 5, 3)  # (N, Py, Px, r, c, h1)
        rows = self._sweep(self.rnn1, wx)  # along each row: (N, Py, Px, r, h1)
        cols = self._sweep(self.rnn1, np.swapaxes(wx, 3, 4))  # (N, Py, Px, c, h1)
        out = []
        for summaries in (rows, cols):
            p = self.rnn2.project(summaries)
            out.append(self._sweep(self.rnn2, p))
            out.append(self._sweep(self.rnn2, p[..., ::-1, :]))
        q = np.concatenate(out, axis=-1)  # (N, Py, Px, 4*h2): rows fwd, rows bwd, cols fwd, cols bwd
        q = requant(q, self.out_mult, self.out_shift) + self.out_bias + self.output.zero_point
        q = np.clip(q, -128, 127).astype(np.int8)
        if gy.replicate or gx.replicate:
            q = np.pad(q, ((0, 0), (0, gy.replicate), (0, gx.replicate), (0, 0)), mode="edge")
        return q

    @staticmethod
    def _sweep(cell: QRNN, seq: np.ndarray) -> np.ndarray:
        """Final Q24 state of ``cell`` over axis -2 of ``seq`` (time), from h = 0."""
        h = np.zeros(seq.shape[:-2] + (cell.u.shape[0],), dtype=np.int64)
        for t in range(seq.shape[-2]):
            h = cell.step(seq[..., t, :], h)
        return h


@dataclass
class QLinear:
    """Fully connected layer on the NHWC-flattened input (weights reordered from NCHW)."""

    conv: QConv
    kind: str = "linear"

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.conv.run(x.reshape(x.shape[0], 1, 1, -1))[:, 0, 0, :]


def div_round(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` rounded half away from zero, for ``den > 0`` (C: integer division of the
    magnitudes, then the sign)."""
    num = np.asarray(num, dtype=np.int64)
    den = np.asarray(den, dtype=np.int64)
    mag = (np.abs(num) + den // 2) // den
    return np.where(num < 0, -mag, mag)


def isqrt64(v: np.ndarray) -> np.ndarray:
    """Floor square root of non-negative int64 values below 2^62 (exact)."""
    v = np.asarray(v, dtype=np.int64)
    r = np.sqrt(v.astype(np.float64)).astype(np.int64)
    r = np.where(r * r > v, r - 1, r)  # float sqrt is within one of the answer here
    r = np.where((r + 1) * (r + 1) <= v, r + 1, r)
    return r


@dataclass
class QL2Norm:
    """S3FD's L2Norm in integers (see the module docstring)."""

    mult: np.ndarray  # int64 (C,)
    input: QParams
    output: QParams
    kind: str = "l2norm"

    def run(self, x: np.ndarray) -> np.ndarray:
        d = x.astype(np.int64) - self.input.zero_point
        ss = (d * d).sum(axis=-1, keepdims=True)
        _check_int32(ss)
        r = isqrt64(ss << 32)
        safe = np.maximum(r, 1)
        q = div_round(d * self.mult, safe)
        q = np.where(r > 0, q, 0) + self.output.zero_point
        return np.clip(q, -128, 127).astype(np.int8)


@dataclass
class QHead:
    """One detection head: [L2Norm], [extra conv + ReLU], then the box and score convs."""

    norm: QL2Norm | None
    extra: QConv | None
    loc: QConv
    conf: QConv
    max_out: bool

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """int8 ``(N, P, 4)`` offsets and ``(N, P, 2)`` scores (background, face)."""
        if self.norm is not None:
            x = self.norm.run(x)
        if self.extra is not None:
            x = self.extra.run(x)
        loc, conf = self.loc.run(x), self.conf.run(x)
        if self.max_out:
            conf = np.concatenate([conf[..., :3].max(axis=-1, keepdims=True), conf[..., 3:]], axis=-1)
        n = x.shape[0]
        return loc.reshape(n, -1, 4), conf.reshape(n, -1, 2)


@dataclass
class QBlock:
    """A layer's ops in order, with a residual add over the whole block when present."""

    layer: str
    ops: list[Any]
    add: QAdd | None = None

    def run(self, x: np.ndarray) -> np.ndarray:
        y = x
        for op in self.ops:
            y = op.run(y)
        return self.add.run2(x, y) if self.add is not None else y


@dataclass
class QuantizedNet:
    """The integer network: ``run`` maps uint8 NHWC images to int8 logits."""

    blocks: list[QBlock]
    input: QParams
    output: QParams
    heads: list[QHead] = field(default_factory=list)
    taps: dict[int, list[int]] = field(default_factory=dict)  # block index -> heads reading its output

    def run(self, images: np.ndarray) -> np.ndarray:
        """A classifier's int8 logits ``(N, classes)``; for a detector, every head's raw int8
        outputs flattened in head order, ``[loc_0, conf_0, loc_1, conf_1, ...]`` per image (the
        C runtime's output buffer)."""
        if self.heads:
            outs = self.run_heads(images)
            n = len(images)
            return np.concatenate([a.reshape(n, -1) for pair in outs for a in pair], axis=1)
        x = (images.astype(np.int16) - 128).astype(np.int8)
        for block in self.blocks:
            x = block.run(x)
        return x.reshape(x.shape[0], -1)

    def run_heads(self, images: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each head's int8 ``(loc, conf)`` for a detector."""
        x = (images.astype(np.int16) - 128).astype(np.int8)
        outs: list = [None] * len(self.heads)
        for i, block in enumerate(self.blocks):
            x = block.run(x)
            for j in self.taps.get(i, ()):
                outs[j] = self.heads[j].run(x)
        return outs

    def detections(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A detector's dequantized ``(loc (N, A, 4), conf (N, A, 2))``, as the float model's."""
        outs = self.run_heads(images)
        loc = np.concatenate([h.loc.output.dequantize(o[0]) for h, o in zip(self.heads, outs)], axis=1)
        conf = np.concatenate([h.conf.output.dequantize(o[1]) for h, o in zip(self.heads, outs)], axis=1)
        return loc, conf

    def logits(self, images: np.ndarray) -> np.ndarray:
        return self.output.dequantize(self.run(images))


__all__ = ["INPUT_QPARAMS", "INT32_MAX", "LUT_BINS", "LUT_SHIFT", "ONE", "Q", "QAdd", "QBlock", "QConv", "QHead",
           "QL2Norm", "QLinear", "QParams", "QPool", "QRNN", "QRNNPool", "QuantizedNet", "choose_qparams", "div_round",
           "isqrt64", "lut", "quantize_multiplier", "quantize_per_channel", "requant", "requant15"]
