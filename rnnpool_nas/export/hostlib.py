"""Build the C runtime as a host shared library and run its kernels on numpy arrays (ctypes).

The kernel tests use it to check every C kernel byte for byte against the int8 reference of
:mod:`rnnpool_nas.quant.reference`; the exporter can use it to run a quantized network through the same
C code it ships. :meth:`HostRuntime.run` maps a reference op to its kernel the way the generated
code does: 1x1 dense convolutions to ``rn_pointwise_conv2d``, depthwise ones to
``rn_depthwise_conv2d``, the rest to ``rn_conv2d`` with ``pad = kernel // 2``. :meth:`HostRuntime.mbconv`
runs a whole bottleneck block (:class:`QBlock`) through the fused, row-streamed ``rn_mbconv``.
"""

from __future__ import annotations

import ctypes
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..lower.plan import mbconv_scratch_bytes, rnnpool_scratch_words
from ..ops.geometry import axis_geometry
from ..quant.reference import QAdd, QBlock, QConv, QLinear, QPool, QRNN, QRNNPool
from . import RUNTIME_DIR, runtime_files

#: How the tests build the host library: the runtime must stay warning-free in strict C99.
HOST_CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", "-shared", "-fPIC")
LIBRARY_NAME = "librn_runtime.so"
NONLINEARITY_CODES = {"sigmoid": 0, "tanh": 1, "quantSigmoid": 2, "quantTanh": 3}  # RN_* in rn_runtime.h

_P = ctypes.c_void_p
_I = ctypes.c_int
_I32 = ctypes.c_int32


