"""The int8 reference network, batched in vectorised torch integer ops: same bytes, much faster.

:class:`~rnnpool_nas.train.quant.QuantizedNet` (numpy) is the definition the C runtime is checked
against; this module runs the same integer network on whole batches with torch, for scoring
test sets (``quant.evaluate_int8`` and ``QuantizedNet.detections`` call it). It is bit-exact with
the numpy reference (tests/test_quant_fast.py compares every op and whole networks byte for byte),
by doing the same integer arithmetic:

- convolutions and the fully connected layer run as torch ``conv2d`` on whole batches, in
  float32 when the layer's weights bound every partial sum below 2^24 (so each is an integer
  float32 holds exactly, in any order of addition) and in float64 otherwise (below 2^53,
  checked), as exact as the numpy reference's float64 BLAS products;
- requantization ``(acc * m + 2^(s-1)) >> s``, clamps, pooling, residual adds and L2Norm's
  integer square root and rounded division are int64 torch arithmetic with numpy's semantics
  (``>>`` arithmetic, ``//`` floor); the same overflow checks raise the same ``OverflowError``;
- RNNPool runs the numpy reference's own op (its Q24 recurrences are int64 elementwise work that
  torch does no faster), on slices of the batch in a few threads.

It reads the quantized parameters of a ``QuantizedNet`` and owns none of its own.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..quant import reference as q
from ..quant.native import native_rnnpool

_I64 = torch.int64
#: Threads that run RNNPool slices at once (torch's own thread count, at most 4).
THREADS = max(1, min(4, torch.get_num_threads()))
_F64 = torch.float64


def _t(a: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.int64))


def _check_int32(acc: torch.Tensor) -> None:
    if acc.numel() and (int(acc.max()) > q.INT32_MAX or int(acc.min()) < -q.INT32_MAX - 1):
        raise OverflowError("int32 accumulator overflow in the int8 reference")


def _exact(out: torch.Tensor) -> torch.Tensor:
    """A float64 product of integers as int64 (refusing sums beyond float64's exact range)."""
    if out.numel() and float(out.abs().max()) >= 2.0**52:
        raise OverflowError("integer matmul beyond float64's exact range")
    return out.to(_I64)


def requant(acc: torch.Tensor, m: torch.Tensor | int, s: torch.Tensor | int) -> torch.Tensor:
    _check_int32(acc)
    m, s = torch.as_tensor(m, dtype=_I64), torch.as_tensor(s, dtype=_I64)
    return (acc * m + (torch.ones_like(s) << (s - 1))) >> s


# ------------------------------------------------------------------------------------ ops


class _Conv:
    """float32 when it is exact: every input is within 255 of the zero point, so no partial sum
    exceeds ``255 * sum|w|`` of an output channel; below 2^24 every partial sum is an integer
    float32 holds exactly, whatever order the convolution adds in. Otherwise float64 (2^53)."""

    def __init__(self, op: q.QConv) -> None:
        self.op = op
        bound = 255 * int(np.abs(op.weight.astype(np.int64)).reshape(op.weight.shape[0], -1).sum(axis=1).max(initial=0))
        self.dtype = torch.float32 if bound < 2**24 else _F64
        w = torch.from_numpy(op.weight.astype(np.float64)).to(self.dtype)  # (Cout, k, k, Cin/g)
        self.weight = w.permute(0, 3, 1, 2).contiguous()
        self.bias = _t(op.bias).view(1, -1, 1, 1)
        self.m = _t(op.multiplier).view(1, -1, 1, 1)
        self.s = _t(op.shift).view(1, -1, 1, 1)

    def nchw(self, x: torch.Tensor) -> torch.Tensor:
        """int64 NCHW -> int64 NCHW."""
        op = self.op
        xs = (x - op.input.zero_point).to(self.dtype)
        acc = F.conv2d(xs, self.weight, stride=op.stride, padding=op.kernel // 2, groups=op.groups)
        acc = acc.to(_I64) if self.dtype == torch.float32 else _exact(acc)
        out = requant(acc + self.bias, self.m, self.s) + op.output.zero_point
        return out.clamp(op.act_min, op.act_max)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # NHWC
        return self.nchw(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class _Linear:
    def __init__(self, op: q.QLinear) -> None:
        self.conv = _Conv(op.conv)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.reshape(x.shape[0], 1, 1, -1))[:, 0, 0, :]


class _Pool:
    def __init__(self, op: q.QPool) -> None:
        self.op = op

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        op = self.op
        xc = x.permute(0, 3, 1, 2).to(_F64)
        if op.pool == "max":
            return F.max_pool2d(xc, op.kernel, op.stride).to(_I64).permute(0, 2, 3, 1)
        total = F.avg_pool2d(xc - op.input.zero_point, op.kernel, op.stride, divisor_override=1)
        total = _exact(total).permute(0, 2, 3, 1)
        return (requant(total, op.multiplier, op.shift) + op.output.zero_point).clamp(-128, 127)


class _RNNPool:
    """RNNPool runs the reference's arithmetic compiled for the host (:mod:`rnnpool_nas.quant.native`;
    the numpy reference's own op when there is no C compiler); images are cut into slices run by
    a small thread pool (the compiled kernel and numpy release the GIL)."""

    def __init__(self, op: q.QRNNPool) -> None:
        self.op = op
        compiled = native_rnnpool(op)
        self.run = compiled.run if compiled is not None else op.run

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        xs = x.numpy().astype(np.int8)
        step = max(1, -(-len(xs) // THREADS))
        parts = [xs[i : i + step] for i in range(0, len(xs), step)]
        if len(parts) == 1:
            out = [self.run(parts[0])]
        else:
            out = list(_pool().map(self.run, parts))
        return torch.from_numpy(np.concatenate(out)).to(_I64)


_POOL = None


def _pool():
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=THREADS)
    return _POOL


class _Add:
    def __init__(self, op: q.QAdd) -> None:
        self.op = op

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        op = self.op
        out = (requant(x - op.a.zero_point, op.m_a, op.s_a) + requant(y - op.b.zero_point, op.m_b, op.s_b)
               + op.output.zero_point)
        return out.clamp(-128, 127)


def _isqrt64(v: torch.Tensor) -> torch.Tensor:
    r = torch.sqrt(v.to(_F64)).to(_I64)
    r = torch.where(r * r > v, r - 1, r)
    return torch.where((r + 1) * (r + 1) <= v, r + 1, r)


class _L2Norm:
    def __init__(self, op: q.QL2Norm) -> None:
        self.op = op
        self.mult = _t(op.mult)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        op = self.op
        d = x - op.input.zero_point
        ss = (d * d).sum(dim=-1, keepdim=True)
        _check_int32(ss)
        r = _isqrt64(ss << 32)
        den = torch.clamp(r, min=1)
        num = d * self.mult
        mag = (num.abs() + den // 2) // den
        qv = torch.where(num < 0, -mag, mag)
        qv = torch.where(r > 0, qv, torch.zeros_like(qv)) + op.output.zero_point
        return qv.clamp(-128, 127)


class _Head:
    def __init__(self, head: q.QHead) -> None:
        self.head = head
        self.norm = _L2Norm(head.norm) if head.norm is not None else None
        self.extra = _Conv(head.extra) if head.extra is not None else None
        self.loc, self.conf = _Conv(head.loc), _Conv(head.conf)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.norm is not None:
            x = self.norm(x)
        if self.extra is not None:
            x = self.extra(x)
        loc, conf = self.loc(x), self.conf(x)
        if self.head.max_out:
            conf = torch.cat([conf[..., :3].amax(dim=-1, keepdim=True), conf[..., 3:]], dim=-1)
        n = x.shape[0]
        return loc.reshape(n, -1, 4), conf.reshape(n, -1, 2)


_OPS = {q.QConv: _Conv, q.QLinear: _Linear, q.QPool: _Pool, q.QRNNPool: _RNNPool}


class FastNet:
    """A :class:`~rnnpool_nas.train.quant.QuantizedNet` run on torch tensors (same outputs)."""

    def __init__(self, qnet: q.QuantizedNet) -> None:
        self.qnet = qnet
        self.blocks = []
        for block in qnet.blocks:
            ops = []
            for op in block.ops:
                kind = _OPS.get(type(op))
                if kind is None:
                    raise TypeError(f"no fast int8 path for {type(op).__name__}")
                ops.append(kind(op))
            self.blocks.append((ops, _Add(block.add) if block.add is not None else None))
        self.heads = [_Head(h) for h in qnet.heads]

    def _blocks(self, images: np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(images)).to(_I64) - 128
        for i, (ops, add) in enumerate(self.blocks):
            y = x
            for op in ops:
                y = op(y)
            x = add(x, y) if add is not None else y
            yield i, x

    @torch.no_grad()
    def run(self, images: np.ndarray) -> np.ndarray:
        """``QuantizedNet.run``: int8 logits (N, classes), or a detector's flattened head outputs."""
        if self.heads:
            n = len(images)
            outs = self.run_heads(images)
            return np.concatenate([a.reshape(n, -1) for pair in outs for a in pair], axis=1)
        x = None
        for _, x in self._blocks(images):
            pass
        assert x is not None
        return x.reshape(x.shape[0], -1).numpy().astype(np.int8)

    @torch.no_grad()
    def run_heads(self, images: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        outs: list = [None] * len(self.heads)
        for i, x in self._blocks(images):
            for j in self.qnet.taps.get(i, ()):
                loc, conf = self.heads[j](x)
                outs[j] = (loc.numpy().astype(np.int8), conf.numpy().astype(np.int8))
        return outs


def fast(qnet: q.QuantizedNet) -> FastNet:
    """The (cached) fast runner of ``qnet``."""
    runner = getattr(qnet, "_fast", None)
    if runner is None:
        runner = FastNet(qnet)
        object.__setattr__(qnet, "_fast", runner)
    return runner


def evaluate_int8_fast(qnet: q.QuantizedNet, model, images: np.ndarray, labels: np.ndarray, batch_size: int = 256,
                       progress: Callable[[int, int], None] | None = None, every: float = 5.0) -> dict[str, float]:
    """``quant.evaluate_int8`` (float and int8 top-1 accuracy, their agreement) on whole batches;
    ``progress(done, total)`` is called at most every ``every`` seconds and at the end."""
    runner = fast(qnet)
    model.eval()
    agree = float_ok = int_ok = 0
    last = time.perf_counter()
    n = len(images)
    for i in range(0, n, batch_size):
        x = images[i : i + batch_size]
        with torch.no_grad():
            f = model(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255).argmax(1).numpy()
        qi = runner.run(x).argmax(1)
        y = labels[i : i + batch_size]
        agree += int((f == qi).sum())
        float_ok += int((f == y).sum())
        int_ok += int((qi == y).sum())
        if progress is not None and (time.perf_counter() - last >= every or i + batch_size >= n):
            progress(min(n, i + batch_size), n)
            last = time.perf_counter()
    n = max(1, n)
    return {"float_accuracy": float_ok / n, "int8_accuracy": int_ok / n, "agreement": agree / n}
