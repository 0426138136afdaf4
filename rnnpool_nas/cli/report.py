"""``rnnpool-nas report``: write a run's report page (see ``rnnpool_nas.report``)."""

from __future__ import annotations

import argparse

from . import add_command


ABOUT = """write a run's report page: Pareto plots, finalists, RAM profiles

Write RUN_DIR/report.html, one self-contained page that works offline: accuracy against peak RAM,
MAdds and latency for every trial with the Pareto front and the budget, the finalists and the
command that exports each, their per-stage RAM profiles, the hyperparameters, and the search's
progress.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "report", ABOUT)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, e.g. runs/fashion-mnist-16k")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..report import RunView, write_report
    from ..report.run import display_path

    path = write_report(args.run_dir)
    view = RunView.load(args.run_dir)
    done = len(view.trials)
    what = f"{done} trial(s), {len(view.finalists)} finalist(s)" if view.completed() else (
        f"{done} trial(s), none completed within the budget yet")
    print(f"wrote {display_path(path)} ({what}); open it in a browser, or serve every run with "
          f"`rnnpool-nas browse {display_path(view.root.parent)}`")
    return 0
