"""The console script: --help, --version, and one-line usage errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rnnpool_nas import __version__
from rnnpool_nas.cli import main


#: The installed console script, beside the interpreter running the tests (the venv need not be active).
SCRIPT = str(Path(sys.executable).parent / "rnnpool-nas")


def test_help_and_version_from_the_console_script():
    out = subprocess.run([SCRIPT, "--help"], capture_output=True, text=True, check=True).stdout
    assert "usage: rnnpool-nas" in out
    out = subprocess.run([SCRIPT, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"rnnpool-nas {__version__}"


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "rnnpool_nas", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout


def test_unknown_command_is_one_line(capsys):
    try:
        main(["no-such-command"])
    except SystemExit as exc:
        assert exc.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid choice" in err[0]
