"""``rnnpool-nas finalize RUN``: retrain the finalists fully, quantize them, test them once."""

from __future__ import annotations

import argparse

from . import add_command


ABOUT = """retrain a run's finalists fully, quantize them to int8 and test them once

Retrain the best finalists of a search from scratch on the full training set with the full recipe
(the paper's schedule and augmentation, --epochs), quantize each to int8 and score float and int8
once on the test set, which the search never saw. Runs on Ray Tune like the search (--address); run
it again to resume after an interruption. Writes RUN/final/<trial>/ (checkpoint.pt, metrics.json);
`export RUN --trial ID` then ships the finalized model.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "finalize", ABOUT)
    p.add_argument("run_dir", metavar="RUN", help="a run directory, e.g. runs/fashion-mnist-16k")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--top", type=int, metavar="K",
                       help="the K most accurate finalists of the Pareto front (default 3)")
    which.add_argument("--trial", type=int, nargs="+", metavar="ID", help="these trials instead")
    p.add_argument("--epochs", type=int, metavar="N",
                   help="epochs of the full training (default per data set: fashion-mnist 30, cifar10 60, ...)")
    p.add_argument("--time-budget", metavar="T",
                   help="fit the whole finalize in T (20min, 1.5h, 900s): each finalist trains as many epochs "
                        "(up to --epochs) as its share of T allows at the speed the search measured")
    p.add_argument("--workers", type=int, default=2, help="finalists trained at once (default 2)")
    p.add_argument("--batch-size", type=int, help="images per step (default 128; detectors 16)")
    p.add_argument("--lr", type=float, help="initial learning rate (default 0.05; detectors 0.01)")
    p.add_argument("--warmup", type=float, metavar="EPOCHS", help="linear warm-up epochs (default 0; detectors 5)")
    p.add_argument("--limit", type=int, metavar="N", help="train on N images only (smoke tests; the test set is whole)")
    p.add_argument("--address", metavar="RAY_ADDRESS", help="train on an existing Ray cluster")
    p.add_argument("--json", action="store_true", help="print the finalists' figures as one JSON object at the end")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..finalize import FinalizeConfig, run_finalize
    from ..run.budget import parse_duration

    budget = parse_duration(args.time_budget, "--time-budget") if args.time_budget is not None else None
    cfg = FinalizeConfig(run=args.run_dir, top=args.top, trials=list(args.trial or []), epochs=args.epochs,
                         workers=args.workers, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                         address=args.address, limit=args.limit, time_budget=budget)
    result = run_finalize(cfg)
    if args.json:
        print(json.dumps({"run": str(result.run_dir), "finalists": result.finalists}, indent=2))
    return 0 if all(f["status"] == "complete" for f in result.finalists) else 1
