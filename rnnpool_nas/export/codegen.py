"""Generate ``model.h`` / ``model.c``: a quantized network as a fixed sequence of kernel calls.

The network comes from :func:`rnnpool_nas.quant.convert.quantize` (the integer reference whose
outputs the C must reproduce byte for byte); the order of calls, the row-streamed segments and
every buffer's place in the one static arena come from :func:`rnnpool_nas.lower.plan.plan` over the
same spec, so the arena is exactly what ``rnnpool-nas cost --convention runtime`` predicts. A
whole-map segment is a sequence of kernel calls; a streamed one is a table of nodes (one per
kernel call) and maps (rings in the arena) that ``rn_stream_run`` (runtime/stream.c) drives row by
row. Weights, biases and requantization constants are ``const`` arrays (flash); nothing is
allocated at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..arch.spec import ArchSpec, expand, head_name
from ..lower.plan import INPUT, OUTPUT, ArenaPlan, Segment, Step, head_specs, plan
from ..ops.geometry import axis_geometry
from ..quant.reference import QAdd, QConv, QL2Norm, QLinear, QPool, QRNN, QRNNPool, QuantizedNet

NONLINEARITY = {"sigmoid": "RN_SIGMOID", "tanh": "RN_TANH", "quantSigmoid": "RN_QUANT_SIGMOID",
                "quantTanh": "RN_QUANT_TANH"}
C_TYPES = {np.int8: "int8_t", np.int32: "int32_t"}
INT32 = (-(2**31), 2**31 - 1)


@dataclass
class Generated:
    """What was written: the arena plan and the bytes of constant data (flash)."""

    plan: ArenaPlan
    const_bytes: int
    input_shape: tuple[int, int, int]
    output_size: int
    calls: list[dict] = field(default_factory=list)  # one per kernel call: marker, layer, op, shapes, args


class _Writer:
    """Collects the constant arrays (named per layer) and the body of ``model_run``."""

    def __init__(self) -> None:
        self.arrays: list[str] = []
        self.body: list[str] = []
        self.const_bytes = 0

    def array(self, name: str, values: np.ndarray, dtype) -> str:
        flat = np.asarray(values).reshape(-1)
        lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
        if flat.size and (flat.min() < lo or flat.max() > hi):
            raise OverflowError(f"{name}: values do not fit {np.dtype(dtype).name}")
        flat = flat.astype(np.int64)
        lines = [", ".join(str(int(v)) for v in flat[i:i + 24]) for i in range(0, flat.size, 24)] or ["0"]
        self.arrays.append(f"static const {C_TYPES[dtype]} {name}[{max(1, flat.size)}] = {{\n    "
                           + ",\n    ".join(lines) + "\n};")
        self.const_bytes += max(1, flat.size) * np.dtype(dtype).itemsize
        return name


def _ident(layer: str, what: str) -> str:
    return "L" + layer.replace(".", "_") + "_" + what


def _buf(arena: ArenaPlan, name: str, ctype: str = "int8_t") -> str:
    if name == INPUT:
        return "input"
    if name.startswith(OUTPUT):
        return f"(output + {name[len(OUTPUT):]})"
    off = arena.offset(name)
    if ctype == "int8_t":
        return f"(arena.bytes + {off})"
    return f"(({ctype} *)(void *)(arena.bytes + {off}))"


def _requant_arrays(w: _Writer, prefix: str, op) -> tuple[str, str, str, str]:
    weight = w.array(f"{prefix}_w", op.weight, np.int8)
    bias = w.array(f"{prefix}_b", op.bias, np.int32)
    mult = w.array(f"{prefix}_m", op.multiplier, np.int32)
    shift = w.array(f"{prefix}_s", op.shift, np.int8)
    return weight, bias, mult, shift


def _emit_conv(w: _Writer, arena: ArenaPlan, step: Step, op: QConv, k: int) -> None:
    prefix = _ident(step.layer, f"{k}")
    weight, bias, mult, shift = _requant_arrays(w, prefix, op)
    (h, wd, c), cout = step.in_shape, step.out_shape[2]
    src, dst = _buf(arena, step.inputs[0]), _buf(arena, step.output)
    tail = f"{op.input.zero_point}, {op.output.zero_point}, {op.act_min}, {op.act_max}, {dst}"
    if step.op == "pointwise":
        assert op.kernel == 1 and op.groups == 1
        w.body.append(f"    rn_pointwise_conv2d({src}, {h}, {wd}, {c}, {weight}, {bias}, {mult}, {shift}, {cout}, "
                      f"{op.stride}, {tail});")
    elif step.op == "depthwise":
        assert op.groups == c == cout
        w.body.append(f"    rn_depthwise_conv2d({src}, {h}, {wd}, {c}, {weight}, {bias}, {mult}, {shift}, {op.kernel}, "
                      f"{op.stride}, {op.kernel // 2}, {tail});")
    else:
        w.body.append(f"    rn_conv2d({src}, {h}, {wd}, {c}, {weight}, {bias}, {mult}, {shift}, {cout}, {op.kernel}, "
                      f"{op.stride}, {op.kernel // 2}, {op.groups}, {tail});")


def _emit_cell(w: _Writer, prefix: str, cell: QRNN) -> str:
    arrays = {
        "w": w.array(f"{prefix}_w", cell.w, np.int8), "u": w.array(f"{prefix}_u", cell.u, np.int8),
        "w_mult": w.array(f"{prefix}_wm", cell.w_mult, np.int32), "w_shift": w.array(f"{prefix}_ws", cell.w_shift, np.int8),
        "u_mult": w.array(f"{prefix}_um", cell.u_mult, np.int32), "u_shift": w.array(f"{prefix}_us", cell.u_shift, np.int8),
        "bias_gate": w.array(f"{prefix}_bg", cell.bias_gate, np.int32),
        "bias_update": w.array(f"{prefix}_bu", cell.bias_update, np.int32),
    }
    for name, value in (("sz", cell.sz), ("sn", cell.sn)):
        if not INT32[0] <= value <= INT32[1]:
            raise OverflowError(f"{prefix}.{name} does not fit int32")
    fields = ", ".join(f".{k} = {v}" for k, v in arrays.items())
    return (f"{{{fields}, .sz = {cell.sz}, .sn = {cell.sn}, .input = {cell.w.shape[1]}, .hidden = {cell.w.shape[0]}, "
            f".gate = {NONLINEARITY[cell.gate]}, .update = {NONLINEARITY[cell.update]}, "
            f".state_input = {int(cell.state_input)}}}")


def _rnnpool_struct(w: _Writer, step: Step, op: QRNNPool) -> str:
    prefix = _ident(step.layer, "rnnpool")
    h, wd, c = step.in_shape
    (ph, pw), (sh, sw) = op.patch, op.stride
    gy, gx = axis_geometry(h, ph, sh, op.padding), axis_geometry(wd, pw, sw, op.padding)
    rnn1, rnn2 = _emit_cell(w, prefix + "_rnn1", op.rnn1), _emit_cell(w, prefix + "_rnn2", op.rnn2)
    mult = w.array(f"{prefix}_om", op.out_mult, np.int32)
    shift = w.array(f"{prefix}_os", op.out_shift, np.int8)
    bias = w.array(f"{prefix}_ob", op.out_bias, np.int32)
    w.arrays.append(
        f"static const rn_rnnpool_t {prefix} = {{\n    .rnn1 = {rnn1},\n    .rnn2 = {rnn2},\n"
        f"    .patch_h = {ph}, .patch_w = {pw}, .stride_h = {sh}, .stride_w = {sw},\n"
        f"    .pad_top = {gy.pad_before}, .pad_left = {gx.pad_before}, .patches_h = {gy.patches}, "
        f".patches_w = {gx.patches},\n    .replicate_h = {gy.replicate}, .replicate_w = {gx.replicate},\n"
        f"    .in_zp = {op.input.zero_point}, .out_zp = {op.output.zero_point},\n"
        f"    .out_mult = {mult}, .out_shift = {shift}, .out_bias = {bias}}};")
    return prefix


def _emit_rnnpool(w: _Writer, arena: ArenaPlan, step: Step, op: QRNNPool) -> None:
    prefix = _rnnpool_struct(w, step, op)
    h, wd, c = step.in_shape
    assert step.scratch is not None
    w.body.append(f"    rn_rnnpool(&{prefix}, {_buf(arena, step.inputs[0])}, {h}, {wd}, {c}, {_buf(arena, step.output)}, "
                  f"{_buf(arena, step.scratch, 'int32_t')});")


def _mbconv_struct(w: _Writer, step: Step, ops: tuple[list[QConv], QAdd | None]) -> str:
    convs, add = ops
    prefix = _ident(step.layer, "mbconv")
    fields: list[str] = []
    if len(convs) == 3:
        ew, eb, em, es = _requant_arrays(w, prefix + "_exp", convs[0])
        e = convs[0]
        fields.append(f".exp_w = {ew}, .exp_bias = {eb}, .exp_mult = {em}, .exp_shift = {es}, "
                      f".exp_out_zp = {e.output.zero_point}, .exp_act_min = {e.act_min}, .exp_act_max = {e.act_max}")
    dw, proj = convs[-2], convs[-1]
    dww, dwb, dwm, dws = _requant_arrays(w, prefix + "_dw", dw)
    pw, pb, pm, ps = _requant_arrays(w, prefix + "_proj", proj)
    fields.append(f".dw_w = {dww}, .dw_bias = {dwb}, .dw_mult = {dwm}, .dw_shift = {dws}, "
                  f".dw_in_zp = {dw.input.zero_point}, .dw_out_zp = {dw.output.zero_point}, "
                  f".dw_act_min = {dw.act_min}, .dw_act_max = {dw.act_max}")
    fields.append(f".proj_w = {pw}, .proj_bias = {pb}, .proj_mult = {pm}, .proj_shift = {ps}, "
                  f".proj_out_zp = {proj.output.zero_point}, .proj_act_min = {proj.act_min}, .proj_act_max = {proj.act_max}")
    if add is not None:
        fields.append(f".add_a_zp = {add.a.zero_point}, .add_a_mult = {add.m_a}, .add_a_shift = {add.s_a}, "
                      f".add_b_zp = {add.b.zero_point}, .add_b_mult = {add.m_b}, .add_b_shift = {add.s_b}, "
                      f".add_out_zp = {add.output.zero_point}")
    h, wd, c = step.in_shape
    fields.append(f".in_zp = {convs[0].input.zero_point}, .in_c = {c}, .hidden = {dw.weight.shape[0]}, "
                  f".out_c = {step.out_shape[2]}, .kernel = {dw.kernel}, .stride = {dw.stride}, "
                  f".has_residual = {int(add is not None)}")
    w.arrays.append(f"static const rn_mbconv_t {prefix} = {{\n    " + ",\n    ".join(fields) + "};")
    return prefix


def _emit_mbconv(w: _Writer, arena: ArenaPlan, step: Step, ops: tuple[list[QConv], QAdd | None]) -> None:
    prefix = _mbconv_struct(w, step, ops)
    h, wd, c = step.in_shape
    assert step.scratch is not None
    if step.inplace:
        assert step.output == step.inputs[0] and ops[1] is not None and len(ops[0]) == 3
        w.body.append(f"    rn_mbconv_inplace(&{prefix}, {_buf(arena, step.output)}, {h}, {wd}, {_buf(arena, step.scratch)});")
        return
    w.body.append(f"    rn_mbconv(&{prefix}, {_buf(arena, step.inputs[0])}, {h}, {wd}, {_buf(arena, step.output)}, "
                  f"{_buf(arena, step.scratch)});")


def _emit(w: _Writer, arena: ArenaPlan, step: Step, op, k: int) -> None:
    src, dst = _buf(arena, step.inputs[0]), _buf(arena, step.output)
    h, wd, c = step.in_shape
    if step.op == "mbconv":
        _emit_mbconv(w, arena, step, op)
    elif step.op in ("pointwise", "depthwise", "conv"):
        _emit_conv(w, arena, step, op, k)
    elif step.op == "rnnpool":
        _emit_rnnpool(w, arena, step, op)
    elif step.op == "add":
        assert isinstance(op, QAdd)
        n = h * wd * c
        w.body.append(f"    rn_add({src}, {_buf(arena, step.inputs[1])}, {n}, {op.a.zero_point}, {op.m_a}, {op.s_a}, "
                      f"{op.b.zero_point}, {op.m_b}, {op.s_b}, {op.output.zero_point}, {dst});")
    elif step.op in ("avgpool", "maxpool"):
        assert isinstance(op, QPool) and op.pool == step.op[:3]
        (kh, kw), (sh, sw) = op.kernel, op.stride
        if step.op == "maxpool":
            w.body.append(f"    rn_maxpool({src}, {h}, {wd}, {c}, {kh}, {kw}, {sh}, {sw}, {dst});")
        else:
            w.body.append(f"    rn_avgpool({src}, {h}, {wd}, {c}, {kh}, {kw}, {sh}, {sw}, {op.input.zero_point}, "
                          f"{op.multiplier}, {op.shift}, {op.output.zero_point}, {dst});")
    elif step.op == "l2norm":
        assert isinstance(op, QL2Norm)
        mult = w.array(_ident(step.layer, f"{k}_m"), op.mult, np.int32)
        w.body.append(f"    rn_l2norm({src}, {h * wd}, {c}, {op.input.zero_point}, {mult}, {op.output.zero_point}, {dst});")
    elif step.op == "maxout":
        w.body.append(f"    rn_maxout({src}, {h * wd}, {dst});")
    elif step.op == "fc":
        assert isinstance(op, QLinear)
        conv = op.conv
        weight, bias, mult, shift = _requant_arrays(w, _ident(step.layer, "fc"), conv)
        w.body.append(f"    rn_fully_connected({src}, {h * wd * c}, {weight}, {bias}, {mult}, {shift}, "
                      f"{conv.weight.shape[0]}, {conv.input.zero_point}, {conv.output.zero_point}, {conv.act_min}, "
                      f"{conv.act_max}, {dst});")
    else:  # pragma: no cover - lower() and this function list the same ops
        raise AssertionError(step.op)


NODE_OPS = {"conv": "RN_NODE_CONV", "depthwise": "RN_NODE_DEPTHWISE", "pointwise": "RN_NODE_POINTWISE",
            "mbconv": "RN_NODE_MBCONV", "rnnpool": "RN_NODE_RNNPOOL", "l2norm": "RN_NODE_L2NORM",
            "maxout": "RN_NODE_MAXOUT", "avgpool": "RN_NODE_GLOBAL_POOL", "maxpool": "RN_NODE_GLOBAL_POOL"}


def _map_place(arena: ArenaPlan, name: str) -> tuple[str, int]:
    if name == INPUT:
        return "RN_SPACE_INPUT", 0
    if name.startswith(OUTPUT):
        return "RN_SPACE_OUTPUT", int(name[len(OUTPUT):])
    return "RN_SPACE_ARENA", arena.offset(name)


def _node_params(w: _Writer, step: Step, op, k: int) -> str:
    """The parameters of a streamed step: a pointer expression (or "0")."""
    if step.op == "mbconv":
        return "&" + _mbconv_struct(w, step, op)
    if step.op == "rnnpool":
        prefix = _rnnpool_struct(w, step, op)
        return "&" + prefix
    if step.op == "maxout":
        return "0"
    if step.global_pool:
        assert isinstance(op, QPool) and op.pool == step.op[:3]
        name = _ident(step.layer, f"{k}_node")
        if step.op == "maxpool":
            w.arrays.append(f"static const rn_spool_t {name} = {{0, 0, 0, 0, 1}};")
        else:
            w.arrays.append(f"static const rn_spool_t {name} = {{{op.input.zero_point}, {op.multiplier}, {op.shift}, "
                            f"{op.output.zero_point}, 0}};")
        return "&" + name
    name = _ident(step.layer, f"{k}_node")
    if step.op == "l2norm":
        assert isinstance(op, QL2Norm)
        mult = w.array(_ident(step.layer, f"{k}_m"), op.mult, np.int32)
        w.arrays.append(f"static const rn_sl2norm_t {name} = {{{mult}, {op.input.zero_point}, {op.output.zero_point}}};")
        return "&" + name
    assert isinstance(op, QConv) and op.kernel == step.kernel and op.stride == step.stride
    if step.op == "pointwise":
        assert op.kernel == 1 and op.groups == 1
    if step.op == "depthwise":
        assert op.groups == step.in_shape[2] == step.out_shape[2]
    weight, bias, mult, shift = _requant_arrays(w, _ident(step.layer, f"{k}"), op)
    w.arrays.append(f"static const rn_sconv_t {name} = {{{weight}, {bias}, {mult}, {shift}, {op.input.zero_point}, "
                    f"{op.output.zero_point}, {op.act_min}, {op.act_max}, {step.out_shape[2]}, {op.groups}}};")
    return "&" + name


def _emit_segment(w: _Writer, arena: ArenaPlan, seg: Segment, pairs: list[tuple[Step, object]], index: int) -> None:
    """A streamed segment: its map and node tables and one rn_stream_run call."""
    steps = [pairs[i][0] for i in range(seg.first, seg.last + 1)]
    maps: list[str] = [steps[0].inputs[0]]
    for step in steps:
        if step.inputs[0] not in maps:
            raise AssertionError(f"segment {index}: {step.layer}/{step.op} reads {step.inputs[0]}, not made in it")
        if step.output in maps:
            raise AssertionError(f"segment {index}: {step.output} written twice")
        maps.append(step.output)
    shapes = {steps[0].inputs[0]: steps[0].in_shape, **{s.output: s.out_shape for s in steps}}
    rows = []
    for name in maps:
        space, offset = _map_place(arena, name)
        h, wd, c = shapes[name]
        buf = arena.buffers.get(name)
        slots = buf.rows if buf is not None and buf.rows is not None else h
        rows.append(f"    {{{offset}, {h}, {wd}, {c}, {slots}, {space}}}, /* {name} */")
    nodes = []
    for k in range(seg.first, seg.last + 1):
        step, op = pairs[k]
        if step.op == "rnnpool":
            assert isinstance(op, QRNNPool)
            gy = axis_geometry(step.in_shape[0], op.patch[0], op.stride[0], op.padding)
            assert (gy.patches, gy.pad_before, op.patch[0], op.stride[0]) == (step.rows, step.pad, step.kernel, step.stride)
        params = _node_params(w, step, op, k)
        scratch = arena.offset(step.scratch) if step.scratch else -1
        nodes.append(f"    {{{params}, {scratch}, {k + 1}, {NODE_OPS[step.op]}, {maps.index(step.inputs[0])}, "
                     f"{maps.index(step.output)}, {step.kernel}, {step.stride}, {step.pad}, {step.rows}, {step.groups}}}, "
                     f"/* {step.layer} {step.op} */")
    name = f"segment{index}"
    w.arrays.append(f"static const rn_map_t {name}_maps[{len(maps)}] = {{\n" + "\n".join(rows) + "\n};")
    w.arrays.append(f"static const rn_node_t {name}_nodes[{len(nodes)}] = {{\n" + "\n".join(nodes) + "\n};")
    w.arrays.append(f"static const rn_stream_t {name} = {{{name}_maps, {name}_nodes, {len(maps)}, {len(nodes)}}};")
    w.arrays.append(f"static int32_t {name}_next[{len(maps)}];")
    reads_input = maps[0] == INPUT
    w.body.append(f"    /* segment {index}: {', '.join(seg.layers)} row by row ({len(nodes)} kernel calls, markers "
                  f"{seg.first + 1}..{seg.last + 1}) */")
    w.body.append(f"    rc = rn_stream_run(&{name}, arena.bytes, input, output, {name}_next, &model_mark, "
                  f"{'read_row, ctx, MODEL_INPUT_ROWS' if reads_input else '0, 0, 0'});")
    w.body.append("    if (rc != 0) {")
    w.body.append("        MODEL_MARK(0);")
    w.body.append("        return rc;")
    w.body.append("    }")


def _describe(marker: int, step: Step, op) -> dict:
    """A kernel call as data (export.json): what a latency model needs to know of it."""
    args: dict = {}
    if step.op == "mbconv":
        convs, add = op
        args = {"kernel": convs[-2].kernel, "stride": convs[-2].stride, "hidden": int(convs[-2].weight.shape[0]),
                "expand": len(convs) == 3, "residual": add is not None}
    elif isinstance(op, QConv):
        args = {"kernel": op.kernel, "stride": op.stride, "groups": op.groups}
    elif isinstance(op, QRNNPool):
        args = {"patch": list(op.patch), "stride": list(op.stride), "h1": int(op.rnn1.w.shape[0]),
                "h2": int(op.rnn2.w.shape[0]), "gate": op.rnn1.gate, "update": op.rnn1.update}
    elif isinstance(op, QPool):
        args = {"kernel": list(op.kernel), "stride": list(op.stride)}
    return {"marker": marker, "layer": step.layer, "op": step.op, "in_shape": list(step.in_shape),
            "out_shape": list(step.out_shape), "args": args}


def _pair_ops(arena: ArenaPlan, qnet: QuantizedNet) -> list[tuple[Step, object]]:
    """Each step of the plan with the quantized op it runs (checked against the reference)."""
    by_layer: dict[str, list] = {}
    for block in qnet.blocks:
        by_layer[block.layer] = list(block.ops) + ([block.add] if block.add is not None else [])
    for j, head in enumerate(qnet.heads):
        by_layer[head_name(j)] = [o for o in (head.norm, head.extra, head.loc, head.conf) if o is not None]
        if head.max_out:
            by_layer[head_name(j)].append("maxout")
    pairs = []
    for step in arena.steps:
        ops = by_layer.get(step.layer)
        if not ops:
            raise AssertionError(f"step {step.layer}/{step.op} has no quantized op")
        if step.op == "mbconv":  # the whole block: its convolutions and the residual add
            convs = [o for o in ops if isinstance(o, QConv)]
            adds = [o for o in ops if isinstance(o, QAdd)]
            if len(convs) not in (2, 3) or len(convs) + len(adds) != len(ops):
                raise AssertionError(f"step {step.layer}/mbconv meets {[type(o).__name__ for o in ops]}")
            ops.clear()
            pairs.append((step, (convs, adds[0] if adds else None)))
            continue
        op = ops.pop(0)
        expected = {"add": QAdd, "rnnpool": QRNNPool, "avgpool": QPool, "maxpool": QPool, "fc": QLinear,
                    "l2norm": QL2Norm, "maxout": str}.get(step.op, QConv)
        if not isinstance(op, expected):
            raise AssertionError(f"step {step.layer}/{step.op} meets {type(op).__name__}")
        pairs.append((step, op))
    leftover = {k: v for k, v in by_layer.items() if v}
    if leftover:
        raise AssertionError(f"quantized ops without a step: {leftover}")
    return pairs


def generate(qnet: QuantizedNet, spec: ArchSpec, out_dir: Path, class_names: list[str] | None = None) -> Generated:
    """Write ``model.h`` and ``model.c`` for ``qnet`` (quantized from a model built from ``spec``)."""
    layers = expand(spec)
    heads = head_specs(spec)
    arena = plan(layers, heads=heads)
    w = _Writer()
    calls: list[dict] = []
    pairs = _pair_ops(arena, qnet)
    w.body.append("    int rc = 0;")
    for index, seg in enumerate(arena.segments):
        if seg.streamed:
            _emit_segment(w, arena, seg, pairs, index)
            continue
        for k in range(seg.first, seg.last + 1):
            step, op = pairs[k]
            w.body.append(f"    /* {step.layer} {step.op}: {'x'.join(map(str, step.in_shape))} -> "
                          f"{'x'.join(map(str, step.out_shape))} */")
            w.body.append(f"    MODEL_MARK({k + 1});")
            _emit(w, arena, step, op, k)
    for k, (step, op) in enumerate(pairs):
        calls.append(_describe(k + 1, step, op))
        calls[-1]["streamed"] = arena.segment_of(k).streamed
    w.body.append(f"    MODEL_MARK({len(arena.steps) + 1});")
    h, wd, c = spec.input
    if heads:
        out_size = sum(hd.pred[0] * hd.pred[1] * 6 for hd in heads)
        classes = 2
    else:
        out_h, out_w, out_c = arena.steps[-1].out_shape
        out_size = classes = out_h * out_w * out_c
    name = spec.name or "model"
    header = f"""/* model.h - {name}, exported by rnnpool-nas: int8 NHWC in, int8 out. Generated; do not edit. */
