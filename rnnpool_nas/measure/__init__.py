"""Cycles of an exported network on an emulated Cortex-M4 (``rnnpool-nas measure``).

:func:`measure` builds an export's ``m4`` image when needed, runs it in Unicorn with the
Cortex-M4 TRM's cycle table (:mod:`.emulate`, :mod:`.timing`), checks that it prints the output
the int8 reference expects (the functional cross-check, as ``make run-qemu`` does under QEMU),
and splits instructions and cycles per kernel call by the ``model_mark`` markers of the
generated code. :mod:`.calibrate` fits the latency predictor of ``rnnpool_nas.cost.latency`` on
single-kernel micro-benchmarks (:mod:`.microbench`) measured the same way; :mod:`.untrained`
exports random-weight models to measure without training.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..units import DEFAULT_CLOCK_MHZ, cycles_to_ms



def _need_export(export_dir: Path) -> dict[str, Any]:
    doc_path = export_dir / "export.json"
    if not export_dir.is_dir():
        raise UserError(f"{export_dir} is not a folder (give the --out folder of `rnnpool-nas export`)")
    if not doc_path.is_file() or not (export_dir / "model.c").is_file():
        raise UserError(f"{export_dir} is not an export: no export.json and model.c (see `rnnpool-nas export`)")
    try:
        doc = json.loads(doc_path.read_text())
    except ValueError:
        raise UserError(f"{doc_path} is not valid JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("calls"), list) or "spec" not in doc:
        raise UserError(f"{doc_path} describes no kernel calls: re-export with this version of rnnpool-nas")
    return doc


def instruction_budget(doc: dict[str, Any]) -> int:
    """Instructions an export's ``model_run`` may take before ``measure`` calls it hung: 100 per
    multiply-add of its spec plus 10^8 (the runtime takes about 5 per MAdd; RNNPool's
    nonlinearities a few times more)."""
    try:
        madds = int((doc.get("predicted") or {}).get("madds") or 0)
    except (TypeError, ValueError):
        madds = 0
    return 100 * max(0, madds) + 10**8


def build_m4(export_dir: Path, log=print) -> Path:
    """``make -C DIR m4`` unless ``build/model_m4.elf`` is newer than ``model.c``; its path."""
    elf = export_dir / "build" / "model_m4.elf"
    if elf.is_file() and elf.stat().st_mtime >= (export_dir / "model.c").stat().st_mtime:
        return elf
    for tool in ("make", "arm-none-eabi-gcc"):
        if shutil.which(tool) is None:
            raise UserError(f"{tool} is not installed: `make install` installs gcc-arm-none-eabi and "
                            "libnewlib-arm-none-eabi (or build build/model_m4.elf elsewhere)")
    log(f"building {elf} (make -C {export_dir} m4)")
    proc = subprocess.run(["make", "-s", "-C", str(export_dir), "m4"], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0 or not elf.is_file():
        raise UserError(f"the Cortex-M4 build failed: {(proc.stdout + proc.stderr).strip()[-300:]}")
    return elf


def expected_line(export_dir: Path) -> str:
    """The ``output:`` line a correct run prints (``expected_output.bin``, as ``make run-host``)."""
    expected = np.fromfile(export_dir / "expected_output.bin", dtype=np.int8)
    return "output: " + " ".join(f"{int(b) & 0xFF:02x}" for b in expected)


MAX_FLASH_WAIT_STATES = 15  # the FLASH_ACR LATENCY field of the STM32F4/L4 (4 bits); boards use 0-5


def measure(export_dir: str | Path, clock_mhz: float = DEFAULT_CLOCK_MHZ, log=print, write: bool = True,
            flash_wait_states: int = 0) -> dict[str, Any]:
    """Emulate the export in ``export_dir``; per kernel call and in total: instructions, cycles,
    ms at ``clock_mhz``, the runtime's MACs and the predictor's cycles. Writes
    ``DIR/measure.json`` (unless ``write=False``) and returns what it holds.
    ``flash_wait_states`` N > 0 adds the cycles of a flash with N wait states behind an
    ART-accelerator-like cache (:mod:`.emulate`'s model: code and weights in flash, the arena in
    zero-wait SRAM); the predictor stays the zero-wait one."""
    from ..arch.spec import ArchSpec, expand
    from ..lower.plan import head_specs, plan
    from ..cost.latency import UncalibratedKernel, call_macs, load_model, plan_args, predict_calls
    from .emulate import emulate

    if not (clock_mhz > 0 and math.isfinite(clock_mhz)):
        raise UserError(f"--clock-mhz must be a positive, finite number, got {clock_mhz}")
    if not 0 <= flash_wait_states <= MAX_FLASH_WAIT_STATES:
        raise UserError(f"--flash-wait-states must be 0-{MAX_FLASH_WAIT_STATES} (STM32F4 at 168 MHz: 5, "
                        f"STM32L4 at 80 MHz: 4), got {flash_wait_states}")
    export_dir = Path(export_dir)
    doc = _need_export(export_dir)
    elf = build_m4(export_dir, log)
    run = emulate(elf, max_instructions=instruction_budget(doc), flash_wait_states=flash_wait_states)
    want = expected_line(export_dir)
    got = run.output_line()
    if got != want:
        raise UserError(f"the emulated Cortex-M4 printed {(got or run.output.strip() or 'nothing')[:80]!r}, "
                        f"not the expected {want[:80]!r}: the emulation is wrong (or the build is stale)")
    spec = ArchSpec.from_dict(doc["spec"])
    layers = expand(spec)
    heads = head_specs(spec) if spec.detection is not None else None
    arena = plan(layers, heads=heads)   # the plan model.c was generated from
    steps = arena.steps
    segment_of = [part for part in arena.segments for _ in range(part.first, part.last + 1)]
    calls = doc["calls"]
    if [(c["layer"], c["op"]) for c in calls] != [(s.layer, s.op) for s in steps]:
        raise UserError(f"{export_dir}/export.json lists other kernel calls than its spec lowers to: re-export it")
    by_name = {layer.name: layer for layer in layers}
    model = load_model()
    try:
        predicted = [p.cycles for p in predict_calls(layers, model, heads, arena)]
    except UncalibratedKernel:  # a kernel newer than the latency model: measured, not predicted
        predicted = [None] * len(steps)

    def ms(cycles: float) -> float:
        return cycles_to_ms(cycles, clock_mhz)

    rows = []
    for call, step, part, pred in zip(calls, steps, segment_of, predicted):
        seg = run.segments.get(call["marker"])
        if seg is None:
            raise UserError(f"kernel call {call['marker']} ({call['layer']} {call['op']}) never ran: its marker "
                            "was not written")
        macs = call_macs(step.op, _features(step, plan_args(step, part, by_name.get(step.layer), heads), model))
        rows.append({"marker": call["marker"], "layer": call["layer"], "op": call["op"], "in_shape": call["in_shape"],
                     "out_shape": call["out_shape"], "macs": macs, "instructions": seg.instructions,
                     "cycles": seg.cycles, "cycles_per_mac": seg.cycles / macs if macs else None,
                     "ms": ms(seg.cycles), "predicted_cycles": None if pred is None else round(pred)})
    copy = run.segments.get(len(calls) + 1)
    copy_cycles, copy_instr = (copy.cycles, copy.instructions) if copy else (0, 0)
    cycles = sum(r["cycles"] for r in rows) + copy_cycles
    instructions = sum(r["instructions"] for r in rows) + copy_instr
    macs = sum(r["macs"] for r in rows)
    known = None not in predicted
    predicted_total = sum(predicted) + model.overhead_cycles if known else None
    layers_out: dict[str, dict[str, Any]] = {}
    for r in rows:
        agg = layers_out.setdefault(r["layer"], {"layer": r["layer"], "ops": [], "macs": 0, "instructions": 0,
                                                  "cycles": 0, "predicted_cycles": 0})
        agg["ops"].append(r["op"])
        for k in ("macs", "instructions", "cycles"):
            agg[k] += r[k]
        agg["predicted_cycles"] = None if r["predicted_cycles"] is None or agg["predicted_cycles"] is None \
            else agg["predicted_cycles"] + r["predicted_cycles"]
    for agg in layers_out.values():
        agg["ms"] = ms(agg["cycles"])
    misses = [sum(v[i] for v in run.flash_misses.values()) for i in (0, 1)]
    result = {
        "export": str(export_dir), "elf": str(elf), "clock_mhz": clock_mhz,
        "timing": "Cortex-M4 TRM r0p1 instruction timings (rnnpool_nas.measure.timing), "
                  + (f"flash with {flash_wait_states} wait states behind an ART-like cache "
                     "(rnnpool_nas.measure.emulate)" if flash_wait_states else "zero wait states"),
        "flash_wait_states": flash_wait_states,
        "flash": {"instruction_misses": misses[0], "data_misses": misses[1],
                  "cycles": flash_wait_states * (misses[0] + misses[1])},
        "output_matches_expected": True,
        "calls": rows,
        "layers": list(layers_out.values()),  # the calls summed per layer of the spec
        "copy_out": {"instructions": copy_instr, "cycles": copy_cycles},
        "total": {"instructions": instructions, "cycles": cycles, "ms": ms(cycles), "macs": macs,
                  "cycles_per_mac": cycles / macs if macs else None,
                  "predicted_cycles": None if predicted_total is None else round(predicted_total),
                  "predicted_ms": None if predicted_total is None else ms(predicted_total),
                  "predicted_error": predicted_total / cycles - 1 if cycles and predicted_total is not None else None},
        "program": {"instructions": run.instructions, "cycles": run.cycles},
        # the whole run's cycles per function (runtime kernels and their helpers), largest first
        "functions": [{"function": name, "instructions": seg.instructions, "cycles": seg.cycles}
                      for name, seg in sorted(run.functions.items(), key=lambda kv: -kv[1].cycles)],
        "emulator": {"wall_seconds": run.wall_seconds, "instructions_per_second": run.instructions_per_second,
                     "blocks": run.blocks},
    }
    if write:
        (export_dir / "measure.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _features(step, args, model) -> dict[str, float]:
    from ..cost.latency import UncalibratedKernel, call_features

    try:
        return call_features(step.op, step.in_shape, step.out_shape, args, model)
    except UncalibratedKernel:
        return {}


def format_table(result: dict[str, Any]) -> str:
    """The per-call table and the totals, as ``rnnpool-nas measure`` prints them."""
    head = ("call", "layer", "op", "output", "MACs", "instructions", "cycles", "cyc/MAC", "ms", "predicted")
    rows = [head]
    for r in result["calls"]:
        rows.append((str(r["marker"]), r["layer"], r["op"], "x".join(map(str, r["out_shape"])), f"{r['macs']:,}",
                     f"{r['instructions']:,}", f"{r['cycles']:,}",
                     "-" if r["cycles_per_mac"] is None else f"{r['cycles_per_mac']:.2f}", f"{r['ms']:.3f}",
                     "-" if r["predicted_cycles"] is None else f"{r['predicted_cycles']:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i in (1, 2) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    t, e = result["total"], result["emulator"]
    lines += [
        "",
        f"total     {t['instructions']:,} instructions, {t['cycles']:,} cycles = {t['ms']:.2f} ms at "
        f"{result['clock_mhz']:g} MHz ({t['macs']:,} MACs, "
        + ("-" if t["cycles_per_mac"] is None else f"{t['cycles_per_mac']:.2f}") + " cycles/MAC"
        + (f"; copy-out {result['copy_out']['cycles']:,} cycles" if result["copy_out"]["cycles"] else "") + ")",
        ("predicted unknown: a kernel newer than the latency model (python -m rnnpool_nas.measure.calibrate)"
         if t["predicted_cycles"] is None else
         f"predicted {t['predicted_cycles']:,} cycles = {t['predicted_ms']:.2f} ms ({100 * t['predicted_error']:+.1f}%)"),
        "output    same as expected_output.bin (the int8 reference)",
        *([f"flash     {result['flash_wait_states']} wait states: {result['flash']['instruction_misses']:,} "
           f"instruction and {result['flash']['data_misses']:,} data cache misses, "
           f"{result['flash']['cycles']:,} cycles included above (the predictor assumes zero wait states)"]
          if result.get("flash_wait_states") else []),
        f"emulator  {e['wall_seconds']:.2f} s, {e['instructions_per_second'] / 1e6:.1f} M instructions/s; "
        f"timings: {result['timing']}",
    ]
    return "\n".join(lines)


__all__ = ["DEFAULT_CLOCK_MHZ", "build_m4", "expected_line", "format_table", "measure"]
