"""The batched torch int8 runner is bit-exact with the numpy integer reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnpool_nas.arch import get_preset
from rnnpool_nas.train.quant import evaluate_int8, quantize
from rnnpool_nas.train.quant_fast import FastNet, evaluate_int8_fast

from .test_quant import _trained


@pytest.mark.parametrize(
    "name,overrides",
    [
        ("rnnpool-tiny", {}),
        ("rnnpool-tiny", {"gate_nonlinearity": "quantSigmoid", "update_nonlinearity": "quantTanh"}),
        ("rnnpool-tiny", {"batch_norm": False, "padding": "same", "patch_size": [3, 5], "stride": [2, 3]}),
        pytest.param("mobilenetv2-0.35x-rnnpool-vww", {}, marks=pytest.mark.slow),
    ],
)
def test_fast_runner_is_bit_exact(name, overrides):
    spec = get_preset(name, input=(28, 28, 1) if name == "rnnpool-tiny" else (64, 64, 3), classes=4, **overrides)
    model, images, labels = _trained(spec, steps=20)
    qnet = quantize(model, images[:128])
    x = images[128:160]
    np.testing.assert_array_equal(FastNet(qnet).run(x), qnet.run(x))
    ref = evaluate_int8(qnet, model, images[128:192], labels[128:192], reference=True)
    assert evaluate_int8_fast(qnet, model, images[128:192], labels[128:192], batch_size=24) == ref
    assert evaluate_int8(qnet, model, images[128:192], labels[128:192]) == ref


@pytest.mark.slow
def test_fast_detector_heads_are_bit_exact():
    spec = get_preset("rnnpool-face-m4", input=(48, 64, 1))
    torch.manual_seed(0)
    from rnnpool_nas.arch.build import build

    model = build(spec).eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 48, 64, 1), dtype=np.uint8)
    qnet = quantize(model, images[:8])
    fast = FastNet(qnet)
    for (a, b), (c, d) in zip(fast.run_heads(images[8:]), qnet.run_heads(images[8:])):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    np.testing.assert_array_equal(fast.run(images[8:]), qnet.run(images[8:]))
