"""Scoring speed of the int8 network: the numpy integer reference (``QuantizedNet.run``, in the
small batches the reference path of ``evaluate_int8`` uses) against the compiled scorer
(``rnnpool_nas.quant.native``: what ``evaluate_int8``, ``score_int8``, finalize and the
detectors' int8 AP run), on random-weight models: rnnpool-tiny (28x28x1) and RNNPool-Face-M4
(240x320x1). Checks that the outputs are identical byte for byte, then prints seconds and the
ratio of wall times, the CPU seconds of the process (all its threads: BLAS's for the reference,
the scorer's own) and the load average (on a busy machine wall times say little).

    python benchmarks/bench_int8.py [--images N] [--threads N] [--cflags=-mno-avx512f]

``--cflags``: extra compiler flags for the compiled scorer (``native.variant``): on an AVX-512
host, ``-mno-avx512f`` measures the build an AVX2 host gets, ``-DQOP_GENERIC`` plain C.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def main() -> None:
    from rnnpool_nas.arch import get_preset
    from rnnpool_nas.measure.untrained import untrained_model
    from rnnpool_nas.quant import native
    from rnnpool_nas.quant.convert import quantize

    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=16, help="images of the detector (the classifier gets 64x)")
    ap.add_argument("--threads", type=int, default=native.default_threads(), help="threads of the compiled scorer")
    ap.add_argument("--cflags", default="", help="extra compiler flags of the compiled scorer, space-separated")
    args = ap.parse_args()
    lib = native.variant(*args.cflags.split()) if args.cflags else native.library()
    if lib is None:
        raise SystemExit("no C compiler: nothing to compare")
    rng = np.random.default_rng(0)
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; compiled scorer: "
          f"{args.threads} thread(s), {lib.qop_lanes()} int32 lanes a vector"
          f"{', extra flags ' + args.cflags if args.cflags else ''}")
    for name, n, batch in (("rnnpool-tiny", 64 * args.images, 16), ("rnnpool-face-m4", args.images, 4)):
        spec = get_preset(name)
        h, w, c = spec.input
        images = rng.integers(0, 256, (n + 16, h, w, c), dtype=np.uint8)
        qnet = quantize(untrained_model(spec), images[:16])
        x = images[16:]
        tick, cpu = time.perf_counter(), time.process_time()
        ref = np.concatenate([qnet.run(x[i:i + batch]) for i in range(0, n, batch)])
        ref_s, ref_cpu = time.perf_counter() - tick, time.process_time() - cpu
        runner = native.NativeNet(qnet, lib, threads=args.threads)
        tick, cpu = time.perf_counter(), time.process_time()
        out = np.concatenate([runner.run(x[i:i + 256]) for i in range(0, n, 256)])
        fast_s, fast_cpu = time.perf_counter() - tick, time.process_time() - cpu
        assert np.array_equal(out, ref), name
        print(f"{name}: {n} images: reference {ref_s:.2f} s ({ref_s / n * 1000:.2f} ms/image, CPU {ref_cpu:.2f} s), "
              f"compiled {fast_s:.3f} s ({fast_s / n * 1000:.2f} ms/image, CPU {fast_cpu:.3f} s): "
              f"{ref_s / fast_s:.1f}x wall, {ref_cpu / fast_cpu:.1f}x CPU, outputs identical")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
