"""Training speed: images per second for a default-sized candidate on fashion-mnist, 2 cores.

    python benchmarks/bench_train.py [--preset rnnpool-tiny] [--dataset fashion-mnist]
        [--images 12800] [--threads 2] [--batch-size 128]

Trains one epoch over the first ``--images`` training images (after a short warm-up) with the
real trainer (augmentation, SGD, cosine schedule) and prints images/s for training, plus the
evaluation rate of the float model and of the int8 reference.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rnnpool_nas.arch import get_preset
from rnnpool_nas.data import adapt_images, load_dataset
from rnnpool_nas.train.quant import evaluate_int8, quantize
from rnnpool_nas.train.trainer import TrainConfig, Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="rnnpool-tiny")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--images", type=int, default=12800)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    dataset = load_dataset(args.dataset, limit=args.images)
    spec = get_preset(args.preset, classes=dataset.num_classes)
    warm = Trainer(spec, dataset, TrainConfig(epochs=1, max_steps=3, threads=args.threads, batch_size=args.batch_size))
    warm.fit()
    trainer = Trainer(spec, dataset, TrainConfig(epochs=1, threads=args.threads, batch_size=args.batch_size),
                      data=warm.data)
    result = trainer.fit()
    epoch = result.history[0]
    t0 = time.perf_counter()
    trainer.evaluate()
    eval_rate = len(trainer.data.x_val) / (time.perf_counter() - t0)
    h, w, c = spec.input
    val = adapt_images(dataset.x_val[:512], h, w, c)
    qnet = quantize(trainer.model, adapt_images(dataset.x_train[:512], h, w, c))
    t0 = time.perf_counter()
    evaluate_int8(qnet, trainer.model, val, np.asarray(dataset.y_val[:512]))
    int8_rate = len(val) / (time.perf_counter() - t0)
    print(f"{args.preset} at {'x'.join(map(str, spec.input))} on {dataset.name}, batch {args.batch_size}, "
          f"{args.threads} threads")
    print(f"  training:          {epoch.images_per_second:8,.0f} images/s ({len(trainer.data.x_train)} images, "
          f"augmentation included; epoch {epoch.seconds:.1f} s with evaluation)")
    print(f"  float evaluation:  {eval_rate:8,.0f} images/s")
    print(f"  int8 reference:    {int8_rate:8,.0f} images/s (numpy integer reference, float model included)")


if __name__ == "__main__":
    main()
