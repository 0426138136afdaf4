"""Anchors: one per prediction, in SpecNet's output order, centred on the real map cells."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rnnpool_nas.arch import get_preset
from rnnpool_nas.arch.build import build
from rnnpool_nas.arch.spec import source_shapes
from rnnpool_nas.detect import anchors_for
from rnnpool_nas.errors import UserError


class _Coordinates(nn.Module):
    """Stands in for a head's box conv: predicts (column, row, head, 0) at every position."""

    def __init__(self, head: int) -> None:
        super().__init__()
        self.head = head
        self.shape: tuple[int, int] = (0, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        self.shape = (h, w)
        rows = torch.arange(h, dtype=x.dtype)[:, None].expand(h, w)
        cols = torch.arange(w, dtype=x.dtype)[None, :].expand(h, w)
        planes = torch.stack((cols, rows, torch.full_like(rows, self.head), torch.zeros_like(rows)))
        return planes.expand(n, 4, h, w)


@pytest.mark.parametrize("name,size", [("rnnpool-face-m4", (96, 128, 1)), ("rnnpool-face-m4", (100, 136, 1)),
                                       ("rnnpool-face-quant", (96, 128, 3))])
def test_anchor_order_is_the_model_output_order(name, size):
    spec = get_preset(name, input=size)
    model = build(spec).eval()
    probes = []
    for j, head in enumerate(model.heads):
        head.loc = _Coordinates(j)
        probes.append(head.loc)
    with torch.no_grad():
        loc, conf = model(torch.randn(2, size[2], size[0], size[1]))
    anchors = anchors_for(spec)
    assert anchors.shape == (loc.shape[1], 4) == (conf.shape[1], 4)
    col, row, head = (loc[0, :, k].numpy().astype(int) for k in range(3))
    assert (np.diff(head) >= 0).all()  # heads in source order
    for j, (src, probe) in enumerate(zip(spec.detection.sources, probes)):
        mine = head == j
        h, w = probe.shape
        assert mine.sum() == h * w
        np.testing.assert_allclose(anchors[mine, 0], (col[mine] + 0.5) * size[1] / w)
        np.testing.assert_allclose(anchors[mine, 1], (row[mine] + 0.5) * size[0] / h)
        assert (anchors[mine, 2:] == src.anchor).all()


def test_full_size_counts_and_sides():
    m4 = anchors_for(get_preset("rnnpool-face-m4"))  # 240x320: maps 30x40, 30x40, 15x20, 15x20
    assert m4.shape == (2 * 30 * 40 + 2 * 15 * 20, 4)
    np.testing.assert_array_equal(m4[0], [4.0, 4.0, 16.0, 16.0])  # stride 8, centre of the first cell
    np.testing.assert_array_equal(m4[-1], [320 - 8.0, 240 - 8.0, 128.0, 128.0])  # stride 16, last cell
    quant = get_preset("rnnpool-face-quant")
    shapes = [pred[:2] for _, pred, _ in source_shapes(quant)]
    assert shapes == [(120, 160), (60, 80), (30, 40), (15, 20), (8, 10), (4, 5)]
    anchors = anchors_for(quant)
    assert len(anchors) == sum(h * w for h, w in shapes)
    # 480 rows end in an 8-row map, not 480/64 = 7.5: its cells are 60 rows high, 64 columns wide
    start = sum(h * w for h, w in shapes[:4])
    level = anchors[start : start + 80].reshape(8, 10, 4)
    np.testing.assert_allclose(level[:, 0, 1], (np.arange(8) + 0.5) * 60.0)
    np.testing.assert_allclose(level[0, :, 0], (np.arange(10) + 0.5) * 64.0)
    assert (level[..., 2] == 256).all()


def test_a_classifier_has_no_anchors():
    with pytest.raises(UserError, match="no detection heads"):
        anchors_for(get_preset("rnnpool-tiny"))
