"""Single-kernel micro-benchmarks of the C runtime on the emulated Cortex-M4.

A :class:`Bench` is one call of one runtime kernel with given shapes (and the arguments the
generated code would pass). :func:`run_benches` writes one C driver (``bench.c``) that holds a
table of all of them, builds it with the runtime, the exported projects' start-up code and linker
script and the same ``M4FLAGS`` as their Makefile (``arm-none-eabi-gcc -O2``), runs it once in
the emulator, and reads each call's cycles from the ``model_mark`` markers: the driver stores
i + 1 before bench i, as the generated ``model.c`` does before each kernel call, so a bench
includes its argument set-up just like a call in a network.

Inputs and weights are pseudo-random bytes (a fixed LCG); requantization shifts are chosen per
bench so that accumulators land in int8 range and RNNPool's Q24 pre-activations mostly within the
[-8, 8] of its lookup tables, as in a quantized network (the few data-dependent branches, clamps
and the table's ends, then take the paths they take in real models). Activations take the full
int8 range unless a bench asks for a narrower ReLU range (``relu``), as trained networks mostly do;
weights, inputs and rn_mbconv's rows are word-aligned, as the arena and the generated arrays are.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..lower.plan import mbconv_scratch_bytes, mbconv_split_scratch_bytes, rnnpool_scratch_words
from ..errors import UserError
from ..export import RUNTIME_DIR, runtime_files
from .emulate import Emulation, emulate

TEMPLATES = Path(__file__).resolve().parents[1] / "export" / "templates"
OPS = {"conv": 1, "depthwise": 2, "pointwise": 3, "add": 4, "avgpool": 5, "maxpool": 6, "fc": 7, "rnnpool": 8,
       "l2norm": 9, "maxout": 10, "mbconv": 11}
NONLINEARITY = {"sigmoid": 0, "tanh": 1, "quantSigmoid": 2, "quantTanh": 3}  # RN_* of rn_runtime.h
FIELDS = ("op", "in_h", "in_w", "in_c", "out_c", "k", "s", "pad", "groups", "kh", "kw", "sh", "sw", "shift",
          "relu", "ph", "pw", "pad_top", "pad_left", "patches_h", "patches_w", "rep_h", "rep_w", "h1", "h2",
          "gate", "update", "s_w1", "s_u1", "s_w2", "s_u2", "out_bytes", "t", "res", "hidden", "w_dw", "w_proj",
          "scratch_bytes")


@dataclass
class Bench:
    """One kernel call: ``op`` (a family of ``rnnpool_nas.cost.latency.FEATURES``), shapes, and
    ``args`` in the form :func:`rnnpool_nas.cost.latency.call_args` gives (RNNPool also
    ``replicate`` and ``gate``/``update`` names)."""

    op: str
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    args: dict[str, Any] = field(default_factory=dict)
    cycles: int = 0
    instructions: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "in_shape": list(self.in_shape), "out_shape": list(self.out_shape),
                "args": {k: list(v) if isinstance(v, tuple) else v for k, v in self.args.items()},
                "cycles": self.cycles, "instructions": self.instructions}


def m4_flags() -> list[str]:
    """``M4FLAGS`` of the exported projects' Makefile (one source of truth for the build)."""
    m = re.search(r"^M4FLAGS\s*:=\s*(.+)$", (TEMPLATES / "Makefile").read_text(), re.MULTILINE)
    if m is None:  # pragma: no cover - the template always defines it
        raise RuntimeError("templates/Makefile defines no M4FLAGS")
    return [f for f in m.group(1).split() if f != "-fstack-usage"]


def _log2(x: float) -> float:
    return math.log2(max(x, 1.0))


