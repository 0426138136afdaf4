"""S3FD matching on hand-made anchors: threshold matches, forced best anchors, compensation.

The anchors tile a 128x128 image: 16-pixel anchors every 4 pixels (centres 2, 6, ..., 126)
and 64-pixel anchors every 16 pixels (centres 8, 24, ..., 120).
"""

from __future__ import annotations

import numpy as np
import torch

from rnnpool_nas.detect import box_iou, cxcywh_to_xyxy, match_anchors


def _level(side: float, stride: float, size: float = 128.0) -> np.ndarray:
    c = np.arange(stride / 2, size, stride)
    cy, cx = np.meshgrid(c, c, indexing="ij")
    return np.stack((cx.ravel(), cy.ravel(), np.full(cx.size, side), np.full(cx.size, side)), 1)


ANCHORS = np.concatenate((_level(16, 4), _level(64, 16)))  # 1024 + 64
BIG = [0.0, 0.0, 64.0, 64.0]
TINY = [100.0, 100.0, 106.0, 106.0]


def _per_face(labels: torch.Tensor, index: torch.Tensor, face: int) -> np.ndarray:
    return torch.nonzero((labels == 1) & (index == face)).flatten().numpy()


def test_big_face_matches_by_threshold():
    m = match_anchors(ANCHORS, [np.array([BIG])])
    mine = _per_face(m.labels[0], m.gt_index[0], 0)
    # 64-pixel anchors centred at 24/40 on both axes overlap it by 56x56: IoU 3136/5056 = 0.62;
    # with one centre at 8 or 56 instead: 40x56, IoU 2240/5952 = 0.376; the corners 0.243;
    # 16-pixel anchors at most 256/4096 = 0.0625. So exactly 4 + 8 anchors, all >= 0.35.
    assert len(mine) == 12
    centres = {tuple(ANCHORS[a, :2]) for a in mine}
    expected = {(x, y) for x in (8.0, 24.0, 40.0, 56.0) for y in (8.0, 24.0, 40.0, 56.0)} - {
        (8.0, 8.0), (8.0, 56.0), (56.0, 8.0), (56.0, 56.0)}
    assert centres == expected and (ANCHORS[mine, 2] == 64).all()
    iou = box_iou(np.array([BIG]), cxcywh_to_xyxy(ANCHORS))[0]
    assert (iou[mine] >= 0.35).all() and (np.delete(iou, mine) < 0.35).all()
    assert (m.boxes[0, mine] == torch.tensor(BIG)).all() and (m.boxes[0, m.labels[0] == 0] == 0).all()


def test_tiny_face_alone_gets_only_its_best_anchor():
    m = match_anchors(ANCHORS, [np.array([TINY])])
    mine = _per_face(m.labels[0], m.gt_index[0], 0)
    # best IoU is a 16-pixel anchor containing the 6x6 face: 36/256 = 0.14 < 0.35, forced;
    # alone in its image the average count is 1, so nothing to compensate
    assert len(mine) == 1 and int(m.labels.sum()) == 1
    np.testing.assert_allclose(box_iou(np.array([TINY]), cxcywh_to_xyxy(ANCHORS[mine]))[0], 36 / 256)


def test_tiny_face_next_to_a_big_one_gets_compensated_anchors():
    m = match_anchors(ANCHORS, [np.array([BIG, TINY])])
    big = _per_face(m.labels[0], m.gt_index[0], 0)
    tiny = _per_face(m.labels[0], m.gt_index[0], 1)
    # stage 1: 12 + 1 anchors, N = floor(13 / 2) = 6; the tiny face's candidates (IoU > 0.1) are
    # the nine 16-pixel anchors centred at 98, 102 or 106 on both axes (IoU 36/256 each; the
    # next ones out overlap it by 4x6: 24/268 = 0.09), so it gets 5 more of them
    assert len(big) == 12 and len(tiny) == 6
    assert {tuple(c) for c in ANCHORS[tiny, :2]} <= {(x, y) for x in (98.0, 102.0, 106.0) for y in (98.0, 102.0, 106.0)}
    assert (m.boxes[0, tiny] == torch.tensor(TINY)).all()
    plain = match_anchors(ANCHORS, [np.array([BIG, TINY])], compensate_n=0)  # SSD matching at 0.35
    assert len(_per_face(plain.labels[0], plain.gt_index[0], 1)) == 1
    fixed = match_anchors(ANCHORS, [np.array([BIG, TINY])], compensate_n=20)  # no more than the 9 candidates
    assert len(_per_face(fixed.labels[0], fixed.gt_index[0], 1)) == 9


def test_batch_with_an_empty_image_and_a_degenerate_box():
    faces = [np.zeros((0, 4)), torch.tensor([[30.0, 30.0, 30.0, 50.0], BIG, TINY]), [TINY]]
    m = match_anchors(ANCHORS, faces)
    assert m.labels.shape == m.gt_index.shape == (3, len(ANCHORS)) and m.boxes.shape == (3, len(ANCHORS), 4)
    assert int(m.labels[0].sum()) == 0 and (m.gt_index[0] == -1).all() and (m.boxes[0] == 0).all()
    # the zero-width box (index 0) is skipped; indices still refer to the image's own list
    assert set(m.gt_index[1].unique().tolist()) == {-1, 1, 2}
    assert m.num_positives.tolist() == [0, 18, 1]
    assert ((m.gt_index >= 0) == (m.labels == 1)).all()


def test_a_shared_best_anchor_goes_to_the_later_face():
    anchors = np.array([[50.0, 50.0, 20.0, 20.0], [200.0, 200.0, 20.0, 20.0]])
    faces = np.array([[40.0, 40.0, 58.0, 58.0], [42.0, 42.0, 60.0, 60.0]])  # both best on anchor 0
    m = match_anchors(anchors, [faces])
    assert m.gt_index[0].tolist() == [1, -1]
