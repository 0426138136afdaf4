"""``rnnpool-nas pareto``: a run's finalists, as a table or JSON."""

from __future__ import annotations

import argparse
import json

from ..units import format_bytes
from . import add_command


ABOUT = """print a run's finalists and how to export them

Print the finalists of a run (its complete trials within budget that no other beats on the search's
objectives), best accuracy first, with the command that exports each; `accuracy` is the search's
(validation split), and once `rnnpool-nas finalize` ran, `test float`/`test int8` the finalized
model's test accuracy.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "pareto", ABOUT)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, e.g. runs/fashion-mnist-16k")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run)


def format_table(rows: list[dict]) -> str:
    """The finalists as aligned text columns (what ``rnnpool-nas pareto`` prints)."""
    has_latency = any(r["latency_ms"] is not None for r in rows)
    has_final = any(r.get("final_int8_accuracy") is not None for r in rows)
    header = ["trial", "accuracy", "peak RAM", "MAdds", "params", "model"] + (["latency"] if has_latency else [])
    header += ["test float", "test int8"] if has_final else []
    table = [header + ["export"]]
    for r in rows:
        cells = [str(r["trial"]), f"{r['accuracy']:.4f}", format_bytes(r['peak_ram_bytes'], "KiB"),
                 f"{r['madds'] / 1e6:.2f}M", f"{r['params']:,}", format_bytes(r['model_bytes'], "KiB")]
        if has_latency:
            cells.append("-" if r["latency_ms"] is None else f"{r['latency_ms']:.2f} ms")
        if has_final:  # `rnnpool-nas finalize`: the full training, tested once (float, int8)
            cells += ["-" if r.get(k) is None else f"{r[k]:.4f}" for k in ("final_float_accuracy", "final_int8_accuracy")]
        table.append(cells + [r["export_command"]])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in table)


def run(args: argparse.Namespace) -> int:
    from ..report import RunView
    from ..report.run import STATUS_LABELS, display_path

    view = RunView.load(args.run_dir)
    rows = view.finalists_table()
    if args.json:
        doc = {"run": display_path(view.root), "objectives": view.objectives, "budget": view.budget.to_dict(),
               "trials": len(view.trials), "finalists": rows}
        print(json.dumps(doc, indent=2))
        return 0
    where = display_path(view.root)
    print(f"{where}: {view.budget.describe()}; objectives {', '.join(view.objectives)}; {len(view.trials)} trial(s)")
    if rows:
        print(format_table(rows))
    else:
        counts = ", ".join(f"{n} {STATUS_LABELS[s]}" for s, n in view.counts().items() if n) or "none finished"
        print(f"no finalists yet: no trial has completed within the budget ({counts})")
    return 0
