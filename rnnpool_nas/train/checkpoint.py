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
        # the weights-only unpickler names the global it refused; never the full (multi-line) text
        first = str(exc).strip().splitlines()
        detail = next((line.strip() for line in first if "GLOBAL" in line or "global" in line), "")
        raise UserError(f"checkpoint {path} holds Python objects, not only tensors and plain data, so it was "
                        f"refused unread (it could run code){': ' + detail[:120] if detail else ''}") from None
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