def _row(b: Bench) -> dict[str, int]:
    """The driver's table row of ``b`` (every field of :data:`FIELDS`)."""
    (hi, wi, ci), (ho, wo, co) = b.in_shape, b.out_shape
    a = b.args
    r = dict.fromkeys(FIELDS, 0)
    r.update(op=OPS[b.op], in_h=hi, in_w=wi, in_c=ci, out_c=co, out_bytes=ho * wo * co)
    if b.op in ("conv", "depthwise", "pointwise"):
        taps = a["kernel"] ** 2 * (ci // a["groups"])
        r.update(k=a["kernel"], s=a["stride"], pad=a["pad"], groups=a["groups"], relu=a.get("relu", 1),
                 shift=round(37.1 + 0.5 * _log2(taps)))
    elif b.op == "fc":
        r.update(shift=round(37.1 + 0.5 * _log2(hi * wi * ci)), relu=a.get("relu", 0))
    elif b.op == "mbconv":
        k, t = a["kernel"], a["t"]
        hidden = t * ci
        w_dw = ((hidden * ci if t != 1 else 0) + 3) & ~3
        split = a.get("split", 1)
        r.update(k=k, s=a["stride"], t=t, res=int(a["residual"]), hidden=hidden, relu=a.get("relu", 0),
                 w_dw=w_dw, w_proj=(w_dw + hidden * k * k + 3) & ~3, groups=split,
                 scratch_bytes=(mbconv_split_scratch_bytes(split, k, wi, wo, hidden) if split > 1
                                else mbconv_scratch_bytes(t != 1, k, wi, wo, hidden)),
                 s_w1=round(37.1 + 0.5 * _log2(ci)), s_u1=round(37.1 + 0.5 * _log2(k * k)),
                 s_w2=round(37.1 + 0.5 * _log2(hidden)))
    elif b.op in ("avgpool", "maxpool"):
        (kh, kw), (sh, sw) = a["kernel"], a["stride"]
        r.update(kh=kh, kw=kw, sh=sh, sw=sw, shift=30 + round(_log2(kh * kw)))
    elif b.op == "rnnpool":
        (ph, pw), (sh, sw), (pt, pl) = a["patch"], a["stride"], a["pad"]
        (nh, nw), (rh, rw) = a["patches"], a["replicate"]
        h1, h2 = a["h1"], a["h2"]
        r.update(ph=ph, pw=pw, sh=sh, sw=sw, pad_top=pt, pad_left=pl, patches_h=nh, patches_w=nw, rep_h=rh, rep_w=rw,
                 h1=h1, h2=h2, gate=NONLINEARITY[a["gate"]], update=NONLINEARITY[a["update"]],
                 s_w1=round(18.4 + 0.5 * _log2(ci)), s_u1=round(19.2 + 0.5 * _log2(h1)),
                 s_w2=round(19.2 + 0.5 * _log2(h1)), s_u2=round(19.2 + 0.5 * _log2(h2)))
    return r


#: The drivers' deterministic inputs (a 32-bit LCG; fill8 with ``symmetric`` never writes -128):
#: this driver's and benchmarks/bench_cmsis.py's, so both measure the same bytes.
FILL_C = r"""static uint32_t seed = 12345u;

static uint32_t next(void) {
    seed = seed * 1664525u + 1013904223u;
    return seed >> 8;
}

static void fill8(int8_t *p, int n, int symmetric) {
    int i;
    for (i = 0; i < n; i++) {
        const int8_t v = (int8_t)(next() & 0xFFu);
        p[i] = symmetric && v == -128 ? (int8_t)-127 : v;  /* weights are symmetric: [-127, 127] */
    }
}"""

DRIVER = r"""/* bench.c - GENERATED by rnnpool_nas.measure.microbench: one runtime kernel call per table row.
 * model_mark = i + 1 while row i runs (as model.c marks its kernel calls), 0 while preparing. */
#include <stdint.h>
#include <string.h>

#include "rn_runtime.h"
#include "rn_stream.h"
#include "semihost.h"

enum { %(enum)s, NFIELDS };
#define NBENCH %(nbench)d
static const int32_t table[NBENCH][NFIELDS] = {
%(rows)s
};

volatile uint32_t model_mark;
static int32_t in_words[%(in_words)d], w_words[%(w_words)d], out_words[%(out_words)d];   /* word-aligned */
#define in_buf ((int8_t *)in_words)
#define w_buf ((int8_t *)w_words)
#define out_buf ((int8_t *)out_words)
static int32_t scratch[%(scratch_words)d];
static int32_t bias[%(channels)d], mult[%(channels)d], mult15[%(channels)d], l2m[%(channels)d];
static int32_t bias_gate[%(channels)d], bias_update[%(channels)d];
static int8_t shift[%(channels)d], s_w1[%(channels)d], s_u1[%(channels)d], s_w2[%(channels)d], s_u2[%(channels)d];
static rn_rnnpool_t pool;
static rn_mbconv_t mb;
/* an MBConv in channel groups runs as the one node of a streamed segment (stream.c), input and
 * output held whole */
static rn_map_t smaps[2];
static rn_node_t snode;
static const rn_stream_t sseg = {smaps, &snode, 2, 1};
static int32_t snext[2];
%(fill)s

static void prepare(const int32_t *t, int bench) {
    int i;
    for (i = 0; i < %(channels)d; i++) {
        bias[i] = (int32_t)(next() %% 8192u) - 4096;
        mult[i] = (int32_t)((1u << 30) + next() %% (1u << 24));
        mult15[i] = (int32_t)((1u << 14) + next() %% (1u << 13));
        bias_gate[i] = (int32_t)(next() %% (1u << 24)) - (1 << 23);
        bias_update[i] = (int32_t)(next() %% (1u << 24)) - (1 << 23);
        l2m[i] = (int32_t)((1u << 24) + next() %% (1u << 22));
        shift[i] = (int8_t)t[F_shift];
        s_w1[i] = (int8_t)t[F_s_w1];
        s_u1[i] = (int8_t)t[F_s_u1];
        s_w2[i] = (int8_t)t[F_s_w2];
        s_u2[i] = (int8_t)t[F_s_u2];
    }
    if (t[F_op] == 8) {
        const int h1 = t[F_h1], h2 = t[F_h2];
        pool.rnn1.w = w_buf; pool.rnn1.u = w_buf + 65536;
        pool.rnn1.w_mult = mult; pool.rnn1.w_shift = s_w1; pool.rnn1.u_mult = mult15; pool.rnn1.u_shift = s_u1;
        pool.rnn1.bias_gate = bias_gate; pool.rnn1.bias_update = bias_update;
        pool.rnn1.sz = 11744051; pool.rnn1.sn = 838861;
        pool.rnn1.input = (int16_t)t[F_in_c]; pool.rnn1.hidden = (int16_t)h1;
        pool.rnn1.gate = (uint8_t)t[F_gate]; pool.rnn1.update = (uint8_t)t[F_update]; pool.rnn1.state_input = 0;
        pool.rnn2 = pool.rnn1;
        pool.rnn2.w = w_buf + 131072; pool.rnn2.u = w_buf + 196608;
        pool.rnn2.w_mult = mult15; pool.rnn2.w_shift = s_w2; pool.rnn2.u_shift = s_u2;
        pool.rnn2.input = (int16_t)h1; pool.rnn2.hidden = (int16_t)h2; pool.rnn2.state_input = 1;
        pool.patch_h = (int16_t)t[F_ph]; pool.patch_w = (int16_t)t[F_pw];
        pool.stride_h = (int16_t)t[F_sh]; pool.stride_w = (int16_t)t[F_sw];
        pool.pad_top = (int16_t)t[F_pad_top]; pool.pad_left = (int16_t)t[F_pad_left];
        pool.patches_h = (int16_t)t[F_patches_h]; pool.patches_w = (int16_t)t[F_patches_w];
        pool.replicate_h = (int16_t)t[F_rep_h]; pool.replicate_w = (int16_t)t[F_rep_w];
        pool.in_zp = -3; pool.out_zp = 5;
        pool.out_mult = mult; pool.out_shift = shift; pool.out_bias = bias;
        for (i = 0; i < 4 * h2; i++) shift[i] = 48;
    }
    if (t[F_op] == 11) {   /* MBConv: relu6-like full-range expand and depthwise, linear project */
        const int32_t lo = t[F_relu] ? -128 + 7 : -128;
        mb.exp_w = t[F_t] != 1 ? w_buf : 0; mb.exp_bias = bias; mb.exp_mult = mult; mb.exp_shift = s_w1;
        mb.exp_out_zp = -128; mb.exp_act_min = lo; mb.exp_act_max = 127;
        mb.dw_w = w_buf + t[F_w_dw]; mb.dw_bias = bias; mb.dw_mult = mult; mb.dw_shift = s_u1;
        mb.dw_in_zp = t[F_t] != 1 ? -128 : -9; mb.dw_out_zp = -128; mb.dw_act_min = lo; mb.dw_act_max = 127;
        mb.proj_w = w_buf + t[F_w_proj]; mb.proj_bias = bias; mb.proj_mult = mult; mb.proj_shift = s_w2;
        mb.proj_out_zp = 3; mb.proj_act_min = -128; mb.proj_act_max = 127;
        mb.add_a_zp = -9; mb.add_a_mult = 1236950581; mb.add_a_shift = 31;
        mb.add_b_zp = 3; mb.add_b_mult = 1173008874; mb.add_b_shift = 31; mb.add_out_zp = -2;
        mb.in_zp = -9; mb.in_c = (int16_t)t[F_in_c]; mb.hidden = (int16_t)t[F_hidden]; mb.out_c = (int16_t)t[F_out_c];
        mb.kernel = (int16_t)t[F_k]; mb.stride = (int16_t)t[F_s]; mb.has_residual = (uint8_t)t[F_res];
        if (t[F_groups] > 1) {
            const int pad = t[F_k] / 2;
            const int out_h = (t[F_in_h] + 2 * pad - t[F_k]) / t[F_s] + 1;
            const int out_w = (t[F_in_w] + 2 * pad - t[F_k]) / t[F_s] + 1;
            smaps[0].offset = 0; smaps[0].h = (int16_t)t[F_in_h]; smaps[0].w = (int16_t)t[F_in_w];
            smaps[0].c = (int16_t)t[F_in_c]; smaps[0].slots = (int16_t)t[F_in_h]; smaps[0].space = RN_SPACE_INPUT;
            smaps[1].offset = 0; smaps[1].h = (int16_t)out_h; smaps[1].w = (int16_t)out_w;
            smaps[1].c = (int16_t)t[F_out_c]; smaps[1].slots = (int16_t)out_h; smaps[1].space = RN_SPACE_OUTPUT;
            snode.params = &mb; snode.scratch = 0; snode.marker = (uint32_t)(bench + 1); snode.op = RN_NODE_MBCONV;
            snode.in = 0; snode.out = 1; snode.kernel = (int16_t)t[F_k]; snode.stride = (int16_t)t[F_s];
            snode.pad = (int16_t)pad; snode.rows = (int16_t)out_h; snode.groups = (int16_t)t[F_groups];
        }
    }
}

static void run(const int32_t *t) {
    const int32_t lo = t[F_relu] ? -128 + 7 : -128;
    switch (t[F_op]) {
    case 1:
        rn_conv2d(in_buf, t[F_in_h], t[F_in_w], t[F_in_c], w_buf, bias, mult, shift, t[F_out_c], t[F_k], t[F_s],
                  t[F_pad], t[F_groups], -128, -121, lo, 127, out_buf);
        break;
    case 2:
        rn_depthwise_conv2d(in_buf, t[F_in_h], t[F_in_w], t[F_in_c], w_buf, bias, mult, shift, t[F_k], t[F_s],
                            t[F_pad], -9, -121, lo, 127, out_buf);
        break;
    case 3:
        rn_pointwise_conv2d(in_buf, t[F_in_h], t[F_in_w], t[F_in_c], w_buf, bias, mult, shift, t[F_out_c], t[F_s],
                            -9, 3, lo, 127, out_buf);
        break;
    case 4:
        rn_add(in_buf, out_buf, t[F_in_h] * t[F_in_w] * t[F_in_c], -5, 1236950581, 31, 7, 1173008874, 31, -2,
               out_buf);
        break;
    case 5:
        rn_avgpool(in_buf, t[F_in_h], t[F_in_w], t[F_in_c], t[F_kh], t[F_kw], t[F_sh], t[F_sw], -7,
                   1 << 30, t[F_shift], 4, out_buf);
        break;
    case 6:
        rn_maxpool(in_buf, t[F_in_h], t[F_in_w], t[F_in_c], t[F_kh], t[F_kw], t[F_sh], t[F_sw], out_buf);
        break;
    case 7:
        rn_fully_connected(in_buf, t[F_in_h] * t[F_in_w] * t[F_in_c], w_buf, bias, mult, shift, t[F_out_c], -11, 2,
                           lo, 127, out_buf);
        break;
    case 8:
        rn_rnnpool(&pool, in_buf, t[F_in_h], t[F_in_w], t[F_in_c], out_buf, scratch);
        break;
    case 9:
        rn_l2norm(in_buf, t[F_in_h] * t[F_in_w], t[F_in_c], -7, l2m, 3, out_buf);
        break;
    case 10:
        rn_maxout(in_buf, t[F_in_h] * t[F_in_w], out_buf);
        break;
    case 11:
        if (t[F_groups] > 1) {
            rn_stream_run(&sseg, (int8_t *)scratch, in_buf, out_buf, snext, &model_mark, 0, 0, 0);
        } else {
            rn_mbconv(&mb, in_buf, t[F_in_h], t[F_in_w], out_buf, (int8_t *)scratch);
        }
        break;
    default:
        break;
    }
}

int main(void) {
    int i;
    fill8(in_buf, (int)sizeof in_words, 0);
    fill8(w_buf, (int)sizeof w_words, 1);
    fill8(out_buf, (int)sizeof out_words, 0);
    for (i = 0; i < NBENCH; i++) {
        prepare(table[i], i);
        model_mark = (uint32_t)(i + 1);
        run(table[i]);
        model_mark = 0;
    }
    model_mark = NBENCH + 1;  /* the copy-out of model_run: a classifier's 16 output bytes */
    memcpy(in_buf, out_buf, 16);
    model_mark = 0;
    semihost_write("benchmarks: done\n");
    return 0;
}
"""


def driver_source(benches: list[Bench]) -> str:
    """``bench.c`` for ``benches`` (see the module docstring)."""
    rows = [_row(b) for b in benches]
    in_bytes = max(b.in_shape[0] * b.in_shape[1] * b.in_shape[2] for b in benches)
    out_bytes = max(max(r["out_bytes"] for r in rows), in_bytes, 16)
    w_bytes = max([262144] + [b.in_shape[0] * b.in_shape[1] * b.in_shape[2] * b.out_shape[2] for b in benches
                              if b.op == "fc"]
                  + [b.args["kernel"] ** 2 * (b.in_shape[2] // b.args["groups"]) * b.out_shape[2] for b in benches
                     if b.op in ("conv", "depthwise", "pointwise")]
                  + [r["w_proj"] + r["hidden"] * r["out_c"] for r in rows if r["op"] == OPS["mbconv"]])
    channels = max([b.out_shape[2] for b in benches] + [4 * b.args["h2"] for b in benches if b.op == "rnnpool"]
                   + [max(b.args["h1"], b.args["h2"]) for b in benches if b.op == "rnnpool"]
                   + [r["hidden"] for r in rows] + [16])
    scratch = max([rnnpool_scratch_words(*b.args["patch"], b.args["h1"], b.args["h2"]) for b in benches
                   if b.op == "rnnpool"] + [(r["scratch_bytes"] + 3) // 4 for r in rows] + [1])
    return DRIVER % {
        "fill": FILL_C,
        "enum": ", ".join(f"F_{name}" for name in FIELDS), "nbench": len(benches),
        "rows": ",\n".join("    {" + ", ".join(str(r[f]) for f in FIELDS) + "}" for r in rows),
        "in_words": (in_bytes + 3) // 4, "w_words": (w_bytes + 3) // 4, "out_words": (out_bytes + 3) // 4,
        "scratch_words": scratch, "channels": channels,
    }


def build(benches: list[Bench], build_dir: Path) -> Path:
    """Write and compile the driver for ``benches`` in ``build_dir``; the ELF's path."""
    cc = shutil.which("arm-none-eabi-gcc")
    if cc is None:
        raise UserError("arm-none-eabi-gcc is not installed: `make install` installs gcc-arm-none-eabi and "
                        "libnewlib-arm-none-eabi")
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / "bench.c").write_text(driver_source(benches))
    for name in ("startup_m4.c", "semihost.h", "mps2_an386.ld"):
        shutil.copy2(TEMPLATES / name, build_dir / name)
    sources = [str(build_dir / "bench.c"), str(build_dir / "startup_m4.c")]
    sources += [str(p) for p in runtime_files() if p.suffix == ".c"]
    elf = build_dir / "bench.elf"
    cmd = [cc, "-std=c99", "-Wall", "-Wextra", *m4_flags(), f"-I{build_dir}", f"-I{RUNTIME_DIR}", "-nostartfiles",
           "--specs=nano.specs", "--specs=nosys.specs", "-Wl,--gc-sections", "-T", str(build_dir / "mps2_an386.ld"),
           "-o", str(elf), *sources]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"building the micro-benchmarks failed:\n{proc.stdout}{proc.stderr}")
    return elf


def run_benches(benches: list[Bench], build_dir: str | Path | None = None) -> tuple[list[Bench], int, Emulation]:
    """Build, emulate and fill in ``cycles``/``instructions`` of every bench; also returns the
    copy-out's cycles (16 bytes of memcpy, the per-inference overhead of ``model_run``) and the
    emulation."""
    with tempfile.TemporaryDirectory(prefix="rnnpool-bench-") as tmp:
        elf = build(benches, Path(build_dir or tmp))
        result = emulate(elf)
    if "benchmarks: done" not in result.output:
        raise RuntimeError(f"the micro-benchmarks did not finish: {result.output[-200:]!r}")
    for i, b in enumerate(benches):
        seg = result.segments.get(i + 1)
        b.cycles, b.instructions = (seg.cycles, seg.instructions) if seg else (0, 0)
    copy = result.segments.get(len(benches) + 1)
    return benches, copy.cycles if copy else 0, result
