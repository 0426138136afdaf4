"""Cortex-M4 latency of the exported C runtime, predicted from the shapes of its kernel calls.

Torch-free and fast: the cost model scores thousands of specs a second. A spec is lowered and
planned by the one lowering (:func:`rnnpool_nas.lower.plan.plan`: the same calls in the same order
as the generated ``model.c``, and which of them run row by row in a streamed segment); each call's
cycles are a linear model of counts that follow the loop structure of its C kernel
(``rnnpool_nas/export/runtime/*.c``):

==========  ====================================================================================
family      features (each a count of one loop level's iterations; ``calls`` is 1 per call)
==========  ====================================================================================
pointwise   mac4 (MACs in 2 pixel x 2 channel blocks, packed 16-bit pairs: in_c a multiple of 4),
            mac2 (packed MACs in 1 pixel x 2 channel blocks: odd pixels, stride > 1, an odd
            channel), macp (MACs of the plain int8 path: other in_c), blk4, blk2 (the blocks:
            each requantizes 4 or 2 outputs), wsum (weights summed, per channel per call), pairs
            (channel pairs x pixel runs), calls
depthwise   3x3 interior windows in blocks of four (stride 1 or 2): b1rows, b2rows (block x kernel
            rows inside the input, by stride), b1, b2 (blocks); single interior windows: wrows, win;
            chrows (channel x output row set-ups of the 3x3 path); the rest (edge columns, other
            kernels, stride > 2 blocks) per tap: taps, row_loops, outputs, pixels; rows of at most
            8 output columns (3x3, pad 1: dw3_small_row, every column of a channel at once):
            sm_macs (taps inside the input), sm_outputs, sm_chrows (channel x row); rows (calls of
            rn_depthwise_row), calls
conv        dense, four output channels per pass: t4 (taps of a block), r4 (window rows of a
            block), b4 (blocks); the other channels (tails, grouped) per dot product: macs, dots
            (rn_dot_s8 runs), row_loops, outputs; dense over whole words of input channels (in_c a
            multiple of 4, aligned buffers): pw4, pr4, pb4 (words, window rows and blocks of the
            four-channel passes), pw1, pr1, pb1 (the same of the single-channel ones); pixels, rows,
            calls
mbconv      expand, depthwise, project, add: the cycles the pointwise, depthwise and add models
            give its row calls (expand rows 1 x in_w, the depthwise row by row, project rows
            1 x out_w, the residual add row by row); rows (output rows), expanded_rows, calls;
            in G > 1 channel groups (a stride-2 block of a streamed segment, ``split``): every
            window row expanded again per output row and group (hidden/G channels), the depthwise
            per group, copies (the groups' depthwise pixels copied into the assembled row: out_w x G
            per row) and split_rows (output rows x groups)
add         elements, calls
avgpool,    taps, row_loops, outputs, pixels, calls
maxpool
fc          macp (MACs of output pairs in packed pairs: in_n a multiple of 4), pairs, macs and
            outputs of the rest, calls
rnnpool     macs_s8p / macs_s8 (RNN1's int8 projections of the patch pixels inside the map, packed
            when in_c is a multiple of 4 / plain), proj_s8 (their outputs), pixels (patch pixels,
            padding included), macs_q24 (U h of both cells and RNN2's projections: int8 x Q24 in 64
            bits), the same as packed 16-bit halves (sizes a multiple of 4 up to 32, fastgrnn.c):
            q24p_groups (four-value groups of two rows), q24p_pairs (row pairs), q24p_splits (groups of
            four values split into halves),
            proj_q24 (RNN2's projected values), units (state elements updated: the gate,
            update and new state of one hidden unit), units_lut (units x the cell's number of table
            nonlinearities, sigmoid/tanh, against quantSigmoid/quantTanh), steps (cell steps),
            outputs, patches, moved (words of projections and RNN1 column states a patch takes
            over from its left neighbour when the stride is below the patch: the kernel computes
            the shared columns once per patch row, so the projections and RNN1's column sweeps
            above count the columns computed, not those of every patch), calls
l2norm      elements (a 64-bit division each), pixels (an integer square root each), calls
maxout      pixels, calls
==========  ====================================================================================

Streamed segments (``stream.c``): convolutions, depthwise and RNNPool run the same row functions
as their whole-map kernels (``rn_conv2d`` etc. are loops of them), so they are predicted alike; a
streamed pointwise, L2Norm or max-out is one call per output row (``calls`` = rows, and the
pointwise blocks of one row at a time); the driver's own bookkeeping (a few cycles per row pushed
and per node) is not modelled.

Word-aligned buffers are assumed (the arena, the weights and rn_mbconv's rows are): the packed
paths need in_c % 4 == 0 and aligned pointers. Requantization is assumed to take its usual path
(shift > 32, the full int8 range for the activation), as in quantized networks.

The coefficients (cycles per count) live in ``latency_m4.json`` beside this module, fitted by
``python -m rnnpool_nas.measure.calibrate`` on single-kernel micro-benchmarks measured in the
emulator of :mod:`rnnpool_nas.measure` (the Cortex-M4 TRM's cycle table); that file also holds
the fit's residuals and a hash of the runtime sources it was measured on (:func:`stale` compares
it with the installed runtime). ``mbconv`` is fitted after the others, on features computed with
their coefficients. Detection heads (``l2norm``, the heads' ``conv`` calls, ``maxout``) are
predicted like the layers' calls: :func:`predict_spec` covers classifiers and detectors.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..arch.spec import Layer, head_index
from ..lower.plan import ArenaPlan, HeadSpec, Segment, Step, head_specs, plan
from ..units import DEFAULT_CLOCK_MHZ, cycles_to_ms  # noqa: F401 (re-exported)

MODEL_FILE = Path(__file__).with_name("latency_m4.json")
RUNTIME_DIR = Path(__file__).resolve().parents[1] / "export" / "runtime"

FEATURES: dict[str, tuple[str, ...]] = {
    "pointwise": ("mac4", "mac2", "macp", "blk4", "blk2", "wsum", "pairs", "calls"),
    "depthwise": ("b1rows", "b1", "b2rows", "b2", "wrows", "win", "chrows", "taps", "row_loops", "outputs",
                  "pixels", "rows", "sm_macs", "sm_outputs", "sm_chrows", "calls"),
    "conv": ("t4", "r4", "b4", "macs", "dots", "row_loops", "outputs", "pw4", "pr4", "pb4", "pw1", "pr1", "pb1",
             "pixels", "rows", "calls"),
    "add": ("elements", "calls"),
    "avgpool": ("taps", "row_loops", "outputs", "pixels", "calls"),
    "maxpool": ("taps", "row_loops", "outputs", "pixels", "calls"),
    "fc": ("macp", "pairs", "macs", "outputs", "calls"),
    "rnnpool": ("macs_s8p", "macs_s8", "proj_s8", "pixels", "macs_q24", "q24p_groups", "q24p_pairs", "q24p_splits",
                "proj_q24", "units", "units_lut", "steps", "outputs", "patches", "moved", "calls"),
    "l2norm": ("elements", "pixels", "calls"),
    "maxout": ("pixels", "calls"),
    "mbconv": ("expand", "depthwise", "project", "add", "rows", "expanded_rows", "calls", "copies", "split_rows"),
}
#: Families whose features are other families' predicted cycles (fitted after those).
COMPOSITE = ("mbconv",)
LUT_NONLINEARITIES = ("sigmoid", "tanh")


class UncalibratedKernel(ValueError):
    """A kernel call the latency model has no coefficients for. Adding a kernel family: give it
    features here (:data:`FEATURES`, :func:`call_features`, :func:`call_args`), benchmarks in
    ``rnnpool_nas/measure/calibrate.py`` and a case in ``measure/microbench.py``'s driver, then
    re-run ``python -m rnnpool_nas.measure.calibrate``."""


@functools.lru_cache(maxsize=4096)
def valid_taps(size_in: int, size_out: int, kernel: int, stride: int, pad: int) -> int:
    """Sum over the ``size_out`` windows of one axis of the taps that fall inside the input
    (the kernels visit only those)."""
    return sum(_window_taps(size_in, size_out, kernel, stride, pad))


@functools.lru_cache(maxsize=4096)
def _window_taps(size_in: int, size_out: int, kernel: int, stride: int, pad: int) -> tuple[int, ...]:
    """The taps inside the input of each of the ``size_out`` windows of one axis."""
    out = []
    for o in range(size_out):
        start = o * stride - pad
        out.append(max(0, min(kernel, size_in - start) - max(0, -start)))
    return tuple(out)


def call_args(step: Step, layer: Layer | None, heads: list[HeadSpec] | None = None) -> dict[str, Any]:
    """What the kernel of ``step`` (a call of ``layer``) is told beyond the shapes, as the
    generated code passes it: kernel/stride/groups/pad of a convolution, kernel/stride/t/residual
    of an MBConv block, kernel/stride of a pool, patch/stride/pad/patches/h1/h2/LUT nonlinearity
    count of RNNPool. Detection-head steps (``layer`` None, step.layer ``head<j>``) take their
    convolution's shape from ``heads`` (the box and score convs are 3x3, stride 1)."""
    op = step.op
    if layer is None:  # a detection head's step
        if op == "conv":
            k, s = 3, 1
            if step.output.endswith("/extra"):
                _, k, s = (heads or [])[head_index(step.layer)].extra
            return {"kernel": k, "stride": s, "groups": 1, "pad": k // 2}
        return {}
    a, kind = layer.args, layer.kind
    if op in ("pointwise", "depthwise", "conv"):
        if kind == "conv":
            k, s, g = a["kernel"], a["stride"], a["groups"]
        elif op == "pointwise":  # dwsep's pointwise: 1x1, stride 1
            k, s, g = 1, 1, 1
        else:
            k, s, g = a["kernel"], a["stride"], step.in_shape[2]
        return {"kernel": k, "stride": s, "groups": g, "pad": k // 2}
    if op == "mbconv":
        return {"kernel": a["kernel"], "stride": a["stride"], "t": a["t"], "residual": bool(a["residual"]),
                "pad": a["kernel"] // 2}
    if op == "rnnpool":
        if kind == "rnnpool":
            pad, patches = a["pad"], a["patches"]
            n_lut = sum(a[f] in LUT_NONLINEARITIES for f in ("gate_nonlinearity", "update_nonlinearity"))
            return {"patch": tuple(a["patch"]), "stride": tuple(a["stride"]), "pad": (pad[0], pad[2]),
                    "patches": tuple(patches), "h1": a["h1"], "h2": a["h2"], "lut": n_lut}
        return {"patch": tuple(a["kernel"]), "stride": tuple(a["stride"]), "pad": (0, 0),
                "patches": step.out_shape[:2], "h1": a["h1"], "h2": a["h2"], "lut": 2}
    if op in ("avgpool", "maxpool"):
        return {"kernel": tuple(a["kernel"]), "stride": tuple(a["stride"])}
    return {}


def plan_args(step: Step, segment: Segment, layer: Layer | None, heads: list[HeadSpec] | None = None) -> dict[str, Any]:
    """:func:`call_args` and how the plan runs the call: ``streamed`` (in a row-streamed segment)
    and, for an MBConv block, ``split`` (its channel groups, 1 unless split)."""
    args = call_args(step, layer, heads)
    if segment.streamed:
        args["streamed"] = True
    if step.op == "mbconv":
        args["split"] = step.groups
    return args


def _rows_of(features: dict[str, float], rows: int) -> dict[str, float]:
    """The features of ``rows`` calls of one row each (every count scales; ``calls`` is ``rows``)."""
    return {k: v * rows for k, v in features.items()}


def _pointwise(hi: int, wi: int, ci: int, ho: int, wo: int, co: int, stride: int) -> dict[str, float]:
    packed = ci % 4 == 0
    runs, run_len = (1, hi * wi) if stride == 1 else (ho, wo)
    full, odd = co // 2, co % 2
    b4 = full * (run_len // 2) if stride == 1 else 0
    rem = run_len % 2 if stride == 1 else run_len
    b2 = (full * rem + odd * run_len) * runs
    macs = (4 * b4 + 2 * b2) * ci
    return {"mac4": 4 * b4 * ci if packed else 0, "mac2": 2 * b2 * ci if packed else 0, "macp": 0 if packed else macs,
            "blk4": b4, "blk2": b2, "wsum": (full + odd) * 2 * ci, "pairs": (full + odd) * runs, "calls": 1,
            "macs_total": ho * wo * co * ci}


def _depthwise(hi: int, wi: int, c: int, ho: int, wo: int, k: int, s: int, pad: int) -> dict[str, float]:
    rows_taps = _window_taps(hi, ho, k, s, pad)   # kernel rows inside the input, per output row
    cols_taps = _window_taps(wi, wo, k, s, pad)
    ty = sum(rows_taps)
    ox_lo = (pad + s - 1) // s
    last = wi + pad - k
    ox_hi = min(wo, last // s + 1) if last >= 0 else 0
    n_int = ox_hi - ox_lo if k == 3 and ox_hi > ox_lo else 0
    f = dict.fromkeys(FEATURES["depthwise"], 0.0)
    f["rows"] = ho
    f["calls"] = 1
    f["macs_total"] = c * ty * sum(cols_taps)
    if k == 3 and pad == 1 and wi >= 2 and wo <= 8:   # dw3_small_row: every column, channel by channel
        f["sm_macs"] = f["macs_total"]
        f["sm_outputs"] = c * ho * wo
        f["sm_chrows"] = c * ho
        return f
    generic = [t for ox, t in enumerate(cols_taps) if not ox_lo <= ox < ox_lo + n_int]
    if n_int:
        blocks = n_int // 4 if s <= 2 else 0
        singles = n_int - 4 * blocks
        f["b1rows" if s == 1 else "b2rows"] = c * blocks * ty
        f["b1" if s == 1 else "b2"] = c * blocks * ho
        f["wrows"] = c * singles * ty
        f["win"] = c * singles * ho
        f["chrows"] = c * ho
    f["taps"] = c * ty * sum(generic)
    f["row_loops"] = c * ty * len(generic)
    f["outputs"] = c * ho * len(generic)
    f["pixels"] = ho * len(generic)
    return f


def _conv(hi: int, wi: int, ci: int, ho: int, wo: int, co: int, k: int, s: int, pad: int, g: int) -> dict[str, float]:
    ty, tx = valid_taps(hi, ho, k, s, pad), valid_taps(wi, wo, k, s, pad)
    cin_g = ci // g
    f = dict.fromkeys(FEATURES["conv"], 0.0)
    if g == 1 and ci % 4 == 0:   # whole words of input channels (aligned buffers assumed)
        nb4, tail = co // 4, co % 4
        f.update(pw4=nb4 * ty * tx * ci // 4, pr4=nb4 * ty * wo, pb4=nb4 * ho * wo, pw1=tail * ty * tx * ci // 4,
                 pr1=tail * ty * wo, pb1=tail * ho * wo)
    elif g == 1:
        nb4, tail = co // 4, co % 4
        f.update(t4=nb4 * ty * tx * ci, r4=nb4 * ty * wo, b4=nb4 * ho * wo, macs=tail * ty * tx * ci,
                 dots=tail * ty * wo, row_loops=tail * ty * wo, outputs=tail * ho * wo)
    else:
        f.update(macs=co * ty * tx * cin_g, dots=co * ty * tx, row_loops=co * ty * wo, outputs=ho * wo * co)
    f.update(pixels=ho * wo, rows=ho, calls=1, macs_total=co * ty * tx * cin_g)
    return f


def _expanded_rows(hi: int, ho: int, k: int, s: int, pad: int) -> int:
    """Input rows rn_mbconv expands: those some output row's window reaches."""
    rows = set()
    for o in range(ho):
        rows.update(range(max(0, o * s - pad), min(hi, o * s - pad + k)))
    return len(rows)


def call_features(op: str, in_shape, out_shape, args: dict[str, Any],
                  model: "LatencyModel | None" = None) -> dict[str, float]:
    """The counts of :data:`FEATURES` for one kernel call (see the module docstring), and
    ``macs_total``, the multiply-accumulates it performs. ``mbconv``'s features are the other
    families' predictions (``model``, default the installed one)."""
    hi, wi, ci = in_shape
    ho, wo, co = out_shape
    if op == "pointwise":
        if args.get("streamed"):  # rn_pointwise_conv2d on input rows 0, s, 2s, ...
            return _rows_of(_pointwise(1, wi, ci, 1, wo, co, args.get("stride", 1)), ho)
        return _pointwise(hi, wi, ci, ho, wo, co, args.get("stride", 1))
    if op == "depthwise":
        return _depthwise(hi, wi, ci, ho, wo, args["kernel"], args["stride"], args["pad"])
    if op == "conv":
        return _conv(hi, wi, ci, ho, wo, co, args["kernel"], args["stride"], args["pad"], args["groups"])
    if op == "mbconv":
        model = model or load_model()
        k, s, t, pad = args["kernel"], args["stride"], args["t"], args.get("pad", args["kernel"] // 2)
        hidden = t * ci
        split = args.get("split", 1) if t != 1 else 1
        gs = hidden // split
        # expansions: each row once, or (split) every window row again per output row and group
        n_exp = (_expanded_rows(hi, ho, k, s, pad) if split == 1 else split * valid_taps(hi, ho, k, s, pad)) \
            if t != 1 else 0
        expand = model.call_cycles("pointwise", _pointwise(1, wi, ci, 1, wi, gs, 1)) if t != 1 else 0.0
        dw = _depthwise(hi, wi, gs, ho, wo, k, s, pad)
        dw_cycles = split * model.call_cycles("depthwise", {**dw, "calls": 0})
        project = model.call_cycles("pointwise", _pointwise(1, wo, hidden, 1, wo, co, 1))
        add = model.call_cycles("add", {"elements": wo * co, "calls": 1}) if args.get("residual") else 0.0
        grouped = split > 1
        return {"expand": n_exp * expand, "depthwise": dw_cycles, "project": ho * project, "add": ho * add,
                "rows": ho, "expanded_rows": n_exp, "calls": 1, "copies": ho * wo * split if grouped else 0,
                "split_rows": ho * split if grouped else 0,
                "macs_total": n_exp * wi * ci * gs + split * dw["macs_total"] + ho * wo * hidden * co}
    if op == "add":
        return {"elements": ho * wo * co, "calls": 1, "macs_total": 0}
    if op in ("avgpool", "maxpool"):
        kh, kw = args["kernel"]
        outputs = ho * wo * co
        return {"taps": outputs * kh * kw, "row_loops": outputs * kh, "outputs": outputs, "pixels": ho * wo,
                "calls": 1, "macs_total": 0}
    if op == "fc":
        n = hi * wi * ci
        pairs = co // 2 if n % 4 == 0 else 0
        rest = co - 2 * pairs
        return {"macp": 2 * pairs * n, "pairs": pairs, "macs": rest * n, "outputs": rest, "calls": 1,
                "macs_total": n * co}
    if op == "rnnpool":
        (ph, pw), (sh, sw), (pt, pl) = args["patch"], args["stride"], args["pad"]
        (nh, nw), h1, h2 = args["patches"], args["h1"], args["h2"]
        patches = nh * nw
        inside = valid_taps(hi, nh, ph, sh, pt) * valid_taps(wi, nw, pw, sw, pl)  # projected pixels, per patch
        # columns computed per patch row: all of the first patch's, then the stride's (rnnpool.c takes
        # the shared ones over from the left neighbour)
        shared = pw - sw if sw < pw and nw > 1 else 0
        cols = nw * pw - (nw - 1) * shared
        computed = inside * cols / (nw * pw)
        steps1 = nh * (nw * ph * pw + cols * ph)   # RNN1: every row of every patch, the computed columns
        steps2 = patches * 2 * (ph + pw)
        units = steps1 * h1 + steps2 * h2
        packed_rows = 2 * (h1 // 2) if ci % 4 == 0 else 0
        # (count, rows, inputs) of the three int8 x Q24 products: RNN1's U h, RNN2's projections, RNN2's U h
        macs_q24 = groups = pairs = splits = 0
        for count, rows, n in ((steps1, h1, h1), (patches * (ph + pw), h2, h1), (steps2, h2, h2)):
            if n % 4 == 0 and n <= 32:   # fastgrnn.c's packed halves (aligned weights assumed)
                groups += count * ((rows + 1) // 2) * (n // 4)
                pairs += count * ((rows + 1) // 2)
                splits += count * (n // 4)
            else:
                macs_q24 += count * rows * n
        nominal_q24 = patches * (2 * ph * pw * h1 * h1 + (ph + pw) * h1 * h2 + 2 * (ph + pw) * h2 * h2)
        return {
            "macs_s8p": computed * ci * packed_rows, "macs_s8": computed * ci * (h1 - packed_rows),
            "proj_s8": computed * h1, "pixels": nh * cols * ph, "macs_q24": macs_q24,
            "q24p_groups": groups, "q24p_pairs": pairs, "q24p_splits": splits,
            "proj_q24": patches * (ph + pw) * h2, "units": units, "units_lut": units * args["lut"],
            "steps": steps1 + steps2, "outputs": patches * 4 * h2, "patches": patches,
            "moved": nh * (nw - 1) * shared * (ph + 1) * h1, "calls": 1,
            # the operator's MACs, as the reference defines them (every patch's own projections and sweeps)
            "macs_total": inside * ci * h1 + nominal_q24,
        }
    calls = ho if args.get("streamed") else 1  # a streamed L2Norm or max-out: one call per row
    if op == "l2norm":
        return {"elements": hi * wi * ci, "pixels": hi * wi, "calls": calls, "macs_total": 0}
    if op == "maxout":
        return {"pixels": hi * wi, "calls": calls, "macs_total": 0}
    raise UncalibratedKernel(f"no latency features for kernel {op!r}")


def call_macs(op: str, features: dict[str, float]) -> int:
    """Multiply-accumulates the runtime performs in one call (0 for adds, pools, L2Norm, max-out)."""
    return int(features.get("macs_total", 0))


#: The runtime files the calibrated kernels compile from (new kernels elsewhere do not stale it).
KERNEL_SOURCES = ("add.c", "conv.c", "depthwise.c", "fastgrnn.c", "fastgrnn_lut.c", "fully_connected.c", "head.c",
                  "mbconv.c", "pointwise.c", "pool.c", "rnnpool.c", "stream.c", "rn_dot.h", "rn_dsp.h", "rn_requant.h",
                  "rn_runtime.h", "rn_stream.h")


def _code_only(source: bytes) -> bytes:
    """C source without its comments, whitespace runs as one space: what the compiler sees (a
    comment that explains a kernel must not mark the calibration stale)."""
    source = re.sub(rb"/\*.*?\*/", b" ", source, flags=re.S)
    source = re.sub(rb"//[^\n]*", b" ", source)
    return b" ".join(source.split())


def runtime_hash(runtime_dir: Path = RUNTIME_DIR) -> str:
    """sha256 over the calibrated kernels' code (:data:`KERNEL_SOURCES`, names and the sources
    without comments or layout, :func:`_code_only`) and the ``M4FLAGS`` line of the exported
    projects' Makefile: what the cycles depend on."""
    h = hashlib.sha256()
    for name in KERNEL_SOURCES:
        path = runtime_dir / name
        h.update(name.encode() + b"\0" + (_code_only(path.read_bytes()) if path.is_file() else b"") + b"\0")
    makefile = runtime_dir.parent / "templates" / "Makefile"
    if makefile.is_file():
        h.update(b"".join(line for line in makefile.read_bytes().splitlines() if line.startswith(b"M4FLAGS")))
    return h.hexdigest()


@dataclass(frozen=True)
class LatencyModel:
    """Per-family coefficients (cycles per feature count) and a fixed per-inference overhead."""

    coefficients: dict[str, dict[str, float]]
    overhead_cycles: float
    target: str = "cortex-m4"
    runtime_sha256: str = ""
    doc: dict[str, Any] | None = None

    def call_cycles(self, op: str, features: dict[str, float]) -> float:
        coef = self.coefficients.get(op)
        if coef is None:
            raise UncalibratedKernel(f"the latency model has no coefficients for kernel {op!r}: "
                                     "run python -m rnnpool_nas.measure.calibrate")
        return sum(c * features[name] for name, c in coef.items())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LatencyModel":
        coefficients = {fam: dict(zip(d["features"], map(float, d["coefficients"])))
                        for fam, d in data["families"].items()}
        missing = set(FEATURES) - set(coefficients)
        if missing:
            raise ValueError(f"latency model lacks kernel families {sorted(missing)}")
        for fam, coef in coefficients.items():
            if tuple(coef) != FEATURES[fam]:
                raise ValueError(f"latency model: family {fam} has features {list(coef)}, expected {list(FEATURES[fam])}")
        return cls(coefficients, float(data.get("overhead_cycles", 0.0)), data.get("target", "cortex-m4"),
                   data.get("runtime_sha256", ""), data)


@functools.lru_cache(maxsize=4)
def load_model(path: str | None = None) -> LatencyModel:
    """The fitted model (``latency_m4.json`` unless ``path``)."""
    return LatencyModel.from_dict(json.loads(Path(path or MODEL_FILE).read_text()))


def stale(model: LatencyModel | None = None) -> bool:
    """Whether the runtime sources changed since the model was fitted (re-run the calibration)."""
    model = model or load_model()
    return model.runtime_sha256 != runtime_hash()


@dataclass(slots=True)
class CallLatency:
    layer: str
    op: str
    cycles: float
    macs: int


_CALL_CACHE: dict[tuple, tuple[float, int]] = {}


def _call(model: LatencyModel, step: Step, args: dict[str, Any]) -> tuple[float, int]:
    """(cycles, MACs) of one call, memoized on its kernel, shapes and arguments (a call's cycles do
    not depend on its neighbours, only on how the plan runs it: ``args``)."""
    key = (id(model), step.op, step.in_shape, step.out_shape, tuple(sorted(args.items())))
    hit = _CALL_CACHE.get(key)
    if hit is None:
        if len(_CALL_CACHE) > 100_000:
            _CALL_CACHE.clear()
        features = call_features(step.op, step.in_shape, step.out_shape, args, model)
        hit = _CALL_CACHE[key] = (model.call_cycles(step.op, features), call_macs(step.op, features))
    return hit


def predict_calls(layers: list[Layer], model: LatencyModel | None = None, heads: list[HeadSpec] | None = None,
                  arena: ArenaPlan | None = None) -> list[CallLatency]:
    """Predicted cycles of every kernel call of ``layers`` and detection ``heads`` (in the order of
    ``model.c``), run as the plan runs them (``arena``: that plan, default ``plan(layers,
    heads=heads)``)."""
    model = model or load_model()
    arena = arena or plan(layers, heads=heads)
    by_name = {layer.name: layer for layer in layers}
    out = []
    for seg in arena.segments:
        for step in arena.steps[seg.first:seg.last + 1]:
            cycles, macs = _call(model, step, plan_args(step, seg, by_name.get(step.layer), heads))
            out.append(CallLatency(step.layer, step.op, cycles, macs))
    return out


def predict_layers(layers: list[Layer], model: LatencyModel | None = None, heads: list[HeadSpec] | None = None,
                   arena: ArenaPlan | None = None) -> tuple[dict[str, float], float]:
    """``({layer name: cycles}, total cycles)``; detection heads appear as ``head<j>`` (the
    arena's step names); the total adds the per-inference overhead (the copy-out of the outputs)."""
    model = model or load_model()
    per_layer = {layer.name: 0.0 for layer in layers}
    for call in predict_calls(layers, model, heads, arena):
        per_layer[call.layer] = per_layer.get(call.layer, 0.0) + call.cycles
    return per_layer, sum(per_layer.values()) + model.overhead_cycles


def predict_spec(spec, layers: list[Layer] | None = None, model: LatencyModel | None = None,
                 arena: ArenaPlan | None = None) -> tuple[dict[str, float], float]:
    """``({stage row name: cycles}, total cycles)`` of an ArchSpec, classifier or detector: the rows
    are named as :func:`rnnpool_nas.cost.evaluate`'s stages (layer names, ``arch.spec.head_name``).
    ``arena``: the spec's plan when the caller has it (``plan(layers, heads=head_specs(spec))``)."""
    from ..arch.spec import expand

    layers = expand(spec) if layers is None else layers
    heads = head_specs(spec) if spec.detection is not None else None
    return predict_layers(layers, model, heads, arena)


__all__ = ["COMPOSITE", "FEATURES", "LatencyModel", "UncalibratedKernel", "CallLatency", "call_args", "call_features",
           "call_macs", "cycles_to_ms", "load_model", "plan_args", "predict_calls", "predict_layers", "predict_spec",
           "runtime_hash", "stale", "valid_taps"]
