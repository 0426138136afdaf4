"""The runtime's Cortex-M4 kernels side by side with CMSIS-NN's, on the same emulator and shapes.

    python benchmarks/bench_cmsis.py                         # every family on every preset's shapes (~3 min)
    python benchmarks/bench_cmsis.py --presets rnnpool-tiny  # one preset's shapes
    python benchmarks/bench_cmsis.py --families depthwise --json cmsis.json

CMSIS-NN's int8 kernels (``arm_convolve_wrapper_s8``, which picks ``arm_convolve_1x1_s8_fast``,
``arm_convolve_1x1_s8`` or ``arm_convolve_s8``; ``arm_depthwise_conv_wrapper_s8``, which picks
``arm_depthwise_conv_3x3_s8`` or ``arm_depthwise_conv_s8_opt``; ``arm_fully_connected_per_channel_s8``)
are built from ``../shared/third_party/cmsis-nn`` (Apache-2.0; benchmark only, never shipped; another
checkout with ``--cmsis DIR``) with the runtime's ``M4FLAGS`` (``arm-none-eabi-gcc -mcpu=cortex-m4
-mthumb -O2``, so ``__ARM_FEATURE_DSP``: CMSIS-NN's DSP paths) into one image with the runtime's
kernels and one driver. For each shape the driver fills the input, weights (symmetric int8), biases
and per-channel multipliers with one pseudo-random sequence, runs the runtime kernel (marker 2i+1),
then the CMSIS-NN kernel on the same data (marker 2i+2; a depthwise weight transposed to CMSIS-NN's
(k, k, c) layout before, outside the count), and the emulator (``rnnpool-nas measure``'s: Unicorn,
the Cortex-M4 TRM's cycle table, zero wait states) counts each. After each kernel the benchmark
reads its output from the emulated memory and compares it with the project's int8 reference
(``rnnpool_nas.train.quant.QConv`` on the same bytes): the runtime must be bit-exact; CMSIS-NN
within 1 (its requantization rounds twice: a doubling high multiply, then a rounding shift; the
reference rounds once), and the count of such off-by-one outputs is printed.

The shapes are every kernel call of every classifier preset and of rnnpool-face-m4 (240x320x1, its
detection heads included), an MBConv block split into its expand (pointwise), depthwise and project
(pointwise) calls as whole maps, deduplicated. RNNPool has no CMSIS-NN counterpart: its calls are
measured with the runtime alone (``rnnpool_nas.measure.microbench``), cycles and cycles/MAC. MACs are
the runtime's (the taps that fall inside the input, as ``rnnpool-nas measure`` counts them).
Grouped convolutions that are not depthwise (none in the presets) are left out.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnnpool_nas.arch import get_preset
from rnnpool_nas.arch.presets import list_presets
from rnnpool_nas.arch.spec import expand
from rnnpool_nas.cost.arena import head_specs, lower
from rnnpool_nas.cost.latency import call_args, call_features, valid_taps
from rnnpool_nas.export import RUNTIME_DIR, runtime_files
from rnnpool_nas.measure.emulate import emulate
from rnnpool_nas.measure.microbench import FILL_C, TEMPLATES, Bench, m4_flags, run_benches

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CMSIS = ROOT.parent / "shared" / "third_party" / "cmsis-nn"
if not DEFAULT_CMSIS.is_dir():  # a worktree under /work/wt/<name>: the shared tree is two levels up
    DEFAULT_CMSIS = ROOT.parents[1] / "shared" / "third_party" / "cmsis-nn"
DETECTORS = ("rnnpool-face-m4",)
FAMILIES = ("pointwise", "depthwise", "conv", "fc", "rnnpool")
FAM_CODE = {"conv": 1, "depthwise": 2, "pointwise": 3, "fc": 7}
FIELDS = ("fam", "in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k", "s", "pad", "shift", "relu", "in_zp", "out_zp")
#: CMSIS-NN sources built (the int8 convolution, depthwise and fully connected paths and their helpers).
CMSIS_SOURCES = ("ConvolutionFunctions/*_s8*.c", "FullyConnectedFunctions/*_s8*.c", "NNSupportFunctions/*.c")
FLOAT_SOURCES = ("f16", "f32", "flt")  # the float kernels (CMSIS-NN's experimental API): not built


@dataclass
class Case:
    """One kernel call shape of a family, and the presets (and their layers) where it occurs."""

    family: str
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    kernel: int = 1
    stride: int = 1
    pad: int = 0
    args: dict = field(default_factory=dict)   # RNNPool's call_args
    where: list[str] = field(default_factory=list)
    macs: int = 0
    runtime: int = 0           # cycles
    cmsis: int = 0
    runtime_exact: bool | None = None
    cmsis_max_diff: int | None = None
    cmsis_off_by_one: int = 0

    @property
    def key(self):
        return (self.family, self.in_shape, self.out_shape, self.kernel, self.stride, self.pad,
                json.dumps(self.args, sort_keys=True, default=list))

    def label(self) -> str:
        (hi, wi, ci), (ho, wo, co) = self.in_shape, self.out_shape
        if self.family == "fc":
            return f"{hi * wi * ci} -> {co}"
        if self.family == "rnnpool":
            a = self.args
            return (f"{hi}x{wi}x{ci} patch {a['patch'][0]}x{a['patch'][1]} s{a['stride'][0]} "
                    f"h1={a['h1']} h2={a['h2']} -> {ho}x{wo}x{co}")
        k = f"{self.kernel}x{self.kernel} " if self.family != "pointwise" else ""
        return f"{hi}x{wi}x{ci} -> {ho}x{wo}x{co} {k}s{self.stride}"


def _macs(c: Case) -> int:
    (hi, wi, ci), (ho, wo, co) = c.in_shape, c.out_shape
    if c.family == "fc":
        return hi * wi * ci * co
    if c.family == "pointwise":
        return ho * wo * ci * co
    taps = valid_taps(hi, ho, c.kernel, c.stride, c.pad) * valid_taps(wi, wo, c.kernel, c.stride, c.pad)
    return taps * co * (1 if c.family == "depthwise" else ci)


def collect(presets: list[str], families: tuple[str, ...]) -> list[Case]:
    """The deduplicated kernel-call shapes of ``presets`` (see the module docstring)."""
    cases: dict[tuple, Case] = {}

    def add(case: Case, where: str) -> None:
        if case.family not in families:
            return
        case = cases.setdefault(case.key, case)
        if where not in case.where:
            case.where.append(where)

    for name in presets:
        spec = get_preset(name)
        layers = expand(spec)
        heads = head_specs(spec) if spec.detection is not None else None
        by_name = {layer.name: layer for layer in layers}
        for step in lower(layers, heads)[0]:
            args = call_args(step, by_name.get(step.layer), heads)
            (hi, wi, ci), (ho, wo, co) = step.in_shape, step.out_shape
            if step.op == "mbconv":
                k, s, t = args["kernel"], args["stride"], args["t"]
                hidden = t * ci
                if t != 1:
                    add(Case("pointwise", (hi, wi, ci), (hi, wi, hidden)), name)
                add(Case("depthwise", (hi, wi, hidden), (ho, wo, hidden), k, s, k // 2), name)
                add(Case("pointwise", (ho, wo, hidden), (ho, wo, co)), name)
            elif step.op in ("pointwise", "depthwise", "conv"):
                if step.op == "conv" and args["groups"] != 1:
                    continue  # grouped, not depthwise: CMSIS-NN has no s8 counterpart here
                add(Case(step.op, step.in_shape, step.out_shape, args["kernel"], args["stride"], args["pad"]), name)
            elif step.op == "fc":
                add(Case("fc", step.in_shape, step.out_shape), name)
            elif step.op == "rnnpool":
                rn = {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()}
                layer = by_name[step.layer]
                a = layer.args
                rn["gate"] = a.get("gate_nonlinearity", "sigmoid")
                rn["update"] = a.get("update_nonlinearity", "tanh")
                rn["replicate"] = [step.out_shape[0] - args["patches"][0], step.out_shape[1] - args["patches"][1]]
                c = Case("rnnpool", step.in_shape, step.out_shape, args=rn)
                c.macs = int(call_features("rnnpool", step.in_shape, step.out_shape, args).get("macs_total", 0))
                add(c, name)
    out = list(cases.values())
    for c in out:
        if c.family != "rnnpool":
            c.macs = _macs(c)
    return out


DRIVER = r"""/* bench_cmsis.c - GENERATED by benchmarks/bench_cmsis.py: runtime kernel (model_mark 2i+1) and the
 * CMSIS-NN kernel (model_mark 2i+2) on the same data for each row of the table. */
