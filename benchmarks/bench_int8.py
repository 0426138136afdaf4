"""Scoring speed of the int8 network: the numpy reference (train/quant.py, 16-image batches as the
old evaluate_int8) against the batched runner (train/quant_fast.py), bit-exact, on random-weight
models: rnnpool-tiny (28x28x1) and RNNPool-Face-M4 (240x320x1).

    python benchmarks/bench_int8.py [--threads N] [--images N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    from rnnpool_nas.arch import get_preset
    from rnnpool_nas.measure.untrained import untrained_model
    from rnnpool_nas.train.quant import quantize
    from rnnpool_nas.train.quant_fast import FastNet

    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--images", type=int, default=8, help="images of the detector (the classifier gets 32x)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    for name, n, batch in (("rnnpool-tiny", 32 * args.images, 16), ("rnnpool-face-m4", args.images, 4)):
        spec = get_preset(name)
        model = untrained_model(spec)
        h, w, c = spec.input
        images = rng.integers(0, 256, (n + 16, h, w, c), dtype=np.uint8)
        qnet = quantize(model, images[:16])
        x = images[16:]
        tick = time.perf_counter()
        ref = np.concatenate([qnet.run(x[i:i + batch]) for i in range(0, n, batch)])
        numpy_s = time.perf_counter() - tick
        runner = FastNet(qnet)
        tick = time.perf_counter()
        out = np.concatenate([runner.run(x[i:i + 256]) for i in range(0, n, 256)])
        fast_s = time.perf_counter() - tick
        assert np.array_equal(out, ref), name
        print(f"{name}: {n} images, {args.threads} thread(s): numpy reference {numpy_s / n * 1000:.1f} ms/image, "
              f"batched {fast_s / n * 1000:.1f} ms/image ({numpy_s / fast_s:.1f}x), outputs identical")


if __name__ == "__main__":
    main()
