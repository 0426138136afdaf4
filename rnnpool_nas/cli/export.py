"""``rnnpool-nas export``: a finalist (or a trained model) -> an int8 C99 project for a Cortex-M4."""

from __future__ import annotations

import argparse

from . import add_command


ABOUT = """export a trained model as int8 C (host, Cortex-M4, QEMU)

Write a self-contained C99 project for a search trial (RUN --trial ID) or a model trained with
`rnnpool-nas train` (--checkpoint FILE --arch FILE): model.c/.h, the runtime kernels, a Makefile
(host, check, asan, m4, size, run-qemu), sample inputs with the int8 reference outputs, and
export.json. With gcc, arm-none-eabi-gcc and qemu-system-arm installed it also builds, checks
bit-exactness and measures the ELF's flash and RAM.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "export", ABOUT)
    p.add_argument("run", nargs="?", metavar="RUN", help="a search run directory (runs/NAME)")
    p.add_argument("--trial", type=int, metavar="ID", help="the trial to export (see `rnnpool-nas pareto RUN`)")
    p.add_argument("--checkpoint", metavar="FILE", help="checkpoint.pt of `rnnpool-nas train`")
    p.add_argument("--arch", metavar="FILE", help="its arch.json")
    p.add_argument("--dataset", help="data set for calibration and the sample inputs (default: the run's)")
    p.add_argument("--data-dir", metavar="DIR", help="folder of a data set that needs one")
    p.add_argument("--out", required=True, metavar="DIR", help="the project folder to write")
    p.add_argument("--force", action="store_true", help="export even if the trial breaks the run's budget")
    p.add_argument("--val-images", type=int, default=256, metavar="N",
                   help="validation images in val_input.bin for the bit-exactness check (default 256)")
    p.add_argument("--no-build", action="store_true", help="only write the project; do not build or run it")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..export.exporter import export, from_files, from_run

    if args.run and (args.checkpoint or args.arch):
        raise UserError("give either RUN --trial ID or --checkpoint FILE --arch FILE, not both")
    if args.run:
        if args.trial is None:
            raise UserError("--trial ID is required with a run directory (`rnnpool-nas pareto RUN` lists the finalists)")
        source = from_run(args.run, args.trial)
        if args.dataset:
            source.dataset, source.data_dir = args.dataset, args.data_dir
    elif args.checkpoint and args.arch:
        source = from_files(args.checkpoint, args.arch, args.dataset, args.data_dir)
    else:
        raise UserError("give a run directory and --trial ID, or --checkpoint FILE and --arch FILE")
    if args.val_images < 1:
        raise UserError(f"--val-images must be at least 1, got {args.val_images}")
    doc = export(source, args.out, force=args.force, val_images=args.val_images, build=not args.no_build)
    b = doc["build"]
    print(f"wrote {args.out}/: {doc['kernel_calls']} kernel calls, arena {doc['arena_bytes']:,} bytes "
          f"(= the runtime convention's prediction), constants {doc['const_bytes']:,} bytes")
    if "flash_bytes" in b:
        print(f"Cortex-M4 ELF: flash {b['flash_bytes']:,} bytes, RAM {b['ram_bytes']:,} bytes (.data {b['data']:,} "
              f"+ .bss {b['bss']:,} + stack {b.get('stack_measured_bytes') or b['stack_bound_bytes']:,})")
    print(f"next: make -C {args.out} check | asan | m4 | size | run-qemu")
    return 0
