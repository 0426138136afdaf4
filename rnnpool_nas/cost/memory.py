"""Whether training a spec fits this machine's memory, from the cost model's parameter count
(torch-free): a spec with 10^9 channels is one line before a single tensor is allocated."""

from __future__ import annotations

from ..arch.spec import ArchSpec, expand
from .madds import layer_count

#: float32 bytes a parameter costs while training (weights, gradients, SGD momentum, slack)
TRAIN_BYTES_PER_PARAM = 16


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable``), None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_fits_memory(spec: ArchSpec) -> None:
    """One line (UserError) if training ``spec`` cannot fit this machine's available memory,
    counted from the cost model's parameters before a single tensor is allocated (a spec with
    10^9 channels would otherwise die of out-of-memory, or take the machine with it)."""
    from ..errors import UserError

    params = sum(layer_count(layer)[1] for layer in expand(spec))
    need, have = params * TRAIN_BYTES_PER_PARAM, available_memory()
    if have is not None and need > have:
        raise UserError(f"{spec.name or 'the architecture'} has {params:,} parameters: training it needs about "
                        f"{need / 2**30:,.1f} GiB, more than the {have / 2**30:,.1f} GiB of memory available")


