"""Screenshot a run's report in headless Chromium: writes RUN_DIR/report.png.

    python scripts/screenshot_report.py runs/fashion-mnist-8k [--out report.png] [--width 1400]

Writes the report first (so the picture is of this code's page), loads it from disk (file://, so
offline), and prints what the browser saw: plots drawn and console errors. Exits 1
when the page logged an error or a plot was not drawn; 2 on bad input (not a run, no Chromium).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rnnpool_nas.errors import UserError
from rnnpool_nas.report import write_report
from rnnpool_nas.report.browser import check_page
from rnnpool_nas.report.run import RunView, display_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--out", metavar="PNG", help="where to write the screenshot (default RUN_DIR/report.png)")
    parser.add_argument("--width", type=int, default=1400, help="window width in pixels (default 1400)")
    args = parser.parse_args(argv)
    try:
        view = RunView.load(args.run_dir)
        report = write_report(view.root)
        out = Path(args.out) if args.out else view.root / "report.png"
        check = check_page(report.resolve().as_uri(), screenshot=out, width=args.width)
    except UserError as exc:
        print(f"screenshot_report: error: {exc}", file=sys.stderr)
        return 2
    print(f"{display_path(out)}: {check.plots} plot(s) drawn, {check.empty} not drawn, "
          f"{len(check.errors)} console error(s), page {check.height} px tall")
    for error in check.errors:
        print(f"  console error: {error}")
    return 1 if check.errors or check.empty else 0


if __name__ == "__main__":
    sys.exit(main())
