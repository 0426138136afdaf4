"""Search overhead and sampler quality on the default space.

    python benchmarks/bench_search.py [--space fashion-mnist] [--ram-budget 16KB] [--convention runtime]
        [--trials 30] [--epochs 1] [--limit 4000] [--seeds 0,1,2] [--samplers tpe,random]

Runs the same search once per sampler and seed, at equal budget, trial count (the main job's 30,
``make run``, by default) and seed: the default sampler (``SearchConfig.sampler``, multi-objective
TPE, with its warm start, ``SearchSpace.spread``) and random sampling; ``nsga2`` and
``nsga2-cold`` (NSGA-II without the warm start) can be added. Prints (a) the hypervolume
of each run's validation-accuracy/RAM front, with reference point (accuracy 0, RAM = the budget),
per seed and the mean per sampler, and (b) the share of wall time not spent training (2 workers
on 2 cores: 1 - summed trial time / workers / wall time) and where it went.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rnnpool_nas.run.budget import Budget, parse_bytes
from rnnpool_nas.run.pareto import accuracy_ram_hypervolume
from rnnpool_nas.search.runner import SearchConfig, run_search
from rnnpool_nas.run.store import RunStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="fashion-mnist")
    ap.add_argument("--ram-budget", default="16KB")
    ap.add_argument("--convention", default="runtime", help="RAM convention of the budget (as make run)")
    ap.add_argument("--trials", type=int, default=30, help="the main job's (make run) by default")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--limit", type=int, default=4000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--samplers", default=f"{SearchConfig.sampler},random", help="comma-separated; nsga2-cold: no warm start")
    args = ap.parse_args()
    budget = Budget(ram_bytes=parse_bytes(args.ram_budget), convention=args.convention)
    rows, phases = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for sampler in args.samplers.split(","):
                out = Path(tmp) / f"{sampler}-{seed}"
                cfg = SearchConfig(space=args.space, budget=budget, out=str(out), trials=args.trials,
                                   epochs=args.epochs, workers=args.workers, limit=args.limit,
                                   sampler=sampler.removesuffix("-cold"), warm_start=not sampler.endswith("-cold"),
                                   seed=seed)
                result = run_search(cfg, printer=lambda line: None)
                store = RunStore.open(out)
                hv = accuracy_ram_hypervolume(store.final_rows(), budget.ram_bytes)
                overhead = 1 - result.train_time / args.workers / result.wall_time
                rows.append((sampler, seed, hv, overhead, result.wall_time, result.counts))
                tune = result.phases.get("tune", 0.0)
                idle = max(0.0, args.workers * tune - result.train_time) / args.workers
                phases.append((sampler, seed, result.phases.get("setup", 0.0), result.phases.get("ray_start", 0.0),
                               idle, result.phases.get("ray_stop", 0.0), tune))
    print(f"{args.space}, RAM budget {args.ram_budget} ({args.convention}), {args.trials} trials, {args.epochs} epoch(s) on "
          f"{args.limit} images, {args.workers} workers")
    print(f"{'sampler':>8} {'seed':>4} {'hypervolume':>11} {'not training':>12} {'wall':>7}  counts")
    for sampler, seed, hv, overhead, wall, counts in rows:
        print(f"{sampler:>8} {seed:>4} {hv:>11.4f} {overhead:>11.0%} {wall:>6.0f}s  {counts}")
    for sampler in args.samplers.split(","):
        hvs = [hv for s, _, hv, *_ in rows if s == sampler]
        print(f"{sampler:>8} mean hypervolume {sum(hvs) / len(hvs):.4f} over {len(hvs)} seed(s)")
    print("where the time not spent training went (seconds of wall time; idle = workers without a trial "
          "while Ray Tune ran, per worker)")
    print(f"{'sampler':>8} {'seed':>4} {'setup':>6} {'ray up':>6} {'idle':>6} {'ray down':>8} {'tune':>6}")
    for sampler, seed, setup, up, idle, down, tune in phases:
        print(f"{sampler:>8} {seed:>4} {setup:>6.1f} {up:>6.1f} {idle:>6.1f} {down:>8.1f} {tune:>6.0f}")


if __name__ == "__main__":
    main()
