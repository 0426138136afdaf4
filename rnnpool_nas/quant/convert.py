"""Post-training int8 quantization: a trained float ``SpecNet`` (torch) -> the integer network of
:mod:`rnnpool_nas.quant.reference` (batch norm folded, per-channel int8 weights, activation ranges
calibrated on training images). The fixed-point rules are at the top of ``reference.py``."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..arch.build import InvertedResidual, SpecNet
from ..arch.spec import Layer
from ..errors import UserError
from .reference import (
    INPUT_QPARAMS,
    INT32_MAX,
    ONE,
    QAdd,
    QBlock,
    QConv,
    QHead,
    QL2Norm,
    QLinear,
    QParams,
    QPool,
    QRNN,
    QRNNPool,
    QuantizedNet,
    _act_range,
    _multipliers,
    choose_qparams,
    quantize_multiplier,
    quantize_per_channel,
)


def _fold(seq: nn.Sequential) -> tuple[np.ndarray, np.ndarray, nn.Conv2d]:
    """Float (weight, bias) of a conv [+ batch norm] block with the norm folded in."""
    conv = seq[0]
    w = conv.weight.detach().double().numpy()
    b = conv.bias.detach().double().numpy() if conv.bias is not None else np.zeros(w.shape[0])
    if len(seq) > 1 and isinstance(seq[1], nn.BatchNorm2d):
        bn = seq[1]
        factor = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double().numpy()
        w = w * factor[:, None, None, None]
        b = (b - bn.running_mean.detach().double().numpy()) * factor + bn.bias.detach().double().numpy()
    return w, b, conv


def _qconv(w: np.ndarray, b: np.ndarray, kernel: int, stride: int, groups: int, inp: QParams, out: QParams,
           act: str) -> QConv:
    wq, ws = quantize_per_channel(w)
    bias = np.round(b / (inp.scale * ws)).astype(np.int64)
    if np.abs(bias).max(initial=0) > INT32_MAX:
        raise OverflowError("bias does not fit int32")
    mult, shift = _multipliers(inp.scale * ws / out.scale)
    lo, hi = _act_range(act, out)
    # (Cout, Cin/g, k, k) -> (Cout, k, k, Cin/g): the NHWC kernel layout of the C runtime
    return QConv(wq.transpose(0, 2, 3, 1).copy(), bias.astype(np.int32), mult, shift, kernel, stride, groups,
                 inp, out, lo, hi)


def _qrnn(cell, x_scale: float, state_input: bool) -> QRNN:
    """A cell whose input arrives at ``x_scale``: int8 activations, or RNN1's Q24 states."""
    w = cell.input_matrix().detach().double().numpy()
    u = cell.recurrent_matrix().detach().double().numpy()
    wq, ws = quantize_per_channel(w)
    uq, us = quantize_per_channel(u)
    w_mult, w_shift = _multipliers(x_scale * ws * ONE, 15 if state_input else 31)
    u_mult, u_shift = _multipliers(us, 15)
    fixed = lambda t: np.round(t.detach().double().numpy() * ONE).astype(np.int64)  # noqa: E731
    sz = int(round(torch.sigmoid(cell.zeta).item() * ONE))
    sn = int(round(torch.sigmoid(cell.nu).item() * ONE))
    return QRNN(wq, uq, w_mult, w_shift, u_mult, u_shift, fixed(cell.bias_gate), fixed(cell.bias_update), sz, sn,
                cell.gate_nonlinearity, cell.update_nonlinearity, state_input)


class ActivationRanges:
    """Min/max of module outputs over calibration batches (forward hooks)."""

    def __init__(self) -> None:
        self.lo: dict[int, float] = {}
        self.hi: dict[int, float] = {}

    def hook(self, module: nn.Module, _inputs, output) -> None:
        key = id(module)
        lo, hi = float(output.min()), float(output.max())
        self.lo[key] = min(lo, self.lo.get(key, lo))
        self.hi[key] = max(hi, self.hi.get(key, hi))

    def qparams(self, module: nn.Module) -> QParams:
        return choose_qparams(self.lo[id(module)], self.hi[id(module)])


def observed_modules(model: SpecNet) -> list[nn.Module]:
    mods: list[nn.Module] = [m for head in model.heads for m in (head.norm, head.extra, head.loc, head.conf)
                             if not isinstance(m, nn.Identity)]
    for block in model.blocks:
        mods.append(block)
        if isinstance(block, InvertedResidual):
            mods.extend(block.body)
        elif isinstance(block, nn.Sequential):
            mods.extend(m for m in block if isinstance(m, nn.Sequential))
    return mods


