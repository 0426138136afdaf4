"""Units the whole package prints and converts with: bytes, MAdds, time, the default clock.

Sizes are bytes; ``KiB``/``MiB`` are 1024 and 2**20 bytes (the RNNPool paper's and
microcontroller datasheets' KB/MB). MAdds are printed in millions. Latency in milliseconds is
cycles at a clock: :data:`DEFAULT_CLOCK_MHZ` (an STM32F4's Cortex-M4, the paper's board) unless a
device profile or a flag says otherwise. Plain Python: imported by the cost model, the run
directory, the report and the CLI alike.
"""

from __future__ import annotations

KIB = 1024
MIB = 2**20

#: The Cortex-M4 clock latencies are quoted at when no profile or flag gives one.
DEFAULT_CLOCK_MHZ = 168.0


def cycles_to_ms(cycles: float, clock_mhz: float = DEFAULT_CLOCK_MHZ) -> float:
    """Milliseconds that ``cycles`` take at ``clock_mhz``."""
    return cycles / (clock_mhz * 1e3)


def kib(n: float) -> str:
    """``n`` bytes as a number of KiB, ``"1,234.5"`` (no unit: for tables whose header says it)."""
    return f"{n / KIB:,.1f}"


def format_bytes(n: float, unit: str | None = None) -> str:
    """``"300.0 KiB"``; ``unit`` ``"KiB"`` or ``"MiB"`` (default: MiB from 1 MiB up)."""
    unit = unit or ("MiB" if n >= MIB else "KiB")
    return f"{n / MIB:.2f} MiB" if unit == "MiB" else f"{kib(n)} KiB"


def format_madds(n: float) -> str:
    """``"128.0M"``."""
    return f"{n / 1e6:.1f}M"


def format_latency(seconds: float) -> str:
    """``"1.25 s"`` or ``"800.0 ms"``."""
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1e3:.1f} ms"


__all__ = ["DEFAULT_CLOCK_MHZ", "KIB", "MIB", "cycles_to_ms", "format_bytes", "format_latency", "format_madds", "kib"]
