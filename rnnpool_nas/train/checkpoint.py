"""Reading a ``checkpoint.pt`` without running anything it holds.

A checkpoint is a pickle, and unpickling an arbitrary object runs code: a ``checkpoint.pt``
someone hands you must never be loaded with ``weights_only=False``. Every checkpoint this
package writes (the training loop's, the exporter's untrained ones) holds only tensors and plain
data (dicts, lists, numbers, strings), which torch's weights-only unpickler accepts, so every
reader goes through :func:`load_checkpoint`: a file holding anything else is refused with one
line (a :class:`~rnnpool_nas.errors.UserError`), and nothing in it is executed.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from ..errors import UserError


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> dict[str, Any]:
    """The checkpoint's contents (a dict), loaded with ``weights_only=True``.

    Raises :class:`UserError` (one line) for a missing file, a file that holds Python objects
    other than tensors and plain data (refused unread: it may be a code-running pickle), a
    damaged file, or one that is not a dict."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} is missing")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's long multi-line text names what it refused: keep that line only
        lines = [line.strip() for line in str(exc).strip().splitlines()]
        named = next((line for line in lines if "GLOBAL" in line.upper() and "load" in line.lower()), "")
        if named:  # a class or function: exactly what a code-running pickle needs
            raise UserError(f"checkpoint {path} holds Python objects, not only tensors and plain data, so it was "
                            f"refused unread (it could run code): {named[:120]}") from None
        detail = next((line for line in lines[1:] if line and "WeightsUnpickler" not in line
                       and "documentation" not in line), type(exc).__name__)
        raise UserError(f"checkpoint {path} is corrupt or not a plain checkpoint, so it was refused unread "
                        f"({detail[:80]})") from None
    except Exception as exc:  # torch and zipfile raise many types for a damaged file
        raise UserError(f"checkpoint {path} is corrupt or truncated ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise UserError(f"checkpoint {path} is not a checkpoint of rnnpool-nas (a {type(state).__name__}, not a dict)")
    return state


def check_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """:func:`load_checkpoint` plus the keys the training loop resumes from (one line if any is
    missing)."""
    state = load_checkpoint(path)
    missing = [k for k in ("model", "optimizer", "scheduler", "epoch", "step", "generator", "torch_rng", "history")
               if k not in state]
    if missing:
        raise UserError(f"checkpoint {path} cannot be resumed: it has no {', '.join(missing)}")
    return state


__all__ = ["check_training_checkpoint", "load_checkpoint"]
