"""Held-out accuracy of the Cortex-M4 latency predictor on whole networks.

    python benchmarks/bench_latency.py                      # presets + candidates (~10 min)
    python benchmarks/bench_latency.py --work build/bench-latency   # keep the exports; reruns reuse them
    python benchmarks/bench_latency.py --skip mobilenetv2 --candidates 3 --face-candidates 0
    python benchmarks/bench_latency.py --work build/bench-latency --json latency.json   # rows + per-family cycles

Every classifier preset, the detector preset rnnpool-face-m4 at its real 240x320x1 input, a sample
of ``fashion-mnist`` search-space candidates and of 240x320x1 ``face-detection`` candidates (Optuna's
RandomSampler, seeded) is exported with random weights (``rnnpool_nas.measure.untrained``: the
latency does not depend on the weights' values), built for the Cortex-M4 and run in the emulator
(``rnnpool-nas measure``: the run's output must equal the int8 reference's); its measured cycles
(the kernel calls and the copy-out of ``model_run``) are compared with the predictor's
(``rnnpool_nas.cost.latency``, fitted on single-kernel micro-benchmarks only: none of these
networks is in its fit). Prints one row per network (MAdds, measured and predicted cycles, the
error, cycles per MAdd, milliseconds at 168 MHz, emulation time), the max and mean absolute error
against the targets (every network within 10%, mean under 5%), and where the cycles go: cycles per
MAC of each kernel family (the runtime functions' cycles over the MACs of their calls, MBConv's
expand/project counted as pointwise and its depthwise as depthwise). A reused export (``--work``)
gets the installed runtime's sources first, so it is measured with the kernels of this checkout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from rnnpool_nas.arch import get_preset
from rnnpool_nas.arch.presets import list_presets
from rnnpool_nas.arch.spec import ArchSpec, SpecError, expand
from rnnpool_nas.cost import evaluate
from rnnpool_nas.cost.arena import head_specs, lower
from rnnpool_nas.cost.latency import call_args, call_features, valid_taps
from rnnpool_nas.export import runtime_files
from rnnpool_nas.measure import build_m4, measure
from rnnpool_nas.measure.untrained import export_untrained

#: The detector presets measured (at their real input size); the others take minutes to export.
DETECTORS = ("rnnpool-face-m4",)
#: Runtime functions by kernel family (anything else: "other").
FAMILY_OF = {"rn_pointwise_conv2d": "pointwise", "rn_depthwise_row": "depthwise", "rn_dw3_run_s1": "depthwise",
             "rn_dw3_run_s2": "depthwise", "rn_depthwise_conv2d": "depthwise", "rn_conv2d": "conv",
             "rn_conv2d_row": "conv", "conv_row_packed": "conv", "rn_fully_connected": "fc", "rn_add": "add",
             "rn_mbconv": "mbconv (row loop)", "mbconv_rows": "mbconv (row loop)",
             "rn_mbconv_inplace": "mbconv (row loop)",
             "push": "stream driver", "node_row": "stream driver", "map_row": "stream driver",
             "rn_stream_run": "stream driver",
             "rn_l2norm": "l2norm", "memmove": "rnnpool",  # rnnpool.c moves the columns a patch takes over
             "rn_maxout": "maxout", "rn_avgpool": "pool", "rn_maxpool": "pool"}
FAMILIES = ("pointwise", "depthwise", "conv", "rnnpool", "fc")


def candidates(space_name: str, count: int, seed: int, prefix: str, keep=lambda spec: True) -> list[tuple[str, ArchSpec]]:
    """``count`` buildable candidates of a search space drawn with Optuna's RandomSampler (those
    ``keep`` accepts)."""
    import optuna

    from rnnpool_nas.search.space import SearchSpace

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace.load(space_name)
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
        if keep(spec):
            out.append((f"{prefix}-t{trial.number}", spec))
    return out


def networks(args) -> list[tuple[str, ArchSpec]]:
    nets = []
    for preset in list_presets():
        spec = get_preset(preset.name)
        if (spec.detection is None or preset.name in DETECTORS) and preset.name not in args.skip:
            nets.append((preset.name, spec))
    nets += candidates("fashion-mnist", args.candidates, args.seed, "fmnist")
    if args.face_candidates:
        nets += candidates("face-detection", args.face_candidates, args.seed, "face",
                           keep=lambda spec: tuple(spec.input) == (240, 320, 1))
    return nets


def exported(name: str, spec: ArchSpec, work: Path) -> Path:
    """The export of ``spec`` under ``work/name`` (reused when it holds the same spec; its runtime
    sources refreshed from this checkout)."""
    out = work / name
    doc = out / "export.json"
    if doc.is_file() and json.loads(doc.read_text()).get("spec") == json.loads(spec.to_json()):
        runtime = out / "runtime"
        installed = {f.name: f.read_bytes() for f in runtime_files()}
        present = {f.name: f.read_bytes() for f in runtime.glob("*") if f.is_file()}
        if present != installed:
            shutil.rmtree(runtime)
            runtime.mkdir()
            for f in runtime_files():
                shutil.copy2(f, runtime / f.name)
            shutil.rmtree(out / "build", ignore_errors=True)
        return out
    if out.exists():
        shutil.rmtree(out)
    export_untrained(spec, out)
    return out


def family_macs(spec: ArchSpec) -> dict[str, int]:
    """MACs per kernel family of the runtime's calls, MBConv split into its pointwise and depthwise
    parts (the functions that do them)."""
    layers = expand(spec)
    heads = head_specs(spec) if spec.detection is not None else None
    by_name = {layer.name: layer for layer in layers}
    out: dict[str, int] = {}
    for step in lower(layers, heads)[0]:
        args = call_args(step, by_name.get(step.layer), heads)
        if step.op == "mbconv":
            (hi, wi, ci), (ho, wo, co) = step.in_shape, step.out_shape
            k, s, t = args["kernel"], args["stride"], args["t"]
            hidden = t * ci
            rows = len({iy for o in range(ho) for iy in range(max(0, o * s - k // 2), min(hi, o * s - k // 2 + k))})
            exp = rows * wi * ci * hidden if t != 1 else 0
            out["pointwise"] = out.get("pointwise", 0) + exp + ho * wo * hidden * co
            out["depthwise"] = out.get("depthwise", 0) + hidden * valid_taps(hi, ho, k, s, k // 2) * valid_taps(
                wi, wo, k, s, k // 2)
            continue
        macs = int(call_features(step.op, step.in_shape, step.out_shape, args).get("macs_total", 0))
        out[step.op] = out.get(step.op, 0) + macs
    return out


def family_cycles(functions: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in functions:
        name = f["function"]
        fam = FAMILY_OF.get(name) or ("rnnpool" if name.startswith(("rn_fastgrnn", "rn_rnnpool", "rn_step",
                                                                     "rn_requant15", "rn_project", "rn_split"))
                                      else "other")
        out[fam] = out.get(fam, 0) + f["cycles"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", help="folder for the exports (default: a temporary folder)")
    ap.add_argument("--candidates", type=int, default=6, help="fashion-mnist candidates (default 6)")
    ap.add_argument("--face-candidates", type=int, default=2, help="240x320x1 face-detection candidates (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", nargs="*", default=[], metavar="PRESET", help="presets to leave out")
    ap.add_argument("--only", nargs="*", default=[], metavar="NAME", help="measure only these networks")
    ap.add_argument("--clock-mhz", type=float, default=168.0)
    ap.add_argument("--json", metavar="FILE", help="also write the rows (with per-family cycles and MACs) as JSON")
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
        if args.only and name not in args.only:
            continue
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
               "export_s": t1 - t0, "build_s": t2 - t1, "detector": spec.detection is not None,
               "family_cycles": family_cycles(result["functions"]), "family_macs": family_macs(spec)}
        rows.append(row)
        print(f"  {name}: measured {row['measured']:,} cycles, predicted {row['predicted']:,} ({100 * row['error']:+.2f}%); "
              f"export {row['export_s']:.0f} s, build {row['build_s']:.0f} s, emulation {row['emulation_s']:.0f} s "
              f"({row['mips']:.0f} M instructions/s)", flush=True)
    head = ("network", "MACs", "measured cycles", "predicted cycles", "error", "cycles/MAC", f"ms @{args.clock_mhz:g}MHz",
            "emulated s")
    table = [head] + [(r["network"], f"{r['madds']:,}", f"{r['measured']:,}", f"{r['predicted']:,}",
                       f"{100 * r['error']:+.2f}%", f"{r['measured'] / r['madds']:.2f}", f"{r['ms']:,.1f}",
                       f"{r['emulation_s']:.1f}") for r in rows]
    _print_table(table)
    errors = [abs(r["error"]) for r in rows]
    worst = max(errors)
    mean = sum(errors) / len(errors)
    print(f"\n{len(rows)} networks held out of the fit: max |error| {100 * worst:.2f}% (target < 10%), "
          f"mean |error| {100 * mean:.2f}% (target < 5%): {'PASS' if worst < 0.10 and mean < 0.05 else 'FAIL'}")
    print("\ncycles per MAC by kernel family (runtime functions' cycles / their calls' MACs; share of all cycles):")
    fam_table = [("network",) + FAMILIES]
    for r in rows:
        cells = []
        for fam in FAMILIES:
            macs, cyc = r["family_macs"].get(fam, 0), r["family_cycles"].get(fam, 0)
            cells.append(f"{cyc / macs:.2f} ({100 * cyc / r['measured']:.0f}%)" if macs else "-")
        fam_table.append((r["network"], *cells))
    _print_table(fam_table)
    if args.skip:
        print(f"skipped: {', '.join(args.skip)}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    if tmp is not None:
        tmp.cleanup()


def _print_table(table: list[tuple]) -> None:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    print()
    for r in table:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))


if __name__ == "__main__":
    main()
