"""Cost-model speed: evaluations per second on one core, and the ratio to fvcore.

    python benchmarks/bench_cost.py [--seconds 3]

Three figures for a MobileNetV2-RNNPool-sized spec: (a) the same spec scored again and again,
(b) random variants (RNNPool patch/stride/h1/h2, width, input size, bottleneck depths and
expansions: what a search samples), each scored once starting from an empty stage cache, so a
cached stage expansion is reused only where variants really share a stage, both with the
search's ``profile=False``, and (c) the same spec with the full per-stage profile. Then fvcore's FlopCountAnalysis on the built module for comparison.
"""

from __future__ import annotations

import argparse
import random
import time

from rnnpool_nas.arch import get_preset
from rnnpool_nas.arch.spec import _STAGE_CACHE, Bottleneck
from rnnpool_nas.cost import evaluate


def _rate(specs, seconds: float, profile: bool) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for spec in specs:
            evaluate(spec, profile=profile)
        n += len(specs)
    return n / (time.perf_counter() - start)


def _variants(count: int, seed: int = 0):
    rng = random.Random(seed)
    specs = []
    while len(specs) < count:
        size = rng.choice([96, 128, 160, 192, 224])
        spec = get_preset(
            "mobilenetv2-rnnpool",
            input=(size, size, 3),
            width=rng.choice([0.35, 0.5, 0.75, 1.0]),
            h1=rng.choice([4, 8, 12, 16, 24, 32]),
            h2=rng.choice([4, 8, 12, 16, 24, 32]),
            patch_size=rng.choice([4, 6, 8]),
            stride=rng.choice([2, 4]),
        )
        for stage in spec.stages:
            if isinstance(stage, Bottleneck):
                stage.n = rng.randint(1, 4)
                stage.t = rng.choice([3, 4, 6])
        specs.append(spec)
    return specs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--variants", type=int, default=10000)
    args = ap.parse_args()
    base = get_preset("mobilenetv2-rnnpool")
    variants = _variants(args.variants)
    _STAGE_CACHE.clear()  # each variant scored once, from a cold cache
    start = time.perf_counter()
    for spec in variants:
        evaluate(spec, profile=False)
    stream = len(variants) / (time.perf_counter() - start)
    same = _rate([base], args.seconds, profile=False)
    full = _rate([base], args.seconds, profile=True)
    print("cost model, MobileNetV2-RNNPool-sized specs, one core:")
    print(f"  same spec, totals only:           {same:10,.0f} evaluations/s")
    print(f"  {len(variants)} random variants, once each: {stream:8,.0f} evaluations/s")
    print(f"  same spec, with per-stage profile: {full:9,.0f} evaluations/s")

    import torch
    from fvcore.nn import FlopCountAnalysis

    from rnnpool_nas.arch.build import build

    torch.set_num_threads(1)
    model = build(base).eval()
    x = torch.randn(1, 3, 224, 224)
    start = time.perf_counter()
    FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False).total()
    fv = time.perf_counter() - start
    build_s = time.perf_counter()
    build(base)
    build_s = time.perf_counter() - build_s
    print(f"fvcore FlopCountAnalysis on the built module: {fv * 1e3:.0f} ms per spec "
          f"(+ {build_s * 1e3:.0f} ms to build it): the cost model is {same * fv:,.0f}x faster")


if __name__ == "__main__":
    main()