#include <stdint.h>
#include <string.h>

#include "arm_nnfunctions.h"
#include "rn_runtime.h"
#include "semihost.h"

enum { %(enum)s, NFIELDS };
#define NBENCH %(nbench)d
static const int32_t table[NBENCH][NFIELDS] = {
%(rows)s
};

volatile uint32_t model_mark;
int32_t bx_in[%(in_words)d], bx_w[%(w_words)d], bx_w2[%(w2_words)d], bx_out[%(out_words)d];
int32_t bx_scratch[%(scratch_words)d];
int32_t bx_bias[%(channels)d], bx_mult[%(channels)d], bx_cshift[%(channels)d];
int8_t bx_shift[%(channels)d];
%(fill)s

static void fail(const char *what, int i) {
    char msg[64];
    int n = 0;
    const char *p = what;
    while (*p && n < 40) msg[n++] = *p++;
    msg[n++] = ' ';
    msg[n++] = (char)('0' + (i / 100) %% 10);
    msg[n++] = (char)('0' + (i / 10) %% 10);
    msg[n++] = (char)('0' + i %% 10);
    msg[n++] = '\n';
    msg[n] = 0;
    semihost_write(msg);
    semihost_exit(1);
}

int main(void) {
    int i, j;
    for (i = 0; i < NBENCH; i++) {
        const int32_t *t = table[i];
        const int in_n = t[F_in_h] * t[F_in_w] * t[F_in_c];
        const int out_n = t[F_out_h] * t[F_out_w] * t[F_out_c];
        const int fam = t[F_fam];
        const int k = t[F_k], c = t[F_in_c], co = t[F_out_c];
        const int w_n = fam == 2 ? c * k * k : (fam == 7 ? in_n * co : co * k * k * c);
        const int32_t lo = t[F_relu] ? -128 + 7 : -128;
        cmsis_nn_context ctx;
        cmsis_nn_per_channel_quant_params q;
        cmsis_nn_dims in_d, f_d, b_d, out_d;
        arm_cmsis_nn_status st = ARM_CMSIS_NN_SUCCESS;
        int32_t need = 0;

        fill8((int8_t *)bx_in, in_n, 0);
        fill8((int8_t *)bx_w, w_n, 1);
        for (j = 0; j < co; j++) {
            bx_bias[j] = (int32_t)(next() %% 8192u) - 4096;
            bx_mult[j] = (int32_t)((1u << 30) + next() %% (1u << 30));
            bx_shift[j] = (int8_t)t[F_shift];
            bx_cshift[j] = 31 - t[F_shift];
        }
        if (fam == 2) {  /* CMSIS-NN's depthwise weights are (k, k, c) */
            int ch, tap;
            for (ch = 0; ch < c; ch++)
                for (tap = 0; tap < k * k; tap++) ((int8_t *)bx_w2)[tap * c + ch] = ((int8_t *)bx_w)[ch * k * k + tap];
        }
        q.multiplier = bx_mult;
        q.shift = bx_cshift;
        in_d.n = 1; in_d.h = t[F_in_h]; in_d.w = t[F_in_w]; in_d.c = c;
        out_d.n = 1; out_d.h = t[F_out_h]; out_d.w = t[F_out_w]; out_d.c = co;
        b_d.n = 1; b_d.h = 1; b_d.w = 1; b_d.c = co;

        model_mark = (uint32_t)(2 * i + 1);
        switch (fam) {
        case 1:
            rn_conv2d((const int8_t *)bx_in, t[F_in_h], t[F_in_w], c, (const int8_t *)bx_w, bx_bias, bx_mult, bx_shift,
                      co, k, t[F_s], t[F_pad], 1, t[F_in_zp], t[F_out_zp], lo, 127, (int8_t *)bx_out);
            break;
        case 2:
            rn_depthwise_conv2d((const int8_t *)bx_in, t[F_in_h], t[F_in_w], c, (const int8_t *)bx_w, bx_bias, bx_mult,
                                bx_shift, k, t[F_s], t[F_pad], t[F_in_zp], t[F_out_zp], lo, 127, (int8_t *)bx_out);
            break;
        case 3:
            rn_pointwise_conv2d((const int8_t *)bx_in, t[F_in_h], t[F_in_w], c, (const int8_t *)bx_w, bx_bias, bx_mult,
                                bx_shift, co, t[F_s], t[F_in_zp], t[F_out_zp], lo, 127, (int8_t *)bx_out);
            break;
        default:
            rn_fully_connected((const int8_t *)bx_in, in_n, (const int8_t *)bx_w, bx_bias, bx_mult, bx_shift, co,
                               t[F_in_zp], t[F_out_zp], lo, 127, (int8_t *)bx_out);
            break;
        }
        model_mark = 0;
        memset(bx_out, 0x5A, (size_t)out_n);

        if (fam == 1 || fam == 3) {
            cmsis_nn_conv_params p;
            p.input_offset = -t[F_in_zp]; p.output_offset = t[F_out_zp];
            p.stride.w = p.stride.h = t[F_s]; p.padding.w = p.padding.h = t[F_pad];
            p.dilation.w = p.dilation.h = 1; p.activation.min = lo; p.activation.max = 127;
            f_d.n = co; f_d.h = k; f_d.w = k; f_d.c = c;
            need = arm_convolve_wrapper_s8_get_buffer_size(&p, &in_d, &f_d, &out_d);
            if (need > (int32_t)sizeof bx_scratch) fail("cmsis buffer too small for row", i);
            ctx.buf = bx_scratch; ctx.size = need;
            model_mark = (uint32_t)(2 * i + 2);
            st = arm_convolve_wrapper_s8(&ctx, &p, &q, &in_d, (const int8_t *)bx_in, &f_d, (const int8_t *)bx_w, &b_d,
                                         bx_bias, &out_d, (int8_t *)bx_out);
        } else if (fam == 2) {
            cmsis_nn_dw_conv_params p;
            p.input_offset = -t[F_in_zp]; p.output_offset = t[F_out_zp]; p.ch_mult = 1;
            p.stride.w = p.stride.h = t[F_s]; p.padding.w = p.padding.h = t[F_pad];
            p.dilation.w = p.dilation.h = 1; p.activation.min = lo; p.activation.max = 127;
            f_d.n = 1; f_d.h = k; f_d.w = k; f_d.c = c;
            need = arm_depthwise_conv_wrapper_s8_get_buffer_size(&p, &in_d, &f_d, &out_d);
            if (need > (int32_t)sizeof bx_scratch) fail("cmsis buffer too small for row", i);
            ctx.buf = bx_scratch; ctx.size = need;
            model_mark = (uint32_t)(2 * i + 2);
            st = arm_depthwise_conv_wrapper_s8(&ctx, &p, &q, &in_d, (const int8_t *)bx_in, &f_d, (const int8_t *)bx_w2, &b_d, bx_bias,
                                               &out_d, (int8_t *)bx_out);
        } else {
            cmsis_nn_fc_params p;
            p.input_offset = -t[F_in_zp]; p.filter_offset = 0; p.output_offset = t[F_out_zp];
            p.activation.min = lo; p.activation.max = 127;
            in_d.h = in_d.w = 1; in_d.c = in_n;
            f_d.n = in_n; f_d.h = 1; f_d.w = 1; f_d.c = co;
            out_d.h = out_d.w = 1;
            ctx.buf = bx_scratch; ctx.size = 0;
            model_mark = (uint32_t)(2 * i + 2);
            st = arm_fully_connected_per_channel_s8(&ctx, &p, &q, &in_d, (const int8_t *)bx_in, &f_d,
                                                    (const int8_t *)bx_w, &b_d, bx_bias, &out_d, (int8_t *)bx_out);
        }
        model_mark = 0;
        if (st != ARM_CMSIS_NN_SUCCESS) fail("cmsis-nn refused row", i);
    }
    semihost_write("bench_cmsis: done\n");
    return 0;
}
"""


def _row(c: Case) -> dict[str, int]:
    (hi, wi, ci), (ho, wo, co) = c.in_shape, c.out_shape
    fam = FAM_CODE[c.family]
    taps = hi * wi * ci if c.family == "fc" else c.kernel ** 2 * (1 if c.family == "depthwise" else ci)
    in_zp = -128 if c.family == "conv" and ci <= 3 else -9
    return {"fam": fam, "in_h": hi, "in_w": wi, "in_c": ci, "out_h": ho, "out_w": wo, "out_c": co, "k": c.kernel,
            "s": c.stride, "pad": c.pad, "shift": round(37.1 + 0.5 * math.log2(max(taps, 1))),
            "relu": 1 if c.family != "fc" else 0, "in_zp": in_zp, "out_zp": -121 if c.family != "fc" else 2}


def driver_source(cases: list[Case], scratch_bytes: int) -> str:
    rows = [_row(c) for c in cases]
    in_bytes = max(r["in_h"] * r["in_w"] * r["in_c"] for r in rows)
    out_bytes = max(r["out_h"] * r["out_w"] * r["out_c"] for r in rows)
    w_bytes = max(r["in_h"] * r["in_w"] * r["in_c"] * r["out_c"] if r["fam"] == 7 else
                  r["k"] ** 2 * r["in_c"] * (1 if r["fam"] == 2 else r["out_c"]) for r in rows)
    w2_bytes = max([r["k"] ** 2 * r["in_c"] for r in rows if r["fam"] == 2] + [4])
    return DRIVER % {
        "fill": FILL_C,
        "w2_words": (w2_bytes + 3) // 4 + 4,
        "enum": ", ".join(f"F_{f}" for f in FIELDS), "nbench": len(rows),
        "rows": ",\n".join("    {" + ", ".join(str(r[f]) for f in FIELDS) + "}" for r in rows),
        "in_words": (in_bytes + 3) // 4 + 4, "w_words": (w_bytes + 3) // 4 + 4, "out_words": (out_bytes + 3) // 4 + 4,
        "scratch_words": (scratch_bytes + 3) // 4, "channels": max(r["out_c"] for r in rows),
    }


def build(cases: list[Case], cmsis: Path, work: Path, scratch_bytes: int) -> Path:
    """Compile the driver, the runtime (its -std=c99 -Wall -Wextra) and CMSIS-NN (its own dialect),
    all with ``M4FLAGS``, and link one ELF with the exported projects' start-up code and linker script."""
    cc = shutil.which("arm-none-eabi-gcc")
    if cc is None:
        sys.exit("arm-none-eabi-gcc is not installed (make install)")
    if not (cmsis / "Include" / "arm_nnfunctions.h").is_file():
        sys.exit(f"no CMSIS-NN checkout at {cmsis} (give --cmsis DIR)")
    work.mkdir(parents=True, exist_ok=True)
    (work / "bench_cmsis.c").write_text(driver_source(cases, scratch_bytes))
    for name in ("startup_m4.c", "semihost.h", "mps2_an386.ld"):
        shutil.copy2(TEMPLATES / name, work / name)
    flags = m4_flags()
    inc = [f"-I{work}", f"-I{RUNTIME_DIR}", f"-I{cmsis / 'Include'}"]
    objs = []

    def compile_(src: Path, extra: list[str], sub: str) -> None:
        obj = work / "obj" / sub / (src.stem + ".o")
        obj.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([cc, *extra, *flags, *inc, "-c", str(src), "-o", str(obj)], capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"compiling {src} failed:\n{proc.stderr}")
        objs.append(str(obj))

    for src in [p for p in runtime_files() if p.suffix == ".c"]:
        compile_(src, ["-std=c99", "-Wall", "-Wextra"], "runtime")
    for src in (work / "bench_cmsis.c", work / "startup_m4.c"):
        compile_(src, ["-std=c99"], "driver")
    seen = set()
    for pattern in CMSIS_SOURCES:
        for src in sorted((cmsis / "Source").glob(pattern)):
            if src.name not in seen and not any(t in src.stem for t in FLOAT_SOURCES):
                seen.add(src.name)
                compile_(src, [], "cmsis")
    elf = work / "bench_cmsis.elf"
    proc = subprocess.run([cc, *flags, "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
                           "-Wl,--gc-sections", "-T", str(work / "mps2_an386.ld"), "-o", str(elf), *objs],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"linking failed:\n{proc.stderr}")
    return elf


