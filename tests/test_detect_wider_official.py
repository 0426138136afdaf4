"""The official WIDER FACE arithmetic (int32 ``boxoverlap``, single-precision ``norm_score``) on
hand-made cases where it and the Python ports disagree."""

from __future__ import annotations

import numpy as np
import pytest

from rnnpool_nas.detect import wider_face_eval
from rnnpool_nas.detect.ap import norm_scores_official, wider_overlap, wider_overlap_official
from rnnpool_nas.errors import UserError

from .test_detect_wider import EVENTS, PREDICTIONS, write_fixture


def test_a_detection_overlapping_two_faces_goes_to_the_first(tmp_path):
    # faces A = (0, 0, 10, 10) and B = (2, 0, 10, 10); the prediction is B exactly. IoU with B is 1,
    # with A (x 2..10: 9 x 11 = 99 over 121 + 121 - 99 = 143) 0.69: both round to 1 in int32, and
    # MATLAB's max takes the first, A. easy keeps only A: officially the prediction recalls A
    # (AP 1); the Python ports give it to the best face, B, which easy ignores (AP 0).
    gt = np.array([[0, 0, 10, 10], [2, 0, 10, 10]])
    pred = np.array([[2.0, 0.0, 12.0, 10.0]])
    assert wider_overlap_official(gt, pred).tolist() == [[1, 1]]
    np.testing.assert_allclose(wider_overlap(gt, pred), [[99 / 143, 1.0]])
    root = write_fixture(tmp_path, [("0--E", [("0_a", gt, {"easy": [1], "medium": [1, 2], "hard": [1, 2]})])])
    far = np.array([[300.0, 300.0, 310.0, 310.0]])  # and a false positive, so that the scores differ
    predictions = {"0--E/0_a": (np.vstack([pred, far]), np.array([0.9, 0.1]))}
    official = wider_face_eval(root, predictions)
    python = wider_face_eval(root, predictions, protocol="python")
    assert official["easy"].ap == pytest.approx(1.0) and python["easy"].ap == pytest.approx(0.0)
    assert official["hard"].ap == pytest.approx(0.5) and python["hard"].ap == pytest.approx(0.5)


def test_fractional_corners_are_rounded_where_they_meet_int32_ground_truth(tmp_path):
    # face (10, 10, 10, 10) spans 10..20; prediction 13.6..23.6 x 10..20.
    # Python: w = 20 - 13.6 + 1 = 7.4, inter = 81.4, union = 121 + 121 - 81.4 = 160.6: IoU 0.507, a hit.
    # Official: x1 = max(10, round(13.6)) = 14, x2 = min(20, round(23.6)) = 20, inter = 7 * 11 = 77;
    # union = round(121 + 121.0) - 77 = 165 (the prediction's area stays double); 77 / 165 = 0.467
    # rounds to 0: a miss.
    gt = np.array([[10, 10, 10, 10]])
    pred = np.array([[13.6, 10.0, 23.6, 20.0]])
    assert wider_overlap(gt, pred)[0, 0] == pytest.approx(81.4 / 160.6)
    assert wider_overlap_official(gt, pred).tolist() == [[0]]
    root = write_fixture(tmp_path, [("0--E", [("0_a", gt, {"easy": [1], "medium": [1], "hard": [1]})])])
    far = np.array([[300.0, 300.0, 310.0, 310.0]])  # and a false positive, so that the scores differ
    predictions = {"0--E/0_a": (np.vstack([pred, far]), np.array([0.9, 0.1]))}
    assert wider_face_eval(root, predictions, protocol="python")["easy"].ap == pytest.approx(1.0)
    assert wider_face_eval(root, predictions)["easy"].ap == pytest.approx(0.0)
    # the integer division rounds half away from zero: exactly half overlaps (w 6, inter 66 of 132)
    half = np.array([[15.0, 10.0, 20.0, 20.0]])  # 6 x 11 = 66 of union 121 + 66 - 66
    assert wider_overlap(gt, half)[0, 0] == pytest.approx(66 / 121)
    assert wider_overlap_official(gt, half).tolist() == [[1]]


def test_all_scores_at_most_zero_normalise_against_realmin(tmp_path):
    # norm_score.m starts its max at realmin('single'): with scores -0.2 and -0.6 the max stays
    # there, so the best prediction normalises to (-0.2 + 0.6) / 0.6 = 2/3, not 1: thresholds above
    # 2/3 keep nothing (precision 0/0, recall 0) where the Python ports keep the best one.
    normed = norm_scores_official([np.array([-0.2, -0.6])])[0]
    assert normed[1] == 0.0 and normed[0] == pytest.approx(2 / 3, abs=1e-6)
    assert normed[0] == float(np.float32(np.float32(-0.2) + np.float32(0.6)) / np.float32(0.6))  # single precision
    gt = np.array([[10, 10, 10, 10], [100, 100, 10, 10]])
    pred = np.array([[10.0, 10.0, 20.0, 20.0], [300.0, 300.0, 310.0, 310.0]])  # a hit, a false positive
    root = write_fixture(tmp_path, [("0--E", [("0_a", gt, {"easy": [1, 2], "medium": [1, 2], "hard": [1, 2]})])])
    predictions = {"0--E/0_a": (pred, np.array([-0.2, -0.6]))}
    official = wider_face_eval(root, predictions)["easy"]
    python = wider_face_eval(root, predictions, protocol="python")["easy"]
    assert np.isnan(official.precision[:333]).all() and (official.recall[:333] == 0).all()
    assert official.precision[333] == 1.0 and official.recall[333] == 0.5
    assert python.precision[0] == 1.0 and python.recall[0] == 0.5
    assert official.ap == pytest.approx(0.5) and python.ap == pytest.approx(0.5)


def test_equal_scores_score_nothing_officially(tmp_path):
    # 0/0 in norm_score.m: NaN scores, which no threshold keeps (the Python ports: all 1)
    root = write_fixture(tmp_path, [("0--E", [("0_a", [[10, 10, 10, 10]], {"easy": [1], "medium": [1], "hard": [1]})])])
    predictions = {"0--E/0_a": (np.array([[10.0, 10.0, 20.0, 20.0]]), np.array([0.7]))}
    assert wider_face_eval(root, predictions)["easy"].ap == 0.0
    assert wider_face_eval(root, predictions, protocol="python")["easy"].ap == pytest.approx(1.0)


def test_whole_pixel_boxes_agree(tmp_path):
    root = write_fixture(tmp_path, EVENTS)
    official, python = wider_face_eval(root, PREDICTIONS), wider_face_eval(root, PREDICTIONS, protocol="python")
    for setting in ("easy", "medium", "hard"):
        assert official[setting].ap == pytest.approx(python[setting].ap)


def test_unknown_protocol(tmp_path):
    with pytest.raises(UserError, match="official, python"):
        wider_face_eval(write_fixture(tmp_path, EVENTS), PREDICTIONS, protocol="matlab")
