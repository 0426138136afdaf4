"""The exported C's RAM against the paper's conventions (issue 13): before and after row streaming.

    python benchmarks/bench_ram.py [--json]

For every preset of the issue's table: the ``standard`` and ``optimal`` peaks (the paper's
accounting), the runtime arena before streaming (``lower.plan.plan(..., stream=False)``: every map
whole, what the runtime did before) and after (the planner's row-streamed segments: what
``rnnpool-nas cost --convention runtime`` and ``MODEL_ARENA_BYTES`` say), the ratio of the
arena to ``min(standard, optimal)`` against the target (<= 1.10; the goal is <= 1.00), and the RAM
of ``model_run_stream`` (the arena + the input rows it holds). All sizes are int8 bytes, the input
image not counted (the conventions' default). Exits 1 when a target is missed.

    python benchmarks/bench_ram.py --m4 [--out DIR]

also exports RNNPool-Face-M4 at 240x320x1 (random weights: RAM does not depend on them), builds it
for the Cortex-M4 twice (main_m4.c calling model_run on the sample in flash, and calling
model_run_stream with the sample delivered row by row), runs both under QEMU (the output must
match the host's) and prints the whole program's RAM: .data + .bss from the ELF + the stack
measured on QEMU (target <= 128 KiB, goal < 100 KiB; the paper's STM32 build needed 188 KB).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

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


def _make(out: Path, *targets: str) -> str:
    proc = subprocess.run(["make", "-s", "-C", str(out), *targets], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"make {' '.join(targets)} failed: {(proc.stdout + proc.stderr)[-400:]}")
    return proc.stdout


def m4_face(out: Path) -> dict:
    """Whole-program RAM of RNNPool-Face-M4 (240x320x1) on the Cortex-M4, model_run and model_run_stream."""
    from rnnpool_nas.export.exporter import elf_sizes
    from rnnpool_nas.measure.untrained import export_untrained

    spec = get_preset("rnnpool-face-m4")
    doc = export_untrained(spec, out)
    host = [line for line in _make(out, "run-host").splitlines() if line.startswith("output:")]
    result = {"arena_bytes": doc["arena_bytes"], "output_bytes": doc["output"]["size"]}
    for name, target, elf in (("model_run", "run-qemu", "model_m4.elf"),
                              ("model_run_stream", "run-qemu-stream", "model_m4_stream.elf")):
        qemu = _make(out, target)
        if [line for line in qemu.splitlines() if line.startswith("output:")] != host:
            raise SystemExit(f"{name}: the Cortex-M4 output differs from the host's")
        stack = int(re.search(r"stack_bytes: (\d+)", qemu).group(1))
        sizes = elf_sizes(out / "build" / elf)
        result[name] = {"data": sizes["data"], "bss": sizes["bss"], "stack": stack,
                        "ram": sizes["data"] + sizes["bss"] + stack}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--m4", action="store_true", help="also build RNNPool-Face-M4 for the Cortex-M4 and "
                        "measure its whole-program RAM under QEMU")
    parser.add_argument("--out", metavar="DIR", help="where --m4 exports (default: a temporary directory)")
    args = parser.parse_args()
    rows = [measure(name) for name in PRESETS]
    m4 = None
    if args.m4:
        if args.out:
            m4 = m4_face(Path(args.out))
        else:
            with tempfile.TemporaryDirectory(prefix="bench-ram-") as tmp:
                m4 = m4_face(Path(tmp) / "face-m4")
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
    ok = all(r["meets_target"] for r in rows)
    if m4 is not None:
        if args.json:
            print(json.dumps(m4, indent=2))
        else:
            print(f"\nRNNPool-Face-M4 240x320x1 on the Cortex-M4 (arena {m4['arena_bytes']:,} B, output buffer "
                  f"{m4['output_bytes']:,} B):")
            for name in ("model_run", "model_run_stream"):
                r = m4[name]
                print(f"  {name:17s} .data {r['data']:,} + .bss {r['bss']:,} + stack {r['stack']:,} = {r['ram']:,} B "
                      f"({r['ram'] / 1024:.1f} KiB)")
        ok = ok and m4["model_run_stream"]["ram"] <= 128 * 1024
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
