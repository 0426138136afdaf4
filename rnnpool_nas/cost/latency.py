"""Cortex-M4 latency of the exported C runtime, predicted from the shapes of its kernel calls.

Torch-free and fast: the cost model scores thousands of specs a second. A spec is lowered to
the runtime's kernel calls (:func:`rnnpool_nas.cost.arena.lower`, the same calls in the same
order as the generated ``model.c``); each call's cycles are a linear model of counts that follow
the loop structure of its C kernel (``rnnpool_nas/export/runtime/*.c``):

==========  ====================================================================================
family      features (each a count of one loop level's iterations; ``calls`` is 1 per call)
==========  ====================================================================================
pointwise   macs (inner dot-product steps), outputs (requantized values), pixels, rows, calls
depthwise   macs (taps inside the input), row_loops (window rows visited), outputs, pixels,
            rows, calls
conv        macs, dots (rn_dot_s8 runs: one per window row, dense; one per tap, grouped),
            row_loops, outputs (each with a division in the grouped case), pixels, rows, calls
add         elements, calls
avgpool,    taps, row_loops, outputs, pixels, calls
maxpool
fc          macs, outputs, calls
rnnpool     macs_s8 (RNN1's int8 projections of the patch pixels inside the map), proj_s8 (their
            outputs), pixels (patch pixels, padding included), macs_q24 (U h of both cells and
            RNN2's projections: int8 x Q24 into 64 bits), proj_q24 (RNN2's projected values),
            units (state elements updated: the gate, update and new state of one hidden unit),
            units_lut (units x the cell's number of table nonlinearities, sigmoid/tanh, against
            quantSigmoid/quantTanh), steps (cell steps), outputs, patches, calls
==========  ====================================================================================

The coefficients (cycles per count) live in ``latency_m4.json`` beside this module, fitted by
``python -m rnnpool_nas.measure.calibrate`` on single-kernel micro-benchmarks measured in the
emulator of :mod:`rnnpool_nas.measure` (the Cortex-M4 TRM's cycle table); that file also holds
the fit's residuals and a hash of the runtime sources it was measured on (:func:`stale` compares
it with the installed runtime).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..arch.spec import Layer
from .arena import Step, lower

MODEL_FILE = Path(__file__).with_name("latency_m4.json")
RUNTIME_DIR = Path(__file__).resolve().parents[1] / "export" / "runtime"
DEFAULT_CLOCK_MHZ = 168.0

FEATURES: dict[str, tuple[str, ...]] = {
    "pointwise": ("macs", "outputs", "pixels", "rows", "calls"),
    "depthwise": ("macs", "row_loops", "outputs", "pixels", "rows", "calls"),
    "conv": ("macs", "dots", "row_loops", "outputs", "pixels", "rows", "calls"),
    "add": ("elements", "calls"),
    "avgpool": ("taps", "row_loops", "outputs", "pixels", "calls"),
    "maxpool": ("taps", "row_loops", "outputs", "pixels", "calls"),
    "fc": ("macs", "outputs", "calls"),
    "rnnpool": ("macs_s8", "proj_s8", "pixels", "macs_q24", "proj_q24", "units", "units_lut", "steps", "outputs",
                "patches", "calls"),
}
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
    total = 0
    for o in range(size_out):
        start = o * stride - pad
        total += max(0, min(kernel, size_in - start) - max(0, -start))
    return total


def call_args(step: Step, layer: Layer) -> dict[str, Any]:
    """What the kernel of ``step`` (a call of ``layer``) is told beyond the shapes, as the
    generated code passes it: kernel/stride/groups/pad of a convolution, kernel/stride of a pool,
    patch/stride/pad/patches/h1/h2/LUT nonlinearity count of RNNPool."""
    a, op, kind = layer.args, step.op, layer.kind
    if op in ("pointwise", "depthwise", "conv"):
        if kind == "conv":
            k, s, g = a["kernel"], a["stride"], a["groups"]
        elif op == "pointwise":  # MBConv expand/project, dwsep's pointwise: 1x1, stride 1
            k, s, g = 1, 1, 1
        else:
            k, s, g = a["kernel"], a["stride"], step.in_shape[2]
        return {"kernel": k, "stride": s, "groups": g, "pad": k // 2}
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


def call_features(op: str, in_shape, out_shape, args: dict[str, Any]) -> dict[str, float]:
    """The counts of :data:`FEATURES` for one kernel call (see the module docstring)."""
    hi, wi, ci = in_shape
    ho, wo, co = out_shape
    if op == "pointwise":
        return {"macs": ho * wo * co * ci, "outputs": ho * wo * co, "pixels": ho * wo, "rows": ho, "calls": 1}
    if op in ("depthwise", "conv"):
        k, s, pad, g = args["kernel"], args["stride"], args["pad"], args["groups"]
        ty, tx = valid_taps(hi, ho, k, s, pad), valid_taps(wi, wo, k, s, pad)
        if op == "depthwise":
            return {"macs": co * ty * tx, "row_loops": co * wo * ty, "outputs": ho * wo * co, "pixels": ho * wo,
                    "rows": ho, "calls": 1}
        cin_g = ci // g
        return {"macs": co * ty * tx * cin_g, "dots": co * wo * ty if g == 1 else co * ty * tx,
                "row_loops": co * wo * ty, "outputs": ho * wo * co, "pixels": ho * wo, "rows": ho, "calls": 1}
    if op == "add":
        return {"elements": ho * wo * co, "calls": 1}
    if op in ("avgpool", "maxpool"):
        kh, kw = args["kernel"]
        outputs = ho * wo * co
        return {"taps": outputs * kh * kw, "row_loops": outputs * kh, "outputs": outputs, "pixels": ho * wo,
                "calls": 1}
    if op == "fc":
        return {"macs": hi * wi * ci * co, "outputs": co, "calls": 1}
    if op == "rnnpool":
        (ph, pw), (sh, sw), (pt, pl) = args["patch"], args["stride"], args["pad"]
        (nh, nw), h1, h2 = args["patches"], args["h1"], args["h2"]
        patches = nh * nw
        inside = valid_taps(hi, nh, ph, sh, pt) * valid_taps(wi, nw, pw, sw, pl)  # projected pixels
        steps1, steps2 = 2 * ph * pw, 2 * (ph + pw)
        units = patches * (steps1 * h1 + steps2 * h2)
        return {
            "macs_s8": inside * ci * h1, "proj_s8": inside * h1, "pixels": patches * ph * pw,
            "macs_q24": patches * (steps1 * h1 * h1 + (ph + pw) * h1 * h2 + steps2 * h2 * h2),
            "proj_q24": patches * (ph + pw) * h2, "units": units, "units_lut": units * args["lut"],
            "steps": patches * (steps1 + steps2), "outputs": patches * 4 * h2, "patches": patches, "calls": 1,
        }
    raise UncalibratedKernel(f"no latency features for kernel {op!r}")


def call_macs(op: str, features: dict[str, float]) -> int:
    """Multiply-accumulates the runtime performs in one call (0 for adds and pools)."""
    if op == "rnnpool":
        return int(features["macs_s8"] + features["macs_q24"])
    return int(features.get("macs", 0))


#: The runtime files the calibrated kernels compile from (new kernels elsewhere do not stale it).
KERNEL_SOURCES = ("add.c", "conv.c", "depthwise.c", "fastgrnn.c", "fastgrnn_lut.c", "fully_connected.c",
                  "pointwise.c", "pool.c", "rnnpool.c", "rn_dot.h", "rn_requant.h")


def runtime_hash(runtime_dir: Path = RUNTIME_DIR) -> str:
    """sha256 over the calibrated kernels' sources (:data:`KERNEL_SOURCES`, names and bytes) and
    the ``M4FLAGS`` line of the exported projects' Makefile: what the cycles depend on."""
    h = hashlib.sha256()
    for name in KERNEL_SOURCES:
        path = runtime_dir / name
        h.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
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


