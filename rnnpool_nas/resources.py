"""Where the built-in search spaces and device profiles are read from.

The top-level ``search_spaces/`` and ``constraints/`` of a checkout are the editable source of
truth; building the package copies them into ``rnnpool_nas/_data/`` (``setup.py``), so an
installed wheel has them too. A checkout (an editable install, or running from the source tree)
reads its own folders; an installed package reads its copies through :mod:`importlib.resources`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

KINDS = ("search_spaces", "constraints")


def builtin_dir(kind: str) -> Path:
    """The folder holding the built-in ``kind`` (``search_spaces`` or ``constraints``)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / kind).is_dir():
        return checkout / kind
    return Path(str(resources.files("rnnpool_nas") / "_data" / kind))
