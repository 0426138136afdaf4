"""Architectures as data: specs, presets (torch-free) and the one builder (``arch.build``)."""

from .presets import PRESETS, get_preset, list_presets
from .spec import ArchSpec, Layer, SpecError, expand

__all__ = ["ArchSpec", "Layer", "PRESETS", "SpecError", "expand", "get_preset", "list_presets"]
