"""Kept importable for code written before the split: the int8 integer reference is
:mod:`rnnpool_nas.quant.reference` (numpy, no torch), the float -> int8 converter
:mod:`rnnpool_nas.quant.convert` (torch), the calibration set and the float/int8 accuracy
:mod:`rnnpool_nas.train.recipe`. Every name (private helpers included) is re-exported here."""

from __future__ import annotations

from ..quant import convert as _convert
from ..quant import reference as _reference
from .recipe import calibration_images, evaluate_int8  # noqa: F401

globals().update({name: value for module in (_reference, _convert) for name, value in vars(module).items()
                  if not name.startswith("__") and name not in ("annotations",)})
