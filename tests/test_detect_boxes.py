"""Box arithmetic: IoU by hand, conversions and the SSD encoding round trip, numpy and torch."""

from __future__ import annotations

import numpy as np
import torch

from rnnpool_nas.detect import box_iou, cxcywh_to_xyxy, decode, encode, xyxy_to_cxcywh


def test_iou_by_hand():
    a = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0]])
    b = np.array([[5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [2.0, 2.0, 4.0, 4.0]])
    iou = box_iou(a, b)
    # half overlap: 50 / (100 + 100 - 50); identical; disjoint; contained: 4 / 100
    np.testing.assert_allclose(iou[0], [50 / 150, 1.0, 0.0, 0.04])
    np.testing.assert_array_equal(iou[1], [0.0, 0.0, 0.0, 0.0])  # an empty box overlaps nothing
    torch_iou = box_iou(torch.as_tensor(a), torch.as_tensor(b))
    assert isinstance(torch_iou, torch.Tensor)
    np.testing.assert_allclose(torch_iou.numpy(), iou)


def test_conversions_invert_each_other():
    rng = np.random.default_rng(0)
    xs, ys = np.sort(rng.uniform(0, 100, (2, 20, 2)), axis=2)
    xyxy = np.stack((xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]), axis=1)
    cxcywh = xyxy_to_cxcywh(xyxy)
    assert (cxcywh[:, 2:] >= 0).all()
    np.testing.assert_allclose(cxcywh_to_xyxy(cxcywh), xyxy)
    np.testing.assert_allclose(xyxy_to_cxcywh(np.array([[10.0, 20.0, 30.0, 60.0]])), [[20.0, 40.0, 20.0, 40.0]])


def test_encoding_by_hand_and_round_trip():
    anchor = np.array([[50.0, 50.0, 20.0, 20.0]])
    face = np.array([[42.0, 44.0, 62.0, 84.0]])  # centre (52, 64), 20 x 40
    t = encode(face, anchor)
    # centre offsets over 0.1 * anchor side; log size ratios over 0.2
    np.testing.assert_allclose(t, [[2 / 2.0, 14 / 2.0, 0.0, np.log(2.0) / 0.2]])
    np.testing.assert_allclose(decode(t, anchor), face)
    rng = np.random.default_rng(1)
    anchors = np.concatenate((rng.uniform(0, 300, (500, 2)), rng.choice([16.0, 32.0, 64.0], (500, 1)).repeat(2, 1)), 1)
    centres, sizes = rng.uniform(0, 300, (500, 2)), rng.uniform(2, 200, (500, 2))
    faces = np.concatenate((centres - sizes / 2, centres + sizes / 2), 1)
    np.testing.assert_allclose(decode(encode(faces, anchors), anchors), faces, atol=1e-9)
    t64 = encode(torch.as_tensor(faces), torch.as_tensor(anchors))
    np.testing.assert_allclose(t64.numpy(), encode(faces, anchors))
    np.testing.assert_allclose(decode(t64, torch.as_tensor(anchors)).numpy(), faces, atol=1e-9)


def test_zero_offsets_decode_to_the_anchor():
    anchors = np.array([[8.0, 8.0, 16.0, 16.0], [100.0, 60.0, 64.0, 64.0]])
    np.testing.assert_allclose(decode(np.zeros((2, 4)), anchors), cxcywh_to_xyxy(anchors))
