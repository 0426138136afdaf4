"""``rnnpool-nas measure``: instructions, cycles and milliseconds of an export on an emulated Cortex-M4."""

from __future__ import annotations

import argparse
import json

from ..units import DEFAULT_CLOCK_MHZ
from . import add_command


ABOUT = """cycles of an exported model on an emulated Cortex-M4, per kernel call

Build an export's Cortex-M4 image (make -C DIR m4) when needed, run it instruction by instruction in
an emulator charging each instruction its Cortex-M4 cycles (the TRM's table), check its output
against the int8 reference, and print per kernel call and in total: MACs, instructions, cycles,
cycles/MAC, milliseconds at --clock-mhz and the latency predictor's cycles. Writes DIR/measure.json.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "measure", ABOUT)
    p.add_argument("dir", metavar="DIR", help="an export folder (the --out of `rnnpool-nas export`)")
    p.add_argument("--clock-mhz", type=float, default=DEFAULT_CLOCK_MHZ, metavar="MHZ", help=f"clock for milliseconds (default {DEFAULT_CLOCK_MHZ:g})")
    p.add_argument("--flash-wait-states", type=int, default=0, metavar="N",
                   help="estimate a real board: code and weights in a flash with N wait states behind an "
                   "ART-accelerator-like cache (STM32F4 at 168 MHz: 5, STM32L4 at 80 MHz: 4; default 0, "
                   "as the emulated mps2-an386)")
    p.add_argument("--json", action="store_true", help="print one JSON object (what measure.json holds)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from ..measure import format_table, measure

    result = measure(args.dir, args.clock_mhz, log=lambda msg: print(msg, file=sys.stderr),
                     flash_wait_states=args.flash_wait_states)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0
