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

``--run RUN --trial ID``: the real job instead: a classifier trial of a search run (its finalized
checkpoint when ``finalize`` made one), quantized as finalize does, its int8 network run on the
test set (the first ``--test-images``, default all) by the reference and the compiled scorer
(outputs checked identical), then ``evaluate_int8`` whole as finalize runs it (the float model
included); --threads and --cflags apply as above.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _compare(name: str, qnet, runner, images: np.ndarray, ref_batch: int) -> None:
    """The reference (``ref_batch`` images a batch) and the compiled ``runner`` (256 a batch) on
    ``images``: the outputs must be identical; prints both times and their ratios."""
    n = len(images)
    tick, cpu = time.perf_counter(), time.process_time()
    ref = np.concatenate([qnet.run(images[i:i + ref_batch]) for i in range(0, n, ref_batch)])
    ref_s, ref_cpu = time.perf_counter() - tick, time.process_time() - cpu
    tick, cpu = time.perf_counter(), time.process_time()
    out = np.concatenate([runner.run(images[i:i + 256]) for i in range(0, n, 256)])
    fast_s, fast_cpu = time.perf_counter() - tick, time.process_time() - cpu
    assert np.array_equal(out, ref), name
    print(f"{name}: {n} images: reference {ref_s:.2f} s ({ref_s / n * 1000:.2f} ms/image, CPU {ref_cpu:.2f} s), "
          f"compiled {fast_s:.3f} s ({fast_s / n * 1000:.2f} ms/image, CPU {fast_cpu:.3f} s): "
          f"{ref_s / fast_s:.1f}x wall, {ref_cpu / fast_cpu:.1f}x CPU, outputs identical")


def main() -> None:
    from rnnpool_nas.arch import get_preset
    from rnnpool_nas.errors import UserError
    from rnnpool_nas.measure.untrained import untrained_model
    from rnnpool_nas.quant import native
    from rnnpool_nas.quant.convert import quantize

    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=16, help="images of the detector (the classifier gets 64x)")
    ap.add_argument("--threads", type=int, default=native.default_threads(), help="threads of the compiled scorer")
    ap.add_argument("--cflags", default="", help="extra compiler flags of the compiled scorer, space-separated")
    ap.add_argument("--run", help="a search run: score one of its trials' test set instead (with --trial)")
    ap.add_argument("--trial", type=int, help="the trial of --run")
    ap.add_argument("--test-images", type=int, default=0, help="with --run: the first N test images (0: all)")
    args = ap.parse_args()
    if args.run and args.trial is None:
        ap.error("--run needs --trial")
    try:
        lib = native.variant(*args.cflags.split()) if args.cflags else native.library()
    except (OSError, RuntimeError) as exc:  # the compiler refused --cflags: the end of its message
        detail = str(exc).strip().splitlines()[-1].rsplit(": ", 1)[-1]
        raise SystemExit(f"bench_int8.py: compiling the scorer with --cflags={args.cflags!r} failed: "
                         f"{detail}") from None
    if lib is None:
        raise SystemExit("no C compiler: nothing to compare")
    print(f"load average before: {_load()}; compiled scorer: {args.threads} thread(s), {lib.qop_lanes()} int32 "
          f"lanes a vector{', extra flags ' + args.cflags if args.cflags else ''}")
    if args.run:
        try:
            real_job(args, lib)
        except UserError as exc:
            raise SystemExit(f"bench_int8.py: {exc}") from None
    else:
        rng = np.random.default_rng(0)
        for name, n, batch in (("rnnpool-tiny", 64 * args.images, 16), ("rnnpool-face-m4", args.images, 4)):
            spec = get_preset(name)
            h, w, c = spec.input
            images = rng.integers(0, 256, (n + 16, h, w, c), dtype=np.uint8)
            qnet = quantize(untrained_model(spec), images[:16])
            _compare(name, qnet, native.NativeNet(qnet, lib, threads=args.threads), images[16:], batch)
    print(f"load average after: {_load()}")


def real_job(args: argparse.Namespace, lib) -> None:
    """A run's classifier trial quantized as finalize does it: its int8 network on the test set,
    reference against compiled, then ``evaluate_int8`` whole as finalize runs it."""
    from rnnpool_nas.data import adapt_images
    from rnnpool_nas.errors import UserError
    from rnnpool_nas.export.exporter import from_run, load_model
    from rnnpool_nas.quant import native
    from rnnpool_nas.train.quant import calibration_images, evaluate_int8, quantize
    from rnnpool_nas.train.recipe import load_data

    source = from_run(args.run, args.trial)
    spec = source.spec
    if spec.detection is not None:
        raise UserError(f"trial {args.trial} is a detector; --run takes a classifier trial")
    model = load_model(source)
    dataset = load_data(spec, source.dataset, data_dir=source.data_dir, seed=source.seed)
    h, w, c = spec.input
    qnet = quantize(model, calibration_images(dataset, spec.input))
    images, labels = adapt_images(dataset.x_val, h, w, c), np.asarray(dataset.y_val)
    if args.test_images:
        images, labels = images[:args.test_images], labels[:args.test_images]
    runner = native.NativeNet(qnet, lib, threads=args.threads)
    _compare(f"{source.label}, test images of {source.dataset}", qnet, runner, images, 16)
    tick = time.perf_counter()
    scores = evaluate_int8(qnet, model, images, labels)
    print(f"evaluate_int8 as finalize runs it (the float model too, torch, 256 a batch): "
          f"{time.perf_counter() - tick:.1f} s; int8 {scores['int8_accuracy']:.4f}, "
          f"float {scores['float_accuracy']:.4f}")


if __name__ == "__main__":
    main()
