"""The builder: every preset builds and runs at its spec's shapes."""

from __future__ import annotations

import pytest
import torch

from rnnpool_nas.arch import expand, get_preset, list_presets
from rnnpool_nas.arch.build import build
from rnnpool_nas.arch.spec import source_shapes

SMALL_INPUT = {"rnnpool-face-quant": (96, 128, 3), "rnnpool-face-a": (96, 128, 3), "rnnpool-face-b": (96, 128, 3),
               "rnnpool-face-c": (128, 128, 3), "rnnpool-face-m4": (96, 128, 1)}


@pytest.mark.parametrize("name", [p.name for p in list_presets()])
def test_preset_forward_shapes(name):
    spec = get_preset(name, input=SMALL_INPUT.get(name, (96, 96, 3)))
    model = build(spec).eval()
    x = torch.randn(2, spec.input[2], spec.input[0], spec.input[1])
    with torch.no_grad():
        out = model(x)
    if spec.detection is None:
        assert out.shape == (2, spec.num_classes)
    else:
        loc, conf = out
        anchors = sum(pred[0] * pred[1] for _, pred, _ in source_shapes(spec))
        assert loc.shape == (2, anchors, 4) and conf.shape == (2, anchors, 2)


def test_blocks_follow_the_expansion():
    spec = get_preset("mobilenetv2-rnnpool", input=(64, 64, 3), classes=7)
    model = build(spec)
    layers = expand(spec)
    assert len(model.blocks) == len(layers)
    x = torch.randn(1, 3, 64, 64)
    for block, layer in zip(model.blocks, layers):
        x = block(x)
        if layer.kind != "linear":
            assert tuple(x.shape[1:]) == (layer.out_shape[2], layer.out_shape[0], layer.out_shape[1]), layer.name


def test_residuals_where_shapes_allow():
    model = build(get_preset("mobilenetv2-rnnpool"))
    flags = [(b.residual, l.args["stride"], l.in_shape[2] == l.out_shape[2])
             for b, l in zip(model.blocks, model.layers) if l.kind == "bottleneck"]
    assert all(res == (stride == 1 and same) for res, stride, same in flags)
    assert sum(res for res, _, _ in flags) == 7