def reference(c: Case, x: np.ndarray, w: np.ndarray, bias: np.ndarray, mult: np.ndarray, shift: np.ndarray,
              row: dict[str, int]) -> np.ndarray:
    """The project's int8 reference (QConv) of case ``c`` on the bytes the kernels read."""
    from rnnpool_nas.train.quant import QConv, QParams

    (hi, wi, ci), (ho, wo, co) = c.in_shape, c.out_shape
    lo = -128 + 7 if row["relu"] else -128
    if c.family == "fc":
        x4, w4, k, s, g = x.reshape(1, 1, 1, -1), w.reshape(co, 1, 1, -1), 1, 1, 1
    elif c.family == "depthwise":
        x4, w4, k, s, g = x.reshape(1, hi, wi, ci), w.reshape(ci, c.kernel, c.kernel, 1), c.kernel, c.stride, ci
    else:
        x4, w4, k, s, g = x.reshape(1, hi, wi, ci), w.reshape(co, c.kernel, c.kernel, ci), c.kernel, c.stride, 1
    if c.family not in ("fc", "pointwise") and c.pad != k // 2:
        raise SystemExit(f"{c.label()}: pad {c.pad} is not kernel // 2, which the int8 reference assumes")
    q = QConv(w4, bias.astype(np.int32), mult.astype(np.int64), shift.astype(np.int64), k, s, g,
              QParams(1.0, row["in_zp"]), QParams(1.0, row["out_zp"]), lo, 127)
    return q.run(x4).reshape(-1)


