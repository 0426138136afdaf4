"""Fit the Cortex-M4 latency predictor (``rnnpool_nas/cost/latency_m4.json``) on micro-benchmarks.

    python -m rnnpool_nas.measure.calibrate                  # the default grid (~2-3 min), rewrites the JSON
    python -m rnnpool_nas.measure.calibrate --out fit.json   # somewhere else
    python -m rnnpool_nas.measure.calibrate --per-family 6   # a quick, rough fit

Generates a seeded grid of single-kernel calls per kernel family (shapes drawn from the ranges
networks of the presets and search spaces use: 1-224 px maps, 1-384 channels, 1x1-5x5 kernels,
strides 1-2, RNNPool patches 2-8 with h1/h2 2-16 and both kinds of nonlinearity, fused MBConv
blocks with t 1-6, stride-2 ones also in 2-8 channel groups as a streamed segment runs them
(``stream.c``), the detection heads' L2Norm and max-out), runs them on the emulated Cortex-M4 (:mod:`rnnpool_nas.measure.microbench`: one build, one emulation), and fits each
family's cycles as a non-negative linear combination of its features
(:data:`rnnpool_nas.cost.latency.FEATURES`; MBConv's features are the fitted pointwise, depthwise
and add models' cycles of its row calls), least squares on relative error. Writes the
coefficients, the fit's residuals, the grid and the runtime's source hash. Re-run it whenever
the C runtime or its compiler flags change (``rnnpool_nas.cost.latency.stale()`` says so).
Whole networks are never part of the fit: ``benchmarks/bench_latency.py`` validates on them.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..cost.latency import COMPOSITE, FEATURES, MODEL_FILE, LatencyModel, call_features, runtime_hash
from ..lower.plan import SPLITS
from ..ops.geometry import axis_geometry
from .microbench import Bench, m4_flags, run_benches

#: An upper bound of a bench's cycles: keeps the default grid to a few minutes of emulation.
MAX_CYCLES_GUESS = 1_500_000


def _out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def _conv_bench(rng: random.Random, op: str) -> Bench | None:
    size = rng.choice([1, 2, 3, 4, 5, 7, 8, 10, 14, 16, 20, 28, 32, 56, 112])
    relu = 0  # trained networks: activations over the full int8 range (see the microbench driver)
    if op == "pointwise":
        cin, cout = rng.choice([1, 3, 4, 8, 12, 16, 24, 32, 48, 64, 96, 144, 192, 384]), rng.choice(
            [2, 4, 7, 8, 10, 16, 24, 32, 48, 64, 96, 128, 160, 320])
        stride, k, groups = rng.choice([1, 1, 1, 2]), 1, 1
        if rng.random() < 0.4:  # one row, as rn_mbconv's expand and project calls are
            w, stride = rng.choice([4, 7, 14, 20, 28, 40, 56, 112]), 1
            args = {"kernel": 1, "stride": 1, "groups": 1, "pad": 0, "relu": relu}
            return Bench(op, (1, w, cin), (1, w, cout), args)
        ho = wo = (size - 1) // stride + 1
    else:
        k = rng.choice([3, 3, 5]) if op == "depthwise" else rng.choice([1, 3, 3, 5])
        stride = rng.choice([1, 2])
        if op == "depthwise":
            cin = cout = groups = rng.choice([4, 8, 12, 16, 24, 32, 48, 64, 96, 144, 192, 288, 384])
        else:
            cin = rng.choice([1, 1, 3, 3, 4, 8, 16, 24])
            groups = rng.choice([1, 1, 1, g]) if (g := math.gcd(cin, 4)) > 1 else 1
            cout = groups * rng.choice([2, 4, 6, 8, 12, 16])
        size = max(size, k // 2 + 1)
        ho = wo = _out(size, k, stride, k // 2)
        if ho < 1:
            return None
    args = {"kernel": k, "stride": stride, "groups": groups, "pad": k // 2, "relu": relu}
    return Bench(op, (size, size, cin), (ho, wo, cout), args)


def _mbconv_bench(rng: random.Random, split_rng: random.Random) -> Bench | None:
    """A fused block; stride-2 ones with an expansion sometimes in channel groups (drawn from
    ``split_rng``, so the other benches of a seed stay what they were)."""
    size = rng.choice([2, 3, 4, 5, 7, 8, 10, 14, 15, 20, 28, 30, 40, 56])
    width = size if rng.random() < 0.7 else rng.choice([size + 1, 4 * size // 3 + 1])
    cin = rng.choice([8, 8, 12, 16, 16, 24, 32, 32, 48, 64, 96, 160])
    t = rng.choice([1, 2, 4, 6, 6])
    k, stride = rng.choice([3, 3, 3, 5]), rng.choice([1, 1, 2])
    cout = cin if stride == 1 and rng.random() < 0.5 else rng.choice([8, 16, 24, 32, 48, 64, 96, 160, 320])
    ho, wo = _out(size, k, stride, k // 2), _out(width, k, stride, k // 2)
    if ho < 1 or wo < 1:
        return None
    args = {"kernel": k, "stride": stride, "t": t, "residual": stride == 1 and cin == cout, "pad": k // 2,
            "relu": 0}
    splits = [g for g in SPLITS if g > 1 and (t * cin) % g == 0 and t * cin // g >= 4]
    if stride == 2 and t != 1 and splits and split_rng.random() < 0.4:  # a streamed segment's channel groups
        args["split"] = split_rng.choice(splits)
    return Bench("mbconv", (size, width, cin), (ho, wo, cout), args)


def _head_bench(rng: random.Random, op: str) -> Bench:
    h = rng.choice([1, 4, 8, 15, 30, 60])
    w = rng.choice([h, 4 * h // 3 + 1])
    c = rng.choice([8, 16, 32, 64, 128]) if op == "l2norm" else 4
    return Bench(op, (h, w, c), (h, w, c if op == "l2norm" else 2))


def _pool_bench(rng: random.Random, op: str) -> Bench | None:
    size = rng.choice([2, 3, 4, 7, 8, 14, 16, 28, 56])
    c = rng.choice([4, 8, 16, 32, 64, 96, 128, 320])
    if rng.random() < 0.4:
        kernel = stride = (size, size)  # global pooling
    else:
        k = rng.choice([2, 2, 3])
        s = rng.choice([k, 2])
        kernel, stride = (k, k), (s, s)
    if kernel[0] > size:
        return None
    ho = (size - kernel[0]) // stride[0] + 1
    return Bench(op, (size, size, c), (ho, ho, c), {"kernel": kernel, "stride": stride})


def _rnnpool_bench(rng: random.Random) -> Bench | None:
    patch = rng.choice([2, 3, 4, 4, 6, 6, 8, 8])
    stride = rng.choice([s for s in (1, 2, 3, 4, 6, 8) if s <= patch] or [patch])
    size = rng.choice([4, 6, 8, 12, 14, 16, 28, 32, 56, 112])
    if patch > size:
        return None
    cin = rng.choice([1, 2, 3, 4, 8, 12, 16, 24, 32])
    h1, h2 = rng.choice([2, 4, 6, 8, 12, 16]), rng.choice([2, 4, 6, 8, 12, 16])
    padding = rng.choice([0, 0, 1, "same", "reference"])
    # half of them one or two patch rows of a wide map: networks have tens of patches per row, whose
    # shared columns the kernel computes once (a square map within the cycle budget has a few)
    height = size if rng.random() < 0.5 else min(size, patch + rng.choice([0, stride]))
    try:
        gy = axis_geometry(height, patch, stride, padding)
        g = axis_geometry(size, patch, stride, padding)
    except ValueError:
        return None
    gate, update = rng.choice([("sigmoid", "tanh"), ("sigmoid", "tanh"), ("quantSigmoid", "quantTanh"),
                               ("sigmoid", "quantTanh"), ("quantSigmoid", "tanh")])
    lut = (gate in ("sigmoid", "tanh")) + (update in ("sigmoid", "tanh"))
    args = {"patch": (patch, patch), "stride": (stride, stride), "pad": (gy.pad_before, g.pad_before),
            "patches": (gy.patches, g.patches), "replicate": (gy.replicate, g.replicate), "h1": h1, "h2": h2,
            "lut": lut, "gate": gate, "update": update}
    return Bench("rnnpool", (height, size, cin), (gy.out, g.out, 4 * h2), args)


def _simple_bench(rng: random.Random, op: str) -> Bench:
    if op == "add":
        size, c = rng.choice([1, 2, 4, 7, 8, 14, 16, 28, 56]), rng.choice([8, 16, 24, 32, 64, 96])
        return Bench("add", (size, size, c), (size, size, c))
    size, c = rng.choice([1, 1, 1, 2, 4, 7]), rng.choice([8, 16, 32, 64, 96, 128, 320, 1280])
    classes = rng.choice([2, 9, 10, 10, 100])
    return Bench("fc", (size, size, c), (1, 1, classes), {"relu": 0})


def _guess_cycles(b: Bench) -> float:
    """A rough bound of a bench's cycles (the work times the slowest kernels' cycles per item) to
    keep benches small."""
    (hi, wi, ci), (ho, wo, co) = b.in_shape, b.out_shape
    if b.op == "mbconv":
        hidden, k = b.args["t"] * ci, b.args["kernel"]
        return 6 * (hi * wi * ci * hidden + ho * wo * hidden * (k * k + co)) + 40 * ho * wo * hidden
    f = call_features(b.op, b.in_shape, b.out_shape, b.args)
    work = f["macs_total"] + sum(f.get(k, 0) for k in ("taps", "elements"))
    work += 20 * (ho * wo * co + f.get("units", 0))
    if b.op == "l2norm":
        work += 40 * f["elements"]
    return 12 * work


def grid(per_family: int = 45, seed: int = 0) -> list[Bench]:
    """``per_family`` seeded random benches of every kernel family (RNNPool and the
    convolutions twice as many: they have more features)."""
    rng = random.Random(seed)
    split_rng = random.Random(seed + 1)
    benches: list[Bench] = []
    for op in FEATURES:
        want = per_family * (2 if op in ("rnnpool", "conv", "depthwise", "pointwise", "mbconv") else 1)
        got, tries = 0, 0
        while got < want and tries < 100 * want:
            tries += 1
            if op in ("conv", "depthwise", "pointwise"):
                b = _conv_bench(rng, op)
            elif op in ("avgpool", "maxpool"):
                b = _pool_bench(rng, op)
            elif op == "rnnpool":
                b = _rnnpool_bench(rng)
            elif op == "mbconv":
                b = _mbconv_bench(rng, split_rng)
            elif op in ("l2norm", "maxout"):
                b = _head_bench(rng, op)
            else:
                b = _simple_bench(rng, op)
            if b is None or _guess_cycles(b) > MAX_CYCLES_GUESS:
                continue
            benches.append(b)
            got += 1
    return benches


def nnls(a: np.ndarray, b: np.ndarray, iterations: int = 500) -> np.ndarray:
    """Non-negative least squares, min |a x - b| with x >= 0 (Lawson-Hanson active set)."""
    m, n = a.shape
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    w = a.T @ (b - a @ x)
    for _ in range(iterations):
        if passive.all() or (w[~passive] <= 1e-10 * max(1.0, np.abs(w).max())).all():
            break
        j = int(np.argmax(np.where(passive, -np.inf, w)))
        passive[j] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > 1e-12
            x[~passive] = 0.0
        w = a.T @ (b - a @ x)
    return x


def fit(benches: list[Bench]) -> dict[str, dict[str, Any]]:
    """Per family: features, non-negative coefficients (relative least squares) and residuals.
    The composite families (MBConv: its features are the other families' predictions) come last,
    with the others' fitted coefficients."""
    out: dict[str, dict[str, Any]] = {}
    order = [op for op in FEATURES if op not in COMPOSITE] + list(COMPOSITE)
    for op in order:
        names = FEATURES[op]
        model = None
        if op in COMPOSITE:
            model = LatencyModel({k: dict(zip(v["features"], v["coefficients"])) for k, v in out.items()}, 0.0)
        rows = [b for b in benches if b.op == op and b.cycles > 0]
        if not rows:
            raise RuntimeError(f"no measured benchmarks of {op}")
        x = np.array([[call_features(b.op, b.in_shape, b.out_shape, b.args, model)[n] for n in names]
                      for b in rows], float)
        y = np.array([b.cycles for b in rows], float)
        scale = np.maximum(x.max(axis=0), 1.0)  # conditioning: columns of comparable size
        coef = nnls((x / scale) / y[:, None], np.ones(len(y))) / scale
        rel = (x @ coef - y) / y
        out[op] = {"features": list(names), "coefficients": [float(c) for c in coef], "benchmarks": len(rows),
                   "max_abs_rel_error": float(np.abs(rel).max()), "mean_abs_rel_error": float(np.abs(rel).mean())}
    return {op: out[op] for op in FEATURES}


def calibrate(out: str | Path = MODEL_FILE, per_family: int = 45, seed: int = 0, measurements: str | Path | None = None,
              log=print) -> dict[str, Any]:
    """Measure the grid, fit, write ``out``; returns what it wrote."""
    benches = grid(per_family, seed)
    log(f"{len(benches)} micro-benchmarks ({per_family} per family, seed {seed}): building and emulating ...")
    start = time.perf_counter()
    benches, copy_cycles, emulation = run_benches(benches)
    log(f"emulated {emulation.instructions:,} instructions, {emulation.cycles:,} cycles in {emulation.wall_seconds:.1f} s "
        f"({emulation.instructions_per_second / 1e6:.1f} M instructions/s; {time.perf_counter() - start:.1f} s in all)")
    families = fit(benches)
    for op, f in families.items():
        terms = ", ".join(f"{c:.4g} {n}" for n, c in zip(f["features"], f["coefficients"]))
        log(f"  {op:9s} {f['benchmarks']:3d} benches, error max {100 * f['max_abs_rel_error']:5.1f}% "
            f"mean {100 * f['mean_abs_rel_error']:4.1f}%: {terms}")
    doc = {
        "target": "cortex-m4",
        "command": "python -m rnnpool_nas.measure.calibrate",
        "note": "cycles per call = sum of coefficient x feature (rnnpool_nas.cost.latency); cycles from the "
                "emulator's Cortex-M4 TRM table (rnnpool_nas.measure.timing)",
        "runtime_sha256": runtime_hash(),
        "m4_flags": m4_flags(),
        "grid": {"per_family": per_family, "seed": seed, "benchmarks": len(benches)},
        "overhead_cycles": copy_cycles,
        "families": families,
    }
    Path(out).write_text(json.dumps(doc, indent=1) + "\n")
    log(f"wrote {out}")
    if measurements:
        Path(measurements).write_text(json.dumps([b.to_dict() for b in benches], indent=1) + "\n")
        log(f"wrote {measurements}")
    return doc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rnnpool_nas.measure.calibrate", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(MODEL_FILE), help="where to write the model (default: the package's)")
    p.add_argument("--per-family", type=int, default=45, help="benchmarks per kernel family (default 45)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--measurements", metavar="FILE.json", help="also write every benchmark's shapes and cycles")
    args = p.parse_args(argv)
    calibrate(args.out, args.per_family, args.seed, args.measurements)
    return 0


if __name__ == "__main__":
    sys.exit(main())
