"""RNNPoolLayer speed: the fast path against the plain implementation, side by side.

    python benchmarks/bench_rnnpool.py [--batch 8] [--channels 32] [--size 112] [--patch 6]
        [--stride 4] [--hidden 16] [--threads 2] [--repeats 5]

Prints, for forward+backward (and forward alone), each path's median time, the speed-up, and
the peak memory each allocates during one forward+backward (torch's CPU allocator profiler).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from rnnpool_nas.ops import RNNPoolLayer, rnnpool_plain
from rnnpool_nas.ops._kernel import kernel_status


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _peak_bytes(fn) -> int:
    """Peak of live CPU allocations while ``fn`` runs, from the profiler's memory events."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
        key=lambda e: e.start_ns(),
    )
    for e in events:
        live += e.nbytes()
        peak = max(peak, live)
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--patch", type=int, default=6)
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layer = RNNPoolLayer(args.channels, args.patch, args.stride, args.hidden, args.hidden)
    x = torch.randn(args.batch, args.channels, args.size, args.size, requires_grad=True)
    paths = {"plain": lambda: rnnpool_plain(layer, x), "fast": lambda: layer(x)}

    print(
        f"RNNPoolLayer {args.batch}x{args.channels}x{args.size}x{args.size}, patch {args.patch}, "
        f"stride {args.stride}, h1=h2={args.hidden}, float32, {args.threads} threads; {kernel_status()}"
    )
    with torch.no_grad():
        err = (paths["plain"]() - paths["fast"]()).abs().max().item()
    print(f"max |fast - plain| = {err:.2e}")
    results = {}
    for name, fwd in paths.items():

        def fwd_bwd(fwd=fwd):
            layer.zero_grad(set_to_none=True)
            x.grad = None
            fwd().sum().backward()

        def fwd_only(fwd=fwd):
            with torch.no_grad():
                fwd()

        results[name] = (
            _median_seconds(fwd_bwd, args.repeats),
            _median_seconds(fwd_only, args.repeats),
            _peak_bytes(fwd_bwd),
        )
    for name, (fb, f, peak) in results.items():
        print(f"{name:>5}: fwd+bwd {fb * 1e3:8.1f} ms   fwd {f * 1e3:8.1f} ms   peak memory {peak / 2**20:7.1f} MiB")
    (pfb, pf, ppeak), (ffb, ff, fpeak) = results["plain"], results["fast"]
    print(f"speed-up fwd+bwd {pfb / ffb:.2f}x, fwd {pf / ff:.2f}x; peak memory ratio plain/fast {ppeak / fpeak:.2f}")


if __name__ == "__main__":
    main()