#ifndef MODEL_H
#define MODEL_H

#include <stdint.h>

#define MODEL_INPUT_H {h}
#define MODEL_INPUT_W {wd}
#define MODEL_INPUT_C {c}
#define MODEL_INPUT_SIZE {h * wd * c}
#define MODEL_OUTPUT_SIZE {out_size}
#define MODEL_CLASSES {classes}
#define MODEL_ARENA_BYTES {max(4, arena.arena_bytes)}
/* model_run_stream's input ring: MODEL_INPUT_ROWS rows of MODEL_INPUT_W * MODEL_INPUT_C bytes */
#define MODEL_INPUT_ROWS {arena.input_rows}
#define MODEL_STREAM_INPUT_BYTES {arena.stream_input_bytes}
/* the longest chain of row-streamed kernel calls (the stream driver's recursion depth) */
#define MODEL_STREAM_DEPTH {_stream_depth(arena)}
{_head_header(qnet, spec, heads) if heads else ""}

/* input: q = pixel - 128 (real = (q - zero_point) * scale = pixel / 255) */
extern const float model_input_scale;
extern const int32_t model_input_zero_point;
/* output: real = (q - zero_point) * scale (the float model's logits) */
extern const float model_output_scale;
extern const int32_t model_output_zero_point;
extern const char *const model_class_names[MODEL_CLASSES];

