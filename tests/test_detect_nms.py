"""Greedy NMS against a brute-force reference, and decoding SpecNet-shaped outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnpool_nas.detect import decode_detections, encode, face_scores, nms


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _brute_nms(boxes, scores, threshold, top_k=None, keep_k=None) -> list[int]:
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:top_k]
    keep: list[int] = []
    for i in order:
        if keep_k is not None and len(keep) == keep_k:
            break
        if all(_iou(boxes[i], boxes[k]) <= threshold for k in keep):
            keep.append(i)
    return keep


def _random_boxes(rng, n):
    centres = rng.uniform(0, 100, (5, 2))[rng.integers(0, 5, n)] + rng.normal(0, 4, (n, 2))  # clusters
    sizes = rng.uniform(5, 30, (n, 2))
    return np.concatenate((centres - sizes / 2, centres + sizes / 2), 1), np.round(rng.uniform(0, 1, n), 1)  # ties


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("threshold,top_k,keep_k", [(0.3, None, None), (0.5, 40, None), (0.3, None, 5), (0.0, 60, 10)])
def test_nms_matches_brute_force(seed, threshold, top_k, keep_k):
    rng = np.random.default_rng(seed)
    boxes, scores = _random_boxes(rng, 80)
    got = nms(boxes, scores, threshold, top_k, keep_k)
    assert got.dtype == np.int64
    assert got.tolist() == _brute_nms(boxes.tolist(), scores.tolist(), threshold, top_k, keep_k)


def test_nms_by_hand_and_empty():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 5]], dtype=float)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    # box 3 first; box 0 overlaps it by 50/100 = 0.5 > 0.3 (gone), box 1 by 45/105 = 0.43 (gone)
    assert nms(boxes, scores, 0.3).tolist() == [3, 2]
    assert nms(boxes, scores, 0.5).tolist() == [3, 0, 2]  # 0.5 is kept: suppression needs IoU > threshold
    assert nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []


def test_decode_detections_recovers_encoded_faces():
    anchors = np.array([[x, y, 32.0, 32.0] for y in (16.0, 48.0, 80.0) for x in (16.0, 48.0, 80.0)])
    faces = np.array([[10.0, 12.0, 40.0, 44.0], [60.0, 58.0, 96.0, 100.0]])
    loc = np.zeros((2, 9, 4))
    conf = np.tile([3.0, -3.0], (2, 9, 1))  # background everywhere...
    # ...except: anchor 0 and its neighbour 1 both predict face 0 (a duplicate for NMS), anchor 8 face 1
    for anchor, face, logit in ((0, 0, 4.0), (1, 0, 2.0), (8, 1, 3.0)):
        loc[0, anchor] = encode(faces[face][None], anchors[anchor][None])[0]
        conf[0, anchor] = [0.0, logit]
    out = decode_detections(torch.as_tensor(loc, dtype=torch.float32), conf, anchors)
    assert len(out) == 2
    boxes, scores = out[0]
    np.testing.assert_allclose(boxes, faces, atol=1e-4)  # the duplicate is suppressed, best first
    np.testing.assert_allclose(scores, 1 / (1 + np.exp([-4.0, -3.0])))
    assert out[1][0].shape == (0, 4) and out[1][1].shape == (0,)  # 1 / (1 + e^6) < 0.05 everywhere
    kept = decode_detections(loc, conf, anchors, score_threshold=0.0, nms_iou=1.0, keep_k=4)
    assert len(kept[0][1]) == 4 and (np.diff(kept[0][1]) <= 0).all()
    np.testing.assert_allclose(face_scores(np.array([[0.0, 0.0], [1000.0, -1000.0]])), [0.5, 0.0], atol=1e-300)