def run_side_by_side(cases: list[Case], cmsis: Path, work: Path, log) -> None:
    """Build, emulate and check (fills the cases' cycles and agreement)."""
    if not cases:
        return
    scratch = 1 << 16
    elf = build(cases, cmsis, work, scratch)
    rows = [_row(c) for c in cases]
    state = {"last": 0, "errors": []}

    def on_mark(value: int, read) -> None:
        last, state["last"] = state["last"], value
        if value != 0 or last == 0:
            return
        i, cm = (last - 1) // 2, (last - 1) % 2 == 1
        c, row = cases[i], rows[i]
        try:
            (hi, wi, ci), (ho, wo, co) = c.in_shape, c.out_shape
            out = np.frombuffer(read("bx_out", ho * wo * co), dtype=np.int8)
            key = ("cm", i) if cm else ("rt", i)
            state[key] = out.copy()
            if not cm:
                return
            in_n = hi * wi * ci
            w_n = in_n * co if c.family == "fc" else c.kernel ** 2 * ci * (1 if c.family == "depthwise" else co)
            x = np.frombuffer(read("bx_in", in_n), dtype=np.int8)
            w = np.frombuffer(read("bx_w", w_n), dtype=np.int8)
            bias = np.frombuffer(read("bx_bias", 4 * co), dtype=np.int32)
            mult = np.frombuffer(read("bx_mult", 4 * co), dtype=np.int32)
            shift = np.frombuffer(read("bx_shift", co), dtype=np.int8)
            ref = reference(c, x, w, bias, mult, shift, row).astype(np.int16)
            rt = state.pop(("rt", i)).astype(np.int16)
            cmo = state.pop(("cm", i)).astype(np.int16)
            c.runtime_exact = bool(np.array_equal(rt, ref))
            diff = np.abs(cmo - ref)
            c.cmsis_max_diff = int(diff.max()) if diff.size else 0
            c.cmsis_off_by_one = int((diff == 1).sum())
        except Exception as exc:  # reported after the run: a hook must not raise into Unicorn
            state["errors"].append(f"{c.label()}: {exc!r}")

    log(f"emulating {len(cases)} shapes, runtime and CMSIS-NN ({elf})")
    run = emulate(elf, on_mark=on_mark)
    if "bench_cmsis: done" not in run.output:
        sys.exit(f"the benchmark did not finish: {run.output[-300:]!r}")
    if state["errors"]:
        sys.exit("checking against the int8 reference failed:\n" + "\n".join(state["errors"]))
    for i, c in enumerate(cases):
        c.runtime = run.segments[2 * i + 1].cycles
        c.cmsis = run.segments[2 * i + 2].cycles


