"""The official WIDER FACE protocol on fixture .mat files in the official layout.

The fixture mirrors ``eval_tools/ground_truth``: ``wider_face_val.mat`` holds ``event_list``
(events x 1 cell of names), ``file_list`` (events x 1 cell, each images x 1 cell of names) and
``face_bbx_list`` (the same nesting, each a faces x 4 ``x y w h`` matrix); each
``wider_<setting>_val.mat`` holds ``gt_list`` (the same nesting, each a column of 1-based indices
of the faces the setting keeps).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from rnnpool_nas.detect import load_wider_ground_truth, wider_face_eval
from rnnpool_nas.detect.ap import wider_overlap
from rnnpool_nas.errors import UserError


def _cell(items) -> np.ndarray:
    out = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        out[i, 0] = item
    return out


def write_fixture(root: Path, events) -> Path:
    """``events``: [(event, [(name, boxes xywh, {setting: [1-based indices]}), ...]), ...]."""
    root.mkdir(parents=True, exist_ok=True)
    savemat(root / "wider_face_val.mat", {
        "event_list": _cell([e for e, _ in events]),
        "file_list": _cell([_cell([name for name, _, _ in images]) for _, images in events]),
        "face_bbx_list": _cell([_cell([np.asarray(b, dtype=np.float64).reshape(-1, 4) for _, b, _ in images])
                                for _, images in events]),
    })
    for setting in ("easy", "medium", "hard"):
        savemat(root / f"wider_{setting}_val.mat", {"gt_list": _cell([
            _cell([np.asarray(keep[setting], dtype=np.float64).reshape(-1, 1) for _, _, keep in images])
            for _, images in events])})
    return root


# Image A: three faces; easy keeps face 1, medium faces 1-2, hard all. B: one face, kept by all.
# C: one face, kept by medium and hard only.
EVENTS = [
    ("0--Parade", [("0_Parade_a", [[10, 10, 20, 20], [100, 100, 20, 20], [200, 200, 10, 10]],
                    {"easy": [1], "medium": [1, 2], "hard": [1, 2, 3]})]),
    ("1--Handshaking", [("1_Handshaking_b", [[50, 50, 30, 30]], {"easy": [1], "medium": [1], "hard": [1]}),
                        ("1_Handshaking_c", [[5, 5, 10, 10]], {"easy": [], "medium": [1], "hard": [1]})]),
]
# A: face 1 exactly (0.9), a false positive (0.7), face 3 exactly (0.5); B: its face (0.3); C: nothing.
PREDICTIONS = {
    "0--Parade/0_Parade_a": (np.array([[200, 200, 210, 210], [10, 10, 30, 30], [400, 400, 420, 420]], float),
                             np.array([0.5, 0.9, 0.7])),
    "1--Handshaking/1_Handshaking_b": (np.array([[50.0, 50.0, 80.0, 80.0]]), np.array([0.3])),
}


def test_fixture_reads_back(tmp_path):
    images = load_wider_ground_truth(write_fixture(tmp_path, EVENTS))
    assert [im.key for im in images] == ["0--Parade/0_Parade_a", "1--Handshaking/1_Handshaking_b",
                                         "1--Handshaking/1_Handshaking_c"]
    np.testing.assert_array_equal(images[0].boxes[2], [200, 200, 10, 10])
    assert images[0].keep["medium"].tolist() == [0, 1] and images[2].keep["easy"].tolist() == []


def test_wider_protocol_by_hand(tmp_path):
    curves = wider_face_eval(write_fixture(tmp_path, EVENTS), PREDICTIONS)
    # scores normalised by min 0.3, max 0.9: A 1.0, 0.667, 0.333; B 0.0. Thresholds 1 - t/1000.
    # easy (2 faces: A1, B1): A's 0.333 detection hits face 3, outside easy: not counted.
    #   t <= 333: 1 proposal, 1 found; t 334..999: 2 proposals, 1 found; t = 1000: 3 and 2
    #   precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    easy = curves["easy"]
    assert easy.num_faces == 2 and len(easy.precision) == 1000
    np.testing.assert_allclose(easy.precision[[0, 332, 333, 998, 999]], [1, 1, 1 / 2, 1 / 2, 2 / 3])
    np.testing.assert_allclose(easy.recall[[0, 332, 333, 998, 999]], [1 / 2, 1 / 2, 1 / 2, 1 / 2, 1])
    assert easy.ap == pytest.approx(5 / 6)
    # medium (A1, A2, B1, C1: 4 faces; face 3 still outside): precision as easy, recall halved:
    #   AP = 1/4 * 1 + 1/4 * 2/3 = 5/12 (C has no prediction: skipped, its face still counts)
    assert curves["medium"].num_faces == 4 and curves["medium"].ap == pytest.approx(5 / 12)
    # hard (5 faces): A's third detection now finds face 3:
    #   t <= 333: P 1, R 1/5; 334..666: P 1/2, R 1/5; 667..999: P 2/3, R 2/5; 1000: P 3/4, R 3/5
    #   envelope 1, 3/4, 3/4 -> AP = 1/5 + 1/5 * 3/4 + 1/5 * 3/4 = 1/2
    hard = curves["hard"]
    np.testing.assert_allclose(hard.precision[[332, 333, 665, 666, 998, 999]], [1, 1 / 2, 1 / 2, 2 / 3, 2 / 3, 3 / 4])
    assert hard.num_faces == 5 and hard.ap == pytest.approx(1 / 2)


def test_at_most_n_faces_subset(tmp_path):
    # only B and C have at most 1 face; B's lone score normalises to 1 (all scores equal) in the
    # Python ports, to 0/0 (nothing kept) in the official code
    curves = wider_face_eval(write_fixture(tmp_path, EVENTS), PREDICTIONS, max_faces=1, protocol="python")
    assert curves["easy"].num_faces == 1 and curves["easy"].ap == pytest.approx(1.0)
    assert curves["hard"].num_faces == 2 and curves["hard"].ap == pytest.approx(0.5)
    official = wider_face_eval(write_fixture(tmp_path, EVENTS), PREDICTIONS, max_faces=1)
    assert official["easy"].num_faces == 1 and official["easy"].ap == 0.0
    three = wider_face_eval(write_fixture(tmp_path, EVENTS), PREDICTIONS, max_faces=3)
    assert three["hard"].ap == pytest.approx(1 / 2)  # every image qualifies


def test_overlap_uses_inclusive_pixels():
    # ground truth x y w h = 10 10 10 10 spans pixels 10..20 (11 wide); prediction 10..19 (10 wide)
    assert wider_overlap(np.array([[10, 10, 10, 10]]), np.array([[10, 10, 19, 19]]))[0, 0] == pytest.approx(100 / 121)
    assert wider_overlap(np.array([[10, 10, 10, 10]]), np.array([[21, 10, 30, 20]]))[0, 0] == 0.0


def test_missing_or_malformed_ground_truth(tmp_path):
    with pytest.raises(UserError, match="not found"):
        wider_face_eval(tmp_path / "nowhere", {})
    root = write_fixture(tmp_path / "gt", EVENTS)
    savemat(root / "wider_hard_val.mat", {"gt_list": _cell([_cell([np.ones((1, 1))])])})
    with pytest.raises(UserError, match="gt_list has 1 images"):
        load_wider_ground_truth(root)


# ------------------------------------------------------------- against a line-by-line port


def _reference(images, predictions, setting, thresh_num=1000):
    """evaluation.m, norm_score.m, boxoverlap.m and VOCap.m transcribed loop for loop."""
    preds = {}
    for im in images:
        boxes, scores = predictions.get(im.key, (np.zeros((0, 4)), np.zeros(0)))
        rows = [[b[0], b[1], b[2] - b[0], b[3] - b[1], s] for b, s in zip(boxes.tolist(), scores.tolist())]
        order = sorted(range(len(rows)), key=lambda k: -rows[k][4])
        preds[im.key] = [rows[k] for k in order]
    every = [r[4] for rows in preds.values() for r in rows]
    lo, hi = min(every), max(every)
    for rows in preds.values():
        for r in rows:
            r[4] = (r[4] - lo) / (hi - lo)
    org = np.zeros((thresh_num, 2))
    count_face = 0
    for im in images:
        gt, pred, keep = im.boxes.tolist(), preds[im.key], im.keep[setting].tolist()
        count_face += len(keep)
        if not gt or not pred:
            continue
        ignore = [1 if k in keep else 0 for k in range(len(gt))]
        pred_recall, recall_list, proposal_list = [0] * len(pred), [0] * len(gt), [1] * len(pred)
        for h, p in enumerate(pred):
            px1, py1, px2, py2 = p[0], p[1], p[0] + p[2], p[1] + p[3]
            overlaps = []
            for g in gt:
                x1, y1, x2, y2 = max(g[0], px1), max(g[1], py1), min(g[0] + g[2], px2), min(g[1] + g[3], py2)
                w, h_ = x2 - x1 + 1, y2 - y1 + 1
                inter = w * h_
                union = (g[2] + 1) * (g[3] + 1) + (px2 - px1 + 1) * (py2 - py1 + 1) - inter
                overlaps.append(0.0 if w <= 0 or h_ <= 0 else inter / union)
            idx = overlaps.index(max(overlaps))
            if max(overlaps) >= 0.5:
                if ignore[idx] == 0:
                    recall_list[idx] = -1
                    proposal_list[h] = -1
                elif recall_list[idx] == 0:
                    recall_list[idx] = 1
            pred_recall[h] = recall_list.count(1)
        for t in range(1, thresh_num + 1):
            thresh = 1 - t / thresh_num
            hits = [k for k, p in enumerate(pred) if p[4] >= thresh]
            if hits:
                r = hits[-1]
                org[t - 1, 0] += proposal_list[: r + 1].count(1)
                org[t - 1, 1] += pred_recall[r]
    with np.errstate(divide="ignore", invalid="ignore"):
        prec, rec = org[:, 1] / org[:, 0], org[:, 1] / count_face
    mrec, mpre = [0.0, *rec, 1.0], [0.0, *prec, 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = mpre[i + 1] if math.isnan(mpre[i]) else (mpre[i] if math.isnan(mpre[i + 1]) else max(mpre[i], mpre[i + 1]))
    return sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1]), prec, rec


def test_matches_a_line_by_line_port_on_random_data(tmp_path):
    rng = np.random.default_rng(7)
    events, predictions = [], {}
    for e in range(3):
        images = []
        for j in range(5):
            n = int(rng.integers(0, 6))
            xy, wh = rng.uniform(0, 300, (n, 2)), rng.uniform(4, 60, (n, 2))
            boxes = np.round(np.concatenate((xy, wh), 1))
            keep = {s: sorted(rng.choice(n, int(rng.integers(0, n + 1)), replace=False) + 1) for s in ("easy", "medium", "hard")}
            name = f"{e}_img_{j}"
            images.append((name, boxes, keep))
            if j == 4:
                continue  # no prediction file for this image
            near = boxes[:, :2].repeat(2, 0) + rng.normal(0, 3, (2 * n, 2))  # two guesses per face, some duplicates
            sizes = boxes[:, 2:].repeat(2, 0) * rng.uniform(0.8, 1.2, (2 * n, 2))
            noise = rng.uniform(0, 300, (3, 4)) + [0, 0, 10, 10]
            pred = np.vstack((np.concatenate((near, near + sizes), 1), np.concatenate((noise[:, :2], noise[:, :2] + noise[:, 2:]), 1)))
            predictions[f"{e}--Event/{name}"] = (pred, np.round(rng.uniform(0, 1, len(pred)), 2))
        events.append((f"{e}--Event", images))
    root = write_fixture(tmp_path, events)
    images = load_wider_ground_truth(root)
    curves = wider_face_eval(images, predictions, protocol="python")  # the ports' arithmetic
    for setting, curve in curves.items():
        ap, prec, rec = _reference(images, predictions, setting)
        assert curve.ap == pytest.approx(ap, abs=1e-12), setting
        np.testing.assert_allclose(curve.precision, prec, equal_nan=True)
        np.testing.assert_allclose(curve.recall, rec)
    assert 0 < curves["hard"].ap < 1
