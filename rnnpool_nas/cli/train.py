"""``rnnpool-nas train``: train one architecture on one data set, then score it in int8.

Classifiers train with :class:`~rnnpool_nas.train.trainer.Trainer` and report top-1 accuracy;
face detectors (specs with detection heads) on a face-detection data set train with
:class:`~rnnpool_nas.train.detection.DetectionTrainer` and report AP at IoU 0.5 (all images and
the paper's images with at most 3 faces; the official WIDER FACE easy/medium/hard with
``--wider-eval``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from . import add_command
from .cost import resolve_spec


ABOUT = """train one architecture (float, then the exact int8 reference)

Train one architecture with the paper's recipe (SGD, momentum 0.9, weight decay 4e-5, cosine
schedule), then quantize it to int8 and report both accuracies (face detectors: AP at IoU 0.5, also
on the images with at most 3 faces). Writes checkpoint.pt, arch.json and metrics.json to --out.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "train", ABOUT)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", metavar="NAME", help="a preset (see `rnnpool-nas presets`)")
    src.add_argument("--arch", metavar="FILE.json", help="a spec file (e.g. from `cost --dump-arch`)")
    p.add_argument("--dataset", required=True, metavar="NAME",
                   help="fashion-mnist, idx:PATH, cifar10:PATH, imagefolder:PATH, lines, shapes; for face "
                   "detectors faces-synth, wider-face:PATH, scut-head:PATH")
    p.add_argument("--data-dir", metavar="DIR", help="where fashion-mnist's idx files are (default: Debian's)")
    p.add_argument("--set", metavar="FIELD=VALUE", action="append", default=[], help="override a spec field")
    p.add_argument("--input", metavar="HxWxC", help="train at this input size (images are resized)")
    p.add_argument("--width", type=float, metavar="W", help="width multiplier (presets only)")
    p.add_argument("--epochs", type=int, default=5, help="epochs (default 5)")
    p.add_argument("--steps", type=int, metavar="N", help="stop after N optimizer steps")
    p.add_argument("--batch-size", type=int, help="images per step (default 128; 16 for detectors)")
    p.add_argument("--lr", type=float, help="initial learning rate (default 0.05; 0.01 for detectors, the paper's)")
    p.add_argument("--warmup", type=float, metavar="EPOCHS",
                   help="linear warm-up before the cosine schedule (default 0; detectors: 5, at most a tenth of the run)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    p.add_argument("--limit", type=int, metavar="N", help="use at most N training and N validation images")
    p.add_argument("--val-limit", type=int, metavar="N", help="score on the first N validation images only")
    p.add_argument("--wider-eval", metavar="DIR", help="detectors on WIDER FACE val: also score with the official "
                   "protocol (easy/medium/hard) from the ground truth in DIR (wider_face_val.mat, wider_*_val.mat)")
    p.add_argument("--wider-protocol", choices=("official", "python"), default="official",
                   help="with --wider-eval: the official MATLAB eval_tools' arithmetic (int32 overlaps, single-precision "
                   "score normalisation; what published numbers use; the default) or the common Python ports'")
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/train-<arch>-<dataset>)")
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt")
    p.add_argument("--no-int8", action="store_true", help="skip the int8 evaluation")
    p.set_defaults(handler=run, classes=None)


def _positive(name: str, value: int | float | None) -> None:
    from ..errors import UserError

    if value is not None and not (math.isfinite(value) and value > 0):
        raise UserError(f"--{name} must be positive, got {value}")


