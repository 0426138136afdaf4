"""int8 detection heads: L2Norm in integers, max-out, raw outputs close to the float model's."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rnnpool_nas.arch.build import L2Norm, build
from rnnpool_nas.arch.presets import get_preset
from rnnpool_nas.arch.presets import set_field
from rnnpool_nas.train.quant import QL2Norm, QParams, div_round, isqrt64, quantize


def test_integer_helpers():
    v = np.array([0, 1, 2, 3, 4, 15, 16, 17, 2**40 - 1, 2**40, 2**61 + 12345], dtype=np.int64)
    assert [int(r) for r in isqrt64(v)] == [math.isqrt(int(x)) for x in v]
    num = np.array([7, -7, 5, -5, 6, -6, 0])
    assert list(div_round(num, np.array(2))) == [4, -4, 3, -3, 3, -3, 0]  # halves away from zero
    assert list(div_round(num, np.array(4))) == [2, -2, 1, -1, 2, -2, 0]


def test_l2norm_matches_float_within_a_step():
    rng = np.random.default_rng(0)
    inp, out = QParams(0.05, -20), QParams(10 / 127, 0)
    x = rng.integers(-128, 128, size=(2, 5, 7, 12)).astype(np.int8)
    x[0, 0, 0] = inp.zero_point  # an all-zero pixel: output zero point, no division by zero
    weight = rng.uniform(5, 15, size=12)
    op = QL2Norm(np.round(weight * 2.0**16 / out.scale).astype(np.int64), inp, out)
    q = op.run(x)
    ref = L2Norm(12)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(weight))
        f = ref(torch.from_numpy(inp.dequantize(x)).permute(0, 3, 1, 2).double()).permute(0, 2, 3, 1).numpy()
    expected = np.clip(np.round(f / out.scale) + out.zero_point, -128, 127)
    assert np.abs(q.astype(int) - expected).max() <= 1
    assert (q[0, 0, 0] == out.zero_point).all()


@pytest.mark.parametrize("preset", ["rnnpool-face-m4", "rnnpool-face-quant"])
def test_detector_quantizes_and_tracks_the_float_model(preset):
    spec = get_preset(preset)
    h, w, c = spec.input
    spec = set_field(spec, "input", (h // 4, w // 4, c))  # the same heads on a sixteenth of the pixels
    torch.manual_seed(0)
    model = build(spec).eval()
    with torch.no_grad():  # norms as training leaves them: no channel is constant
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.5, 0.5)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6,) + tuple(spec.input), dtype=np.uint8)
    qnet = quantize(model, images[:4])
    assert len(qnet.heads) == len(spec.detection.sources)
    with torch.no_grad():
        loc_f, conf_f = model(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    loc_q, conf_q = qnet.detections(images)
    assert loc_q.shape == tuple(loc_f.shape) and conf_q.shape == tuple(conf_f.shape)
    for q, f in ((loc_q, loc_f.numpy()), (conf_q, conf_f.numpy())):
        err = np.abs(q - f).max() / (np.abs(f).max() + 1e-9)
        assert err < 0.1, err  # within a few int8 steps of each output's range
    raw = qnet.run(images[:2])
    assert raw.dtype == np.int8 and raw.shape == (2, loc_q.shape[1] * 6)