/* Runs the network on one int8 NHWC image; writes MODEL_OUTPUT_SIZE int8 values. Returns 0. */
int model_run(const int8_t *input, int8_t *output);
/* Fills dst with input row `row` (MODEL_INPUT_W * MODEL_INPUT_C int8 values, NHWC); rows are asked
   for in order 0, 1, ..., MODEL_INPUT_H - 1, each once. Returns 0, or an error code. */
typedef int (*model_read_row_t)(void *ctx, int32_t row, int8_t *dst);
/* model_run on an image delivered row by row (a camera's lines): only MODEL_INPUT_ROWS input rows
   are ever held (MODEL_STREAM_INPUT_BYTES bytes, outside the arena). Returns 0, or the first
   nonzero code read_row returned (the output is then incomplete). */
int model_run_stream(model_read_row_t read_row, void *ctx, int8_t *output);
/* The same on float pixels in [0, 1] (NHWC); writes the dequantized outputs. Returns 0. */
int model_run_float(const float *input, float *output);

#endif
"""
    names = class_names if class_names and len(class_names) == classes else [str(i) for i in range(classes)]
    names_c = ", ".join('"' + n.replace("\\", "\\\\").replace('"', '\\"') + '"' for n in names)
    source = "\n".join([
        f"/* model.c - {name}: {len(arena.steps)} kernel calls, arena {arena.arena_bytes} bytes. Generated by",
        " * rnnpool-nas export from the architecture spec and checkpoint; bit-exact with the Python int8",
        " * reference (rnnpool_nas/quant/reference.py). Do not edit. */",
        '#include <string.h>',
        "",
        '#include "model.h"',
        '#include "rn_runtime.h"',
        '#include "rn_stream.h"',
        "",
        f"const float model_input_scale = {qnet.input.scale!r}f;",
        f"const int32_t model_input_zero_point = {qnet.input.zero_point};",
        f"const float model_output_scale = {qnet.output.scale!r}f;",
        f"const int32_t model_output_zero_point = {qnet.output.zero_point};",
        f"const char *const model_class_names[MODEL_CLASSES] = {{{names_c}}};",
        "",
        "/* Kernel-call markers: model_mark holds k + 1 while kernel call k runs (0 outside model_run),",
        " * so an emulator can attribute cycles to layers (rnnpool-nas measure). Two stores a call. */",
        "volatile uint32_t model_mark;",
        "#define MODEL_MARK(k) (model_mark = (uint32_t)(k))",
        "",
        "/* One static arena; the memory plan (rnnpool_nas/lower/plan.py) reuses a buffer once it is dead. */",
        "static union {",
        "    int32_t align;",
        "    int8_t bytes[MODEL_ARENA_BYTES];",
        "} arena;",
        "",
        *w.arrays,
        "",
        *(_head_table(qnet, spec, heads) if heads else []),
        "/* The network; read_row (with ctx) delivers the input rows to a first streamed segment. */",
        "static int model_body(const int8_t *input, int8_t *output, rn_read_row_t read_row, void *ctx) {",
        *w.body,
        *([f"    memcpy(output, {_buf(arena, arena.output)}, MODEL_OUTPUT_SIZE);"] if arena.output else []),
        "    MODEL_MARK(0);",
        "    (void)read_row;",
        "    (void)ctx;",
        "    return rc;",
        "}",
        "",
        "int model_run(const int8_t *input, int8_t *output) {",
        "    return model_body(input, output, 0, 0);",
        "}",
        "",
        *_run_stream(arena),
        "",
        "int model_run_float(const float *input, float *output) {",
        "    static int8_t q_in[MODEL_INPUT_SIZE];",
        "    static int8_t q_out[MODEL_OUTPUT_SIZE];",
        "    int i;",
        "    for (i = 0; i < MODEL_INPUT_SIZE; i++) {",
        "        float v = input[i] * 255.0f;",
        "        int32_t p = (int32_t)(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v + 0.5f);",
        "        q_in[i] = (int8_t)(p - 128);",
        "    }",
        "    model_run(q_in, q_out);",
        *(_float_heads() if heads else [
            "    for (i = 0; i < MODEL_OUTPUT_SIZE; i++)",
            "        output[i] = (float)(q_out[i] - model_output_zero_point) * model_output_scale;"]),
        "    return 0;",
        "}",
        "",
    ])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model.h").write_text(header)
    (out_dir / "model.c").write_text(source)
    return Generated(arena, w.const_bytes, (h, wd, c), out_size, calls)


def _stream_depth(arena: ArenaPlan) -> int:
    """The longest chain of streamed steps (each push of a row recurses into the step reading it)."""
    depth = 0
    for seg in arena.segments:
        if not seg.streamed:
            continue
        level: dict[str, int] = {}
        for k in range(seg.first, seg.last + 1):
            step = arena.steps[k]
            level[step.output] = level.get(step.inputs[0], 0) + 1
            depth = max(depth, level[step.output])
    return depth


def _run_stream(arena: ArenaPlan) -> list[str]:
    """model_run_stream: the input ring, and either the streamed first segment reading it row by
    row or, when the first segment runs whole maps, the whole image gathered first."""
    first = arena.segments[0]
    streamed = first.streamed and arena.steps[first.first].inputs[0] == INPUT
    lines = ["int model_run_stream(model_read_row_t read_row, void *ctx, int8_t *output) {",
             "    static union {",
             "        int32_t align;",
             "        int8_t bytes[MODEL_STREAM_INPUT_BYTES];",
             "    } rows;"]
    if streamed:
        lines += ["    return model_body(rows.bytes, output, read_row, ctx);", "}"]
    else:
        lines += ["    int32_t y;",
                  "    for (y = 0; y < MODEL_INPUT_H; y++) {",
                  "        const int rc = read_row(ctx, y, rows.bytes + y * MODEL_INPUT_W * MODEL_INPUT_C);",
                  "        if (rc != 0) {",
                  "            return rc;",
                  "        }",
                  "    }",
                  "    return model_body(rows.bytes, output, 0, 0);", "}"]
    return lines


def _head_header(qnet: QuantizedNet, spec: ArchSpec, heads) -> str:
    return f"""