def run(args: argparse.Namespace) -> int:
    from ..cost.memory import check_fits_memory
    from ..errors import UserError
    from ..run.lock import lock_run
    from ..run.store import has_files, write_atomic
    from ..train.recipe import TrainConfig, check_data, load_data, score_int8, train

    for name in ("epochs", "steps", "batch_size", "lr", "threads", "limit", "val_limit"):
        _positive(name.replace("_", "-"), getattr(args, name))
    if args.seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {args.seed}")
    if args.warmup is not None and not (math.isfinite(args.warmup) and args.warmup >= 0):
        raise UserError(f"--warmup must be non-negative, got {args.warmup}")
    spec = resolve_spec(args)
    check_fits_memory(spec)  # before any data is loaded or file written
    detection = spec.detection is not None
    check_data(spec, args.dataset, label=spec.name or args.arch)
    if not detection and args.wider_eval:
        raise UserError("--wider-eval scores face detectors; this is a classifier")
    dataset = load_data(spec, args.dataset, data_dir=args.data_dir, seed=args.seed, limit=args.limit)
    if detection:
        sizes = (f"{len(dataset.train)} train / {len(dataset.val)} val images, "
                 f"{int(dataset.train.face_counts().sum())} / {int(dataset.val.face_counts().sum())} faces")
    else:
        from ..arch.presets import set_field

        spec = set_field(spec, "num_classes", dataset.num_classes)
        sizes = f"{len(dataset.x_train)} train / {len(dataset.x_val)} val images, {dataset.num_classes} classes"
    out = Path(args.out or f"runs/train-{spec.name or 'arch'}-{dataset.name.replace(':', '_').replace('/', '_')}")
    if args.resume and not (out / "checkpoint.pt").is_file():
        raise UserError(f"--resume: there is no {out / 'checkpoint.pt'} to continue (drop --resume to start a new run)")
    if not args.resume and has_files(out):
        raise UserError(f"{out} exists and is not empty; pass --resume to continue it or choose another --out")
    _make_out(out)
    lock = lock_run(out, "train")  # noqa: F841 (held until this process ends: one writer per folder)
    if args.resume:  # check first, write after: a bad checkpoint leaves arch.json and metrics.json as they were
        _check_resume(out / "checkpoint.pt", spec)
    write_atomic(out / "arch.json", spec.to_json())
    config = TrainConfig.for_spec(spec, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                  warmup_epochs=args.warmup, max_steps=args.steps, seed=args.seed,
                                  threads=args.threads, val_limit=args.val_limit)
    print(f"training {spec.name or args.arch} at {'x'.join(map(str, spec.input))} on {dataset.name} ({sizes})")
    metric = "AP" if detection else "accuracy"
    bar = _progress(metric)
    trainer, result = train(spec, dataset, config, checkpoint=out / "checkpoint.pt", resume=args.resume,
                            callback=lambda m: bar.epoch(m, args.epochs), progress=bar.step)
    bar.close()
    metrics = {"result": result.to_dict(), "spec": "arch.json", "dataset": dataset.name, "config": vars(config)}
    if result.status == "complete" and not args.no_int8:
        scores = score_int8(trainer.model, spec, dataset, seed=args.seed, val_limit=args.val_limit,
                            wider_gt=args.wider_eval, wider_protocol=args.wider_protocol,
                            float_scores=getattr(trainer, "last_scores", None)).scores
        _print_int8(scores, detection, args.wider_eval)
        metrics["int8"] = scores
    elif detection and trainer.last_scores is not None:
        metrics["val"] = trainer.last_scores
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    if result.status == "failed":
        print(f"rnnpool-nas: training failed: {result.reason}", file=sys.stderr)
        return 1
    print(f"done in {result.wall_time:.0f} s: validation {metric} {result.val_accuracy:.4f}; wrote {out}/")
    return 0


def _check_resume(checkpoint: Path, spec) -> None:
    """``--resume``: the checkpoint must exist, load as plain data (weights only) and hold this
    very architecture; otherwise one line, and nothing in the folder is touched."""
    from ..errors import UserError
    from ..train.checkpoint import check_training_checkpoint

    state = check_training_checkpoint(checkpoint)
    saved = state.get("spec")
    if saved is not None and saved != spec.to_dict():
        raise UserError(f"--resume: {checkpoint} was trained with another architecture than the one given "
                        "(a different --preset, --arch, --set, --input or --width); resume with the same one")


def _make_out(out: Path) -> None:
    from ..errors import UserError

    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write to --out {out}: {exc.strerror or type(exc).__name__}") from None


def _print_int8(i8: dict, detection: bool, wider_eval: str | None) -> None:
    if not detection:
        print(f"int8: accuracy {i8['int8_accuracy']:.4f} (float {i8['float_accuracy']:.4f}), "
              f"top-1 agreement {i8['agreement']:.4f} on {i8['images']} validation images")
        return
    print(f"int8: AP {_fmt(i8['int8_ap'])} (float {_fmt(i8['float_ap'])}); images with <= 3 faces: AP "
          f"{_fmt(i8['int8_ap_at_most_3'])} (float {_fmt(i8['float_ap_at_most_3'])}); IoU 0.5, on {i8['images']} "
          f"validation images ({i8['faces']} faces)")
    if wider_eval:
        for name in ("float", "int8"):
            wider = i8[name]["wider"]
            print(f"WIDER FACE {wider.get('protocol', 'official')} protocol ({name}, {wider['images']} images): "
                  + ", ".join(f"{s} {_fmt(wider[s])}" for s in ("easy", "medium", "hard")))


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


class _progress:
    """A one-line progress bar per epoch (tqdm), then the epoch's metrics."""

    def __init__(self, metric: str = "accuracy") -> None:
        from tqdm import tqdm

        self.metric = metric
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
              f"val {self.metric} {m.val_accuracy:.4f}, {m.images_per_second:,.0f} img/s")
        self.epoch_no = m.epoch + 1

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