@torch.no_grad()
def quantize(model: SpecNet, calibration: np.ndarray, batch_size: int = 256) -> QuantizedNet:
    """Quantize a trained classifier or detector; ``calibration``: uint8 NHWC images at its input
    shape."""
    model.eval()
    ranges = ActivationRanges()
    handles = [m.register_forward_hook(ranges.hook) for m in observed_modules(model)]
    try:
        for i in range(0, len(calibration), batch_size):
            x = torch.from_numpy(calibration[i : i + batch_size]).permute(0, 3, 1, 2).float() / 255
            model(x)
    finally:
        for h in handles:
            h.remove()
    blocks: list[QBlock] = []
    inp = INPUT_QPARAMS
    heads: list[QHead | None] = [None] * len(model.heads)
    for i, (layer, module) in enumerate(zip(model.layers, model.blocks)):
        block, inp = _quantize_block(layer, module, inp, ranges)
        blocks.append(block)
        for j in model.taps.get(i, ()):
            heads[j] = _quantize_head(model.heads[j], inp, ranges)
    return QuantizedNet(blocks, INPUT_QPARAMS, inp, [h for h in heads if h is not None], dict(model.taps))


def _quantize_head(head: nn.Module, inp: QParams, ranges: ActivationRanges) -> QHead:
    norm = extra = None
    x = inp
    if not isinstance(head.norm, nn.Identity):
        out = ranges.qparams(head.norm)
        weight = head.norm.weight.detach().double().numpy()
        mult = np.round(weight * 2.0**16 / out.scale).astype(np.int64)
        norm, x = QL2Norm(mult, x, out), out
    if not isinstance(head.extra, nn.Identity):
        conv = head.extra[0]
        out = ranges.qparams(head.extra)
        w = conv.weight.detach().double().numpy()
        extra = _qconv(w, conv.bias.detach().double().numpy(), conv.kernel_size[0], conv.stride[0], 1, x, out, "relu")
        x = out
    convs = []
    for conv in (head.loc, head.conf):
        out = ranges.qparams(conv)
        w = conv.weight.detach().double().numpy()
        convs.append(_qconv(w, conv.bias.detach().double().numpy(), conv.kernel_size[0], 1, 1, x, out, "none"))
    return QHead(norm, extra, convs[0], convs[1], bool(head.max_out))


def _quantize_block(layer: Layer, module: nn.Module, inp: QParams, ranges: ActivationRanges) -> tuple[QBlock, QParams]:
    a = layer.args
    if layer.kind == "conv":
        out = ranges.qparams(module)
        w, b, conv = _fold(module)
        return QBlock(layer.name, [_qconv(w, b, a["kernel"], a["stride"], conv.groups, inp, out, a["activation"])]), out
    if layer.kind in ("bottleneck", "dwsep"):
        seqs = list(module.body) if isinstance(module, InvertedResidual) else list(module)
        acts = [a["activation"]] * (len(seqs) - 1) + (["none"] if layer.kind == "bottleneck" else [a["activation"]])
        ops, x = [], inp
        for seq, act in zip(seqs, acts):
            out = ranges.qparams(seq)
            w, b, conv = _fold(seq)
            ops.append(_qconv(w, b, conv.kernel_size[0], conv.stride[0], conv.groups, x, out, act))
            x = out
        add = None
        if layer.kind == "bottleneck" and a["residual"]:
            final = ranges.qparams(module)
            ma, sa = quantize_multiplier(inp.scale / final.scale)
            mb, sb = quantize_multiplier(x.scale / final.scale)
            add = QAdd(inp, x, final, ma, sa, mb, sb)
            x = final
        return QBlock(layer.name, ops, add), x
    if layer.is_rnnpool:
        out = ranges.qparams(module)
        pool = module[0]
        scale, shift_real = np.ones(layer.out_shape[2]), np.zeros(layer.out_shape[2])
        if len(module) > 1:  # fold the batch norm: y = scale * h + shift
            bn = module[1]
            scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double().numpy()
            shift_real = bn.bias.detach().double().numpy() - bn.running_mean.detach().double().numpy() * scale
        mult, shift = _multipliers(scale / (ONE * out.scale))
        bias = np.round(shift_real / out.scale).astype(np.int64)
        op = QRNNPool(_qrnn(pool.rnn1, inp.scale, False), _qrnn(pool.rnn2, 1 / ONE, True), pool.patch_size, pool.stride,
                      pool.padding, inp, out, mult, shift, bias)
        return QBlock(layer.name, [op]), out
    if layer.kind == "pool":
        if a["kind"] == "max":
            return QBlock(layer.name, [QPool("max", a["kernel"], a["stride"], inp, inp)]), inp
        out = ranges.qparams(module)
        count = a["kernel"][0] * a["kernel"][1]
        mult, shift = quantize_multiplier(inp.scale / (out.scale * count))
        return QBlock(layer.name, [QPool("avg", a["kernel"], a["stride"], inp, out, mult, shift)]), out
    if layer.kind == "linear":
        out = ranges.qparams(module)
        lin = module[-1]
        h, w, c = layer.in_shape
        weight = lin.weight.detach().double().numpy().reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(-1, h * w * c)
        conv = _qconv(weight[:, :, None, None], lin.bias.detach().double().numpy(), 1, 1, 1, inp, out, "none")
        return QBlock(layer.name, [QLinear(conv)]), out
    raise UserError(f"int8 quantization does not support layer {layer.name} ({layer.kind})")


__all__ = ["ActivationRanges", "observed_modules", "quantize"]
