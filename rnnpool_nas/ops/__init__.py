"""The RNNPool operator: FastGRNN cells, the RNNPool layer and its output geometry.

``geometry`` is torch-free (the cost model uses it); the torch modules load on first access.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FastGRNNCell", "RNNPoolLayer", "fastgrnn_sweep", "rnnpool_plain"]


def __getattr__(name: str) -> Any:
    if name in ("FastGRNNCell", "fastgrnn_sweep"):
        from . import fastgrnn

        return getattr(fastgrnn, name)
    if name in ("RNNPoolLayer", "rnnpool_plain"):
        from . import rnnpool

        return getattr(rnnpool, name)
    raise AttributeError(name)
