"""Reading a YAML file as a user input: one-line errors that name the file (and the line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError


def read_yaml(path: Path, what: str) -> Any:
    """The parsed content of ``path``; ``what`` names the file's kind in error messages."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}: not valid YAML{where}: {problem}") from None