def run_rnnpool(cases: list[Case], work: Path) -> None:
    benches = [Bench("rnnpool", c.in_shape, c.out_shape, {
        "patch": tuple(c.args["patch"]), "stride": tuple(c.args["stride"]), "pad": tuple(c.args["pad"]),
        "patches": tuple(c.args["patches"]), "replicate": tuple(c.args["replicate"]), "h1": c.args["h1"],
        "h2": c.args["h2"], "gate": c.args["gate"], "update": c.args["update"]}) for c in cases]
    if benches:
        run_benches(benches, work / "rnnpool")
    for c, b in zip(cases, benches):
        c.runtime = b.cycles


def geomean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def table(cases: list[Case]) -> str:
    head = ("family", "shape", "MACs", "runtime cycles", "CMSIS-NN cycles", "rt cyc/MAC", "CMSIS cyc/MAC",
            "speed-up", "rt exact", "CMSIS max|d| (n off by 1)", "presets")
    rows = [head]
    summary = []
    for fam in FAMILIES:
        group = [c for c in cases if c.family == fam]
        if not group:
            continue
        for c in sorted(group, key=lambda c: -c.macs):
            cm = c.family != "rnnpool"
            rows.append((fam, c.label(), f"{c.macs:,}", f"{c.runtime:,}", f"{c.cmsis:,}" if cm else "-",
                         f"{c.runtime / c.macs:.2f}", f"{c.cmsis / c.macs:.2f}" if cm else "-",
                         f"{c.cmsis / c.runtime:.2f}x" if cm else "-",
                         ("yes" if c.runtime_exact else "NO") if cm else "(tests)",
                         f"{c.cmsis_max_diff} ({c.cmsis_off_by_one})" if cm else "-", ",".join(c.where)))
        macs = sum(c.macs for c in group)
        rt = sum(c.runtime for c in group)
        if fam == "rnnpool":
            summary.append(f"{fam:9s} {len(group):3d} shapes: runtime {rt / macs:.2f} cycles/MAC (no CMSIS-NN counterpart)")
            continue
        cm = sum(c.cmsis for c in group)
        ratios = [c.cmsis / c.runtime for c in group]
        summary.append(f"{fam:9s} {len(group):3d} shapes: runtime {rt / macs:.2f}, CMSIS-NN {cm / macs:.2f} cycles/MAC; "
                       f"speed-up geometric mean {geomean(ratios):.2f}x, min {min(ratios):.2f}x, max {max(ratios):.2f}x, "
                       f"over all MACs {cm / rt:.2f}x; slower than CMSIS-NN on {sum(r < 1 for r in ratios)}")
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(v.ljust(w) if i in (0, 1, 10) else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
             for r in rows]
    return "\n".join(lines + [""] + summary)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [p.name for p in list_presets()]
    default = [p.name for p in list_presets() if get_preset(p.name).detection is None or p.name in DETECTORS]
    ap.add_argument("--presets", nargs="+", default=default, choices=names, metavar="PRESET",
                    help=f"presets whose shapes to run (default: {' '.join(default)})")
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    ap.add_argument("--cmsis", type=Path, default=DEFAULT_CMSIS, help=f"CMSIS-NN checkout (default {DEFAULT_CMSIS})")
    ap.add_argument("--work", type=Path, help="keep the build here (default: a temporary folder)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    cases = collect(args.presets, tuple(args.families))
    log = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="bench-cmsis-") as tmp:
        work = args.work or Path(tmp)
        run_side_by_side([c for c in cases if c.family != "rnnpool"], args.cmsis, work, log)
        run_rnnpool([c for c in cases if c.family == "rnnpool"], work)
    print(table(cases))
    bad = [c.label() for c in cases if c.family != "rnnpool" and (not c.runtime_exact or c.cmsis_max_diff > 1)]
    if args.json:
        args.json.write_text(json.dumps([{k: v for k, v in c.__dict__.items()} for c in cases], indent=1,
                                        default=list) + "\n")
    if bad:
        print(f"DISAGREEMENT with the int8 reference on: {'; '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