def build(out_dir: str | Path, cc: str = "gcc", cflags: Sequence[str] = HOST_CFLAGS) -> Path:
    """Compile every runtime source into ``out_dir/librn_runtime.so``; ``RuntimeError`` with the
    compiler's output when it fails."""
    out = Path(out_dir) / LIBRARY_NAME
    sources = [str(p) for p in runtime_files() if p.suffix == ".c"]
    cmd = [cc, *cflags, f"-I{RUNTIME_DIR}", "-o", str(out), *sources]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building the C runtime failed: {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return out


class RnFastGRNN(ctypes.Structure):
    """``rn_fastgrnn_t``."""

    _fields_ = [
        ("w", _P), ("u", _P), ("w_mult", _P), ("w_shift", _P), ("u_mult", _P), ("u_shift", _P),
        ("bias_gate", _P), ("bias_update", _P), ("sz", _I32), ("sn", _I32),
        ("input", ctypes.c_int16), ("hidden", ctypes.c_int16),
        ("gate", ctypes.c_uint8), ("update", ctypes.c_uint8), ("state_input", ctypes.c_uint8),
    ]


class RnRNNPool(ctypes.Structure):
    """``rn_rnnpool_t``."""

    _fields_ = [
        ("rnn1", RnFastGRNN), ("rnn2", RnFastGRNN),
        *[(name, ctypes.c_int16) for name in ("patch_h", "patch_w", "stride_h", "stride_w", "pad_top", "pad_left",
                                              "patches_h", "patches_w", "replicate_h", "replicate_w")],
        ("in_zp", _I32), ("out_zp", _I32), ("out_mult", _P), ("out_shift", _P), ("out_bias", _P),
    ]


class RnMBConv(ctypes.Structure):
    """``rn_mbconv_t``."""

    _fields_ = [
        ("exp_w", _P), ("exp_bias", _P), ("exp_mult", _P), ("exp_shift", _P),
        ("exp_out_zp", _I32), ("exp_act_min", _I32), ("exp_act_max", _I32),
        ("dw_w", _P), ("dw_bias", _P), ("dw_mult", _P), ("dw_shift", _P),
        ("dw_in_zp", _I32), ("dw_out_zp", _I32), ("dw_act_min", _I32), ("dw_act_max", _I32),
        ("proj_w", _P), ("proj_bias", _P), ("proj_mult", _P), ("proj_shift", _P),
        ("proj_out_zp", _I32), ("proj_act_min", _I32), ("proj_act_max", _I32),
        *[(name, _I32) for name in ("add_a_zp", "add_a_mult", "add_a_shift", "add_b_zp", "add_b_mult", "add_b_shift",
                                    "add_out_zp", "in_zp")],
        *[(name, ctypes.c_int16) for name in ("in_c", "hidden", "out_c", "kernel", "stride")],
        ("has_residual", ctypes.c_uint8),
    ]


def _arr(a: Any, dtype: type) -> np.ndarray:
    """A C-contiguous copy of ``a`` as ``dtype``; ``OverflowError`` if a value does not fit."""
    a = np.asarray(a)
    out = np.ascontiguousarray(a, dtype=dtype)
    if not np.array_equal(out.astype(np.int64), a.astype(np.int64)):
        raise OverflowError(f"value out of range for {np.dtype(dtype).name}")
    return out


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


class _Keep:
    """The numpy arrays a ctypes structure points into (kept alive with it)."""

    def __init__(self) -> None:
        self.arrays: list[np.ndarray] = []

    def __call__(self, a: Any, dtype: type) -> int:
        arr = _arr(a, dtype)
        self.arrays.append(arr)
        return _ptr(arr)


def fastgrnn_struct(cell: QRNN, keep: _Keep) -> RnFastGRNN:
    """The ``rn_fastgrnn_t`` of a reference cell (its arrays are appended to ``keep``)."""
    hidden, inp = cell.w.shape
    return RnFastGRNN(
        keep(cell.w, np.int8), keep(cell.u, np.int8), keep(cell.w_mult, np.int32), keep(cell.w_shift, np.int8),
        keep(cell.u_mult, np.int32), keep(cell.u_shift, np.int8), keep(cell.bias_gate, np.int32),
        keep(cell.bias_update, np.int32), int(cell.sz), int(cell.sn), inp, hidden,
        NONLINEARITY_CODES[cell.gate], NONLINEARITY_CODES[cell.update], int(cell.state_input),
    )


def rnnpool_struct(op: QRNNPool, in_h: int, in_w: int) -> tuple[RnRNNPool, _Keep]:
    """The ``rn_rnnpool_t`` of a reference RNNPool for an ``in_h x in_w`` input, and the arrays it
    points into (keep them alive while it is used)."""
    keep = _Keep()
    (r, c), (sr, sc) = op.patch, op.stride
    gy = axis_geometry(in_h, r, sr, op.padding)
    gx = axis_geometry(in_w, c, sc, op.padding)
    p = RnRNNPool(
        fastgrnn_struct(op.rnn1, keep), fastgrnn_struct(op.rnn2, keep), r, c, sr, sc, gy.pad_before, gx.pad_before,
        gy.patches, gx.patches, gy.replicate, gx.replicate, op.input.zero_point, op.output.zero_point,
        keep(op.out_mult, np.int32), keep(op.out_shift, np.int8), keep(op.out_bias, np.int32),
    )
    return p, keep


def mbconv_parts(block: QBlock) -> tuple[QConv | None, QConv, QConv, QAdd | None]:
    """``(expand or None, depthwise, project, add or None)`` of a bottleneck block; ``ValueError``
    if the block is not an MBConv ``rn_mbconv`` can run."""
    ops = list(block.ops)
    if len(ops) not in (2, 3) or not all(isinstance(op, QConv) for op in ops):
        raise ValueError(f"{block.layer}: not an MBConv block ([expand], depthwise, project)")
    expand = ops[0] if len(ops) == 3 else None
    dw, proj = ops[-2], ops[-1]
    hidden = dw.weight.shape[0]
    if expand is not None and not (expand.kernel == 1 and expand.groups == 1 and expand.stride == 1
                                   and expand.weight.shape[0] == hidden):
        raise ValueError(f"{block.layer}: the expand is not a stride-1 1x1 convolution into the depthwise")
    if not (dw.groups == hidden and dw.weight.shape[3] == 1):
        raise ValueError(f"{block.layer}: the middle op is not a depthwise convolution")
    if not (proj.kernel == 1 and proj.groups == 1 and proj.stride == 1 and proj.weight.shape[3] == hidden):
        raise ValueError(f"{block.layer}: the projection is not a stride-1 1x1 convolution")
    if block.add is not None and (dw.stride != 1 or dw.kernel % 2 == 0 or proj.weight.shape[0] !=
                                  (expand.weight.shape[3] if expand is not None else hidden)):
        raise ValueError(f"{block.layer}: a residual needs stride 1, an odd kernel and out_c == in_c")
    return expand, dw, proj, block.add


def mbconv_struct(block: QBlock) -> tuple[RnMBConv, _Keep]:
    """The ``rn_mbconv_t`` of a reference bottleneck block (:func:`mbconv_parts`), and the arrays it
    points into (keep them alive while it is used)."""
    expand, dw, proj, add = mbconv_parts(block)
    keep = _Keep()
    hidden, k = dw.weight.shape[0], dw.kernel

    def conv(op: QConv | None, n_in: int) -> list:
        if op is None:
            return [None, None, None, None]
        return [keep(op.weight.reshape(op.weight.shape[0], n_in), np.int8), keep(op.bias, np.int32),
                keep(op.multiplier, np.int32), keep(op.shift, np.int8)]

    in_c = expand.weight.shape[3] if expand is not None else hidden
    first = expand if expand is not None else dw
    p = RnMBConv(
        *conv(expand, in_c),
        *((expand.output.zero_point, expand.act_min, expand.act_max) if expand is not None else (0, -128, 127)),
        *conv(dw, k * k), dw.input.zero_point, dw.output.zero_point, dw.act_min, dw.act_max,
        *conv(proj, hidden), proj.output.zero_point, proj.act_min, proj.act_max,
        *((add.a.zero_point, add.m_a, add.s_a, add.b.zero_point, add.m_b, add.s_b, add.output.zero_point)
          if add is not None else (0,) * 7),
        first.input.zero_point, in_c, hidden, proj.weight.shape[0], k, dw.stride, int(add is not None),
    )
    return p, keep


_SIGNATURES = {
    "rn_conv2d": [_P, _I, _I, _I, _P, _P, _P, _P, _I, _I, _I, _I, _I, _I32, _I32, _I32, _I32, _P],
    "rn_depthwise_conv2d": [_P, _I, _I, _I, _P, _P, _P, _P, _I, _I, _I, _I32, _I32, _I32, _I32, _P],
    "rn_pointwise_conv2d": [_P, _I, _I, _I, _P, _P, _P, _P, _I, _I, _I32, _I32, _I32, _I32, _P],
    "rn_depthwise_row": [_P, _I, _I, _I, _I, _I, _P, _P, _P, _P, _I, _I, _I, _I32, _I32, _I32, _I32, _P],
    "rn_mbconv": [ctypes.POINTER(RnMBConv), _P, _I, _I, _P, _P],
    "rn_add": [_P, _P, _I, _I32, _I32, _I32, _I32, _I32, _I32, _I32, _P],
    "rn_avgpool": [_P, _I, _I, _I, _I, _I, _I, _I, _I32, _I32, _I32, _I32, _P],
    "rn_maxpool": [_P, _I, _I, _I, _I, _I, _I, _I, _P],
    "rn_fully_connected": [_P, _I, _P, _P, _P, _P, _I, _I32, _I32, _I32, _I32, _P],
    "rn_fastgrnn_nonlinearity": [_I, ctypes.c_int64],
    "rn_fastgrnn_project_s8": [ctypes.POINTER(RnFastGRNN), _P, _I32, _P],
    "rn_fastgrnn_project_q24": [ctypes.POINTER(RnFastGRNN), _P, _P],
    "rn_fastgrnn_step": [ctypes.POINTER(RnFastGRNN), _P, _P, _P],
    "rn_fastgrnn_sweep": [ctypes.POINTER(RnFastGRNN), _P, _I, _I, _P, _P],
    "rn_rnnpool": [ctypes.POINTER(RnRNNPool), _P, _I, _I, _I, _P, _P],
    "rn_conv2d_row": [_P, _I, _I, _I, _I, _I, _P, _P, _P, _P, _I, _I, _I, _I, _I, _I32, _I32, _I32, _I32, _P],
    "rn_rnnpool_row": [ctypes.POINTER(RnRNNPool), _P, _I, _I, _I, _I, _I, _P, _P],
}


class HostRuntime:
    """The runtime library loaded with ctypes; methods take and return numpy arrays (one image,
    HWC, unless stated). ``guard`` extra bytes after every output (and scratch) are filled with a
    pattern and checked afterwards: a kernel writing past its output raises ``AssertionError``."""

    def __init__(self, path: str | Path, guard: int = 64) -> None:
        self.path = Path(path)
        self.lib = ctypes.CDLL(str(self.path))
        self.guard = guard
        for name, args in _SIGNATURES.items():
            fn = getattr(self.lib, name)
            fn.argtypes = args
            fn.restype = _I32 if name == "rn_fastgrnn_nonlinearity" else None
        self.sigmoid_lut = np.ctypeslib.as_array((_I32 * 1025).in_dll(self.lib, "rn_sigmoid_lut")).copy()
        self.tanh_lut = np.ctypeslib.as_array((_I32 * 1025).in_dll(self.lib, "rn_tanh_lut")).copy()

    # ------------------------------------------------------------------ output buffers with a guard

    def _buffer(self, shape: tuple[int, ...], dtype: type = np.int8, fill: int = 0x5A) -> np.ndarray:
        n = int(np.prod(shape))
        buf = np.empty(n + self.guard, dtype=dtype)
        buf[:] = fill
        return buf

    def _finish(self, buf: np.ndarray, shape: tuple[int, ...], fill: int = 0x5A) -> np.ndarray:
        n = int(np.prod(shape))
        if not np.all(buf[n:] == np.array(fill, dtype=buf.dtype)):
            raise AssertionError(f"kernel wrote past its {n}-element buffer")
        return buf[:n].reshape(shape).copy()

    # ------------------------------------------------------------------ kernels

    @staticmethod
    def _ring(x: np.ndarray, ring: int, first: int, last: int) -> np.ndarray:
        """A ring of ``ring`` row slots holding rows ``first..last-1`` of ``x`` (clipped to the map)
        at slot ``row % ring``, the other slots garbage: what a streamed segment's ring holds when
        an output row needs those rows."""
        h, w, c = x.shape
        buf = np.full((ring, w, c), 0x3C, dtype=np.int8)
        for y in range(max(first, 0), min(last, h)):
            buf[y % ring] = x[y]
        return buf

    def conv2d(self, x, weight, bias, mult, shift, *, stride, pad, groups, in_zp, out_zp, act_min=-128, act_max=127,
               ring: int | None = None):
        """``rn_conv2d``; with ``ring``, row by row through ``rn_conv2d_row``, the window's input
        rows in a ring of that many slots (>= kernel) that holds nothing else (as in a streamed
        segment)."""
        x = _arr(x, np.int8)
        h, w, c = x.shape
        out_c, k = weight.shape[0], weight.shape[1]
        shape = ((h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1, out_c)
        wt, b, m, s = _arr(weight, np.int8), _arr(bias, np.int32), _arr(mult, np.int32), _arr(shift, np.int8)
        out = self._buffer(shape)
        params = (_ptr(wt), _ptr(b), _ptr(m), _ptr(s), out_c, k, stride, pad, groups, in_zp, out_zp, act_min, act_max)
        if ring is None:
            self.lib.rn_conv2d(_ptr(x), h, w, c, *params, _ptr(out))
        else:
            row = shape[1] * out_c
            for oy in range(shape[0]):
                iy0 = oy * stride - pad
                rows = self._ring(x, ring, iy0, iy0 + k)
                self.lib.rn_conv2d_row(_ptr(rows), ring, h, w, c, iy0, *params, _ptr(out[oy * row:]))
        return self._finish(out, shape)

    def depthwise_conv2d(self, x, weight, bias, mult, shift, *, stride, pad, in_zp, out_zp, act_min=-128,
                         act_max=127):
        x = _arr(x, np.int8)
        h, w, c = x.shape
        k = weight.shape[1]
        shape = ((h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1, c)
        wt = _arr(np.asarray(weight).reshape(c, k, k), np.int8)
        b, m, s = _arr(bias, np.int32), _arr(mult, np.int32), _arr(shift, np.int8)
        out = self._buffer(shape)
        self.lib.rn_depthwise_conv2d(_ptr(x), h, w, c, _ptr(wt), _ptr(b), _ptr(m), _ptr(s), k, stride, pad,
                                     in_zp, out_zp, act_min, act_max, _ptr(out))
        return self._finish(out, shape)

    def pointwise_conv2d(self, x, weight, bias, mult, shift, *, stride, in_zp, out_zp, act_min=-128, act_max=127):
        x = _arr(x, np.int8)
        h, w, c = x.shape
        out_c = weight.shape[0]
        shape = ((h - 1) // stride + 1, (w - 1) // stride + 1, out_c)
        wt = _arr(np.asarray(weight).reshape(out_c, c), np.int8)
        b, m, s = _arr(bias, np.int32), _arr(mult, np.int32), _arr(shift, np.int8)
        out = self._buffer(shape)
        self.lib.rn_pointwise_conv2d(_ptr(x), h, w, c, _ptr(wt), _ptr(b), _ptr(m), _ptr(s), out_c, stride,
                                     in_zp, out_zp, act_min, act_max, _ptr(out))
        return self._finish(out, shape)

    def fully_connected(self, x, weight, bias, mult, shift, *, in_zp, out_zp, act_min=-128, act_max=127):
        x = _arr(np.asarray(x).reshape(-1), np.int8)
        out_n = weight.shape[0]
        wt = _arr(np.asarray(weight).reshape(out_n, x.size), np.int8)
        b, m, s = _arr(bias, np.int32), _arr(mult, np.int32), _arr(shift, np.int8)
        out = self._buffer((out_n,))
        self.lib.rn_fully_connected(_ptr(x), x.size, _ptr(wt), _ptr(b), _ptr(m), _ptr(s), out_n, in_zp, out_zp,
                                    act_min, act_max, _ptr(out))
        return self._finish(out, (out_n,))

    def add(self, a, b, a_zp, a_mult, a_shift, b_zp, b_mult, b_shift, out_zp, in_place: str | None = None):
        """A fresh output, or with ``in_place="a"`` / ``"b"`` the result written over (a copy of) that input."""
        a, b = _arr(a, np.int8), _arr(b, np.int8)
        if in_place is None:
            buf = self._buffer(a.shape)
            self.lib.rn_add(_ptr(a), _ptr(b), a.size, a_zp, a_mult, a_shift, b_zp, b_mult, b_shift, out_zp, _ptr(buf))
            return self._finish(buf, a.shape)
        a, b = a.copy(), b.copy()  # the caller's arrays stay untouched
        target = a if in_place == "a" else b
        self.lib.rn_add(_ptr(a), _ptr(b), a.size, a_zp, a_mult, a_shift, b_zp, b_mult, b_shift, out_zp,
                        _ptr(target))
        return target

    def avgpool(self, x, kernel, stride, in_zp, mult, shift, out_zp):
        x = _arr(x, np.int8)
        h, w, c = x.shape
        (kh, kw), (sh, sw) = kernel, stride
        shape = ((h - kh) // sh + 1, (w - kw) // sw + 1, c)
        out = self._buffer(shape)
        self.lib.rn_avgpool(_ptr(x), h, w, c, kh, kw, sh, sw, in_zp, mult, shift, out_zp, _ptr(out))
        return self._finish(out, shape)

    def maxpool(self, x, kernel, stride):
        x = _arr(x, np.int8)
        h, w, c = x.shape
        (kh, kw), (sh, sw) = kernel, stride
        shape = ((h - kh) // sh + 1, (w - kw) // sw + 1, c)
        out = self._buffer(shape)
        self.lib.rn_maxpool(_ptr(x), h, w, c, kh, kw, sh, sw, _ptr(out))
        return self._finish(out, shape)

    def rnnpool(self, op: QRNNPool, x, ring: int | None = None) -> np.ndarray:
        """RNNPool of one HWC image; the scratch is exactly ``RN_RNNPOOL_SCRATCH_WORDS`` words (plus the
        checked guard) and starts as garbage. ``ring``: row of patches by row of patches through
        ``rn_rnnpool_row``, the patch's input rows in a ring of that many slots (>= patch height)."""
        x = _arr(x, np.int8)
        h, w, c = x.shape
        p, keep = rnnpool_struct(op, h, w)
        h1, h2 = op.rnn1.w.shape[0], op.rnn2.w.shape[0]
        shape = (p.patches_h + p.replicate_h, p.patches_w + p.replicate_w, 4 * h2)
        words = rnnpool_scratch_words(p.patch_h, p.patch_w, h1, h2)
        scratch = self._buffer((words,), np.int32, fill=-0x5A5A5A5B)
        out = self._buffer(shape)
        if ring is None:
            self.lib.rn_rnnpool(ctypes.byref(p), _ptr(x), h, w, c, _ptr(out), _ptr(scratch))
        else:  # row of patches by row of patches, the patch rows in a ring (replicated rows: the last again)
            row = shape[1] * shape[2]
            for py in range(shape[0]):
                if py < p.patches_h:
                    y0 = py * p.stride_h - p.pad_top
                    rows = self._ring(x, ring, y0, y0 + p.patch_h)
                    self.lib.rn_rnnpool_row(ctypes.byref(p), _ptr(rows), ring, h, w, c, py, _ptr(out[py * row:]),
                                            _ptr(scratch))
                else:
                    out[py * row:(py + 1) * row] = out[(py - 1) * row:py * row]
        self._finish(scratch, (words,), fill=-0x5A5A5A5B)
        del keep
        return self._finish(out, shape)

    def mbconv(self, block: QBlock, x, scratch_fill: int = 0x3C) -> np.ndarray:
        """A bottleneck block on one HWC image through the fused ``rn_mbconv``; the scratch is exactly
        ``RN_MBCONV_SCRATCH_BYTES`` (plus the checked guard) and starts as ``scratch_fill`` garbage; the
        input is checked to be left untouched."""
        x = _arr(x, np.int8)
        h, w, c = x.shape
        p, keep = mbconv_struct(block)
        if c != p.in_c:
            raise ValueError(f"{block.layer}: input has {c} channels, the block takes {p.in_c}")
        k, s, pad = p.kernel, p.stride, p.kernel // 2
        out_w = (w + 2 * pad - k) // s + 1
        shape = ((h + 2 * pad - k) // s + 1, out_w, p.out_c)
        n = mbconv_scratch_bytes(bool(p.exp_w), k, w, out_w, p.hidden)
        scratch = self._buffer((n,), fill=scratch_fill)
        out = self._buffer(shape)
        before = x.copy()
        self.lib.rn_mbconv(ctypes.byref(p), _ptr(x), h, w, _ptr(out), _ptr(scratch))
        self._finish(scratch, (n,), fill=scratch_fill)
        if not np.array_equal(x, before):
            raise AssertionError("rn_mbconv wrote into its input")
        del keep
        return self._finish(out, shape)

    def run_mbconv(self, block: QBlock, x: np.ndarray) -> np.ndarray:
        """A bottleneck block on a batch (N, H, W, C) through ``rn_mbconv`` (``QBlock.run``'s bytes)."""
        return np.stack([self.mbconv(block, img) for img in x])

    def nonlinearity(self, name: str, v) -> np.ndarray:
        """``rn_fastgrnn_nonlinearity`` over an array of int64 pre-activations."""
        code = NONLINEARITY_CODES[name]
        fn = self.lib.rn_fastgrnn_nonlinearity
        return np.array([fn(code, int(x)) for x in np.asarray(v).reshape(-1)], dtype=np.int64).reshape(np.shape(v))

    # ------------------------------------------------------------------ reference ops, batched NHWC

    def run(self, op: QConv | QPool | QLinear | QRNNPool, x: np.ndarray) -> np.ndarray:
        """The op on a batch (N, H, W, C) through the C kernel the generated code would call."""
        return np.stack([self._run_one(op, img) for img in x])

    def run_add(self, op: QAdd, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.add(a, b, op.a.zero_point, op.m_a, op.s_a, op.b.zero_point, op.m_b, op.s_b,
                        op.output.zero_point)

    def _run_one(self, op: Any, x: np.ndarray) -> np.ndarray:
        if isinstance(op, QLinear):
            c = op.conv
            return self.fully_connected(x, c.weight.reshape(c.weight.shape[0], -1), c.bias, c.multiplier, c.shift,
                                        in_zp=c.input.zero_point, out_zp=c.output.zero_point, act_min=c.act_min,
                                        act_max=c.act_max)
        if isinstance(op, QConv):
            q = dict(in_zp=op.input.zero_point, out_zp=op.output.zero_point, act_min=op.act_min, act_max=op.act_max)
            args = (x, op.weight, op.bias, op.multiplier, op.shift)
            cout, cin = op.weight.shape[0], x.shape[-1]
            if op.kernel == 1 and op.groups == 1:
                return self.pointwise_conv2d(*args, stride=op.stride, **q)
            if op.groups == cin == cout:
                return self.depthwise_conv2d(*args, stride=op.stride, pad=op.kernel // 2, **q)
            return self.conv2d(*args, stride=op.stride, pad=op.kernel // 2, groups=op.groups, **q)
        if isinstance(op, QPool):
            if op.pool == "max":
                return self.maxpool(x, op.kernel, op.stride)
            return self.avgpool(x, op.kernel, op.stride, op.input.zero_point, op.multiplier, op.shift,
                                op.output.zero_point)
        if isinstance(op, QRNNPool):
            return self.rnnpool(op, x)
        raise TypeError(f"no C kernel for {type(op).__name__}")


def load(out_dir: str | Path, cc: str = "gcc") -> HostRuntime:
    """Build the runtime into ``out_dir`` and load it."""
    return HostRuntime(build(out_dir, cc))
