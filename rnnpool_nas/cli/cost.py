"""``rnnpool-nas cost``: peak RAM, MAdds, parameters, model size and Cortex-M4 latency of an architecture."""

from __future__ import annotations

import argparse
import json
import math

from ..units import DEFAULT_CLOCK_MHZ, kib
from . import add_command


ABOUT = """score an architecture: peak RAM, MAdds, parameters (no training)

Score an architecture analytically: per-stage output shape, RAM, MAdds and parameters, the block
that sets the peak, and the totals. Sizes in KiB (the paper's KB).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "cost", ABOUT)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", metavar="NAME", help="a preset (see `rnnpool-nas presets`)")
    src.add_argument("--arch", metavar="FILE.json", help="a spec file (e.g. from --dump-arch)")
    p.add_argument("--set", metavar="FIELD=VALUE", action="append", default=[],
                   help="override a field: an RNNPool field (h1=8, patch_size=6, stride=4, padding=same) "
                   "for every RNNPool stage, or stages.I.FIELD; repeatable")
    p.add_argument("--input", metavar="HxWxC", help="input rows x columns x channels, e.g. 96x96x3")
    p.add_argument("--classes", type=int, metavar="N", help="number of classes")
    p.add_argument("--width", type=float, metavar="W", help="width multiplier (presets only)")
    p.add_argument("--dtype", choices=("int8", "float32"), default="int8", help="element size (default int8)")
    p.add_argument("--convention", choices=("standard", "optimal", "runtime"), default="standard",
                   help="peak-RAM convention (default standard, the paper's tables)")
    p.add_argument("--count-input", action="store_true", help="count the input image in RAM")
    p.add_argument("--constraints", metavar="PROFILE", help="a device profile (constraints/NAME.yaml or a path): "
                   "its clock_mhz sets the latency's milliseconds")
    p.add_argument("--clock-mhz", type=float, metavar="MHZ",
                   help=f"clock for the latency's milliseconds (default: the profile's, else {DEFAULT_CLOCK_MHZ:g})")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--dump-arch", action="store_true", help="print the spec JSON (what --arch reads) and exit")
    p.set_defaults(handler=run)


def resolve_spec(args: argparse.Namespace):
    """The spec named by --preset/--arch with --input, --classes, --width and --set applied."""
    from ..arch.presets import get_preset, parse_value, set_field
    from ..arch.spec import load_spec, parse_input_shape
    from ..errors import UserError

    overrides = {}
    for item in args.set:
        field, sep, value = item.partition("=")
        if not sep or not field:
            raise UserError(f"--set expects FIELD=VALUE, got {item!r}")
        overrides[field.strip()] = parse_value(value.strip())
    shape = parse_input_shape(args.input) if args.input is not None else None
    if args.classes is not None and args.classes <= 0:
        raise UserError(f"--classes must be positive, got {args.classes}")
    if args.preset:
        named = {k: overrides.pop(k) for k in ("input", "num_classes") if k in overrides}
        spec = get_preset(args.preset, input=shape, classes=args.classes, width=args.width, **overrides)
        for field, value in named.items():  # --set input=... / num_classes=...: set last, validated there
            spec = set_field(spec, field, value)
        return spec
    if args.width is not None:
        raise UserError("--width applies to presets; edit the channels of an --arch file instead")
    spec = load_spec(args.arch)
    if shape is not None:
        spec = set_field(spec, "input", list(shape))
    if args.classes is not None:
        spec = set_field(spec, "num_classes", args.classes)
    for field, value in overrides.items():
        spec = set_field(spec, field, value)
    return spec


def format_table(spec, costs, clock_mhz: float = DEFAULT_CLOCK_MHZ) -> str:
    """The per-stage table and totals, as printed by `rnnpool-nas cost`."""
    rows = [("stage", "kind", "output", "RAM KiB", "MAdds", "params", "M4 ms", "")]
    for s in costs.stages:
        mark = "<- peak" if s.name == costs.bottleneck else s.note
        ms = "-" if s.latency_ms is None else f"{s.latency_ms:,.2f}"
        rows.append((s.name, s.kind, "x".join(map(str, s.out_shape)), kib(s.ram_bytes), f"{s.madds:,}", f"{s.params:,}",
                     ms, mark))
    widths = [max(len(r[i]) for r in rows) for i in range(7)]
    lines = []
    for r in rows:
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].rjust(widths[2])]
        cells += [r[i].rjust(widths[i]) for i in (3, 4, 5, 6)]
        lines.append("  ".join(cells) + ("  " + r[7] if r[7] else ""))
    image = "counted" if costs.input_counted else "not counted (streamed; --count-input counts it)"
    lines += [
        "",
        f"{spec.name or 'architecture'}: input {'x'.join(map(str, spec.input))}, {costs.dtype}, "
        f"{costs.convention} convention, input image {image}",
        f"peak RAM  {kib(costs.peak_ram_bytes)} KiB ({costs.peak_ram_bytes:,} bytes) at {costs.bottleneck}",
        *([f"streamed  {kib(costs.peak_ram_stream_input_bytes)} KiB ({costs.peak_ram_stream_input_bytes:,} bytes) "
           f"with the input delivered row by row (model_run_stream: the arena + {costs.input_stream_bytes:,} bytes "
           "of input rows)"] if costs.peak_ram_stream_input_bytes is not None else []),
        f"MAdds     {costs.madds / 1e6:,.2f} M",
        f"params    {costs.params:,}",
        f"model     {kib(costs.model_bytes)} KiB ({costs.dtype} weights, batch norm folded)",
    ]
    if costs.latency_cycles is not None:
        lines.append(f"latency   {costs.latency_ms:,.2f} ms = {costs.latency_cycles:,} cycles at {clock_mhz:g} MHz "
                     "(the int8 C runtime on a Cortex-M4, predicted; rnnpool-nas measure runs it)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..cost import evaluate

    spec = resolve_spec(args)
    if args.dump_arch:
        print(spec.to_json())
        return 0
    clock = args.clock_mhz
    if clock is None:
        from ..run.budget import find_constraints, load_constraints

        clock = load_constraints(find_constraints(args.constraints)).clock_mhz if args.constraints else DEFAULT_CLOCK_MHZ
    if not (clock > 0 and math.isfinite(clock)):
        from ..errors import UserError

        raise UserError(f"--clock-mhz must be a positive, finite number, got {clock:g}")
    costs = evaluate(spec, args.dtype, args.convention, args.count_input, clock_mhz=clock)
    if args.json:
        print(json.dumps(costs.to_dict(), indent=2))
    else:
        print(format_table(spec, costs, clock))
    return 0
