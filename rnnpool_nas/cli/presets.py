"""``rnnpool-nas presets``: the named architectures, one line each."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("presets", help="list the preset architectures", description="List the preset architectures.")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..arch.presets import list_presets

    presets = list_presets()
    width = max(len(p.name) for p in presets)
    for p in presets:
        print(f"{p.name.ljust(width)}  {p.description}")
    return 0
