"""The exported C's RAM against the paper's conventions (issue 13): before and after row streaming.

    python benchmarks/bench_ram.py [--json]

For every preset of the issue's table: the ``standard`` and ``optimal`` peaks (the paper's
accounting), the runtime arena before streaming (``lower.plan.plan(..., stream=False)``: every map
whole, what the runtime did before) and after (the planner's row-streamed segments: what
``rnnpool-nas cost --convention runtime`` and ``MODEL_ARENA_BYTES`` say), the ratio of the
arena to ``min(standard, optimal)`` against the target (<= 1.10; the goal is <= 1.00), and the RAM
of ``model_run_stream`` (the arena + the input rows it holds). All sizes are int8 bytes, the input
image not counted (the conventions' default). Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import sys

from rnnpool_nas.arch.presets import get_preset
from rnnpool_nas.arch.spec import expand
from rnnpool_nas.cost import evaluate
from rnnpool_nas.lower.plan import head_specs, plan

PRESETS = ["mobilenetv2", "mobilenetv2-rnnpool", "mobilenetv2-0.35x-vww", "mobilenetv2-0.35x-rnnpool-vww",
           "rnnpool-face-quant", "rnnpool-face-m4", "rnnpool-tiny"]
TARGET = 1.10


def measure(name: str) -> dict:
    spec = get_preset(name)
    layers, heads = expand(spec), head_specs(spec)
    standard = evaluate(spec, "int8", "standard", profile=False).peak_ram_bytes
    optimal = evaluate(spec, "int8", "optimal", profile=False).peak_ram_bytes
    runtime = evaluate(spec, "int8", "runtime", profile=False)
    before = plan(layers, heads=heads, stream=False).arena_bytes
    after = plan(layers, heads=heads)
    assert after.arena_bytes == runtime.peak_ram_bytes  # the cost model reports the plan, to the byte
    best = min(standard, optimal)
    return {"preset": name, "standard": standard, "optimal": optimal, "runtime_before": before,
            "runtime_after": after.arena_bytes, "ratio_before": before / best, "ratio_after": after.arena_bytes / best,
            "stream_input": runtime.peak_ram_stream_input_bytes, "input_rows": after.input_rows,
            "streamed_segments": [list(s.layers) for s in after.segments if s.streamed],
            "meets_target": after.arena_bytes <= TARGET * best}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    rows = [measure(name) for name in PRESETS]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        head = ("preset", "standard", "optimal", "runtime before", "ratio", "runtime after", "ratio", "<= 1.10",
                "model_run_stream")
        table = [head] + [(r["preset"], f"{r['standard']:,}", f"{r['optimal']:,}", f"{r['runtime_before']:,}",
                           f"{r['ratio_before']:.2f}", f"{r['runtime_after']:,}", f"{r['ratio_after']:.2f}",
                           "yes" if r["meets_target"] else "NO", f"{r['stream_input']:,}") for r in rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        for row in table:
            print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        print("\nint8 bytes, input not counted; ratio: runtime / min(standard, optimal); model_run_stream: the "
              "arena + the input rows it holds")
        for r in rows:
            print(f"  {r['preset']}: streamed segments {r['streamed_segments']}")
    return 0 if all(r["meets_target"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
