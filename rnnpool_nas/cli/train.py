"""``rnnpool-nas train``: train one architecture on one data set, then score it in int8."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .cost import resolve_spec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one architecture (float, then the exact int8 reference)",
        description="Train one architecture with the paper's recipe (SGD, momentum 0.9, weight decay 4e-5, "
        "cosine schedule), then quantize it to int8 and report both accuracies. Writes checkpoint.pt, "
        "arch.json and metrics.json to --out.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", metavar="NAME", help="a preset (see `rnnpool-nas presets`)")
    src.add_argument("--arch", metavar="FILE.json", help="a spec file (e.g. from `cost --dump-arch`)")
    p.add_argument("--dataset", required=True, metavar="NAME",
                   help="fashion-mnist, idx:PATH, cifar10:PATH, imagefolder:PATH, lines, shapes")
    p.add_argument("--data-dir", metavar="DIR", help="where fashion-mnist's idx files are (default: Debian's)")
    p.add_argument("--set", metavar="FIELD=VALUE", action="append", default=[], help="override a spec field")
    p.add_argument("--input", metavar="HxWxC", help="train at this input size (images are resized)")
    p.add_argument("--width", type=float, metavar="W", help="width multiplier (presets only)")
    p.add_argument("--epochs", type=int, default=5, help="epochs (default 5)")
    p.add_argument("--steps", type=int, metavar="N", help="stop after N optimizer steps")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05, help="initial learning rate (default 0.05)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    p.add_argument("--limit", type=int, metavar="N", help="use at most N training and N validation images")
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/train-<arch>-<dataset>)")
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt")
    p.add_argument("--no-int8", action="store_true", help="skip the int8 evaluation")
    p.set_defaults(handler=run, classes=None)


def _positive(name: str, value: int | float | None) -> None:
    from ..errors import UserError

    if value is not None and value <= 0:
        raise UserError(f"--{name} must be positive, got {value}")


def run(args: argparse.Namespace) -> int:
    from ..arch.presets import set_field
    from ..data import load_dataset
    from ..errors import UserError
    from ..train.trainer import TrainConfig, Trainer

    for name in ("epochs", "steps", "batch_size", "lr", "threads", "limit"):
        _positive(name.replace("_", "-"), getattr(args, name))
    dataset = load_dataset(args.dataset, data_dir=args.data_dir, seed=args.seed, limit=args.limit)
    spec = resolve_spec(args)
    if spec.detection is not None:
        raise UserError("detection models train with the face-detection data sets, which are not available yet")
    spec = set_field(spec, "num_classes", dataset.num_classes)
    out = Path(args.out or f"runs/train-{spec.name or 'arch'}-{dataset.name.replace(':', '_').replace('/', '_')}")
    if out.exists() and any(out.iterdir()) and not args.resume:
        raise UserError(f"{out} exists and is not empty; pass --resume to continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "arch.json").write_text(spec.to_json())
    config = TrainConfig(epochs=args.epochs, max_steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                         seed=args.seed, threads=args.threads)
    trainer = Trainer(spec, dataset, config, checkpoint=out / "checkpoint.pt", resume=args.resume)
    print(f"training {spec.name or args.arch} at {'x'.join(map(str, spec.input))} on {dataset.name} "
          f"({len(dataset.x_train)} train / {len(dataset.x_val)} val images, {dataset.num_classes} classes)")
    bar = _progress()
    result = trainer.fit(callback=lambda m: bar.epoch(m, args.epochs), progress=bar.step)
    bar.close()
    metrics = {"result": result.to_dict(), "spec": "arch.json", "dataset": dataset.name, "config": vars(config)}
    if result.status == "complete" and not args.no_int8 and spec.detection is None:
        metrics["int8"] = _int8(trainer, dataset)
        i8 = metrics["int8"]
        print(f"int8: accuracy {i8['int8_accuracy']:.4f} (float {i8['float_accuracy']:.4f}), "
              f"top-1 agreement {i8['agreement']:.4f} on {i8['images']} validation images")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if result.status == "failed":
        print(f"rnnpool-nas: training failed: {result.reason}", file=sys.stderr)
        return 1
    print(f"done in {result.wall_time:.0f} s: validation accuracy {result.val_accuracy:.4f}; wrote {out}/")
    return 0


def _int8(trainer, dataset) -> dict:
    import numpy as np

    from ..data import adapt_images
    from ..train.quant import calibration_images, evaluate_int8, quantize

    h, w, c = trainer.spec.input
    calib = calibration_images(dataset, trainer.spec.input)
    qnet = quantize(trainer.model, calib)
    val = adapt_images(dataset.x_val, h, w, c)
    scores = evaluate_int8(qnet, trainer.model, val, np.asarray(dataset.y_val))
    return {**scores, "images": len(val), "calibration_images": len(calib)}


class _progress:
    """A one-line progress bar per epoch (tqdm), then the epoch's metrics."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.bar = None
        self.epoch_no = 1

    def step(self, k: int, total: int) -> None:
        if self.bar is None:
            self.bar = self._tqdm(total=total, desc=f"epoch {self.epoch_no}", leave=False, unit="batch",
                                  file=sys.stdout, dynamic_ncols=True, disable=None)  # off when not a TTY
        self.bar.update(k - self.bar.n)

    def epoch(self, m, epochs: int) -> None:
        self.close()
        print(f"epoch {m.epoch}/{epochs}: train loss {m.train_loss:.4f}, val loss {m.val_loss:.4f}, "
              f"val accuracy {m.val_accuracy:.4f}, {m.images_per_second:,.0f} img/s")
        self.epoch_no = m.epoch + 1

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
