"""VOC-style AP: a hand-computed curve, ignore boxes, the unmatched-ground-truth rule, the subset."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rnnpool_nas.detect import average_precision, images_with_at_most, voc_ap

A_FACES = np.array([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 70.0, 70.0]])
B_FACES = np.array([[100.0, 100.0, 130.0, 130.0]])


def _hand_case():
    # five detections over two images, scores 0.9 ... 0.5:
    #   0.9 A: exactly face A0                                 TP
    #   0.8 A: nowhere near a face                             FP
    #   0.7 B: exactly face B0                                 TP
    #   0.6 A: A0 again, shifted by 1 (IoU 90/110); A0 taken   FP (duplicate)
    #   0.5 A: A1 shifted by 2 (IoU 360/440 = 0.82)            TP
    a = (np.array([[0, 0, 10, 10], [200, 200, 210, 210], [1, 0, 11, 10], [52, 50, 72, 70]], dtype=float),
         np.array([0.9, 0.8, 0.6, 0.5]))
    b = (np.array([[100.0, 100.0, 130.0, 130.0]]), np.array([0.7]))
    return [a, b], [A_FACES, B_FACES]


def test_ap_by_hand():
    detections, faces = _hand_case()
    curve = average_precision(detections, faces)
    # precision 1/1, 1/2, 2/3, 2/4, 3/5 at recall 1/3, 1/3, 2/3, 2/3, 3/3
    np.testing.assert_allclose(curve.precision, [1, 1 / 2, 2 / 3, 2 / 4, 3 / 5])
    np.testing.assert_allclose(curve.recall, [1 / 3, 1 / 3, 2 / 3, 2 / 3, 1])
    # envelope: 1 up to recall 1/3, max(2/3, 2/4, 3/5) = 2/3 up to 2/3, 3/5 up to 1:
    # AP = 1/3 * 1 + 1/3 * 2/3 + 1/3 * 3/5 = 34/45
    assert curve.num_faces == 3
    assert curve.ap == pytest.approx(34 / 45)


def test_ignored_faces_are_neither_found_nor_missed():
    detections, faces = _hand_case()
    boxes, scores = detections[1]
    detections[1] = (np.vstack((boxes, [[300, 300, 320, 320]])), np.append(scores, 0.75))
    faces[1] = np.vstack((B_FACES, [[300, 300, 320, 320]]))
    ignored = average_precision(detections, faces, ignore=[np.zeros(2, bool), np.array([False, True])])
    assert ignored.num_faces == 3 and ignored.ap == pytest.approx(34 / 45)  # the 0.75 detection drops out
    counted = average_precision(detections, faces)
    # now a TP at 0.75 and 4 faces: precision 1, 1/2, 2/3, 3/4, 3/5, 4/6 at recall 1/4, 1/4, 2/4, 3/4, 3/4, 1;
    # envelope 1, 3/4, 3/4, 2/3 over the four quarters: AP = (1 + 3/4 + 3/4 + 2/3) / 4 = 19/24
    assert counted.num_faces == 4 and counted.ap == pytest.approx(19 / 24)


def test_a_second_detection_takes_the_best_unmatched_face():
    faces = [np.array([[0.0, 0.0, 10.0, 10.0], [3.0, 0.0, 13.0, 10.0]])]  # two overlapping faces
    boxes = np.array([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0]])  # the second is closer to face 0 (0.82) than 1 (0.67)
    curve = average_precision([(boxes, np.array([0.9, 0.8]))], faces)
    assert curve.ap == pytest.approx(1.0) and curve.precision.tolist() == [1.0, 1.0]


def test_edge_cases():
    assert math.isnan(average_precision([(np.zeros((0, 4)), np.zeros(0))], [np.zeros((0, 4))]).ap)
    none_found = average_precision([(np.zeros((0, 4)), np.zeros(0))], [A_FACES])
    assert none_found.ap == 0.0 and none_found.num_faces == 2
    with pytest.raises(ValueError, match="one entry per image"):
        average_precision([], [A_FACES])
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 0.5])) == pytest.approx(0.75)
    assert voc_ap(np.array([0.5, 0.5]), np.array([np.nan, 1.0])) == pytest.approx(0.5)  # NaN skipped


def test_images_with_at_most_three_faces():
    faces = [np.zeros((4, 4)), np.zeros((0, 4)), np.zeros((3, 4)), [[1, 2, 3, 4]]]
    assert images_with_at_most(faces).tolist() == [1, 2, 3]
    assert images_with_at_most(faces, max_faces=0).tolist() == [1]
    detections, gts = _hand_case()
    keep = images_with_at_most(gts, 1)
    curve = average_precision([detections[i] for i in keep], [gts[i] for i in keep])
    assert keep.tolist() == [1] and curve.ap == pytest.approx(1.0)