def predict_calls(layers: list[Layer], model: LatencyModel | None = None) -> list[CallLatency]:
    """Predicted cycles of every kernel call of ``layers`` (in the order of ``model.c``)."""
    model = model or load_model()
    by_name = {layer.name: layer for layer in layers}
    steps, _ = lower(layers)
    out = []
    for step in steps:
        features = call_features(step.op, step.in_shape, step.out_shape, call_args(step, by_name[step.layer]))
        out.append(CallLatency(step.layer, step.op, model.call_cycles(step.op, features), call_macs(step.op, features)))
    return out


_LAYER_CACHE: dict[tuple, float] = {}


def layer_cycles(layer: Layer, model: LatencyModel | None = None) -> float:
    """Predicted cycles of the kernel calls of one layer (its lowering alone: a layer's calls do
    not depend on its neighbours), memoized on the layer's kind, shapes and arguments."""
    model = model or load_model()
    key = (id(model), layer.kind, layer.in_shape, layer.out_shape, tuple(layer.args.items()))
    cycles = _LAYER_CACHE.get(key)
    if cycles is None:
        if len(_LAYER_CACHE) > 100_000:
            _LAYER_CACHE.clear()
        cycles = sum(c.cycles for c in predict_calls([layer], model))
        _LAYER_CACHE[key] = cycles
    return cycles


def predict_layers(layers: list[Layer], model: LatencyModel | None = None) -> tuple[dict[str, float], float]:
    """``({layer name: cycles}, total cycles)``; the total adds the per-inference overhead
    (the copy-out of the outputs)."""
    model = model or load_model()
    per_layer = {layer.name: layer_cycles(layer, model) for layer in layers}
    return per_layer, sum(per_layer.values()) + model.overhead_cycles


def cycles_to_ms(cycles: float, clock_mhz: float) -> float:
    return cycles / (clock_mhz * 1e3)


__all__ = ["FEATURES", "LatencyModel", "UncalibratedKernel", "CallLatency", "call_args", "call_features", "call_macs", "cycles_to_ms",
           "layer_cycles", "load_model", "predict_calls", "predict_layers", "runtime_hash", "stale", "valid_taps"]
