"""The int8 reference: fixed-point primitives, each op against float, and a whole network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rnnpool_nas.arch import get_preset
from rnnpool_nas.arch.build import build
from rnnpool_nas.train.quant import (
    ONE,
    QParams,
    _nonlinearity,
    choose_qparams,
    evaluate_int8,
    quantize,
    quantize_multiplier,
    requant,
)


@pytest.mark.parametrize("real", [1e-9, 3.7e-5, 0.0123, 0.5, 0.999999, 1.0, 7.25, -0.3])
def test_quantize_multiplier(real):
    m, s = quantize_multiplier(real)
    assert 2**30 <= abs(m) < 2**31 and 1 <= s <= 62 or s == 62
    assert m / 2**s == pytest.approx(real, rel=1e-8)
    m15, s15 = quantize_multiplier(real, 15)
    assert 2**14 <= abs(m15) < 2**15
    assert m15 / 2**s15 == pytest.approx(real, rel=1e-4)


def test_requant_rounds_half_up():
    m, s = 1 << 30, 31  # exactly 0.5
    acc = np.array([-3, -2, -1, 0, 1, 2, 3])
    assert requant(acc, m, s).tolist() == [-1, -1, 0, 0, 1, 1, 2]  # floor(x / 2 + 0.5)


def test_requant_refuses_int32_overflow():
    with pytest.raises(OverflowError):
        requant(np.array([2**31]), 1 << 30, 31)


def test_choose_qparams_covers_zero_and_range():
    qp = choose_qparams(0.5, 6.0)
    assert qp.zero_point == -128  # 0 is the lowest value
    assert qp.dequantize(np.array([127], dtype=np.int8))[0] == pytest.approx(6.0, rel=1e-6)
    x = np.linspace(-2, 3, 101)
    qp = choose_qparams(-2, 3)
    # the zero point is an integer, so the grid may shift by up to half a step at the edges
    assert np.abs(qp.dequantize(qp.quantize(x)) - x).max() <= qp.scale


def test_piecewise_nonlinearities():
    v = np.array([-3 * ONE, -ONE, 0, ONE // 2, ONE, 3 * ONE])
    assert _nonlinearity("quantTanh", v).tolist() == [-ONE, -ONE, 0, ONE // 2, ONE, ONE]
    assert _nonlinearity("quantSigmoid", v).tolist() == [0, 0, ONE // 2, 3 * ONE // 4, ONE, ONE]
    x = np.linspace(-9, 9, 2001)
    for name, fn in (("sigmoid", lambda t: 1 / (1 + np.exp(-t))), ("tanh", np.tanh)):
        approx = _nonlinearity(name, np.round(x * ONE).astype(np.int64)) / ONE
        assert np.abs(approx - fn(np.clip(x, -8, 8))).max() < 3e-5  # (1/64)^2 / 8 * max|f"|


def _trained(spec, steps=60, seed=0):
    """A briefly trained model, so batch norm statistics are realistic."""
    torch.manual_seed(seed)
    model = build(spec)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(seed)
    h, w, c = spec.input
    images = rng.integers(0, 256, (512, h, w, c), dtype=np.uint8)
    labels = (images.reshape(512, -1).mean(1) > 127.5).astype(np.int64) % spec.num_classes
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(labels)
    for i in range(steps):
        idx = slice((i * 64) % 512, (i * 64) % 512 + 64)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), images, labels


@pytest.mark.parametrize(
    "name,overrides",
    [
        ("rnnpool-tiny", {}),
        ("rnnpool-tiny", {"gate_nonlinearity": "quantSigmoid", "update_nonlinearity": "quantTanh"}),
        ("rnnpool-tiny", {"batch_norm": False, "padding": "same", "patch_size": [3, 5], "stride": [2, 3]}),
        ("mobilenetv2-0.35x-rnnpool-vww", {}),
    ],
)
def test_int8_network_tracks_float(name, overrides):
    spec = get_preset(name, input=(28, 28, 1) if name == "rnnpool-tiny" else (64, 64, 3), classes=4, **overrides)
    model, images, labels = _trained(spec)
    qnet = quantize(model, images[:256])
    held_out = images[256:]
    logits_q = qnet.logits(held_out)
    with torch.no_grad():
        logits_f = model(torch.from_numpy(held_out).permute(0, 3, 1, 2).float() / 255).numpy()
    rel = np.abs(logits_q - logits_f).mean() / np.abs(logits_f).mean()
    assert rel < 0.12, rel  # briefly trained on noise; real models: see the trainer tests
    scores = evaluate_int8(qnet, model, held_out, labels[256:])
    assert scores["agreement"] >= 0.9
    # deterministic: the same bytes every time
    np.testing.assert_array_equal(qnet.run(held_out[:8]), qnet.run(held_out[:8]))


def test_input_is_raw_pixels_minus_128():
    spec = get_preset("rnnpool-tiny")
    model, images, _ = _trained(spec, steps=5)
    qnet = quantize(model, images[:64])
    assert qnet.input == QParams(1 / 255, -128)
