"""Compatibility module: the memory plan moved to :mod:`rnnpool_nas.lower.plan` (the one lowering
that the cost model, the exporter, the latency predictor and ``measure`` read)."""

from ..lower.plan import (INPUT, OUTPUT, ROW_OPS, ArenaPlan, Buffer, HeadSpec, Segment, Step, head_specs, lower,
                          mbconv_scratch_bytes, plan, rnnpool_scratch_words)

__all__ = ["INPUT", "OUTPUT", "ROW_OPS", "ArenaPlan", "Buffer", "HeadSpec", "Segment", "Step", "head_specs", "lower",
           "mbconv_scratch_bytes", "plan", "rnnpool_scratch_words"]
