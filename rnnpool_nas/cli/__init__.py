"""The ``rnnpool-nas`` command line: parse, call one library function, print.

Each subcommand lives in its own module here with two functions: ``register(subparsers)`` adds
its parser (argument definitions only, so ``--help`` never imports torch) and sets ``handler``
to a ``run(args) -> int`` that imports the library lazily and calls it. Its ``ABOUT`` text is its
one-line help, a blank line, then the description ``--help`` prints (:func:`add_command`). A
:class:`UserError` becomes one line on stderr and exit code 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..errors import UserError

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = ("search", "presets", "cost", "train", "finalize", "export", "report", "browse",
                             "pareto", "measure")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (plus a pointer to --help)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_command(sub: argparse._SubParsersAction, name: str, about: str) -> argparse.ArgumentParser:
    """Add the parser of subcommand ``name``; ``about``: its one-line help, a blank line, then
    its description (argparse re-flows both)."""
    help_text, _, description = about.strip().partition("\n\n")
    return sub.add_parser(name, help=help_text, description=description)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rnnpool-nas",
        description="Search RNNPool CNNs that fit a microcontroller's RAM, and export them as int8 C.",
    )
    parser.add_argument("--version", action="version", version=f"rnnpool-nas {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        return int(handler(args) or 0)
    except UserError as exc:
        print(f"rnnpool-nas: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("rnnpool-nas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
