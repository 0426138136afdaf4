"""int8 quantization, split where torch starts.

- ``reference``: the exact integer network the C runtime reproduces byte for byte (numpy only, no
  torch); the fixed-point rules are at its top. Export's code generator, the host library and the
  LUT generator use it.
- ``convert``: a trained float model (torch) -> that integer network (:func:`convert.quantize`).

Nothing is imported here, so ``import rnnpool_nas.quant.reference`` never loads torch.
"""
