"""``python -m rnnpool_nas.ops.build``: compile (or find cached) the fused kernel and say which
RNNPool path is in use. The install step runs it so the first trial does not pay the compile."""

from ._kernel import kernel_status, load_kernel

if __name__ == "__main__":
    load_kernel(verbose=False)
    print(f"rnnpool_nas: RNNPool recurrence uses the {kernel_status()}")