/* Detection: the output holds, per head, its rows x cols x 4 box offsets (SSD encoding, variances
   0.1 and 0.2, relative to one square anchor per position) then its rows x cols x 2 scores
   (background, face), each with the head's own scale and zero point. */
#define MODEL_HEADS {len(heads)}
#define MODEL_ANCHORS {sum(hd.pred[0] * hd.pred[1] for hd in heads)}
#define MODEL_DETECT_TOP_K {min(5000, sum(hd.pred[0] * hd.pred[1] for hd in heads))}
#include "rn_runtime.h"
typedef rn_head_t model_head_t;
extern const model_head_t model_heads[MODEL_HEADS];
/* Face boxes from model_run's output: score > 0.05, the MODEL_DETECT_TOP_K best through NMS at
   IoU 0.3, at most max_boxes kept (rnnpool_nas/detect/nms.py's defaults). Returns the count. */
int model_detect(const int8_t *raw, rn_box_t *boxes, int max_boxes);
"""


def _head_table(qnet: QuantizedNet, spec: ArchSpec, heads) -> list[str]:
    rows, offset = [], 0
    h, w = spec.input[0], spec.input[1]
    for hd, src, qh in zip(heads, spec.detection.sources, qnet.heads):
        r, c = hd.pred[0], hd.pred[1]
        rows.append(f"    {{{offset}, {offset + r * c * 4}, {r}, {c}, {h / r!r}, {w / c!r}, {float(src.anchor)!r}, "
                    f"{qh.loc.output.scale!r}f, {qh.conf.output.scale!r}f, {qh.loc.output.zero_point}, "
                    f"{qh.conf.output.zero_point}}},")
        offset += r * c * 6
    return ["const model_head_t model_heads[MODEL_HEADS] = {", *rows, "};", "",
            "int model_detect(const int8_t *raw, rn_box_t *boxes, int max_boxes) {",
            "    static rn_candidate_t work[MODEL_DETECT_TOP_K];",
            "    return rn_detect(raw, model_heads, MODEL_HEADS, 0.05, 0.3, MODEL_DETECT_TOP_K, work, boxes, max_boxes);",
            "}", ""]


def _float_heads() -> list[str]:
    """A detector's float wrapper: every head's offsets and scores at their own scales."""
    return [
        "    for (i = 0; i < MODEL_HEADS; i++) {",
        "        const model_head_t *hd = &model_heads[i];",
        "        int32_t k, n = hd->rows * hd->cols;",
        "        for (k = 0; k < 4 * n; k++)",
        "            output[hd->loc_offset + k] = (float)(q_out[hd->loc_offset + k] - hd->loc_zero_point) * hd->loc_scale;",
        "        for (k = 0; k < 2 * n; k++)",
        "            output[hd->conf_offset + k] = (float)(q_out[hd->conf_offset + k] - hd->conf_zero_point) * hd->conf_scale;",
        "    }",
    ]


def c_array(name: str, values: np.ndarray) -> str:
    """A ``static const int8_t`` array definition (the sample input compiled into the m4 image)."""
    w = _Writer()
    w.array(name, values, np.int8)
    return w.arrays[0]
