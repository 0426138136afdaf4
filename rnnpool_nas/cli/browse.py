"""``rnnpool-nas browse``: serve an index of the runs and their reports."""

from __future__ import annotations

import argparse

from . import add_command


ABOUT = """serve every run's report over HTTP, with an index

Serve RUNS_ROOT over HTTP: an index of every run in it (name, date, space, budget, trials, best
accuracy under budget) linking to each run's report, written on demand when missing or stale.
Nothing outside RUNS_ROOT is served. Ctrl-C stops.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "browse", ABOUT)
    p.add_argument("root", metavar="RUNS_ROOT", nargs="?", default="runs", help="the folder of runs (default runs)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 for the network)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..report import serve

    serve(args.root, host=args.host, port=args.port)
    return 0
