"""Export of quantized networks as C for Cortex-M: the int8 runtime kernels and the code generator."""

from __future__ import annotations

from pathlib import Path

#: The C runtime (``rn_runtime.h`` and one file per kernel family), copied into exported projects.
RUNTIME_DIR = Path(__file__).parent / "runtime"


def runtime_files() -> list[Path]:
    """Every file of the C runtime (headers first, then sources), sorted by name."""
    return sorted(RUNTIME_DIR.glob("*.h")) + sorted(RUNTIME_DIR.glob("*.c"))
