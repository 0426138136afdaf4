"""``rnnpool-nas presets``: the named architectures, one line each."""

from __future__ import annotations

import argparse

from . import add_command


ABOUT = """list the preset architectures

List the preset architectures.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "presets", ABOUT)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..arch.presets import list_presets

    presets = list_presets()
    width = max(len(p.name) for p in presets)
    for p in presets:
        print(f"{p.name.ljust(width)}  {p.description}")
    return 0
