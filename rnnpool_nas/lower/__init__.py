"""The one lowering of an architecture spec (torch-free): :mod:`rnnpool_nas.lower.plan`."""

from .plan import (INPUT, OUTPUT, ROW_OPS, SPLITS, ArenaPlan, Buffer, HeadSpec, Segment, Step, has_row_kernel,
                   head_specs, lower, mbconv_scratch_bytes, mbconv_split_scratch_bytes, plan, rnnpool_scratch_words)

__all__ = ["INPUT", "OUTPUT", "ROW_OPS", "SPLITS", "ArenaPlan", "Buffer", "HeadSpec", "Segment", "Step",
           "has_row_kernel", "head_specs", "lower", "mbconv_scratch_bytes", "mbconv_split_scratch_bytes", "plan",
           "rnnpool_scratch_words"]
