"""``rnnpool-nas search``: the main job (see ``rnnpool_nas.search.runner``)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="search RNNPool architectures under a RAM budget (the main job)",
        description="Optuna proposes candidates from a search space, the cost model drops those over "
        "budget, Ray Tune trains the rest; the Pareto front of accuracy against RAM/MAdds lands in --out. "
        "Sizes: 256KB = 256KiB = 262144 bytes (the paper's KB are KiB).",
    )
    p.add_argument("--space", default="fashion-mnist", metavar="SPACE",
                   help="search_spaces/NAME.yaml or a path (default: fashion-mnist)")
    p.add_argument("--ram-budget", metavar="SIZE", help="peak RAM budget, e.g. 256KB, 0.25MB, 262144")
    p.add_argument("--madds-budget", metavar="N", help="multiply-add budget, e.g. 60M")
    p.add_argument("--latency-budget", metavar="T", help="latency budget, e.g. 1s, 800ms")
    p.add_argument("--flash-budget", metavar="SIZE", help="model size budget, e.g. 1MB")
    p.add_argument("--constraints", metavar="PROFILE", help="a device profile: constraints/NAME.yaml or a path")
    p.add_argument("--dtype", choices=("int8", "float32"), help="element size for RAM (default: profile or int8)")
    p.add_argument("--convention", choices=("standard", "optimal", "runtime"),
                   help="peak-RAM convention (default standard; runtime: the exported C runtime's arena)")
    p.add_argument("--dataset", metavar="NAME", help="data set (default: the space's)")
    p.add_argument("--data-dir", metavar="DIR", help="folder of fashion-mnist's idx files")
    p.add_argument("--trials", type=int, default=20, help="candidates to propose, infeasible ones included (default 20)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per trained candidate (default 2)")
    p.add_argument("--workers", type=int, default=2, help="trials trained at once (default 2)")
    p.add_argument("--limit", type=int, metavar="N", help="train and validate each candidate on N images")
    p.add_argument("--objectives", default="accuracy,peak_ram", help="comma-separated: accuracy,peak_ram,madds,latency")
    p.add_argument("--sampler", default="nsga2", choices=("nsga2", "tpe", "random"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-early-stopping", action="store_true", help="train every candidate for all epochs")
    p.add_argument("--out", metavar="DIR", help="run directory (default runs/<space>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--address", metavar="RAY_ADDRESS", help="run trials on an existing Ray cluster")
    p.add_argument("--cost-only", action="store_true",
                   help="score the candidates with the cost model only (RAM, MAdds, latency); train nothing")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import time

    from ..errors import UserError
    from ..search.budget import resolve_budget
    from ..search.runner import SearchConfig, run_search

    if args.resume and not args.out:
        raise UserError("--resume needs --out (the run directory to continue)")
    budget = resolve_budget(args.constraints, ram=args.ram_budget, flash=args.flash_budget, madds=args.madds_budget,
                            latency=args.latency_budget, dtype=args.dtype, convention=args.convention)
    name = args.space.rsplit("/", 1)[-1].removesuffix(".yaml")
    out = args.out or f"runs/{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg = SearchConfig(
        space=args.space, budget=budget, out=out, dataset=args.dataset, data_dir=args.data_dir, trials=args.trials,
        epochs=args.epochs, workers=args.workers, objectives=[o.strip() for o in args.objectives.split(",") if o.strip()],
        sampler=args.sampler, seed=args.seed, limit=args.limit, early_stopping=not args.no_early_stopping,
        address=args.address, resume=args.resume, cost_only=args.cost_only,
    )
    from ..report import ReportRefresher

    refresh = ReportRefresher(out)  # every 30 s or so while the search runs, never raising
    result = run_search(cfg, on_record=lambda row: refresh())
    path = refresh(force=True)
    if path is not None:
        print(f"report: {path} (`rnnpool-nas browse {result.run_dir.parent}` serves every run)")
    return 0
