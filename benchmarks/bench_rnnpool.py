"""RNNPoolLayer speed: the fast path against the plain implementation, side by side.

    python benchmarks/bench_rnnpool.py [--batch 8] [--channels 32] [--size 112] [--patch 6]
        [--stride 4] [--hidden 16] [--threads 2] [--repeats 5]

Paths: ``plain`` (the obvious batched implementation, the baseline), ``eager`` (the fast path's
data flow, W x once per pixel and all sweeps batched, with the recurrence in eager PyTorch) and
``fast`` (the same with the fused C++ recurrence). Prints, for forward+backward and forward alone,
each path's median time, the speed-up over plain, and the peak memory each allocates during one
forward+backward (the peak of live CPU allocations, from the profiler's memory events).
"""

from __future__ import annotations

import argparse
import contextlib
import os
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


def _setup(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layer = RNNPoolLayer(args.channels, args.patch, args.stride, args.hidden, args.hidden)
    x = torch.randn(args.batch, args.channels, args.size, args.size, requires_grad=True)

    def run_layer(use_kernel: bool):
        layer.use_kernel = use_kernel
        return layer(x)

    paths = {
        "plain": lambda: rnnpool_plain(layer, x),
        "eager": lambda: run_layer(False),
        "fast": lambda: run_layer(True),
    }
    return layer, x, paths


@contextlib.contextmanager
def _quiet_stderr():
    """The profiler's C++ side logs to fd 2; keep the benchmark's output readable."""
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _peak_bytes(fn) -> int:
    """Peak of live CPU allocations while ``fn`` runs (allocations made before it not counted)."""
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    for e in sorted(events, key=lambda e: e.start_ns()):
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
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    layer, x, paths = _setup(args)
    print(
        f"RNNPoolLayer {args.batch}x{args.channels}x{args.size}x{args.size}, patch {args.patch}, "
        f"stride {args.stride}, h1=h2={args.hidden}, float32, {args.threads} threads; {kernel_status()}"
    )
    with torch.no_grad():
        err = (paths["plain"]() - paths["fast"]()).abs().max().item()
    print(f"max |fast - plain| = {err:.2e}")
    torch.manual_seed(1)
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
    pfb, pf, _ = results["plain"]
    for name, (fb, f, peak) in results.items():
        print(
            f"{name:>5}: fwd+bwd {fb * 1e3:7.1f} ms ({pfb / fb:4.2f}x)   fwd {f * 1e3:7.1f} ms ({pf / f:4.2f}x)"
            f"   peak memory {peak / 2**20:6.1f} MiB"
        )
    ffb = results["fast"][0]
    print(f"speed-up of the fast path over plain, forward+backward: {pfb / ffb:.2f}x")


if __name__ == "__main__":
    main()
