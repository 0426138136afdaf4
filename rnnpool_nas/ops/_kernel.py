"""Loading the fused FastGRNN recurrence kernel (``csrc/fastgrnn.cpp``).

The kernel is a small C++ extension compiled with :mod:`torch.utils.cpp_extension` on first use
(about a minute, cached under ``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``; the
project's install step warms the cache with ``python -m rnnpool_nas.ops.build``). When it cannot
be built (no compiler, ``RNNPOOL_NAS_NO_EXT=1``) the same recurrence runs in eager PyTorch:
slower, same numbers.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from types import ModuleType

_SOURCE = Path(__file__).parent / "csrc" / "fastgrnn.cpp"
_lock = threading.Lock()
_state: dict[str, ModuleType | None | str] = {}


def load_kernel(verbose: bool = False) -> ModuleType | None:
    """Return the compiled extension module, or ``None`` when it is unavailable."""
    if "module" in _state:
        return _state["module"]  # type: ignore[return-value]
    with _lock:
        if "module" in _state:
            return _state["module"]  # type: ignore[return-value]
        module: ModuleType | None = None
        if os.environ.get("RNNPOOL_NAS_NO_EXT", "") not in ("", "0"):
            _state["reason"] = "disabled by RNNPOOL_NAS_NO_EXT"
        else:
            try:
                from torch.utils.cpp_extension import load

                module = load(
                    name="rnnpool_nas_fastgrnn",
                    sources=[str(_SOURCE)],
                    # -ffast-math (whole: it defines __FAST_MATH__) lets gcc call glibc's vector
                    # expf/tanhf; -fopenmp makes at::parallel_for parallel (torch's libgomp).
                    extra_cflags=["-O3", "-march=native", "-ffast-math", "-fopenmp"],
                    extra_ldflags=["-fopenmp"],
                    verbose=verbose,
                )
            except Exception as exc:  # compiler missing, headers missing, ...
                _state["reason"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1:]}"
                warnings.warn(
                    "rnnpool_nas: fused FastGRNN kernel unavailable, using the eager fallback "
                    f"({_state['reason']})",
                    RuntimeWarning,
                    stacklevel=2,
                )
        _state["module"] = module
        return module


def kernel_status() -> str:
    """One line saying whether the fused kernel is in use, and why not if it is not."""
    module = load_kernel()
    return "fused C++ kernel" if module is not None else f"eager fallback ({_state.get('reason')})"
