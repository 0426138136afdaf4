"""Held-out accuracy of the Cortex-M4 latency predictor on whole networks.

    python benchmarks/bench_latency.py                      # presets + 6 fashion-mnist candidates (~10 min)
    python benchmarks/bench_latency.py --work build/bench-latency   # keep the exports; reruns reuse them
    python benchmarks/bench_latency.py --skip mobilenetv2 --candidates 3

Every classifier preset and a sample of ``fashion-mnist`` search-space candidates (Optuna's
RandomSampler, seeded) is exported with random weights (``rnnpool_nas.measure.untrained``: the
latency does not depend on the weights' values), built for the Cortex-M4 and run in the emulator
(``rnnpool-nas measure``: the run's output must equal the int8 reference's); its measured cycles
(the kernel calls and the copy-out of ``model_run``) are compared with the predictor's
(``rnnpool_nas.cost.latency``, fitted on single-kernel micro-benchmarks only: none of these
networks is in its fit). Prints one row per network (MAdds, measured and predicted cycles, the
error, cycles per MAdd, milliseconds at 168 MHz, emulation time) and the max and mean absolute
error against the targets (every network within 10%, mean under 5%).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rnnpool_nas.arch import get_preset
from rnnpool_nas.arch.presets import list_presets
from rnnpool_nas.arch.spec import ArchSpec, SpecError
from rnnpool_nas.cost import evaluate
from rnnpool_nas.measure import build_m4, measure
from rnnpool_nas.measure.untrained import export_untrained


def candidates(count: int, seed: int) -> list[tuple[str, ArchSpec]]:
    """``count`` buildable fashion-mnist candidates drawn with Optuna's RandomSampler."""
    import optuna

    from rnnpool_nas.search.space import SearchSpace

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace.load("fashion-mnist")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out: list[tuple[str, ArchSpec]] = []
    while len(out) < count:
        trial = study.ask()
        try:
            spec = space.build(space.suggest(trial))
        except SpecError:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        study.tell(trial, 0.0)
        out.append((f"fmnist-t{trial.number}", spec))
    return out


def networks(args) -> list[tuple[str, ArchSpec]]:
    nets = []
    for preset in list_presets():
        spec = get_preset(preset.name)
        if spec.detection is None and preset.name not in args.skip:
            nets.append((preset.name, spec))
    return nets + candidates(args.candidates, args.seed)


def exported(name: str, spec: ArchSpec, work: Path) -> Path:
    """The export of ``spec`` under ``work/name`` (reused when it holds the same spec)."""
    out = work / name
    doc = out / "export.json"
    if doc.is_file() and json.loads(doc.read_text()).get("spec") == json.loads(spec.to_json()):
        return out
    if out.exists():
        import shutil

        shutil.rmtree(out)
    export_untrained(spec, out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", help="folder for the exports (default: a temporary folder)")
    ap.add_argument("--candidates", type=int, default=6, help="fashion-mnist candidates (default 6)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", nargs="*", default=[], metavar="PRESET", help="presets to leave out")
    ap.add_argument("--clock-mhz", type=float, default=168.0)
    args = ap.parse_args()
    tmp = None
    if args.work:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench-latency-")
        work = Path(tmp.name)
    rows = []
    for name, spec in networks(args):
        t0 = time.perf_counter()
        out = exported(name, spec, work)
        t1 = time.perf_counter()
        build_m4(out, log=lambda *_: None)
        t2 = time.perf_counter()
        result = measure(out, args.clock_mhz, log=lambda *_: None)
        total = result["total"]
        madds = evaluate(spec).madds
        row = {"network": name, "madds": madds, "measured": total["cycles"], "predicted": total["predicted_cycles"],
               "error": total["predicted_cycles"] / total["cycles"] - 1, "ms": total["ms"],
               "emulation_s": result["emulator"]["wall_seconds"],
               "mips": result["emulator"]["instructions_per_second"] / 1e6,
               "export_s": t1 - t0, "build_s": t2 - t1}
        rows.append(row)
        print(f"  {name}: measured {row['measured']:,} cycles, predicted {row['predicted']:,} ({100 * row['error']:+.2f}%); "
              f"export {row['export_s']:.0f} s, build {row['build_s']:.0f} s, emulation {row['emulation_s']:.0f} s "
              f"({row['mips']:.0f} M instructions/s)", flush=True)
    head = ("network", "MACs", "measured cycles", "predicted cycles", "error", "cycles/MAC", f"ms @{args.clock_mhz:g}MHz",
            "emulated s")
    table = [head] + [(r["network"], f"{r['madds']:,}", f"{r['measured']:,}", f"{r['predicted']:,}",
                       f"{100 * r['error']:+.2f}%", f"{r['measured'] / r['madds']:.2f}", f"{r['ms']:,.1f}",
                       f"{r['emulation_s']:.1f}") for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    print()
    for r in table:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    errors = [abs(r["error"]) for r in rows]
    worst = max(errors)
    mean = sum(errors) / len(errors)
    print(f"\n{len(rows)} networks held out of the fit: max |error| {100 * worst:.2f}% (target < 10%), "
          f"mean |error| {100 * mean:.2f}% (target < 5%): {'PASS' if worst < 0.10 and mean < 0.05 else 'FAIL'}")
    if args.skip:
        print(f"skipped: {', '.join(args.skip)}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
