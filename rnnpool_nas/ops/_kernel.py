"""Loading the fused FastGRNN recurrence kernel (``csrc/fastgrnn.cpp``).

The kernel is a small C++ extension. It is compiled when the package is built or installed
(``setup.py``: torch's ``BuildExtension``, into ``rnnpool_nas/ops/_fastgrnn_ext*.so``), and that
build is used while the source it came from is unchanged (its :func:`build_key` is compiled in).
Otherwise (a source edited in a checkout, an install without torch at build time) it is compiled
on first use with :mod:`torch.utils.cpp_extension` into a folder named by :func:`build_key`
under ``$RNNPOOL_NAS_EXT_DIR`` (default ``~/.cache/rnnpool_nas/ext``), from a copy of the source
kept there: two checkouts or virtual environments with the same source, torch and interpreter
share one build, and different ones never overwrite each other's. When it cannot be built (no
compiler, ``RNNPOOL_NAS_NO_EXT=1``) the same recurrence runs in eager PyTorch: slower, same numbers.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import threading
import warnings
from pathlib import Path
from types import ModuleType

SOURCE = Path(__file__).parent / "csrc" / "fastgrnn.cpp"
#: -ffast-math (whole: it defines __FAST_MATH__) lets gcc call glibc's vector expf/tanhf;
#: -fopenmp makes at::parallel_for parallel (torch's libgomp). -march=native: the build is made
#: on the machine that runs it (at install or on first use), never shipped to another.
CFLAGS = ("-O3", "-march=native", "-ffast-math", "-fopenmp")
LDFLAGS = ("-fopenmp",)  # tuples: torch's load() appends to the lists it is given

_lock = threading.Lock()
_state: dict[str, ModuleType | None | str] = {}


def build_key(source: Path = SOURCE) -> str:
    """A digest of what the build depends on: the source, the flags, torch and the interpreter."""
    import torch

    digest = hashlib.sha256(source.read_bytes())
    for part in (*CFLAGS, *LDFLAGS, torch.__version__, sys.implementation.cache_tag, sys.platform):
        digest.update(b"\0" + part.encode())
    return "k" + digest.hexdigest()[:16]  # an identifier: compiled in as -DRNNPOOL_BUILD_KEY=<key>


def ext_dir() -> Path:
    return Path(os.environ.get("RNNPOOL_NAS_EXT_DIR") or Path.home() / ".cache" / "rnnpool_nas" / "ext")


def _installed(key: str) -> ModuleType | None:
    """The build made at install time, when it was made from this very source."""
    try:
        from . import _fastgrnn_ext  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _fastgrnn_ext if getattr(_fastgrnn_ext, "build_key", None) == key else None


def _jit(key: str, verbose: bool) -> ModuleType:
    from torch.utils.cpp_extension import load

    folder = ext_dir() / key
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / SOURCE.name
    if not source.exists():  # the same path in every checkout: ninja sees one build, not several
        tmp = folder / f".{SOURCE.name}.{os.getpid()}.tmp"
        shutil.copyfile(SOURCE, tmp)
        os.replace(tmp, source)
    return load(name=f"rnnpool_nas_fastgrnn_{key}", sources=[str(source)], build_directory=str(folder),
                extra_cflags=[*CFLAGS, f"-DRNNPOOL_BUILD_KEY={key}"], extra_ldflags=list(LDFLAGS), verbose=verbose)


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
                key = build_key()
                module = _installed(key)
                _state["origin"] = "built at install"
                if module is None:
                    module = _jit(key, verbose)
                    _state["origin"] = f"built on first use in {ext_dir() / key}"
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
    """One line saying whether the fused kernel is in use (and where it was built), or why not."""
    module = load_kernel()
    if module is None:
        return f"eager fallback ({_state.get('reason')})"
    return f"fused C++ kernel ({_state.get('origin')})"
