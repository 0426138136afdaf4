"""``rnnpool-nas search``: the main job (see ``rnnpool_nas.search.runner``)."""

from __future__ import annotations

import argparse

from . import add_command


ABOUT = """search RNNPool architectures under a RAM budget (the main job)

Optuna proposes candidates from a search space, the cost model drops those over budget, Ray Tune
trains the rest; the Pareto front of accuracy against RAM/MAdds lands in --out. Sizes: 256KB =
256KiB = 262144 bytes (the paper's KB are KiB).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "search", ABOUT)
    p.add_argument("--space", metavar="SPACE",
                   help="search_spaces/NAME.yaml or a path (default: fashion-mnist)")
    p.add_argument("--ram-budget", metavar="SIZE", help="peak RAM budget, e.g. 256KB, 0.25MB, 262144")
    p.add_argument("--madds-budget", metavar="N", help="multiply-add budget, e.g. 60M")
    p.add_argument("--latency-budget", metavar="T", help="latency budget, e.g. 1s, 800ms")
    p.add_argument("--flash-budget", metavar="SIZE", help="model size budget, e.g. 1MB")
    p.add_argument("--constraints", metavar="PROFILE", help="a device profile: constraints/NAME.yaml or a path")
    p.add_argument("--dtype", choices=("int8", "float32"), help="element size for RAM (default: profile or int8)")
    p.add_argument("--convention", choices=("standard", "optimal", "runtime"),
                   help="peak-RAM convention (default: the profile's, else runtime: the exported C's arena, so the "
                   "budget is what the exported code needs; standard/optimal: the paper's accounting)")
    p.add_argument("--dataset", metavar="NAME", help="data set (default: the space's)")
    p.add_argument("--data-dir", metavar="DIR", help="folder of fashion-mnist's idx files")
    p.add_argument("--trials", type=int, help="candidates to propose, infeasible ones included (default 20)")
    p.add_argument("--epochs", type=int, help="epochs per trained candidate (default 2)")
    p.add_argument("--workers", type=int, help="trials trained at once (default 2)")
    p.add_argument("--limit", type=int, metavar="N", help="train and validate each candidate on N images")
    p.add_argument("--val-fraction", type=float, default=0.1, metavar="F",
                   help="score candidates on this seeded, stratified fraction of the training images, held out "
                   "(default 0.1); the test set is never seen by the search (`rnnpool-nas finalize` reports it)")
    p.add_argument("--objectives", help="comma-separated: accuracy,peak_ram,madds,latency (default accuracy,peak_ram)")
    p.add_argument("--sampler", choices=("nsga2", "tpe", "random"), help="default tpe")
    p.add_argument("--seed", type=int, help="default 0")
    p.add_argument("--no-warm-start", action="store_true",
                   help="let the sampler start from random candidates instead of feasible ones spread over the budget")
    p.add_argument("--no-early-stopping", action="store_true", help="train every candidate for all epochs")
    p.add_argument("--out", metavar="DIR", help="run directory (default runs/<space>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out: its budget, space, data set, "
                   "sampler, seed, epochs and --trials come back from its config.json (a larger --trials extends it)")
    p.add_argument("--address", metavar="RAY_ADDRESS", help="run trials on an existing Ray cluster")
    p.add_argument("--cost-only", action="store_true",
                   help="score the candidates with the cost model only (RAM, MAdds, latency); train nothing")
    p.set_defaults(handler=run)


#: defaults of a new run (on --resume, config.json gives these)
DEFAULTS = {"space": "fashion-mnist", "trials": 20, "epochs": 2, "workers": 2, "objectives": "accuracy,peak_ram",
            "sampler": "tpe", "seed": 0}


def _objectives(text: str) -> list[str]:
    return [o.strip() for o in text.split(",") if o.strip()]


#: The search's RAM convention unless --convention or the device profile says otherwise: the
#: exported C's arena (``lower.plan``), so a RAM budget is what the exported code needs.
DEFAULT_CONVENTION = "runtime"


def _profile_sets_convention(constraints: str | None) -> bool:
    """Whether the device profile names a RAM convention (then it stands)."""
    if not constraints:
        return False
    from ..run import read_yaml
    from ..run.budget import find_constraints, load_constraints

    path = find_constraints(constraints)
    load_constraints(path)  # a bad profile: its one-line error
    data = read_yaml(path, "constraints file")
    return isinstance(data, dict) and data.get("convention") is not None


def run(args: argparse.Namespace) -> int:
    import time

    from ..errors import UserError
    from ..run.budget import resolve_budget
    from ..search.runner import SearchConfig, resume_config

    if args.resume and not args.out:
        raise UserError("--resume needs --out (the run directory to continue)")
    budget_flags = (args.constraints, args.ram_budget, args.flash_budget, args.madds_budget, args.latency_budget,
                    args.dtype, args.convention)
    if args.resume:
        budget = None
        if any(f is not None for f in budget_flags):
            budget = resolve_budget(args.constraints, ram=args.ram_budget, flash=args.flash_budget,
                                    madds=args.madds_budget, latency=args.latency_budget, dtype=args.dtype,
                                    convention=args.convention)
        given = {"space": args.space, "budget": budget, "dataset": args.dataset, "data_dir": args.data_dir,
                 "trials": args.trials, "epochs": args.epochs, "workers": args.workers, "limit": args.limit,
                 "objectives": _objectives(args.objectives) if args.objectives is not None else None,
                 "sampler": args.sampler, "seed": args.seed, "address": args.address,
                 "early_stopping": False if args.no_early_stopping else None,
                 "cost_only": True if args.cost_only else None}
        return _search(resume_config(args.out, given))
    values = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in DEFAULTS.items()}
    convention = args.convention
    if convention is None and not _profile_sets_convention(args.constraints):
        convention = DEFAULT_CONVENTION
    budget = resolve_budget(args.constraints, ram=args.ram_budget, flash=args.flash_budget, madds=args.madds_budget,
                            latency=args.latency_budget, dtype=args.dtype, convention=convention)
    name = values["space"].rsplit("/", 1)[-1].removesuffix(".yaml")
    out = args.out or f"runs/{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg = SearchConfig(
        space=values["space"], budget=budget, out=out, dataset=args.dataset, data_dir=args.data_dir,
        trials=values["trials"], epochs=values["epochs"], workers=values["workers"],
        objectives=_objectives(values["objectives"]), sampler=values["sampler"], seed=values["seed"], limit=args.limit,
        early_stopping=not args.no_early_stopping, address=args.address, resume=False, cost_only=args.cost_only,
        warm_start=not args.no_warm_start, val_fraction=args.val_fraction,
    )
    return _search(cfg)


def _search(cfg) -> int:
    """Run the search with the report refresher on its record callback (the search itself never
    imports the report), then write the final report."""
    from ..report import ReportRefresher
    from ..search.runner import run_search

    refresh = ReportRefresher(cfg.out)  # every 30 s or so while the search runs, never raising
    result = run_search(cfg, on_record=lambda row: refresh())
    path = refresh(force=True)
    if path is not None:
        print(f"report: {path} (`rnnpool-nas browse {result.run_dir.parent}` serves every run)")
    return _exit_code(result)


def _exit_code(result) -> int:
    """Non-zero when candidates were trained and every one failed (the summary names the most
    common reason): a search that produced nothing must not look like a success; 130 when it was
    interrupted with candidates still to run, so that what comes next (``make run``'s finalize)
    does not start on half a search."""
    import sys

    if getattr(result, "unfinished", 0):
        print(f"rnnpool-nas: search interrupted with {result.unfinished} candidate(s) still to run; "
              f"`rnnpool-nas search --out {result.run_dir} --resume` continues", file=sys.stderr)
        return 130
    c = result.counts
    if c.get("failed", 0) and not (c.get("complete", 0) or c.get("stopped", 0)):
        print(f"rnnpool-nas: error: every trained trial failed ({c['failed']}); most common reason: "
              f"{result.failure_reason}", file=sys.stderr)
        return 1
    return 0
