"""Cycles of every preset before and after row streaming (issue 13: within +10% of the runtime before).

    python benchmarks/bench_stream_cycles.py --before /tmp/before --work build/stream-cycles [--json out.json]
    python benchmarks/bench_stream_cycles.py --work build/stream-cycles --presets rnnpool-tiny   # after only

``--before DIR`` is a checkout of the commit before streaming (``git worktree add /tmp/before
<commit>``); ``after`` is this checkout. For each preset of the issue's table, each tree exports it
with random weights (``rnnpool_nas.measure.untrained``, seed 0: latency does not depend on the
weights' values) and measures it with its own ``rnnpool-nas measure`` (``measure.measure``: the
Cortex-M4 image run in the emulator, instruction by instruction; cycles are the executed basic
blocks' counts times their prices from the Cortex-M4 TRM table, so they do not depend on the
host's load; the run must print the int8 reference's output). Each tree runs in its own Python
process with ``PYTHONPATH`` set to it, one export and one emulation at a time. With ``--work`` the
exports are kept under ``DIR/before/<preset>`` and ``DIR/after/<preset>`` and reused while they
hold the tree's runtime sources and a ``measure.json``.

Prints per preset: the MACs, cycles before and after, their ratio (target <= 1.10), the streamed
kernel calls of the after export, and this checkout's latency predictor against the after cycles
(``cost.latency.predict_spec``, the per-inference overhead included, as ``measure`` reports it).
Exits 1 when a ratio is over 1.10.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PRESETS = ["mobilenetv2", "mobilenetv2-rnnpool", "mobilenetv2-0.35x-vww", "mobilenetv2-0.35x-rnnpool-vww",
           "rnnpool-face-quant", "rnnpool-face-m4", "rnnpool-tiny"]
TARGET = 1.10
HERE = Path(__file__).resolve().parents[1]

#: Runs inside a tree (PYTHONPATH): export the preset unless DIR already holds it with this tree's
#: runtime sources and a measure.json, then measure it.
WORKER = r"""
import json, shutil, sys
from pathlib import Path
from rnnpool_nas.arch.presets import get_preset
from rnnpool_nas.export import runtime_files
from rnnpool_nas.measure import measure
from rnnpool_nas.measure.untrained import export_untrained
name, out = sys.argv[1], Path(sys.argv[2])
spec = get_preset(name)
def fresh():
    if not (out / "measure.json").is_file() or not (out / "export.json").is_file():
        return False
    if json.loads((out / "export.json").read_text()).get("spec") != json.loads(spec.to_json()):
        return False
    present = {f.name: f.read_bytes() for f in (out / "runtime").glob("*") if f.is_file()}
    return present == {f.name: f.read_bytes() for f in runtime_files()}
if not fresh():
    if out.exists():
        shutil.rmtree(out)
    export_untrained(spec, out)
    measure(out, log=lambda *a: None)
"""


def run_tree(tree: Path, preset: str, out: Path) -> dict:
    """Export and measure ``preset`` with the code of ``tree`` into ``out``; what measure.json and
    export.json say."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run([sys.executable, "-c", WORKER, preset, str(out)], env=env, cwd=str(tree),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{preset} in {tree}: {(proc.stdout + proc.stderr).strip()[-800:]}")
    result = json.loads((out / "measure.json").read_text())
    doc = json.loads((out / "export.json").read_text())
    return {"cycles": result["total"]["cycles"], "macs": result["total"]["macs"],
            "instructions": result["total"]["instructions"],
            "streamed_calls": sum(bool(c.get("streamed")) for c in doc["calls"]), "calls": len(doc["calls"])}


def predicted(preset: str) -> float | None:
    """This checkout's predicted cycles of ``preset``'s model_run (calls + overhead)."""
    from rnnpool_nas.arch.presets import get_preset
    from rnnpool_nas.cost.latency import UncalibratedKernel, predict_spec

    try:
        return predict_spec(get_preset(preset))[1]
    except UncalibratedKernel:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", metavar="DIR", help="a checkout of the runtime before streaming")
    parser.add_argument("--work", metavar="DIR", help="keep the exports here (reused when still current)")
    parser.add_argument("--presets", nargs="+", default=PRESETS, choices=PRESETS)
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args()
    tmp = None
    if args.work:
        work = Path(args.work)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench-stream-cycles-")
        work = Path(tmp.name)
    rows = []
    for preset in args.presets:
        row: dict = {"preset": preset}
        if args.before:
            row["before"] = run_tree(Path(args.before).resolve(), preset, work / "before" / preset)
        row["after"] = run_tree(HERE, preset, work / "after" / preset)
        if args.before:
            row["ratio"] = row["after"]["cycles"] / row["before"]["cycles"]
        pred = predicted(preset)
        row["predicted"] = None if pred is None else round(pred)
        row["predicted_error"] = None if pred is None else pred / row["after"]["cycles"] - 1
        rows.append(row)
        print(f"  {preset}: done", file=sys.stderr, flush=True)
    head = ("preset", "MACs", "cycles before", "cycles after", "after/before", "streamed calls", "predicted after",
            "error")
    table = [head]
    for r in rows:
        b, a = r.get("before"), r["after"]
        table.append((r["preset"], f"{a['macs']:,}", f"{b['cycles']:,}" if b else "-", f"{a['cycles']:,}",
                      f"{r['ratio']:.3f}" if b else "-", f"{a['streamed_calls']}/{a['calls']}",
                      "-" if r["predicted"] is None else f"{r['predicted']:,}",
                      "-" if r["predicted_error"] is None else f"{100 * r['predicted_error']:+.2f}%"))
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    for t in table:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(t, widths))))
    errors = [abs(r["predicted_error"]) for r in rows if r["predicted_error"] is not None]
    if errors:
        print(f"\npredictor: max |error| {100 * max(errors):.2f}%, mean {100 * sum(errors) / len(errors):.2f}%")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return 0 if all(r.get("ratio", 0) <= TARGET for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
