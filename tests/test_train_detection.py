"""The face-detection trainer: it trains without NaN, scores AP, resumes exactly, and the CLI
reports float and int8 AP; evaluation scores perfect detections 1.0, also with the official
WIDER FACE protocol after mapping back to the original pixels."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from rnnpool_nas.arch import get_preset
from rnnpool_nas.arch.presets import set_field
from rnnpool_nas.cli import main
from rnnpool_nas.data.detection import DetectionDataset, DetectionSplit, load_detection_dataset
from rnnpool_nas.detect import anchors_for, box_iou, cxcywh_to_xyxy, encode
from rnnpool_nas.train.detection import (
    DetectionTrainer,
    detection_calibration_images,
    detection_loss,
    evaluate_detection,
    score_detections,
    to_input,
)
from rnnpool_nas.train.trainer import TrainConfig

from .test_data_detection_files import gt_text, picture
from .test_detect_wider import write_fixture

SIZE = (60, 80)


@pytest.fixture(scope="module")
def spec():
    return set_field(get_preset("rnnpool-face-m4"), "input", (*SIZE, 1))  # the M4 heads on 1/16 of the pixels


@pytest.fixture(scope="module")
def faces():
    return load_detection_dataset("faces-synth", limit=48, size=SIZE)


def _config(**kw):
    base = dict(epochs=2, batch_size=16, lr=0.01, warmup_epochs=0.5, seed=1, threads=2, val_limit=32)
    base.update(kw)
    return TrainConfig(**base)


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values() if p.dtype.is_floating_point])


def test_trains_and_reports_ap_every_epoch(spec, faces):
    seen = []
    trainer = DetectionTrainer(spec, faces, _config())
    result = trainer.fit(callback=seen.append)
    assert result.status == "complete", result.reason
    assert [m.epoch for m in seen] == [1, 2]
    for m in seen:
        assert math.isfinite(m.train_loss) and math.isfinite(m.val_loss)
        assert 0.0 <= m.val_accuracy <= 1.0
    assert seen[-1].train_loss < seen[0].train_loss
    scores = trainer.last_scores
    assert scores["ap"] == seen[-1].val_accuracy and scores["images"] == 32
    assert scores["images_at_most_3"] == int((faces.val.face_counts()[:32] <= 3).sum())


def test_resume_equals_uninterrupted(spec, faces, tmp_path):
    full = DetectionTrainer(spec, faces, _config())
    full_result = full.fit()
    ckpt = tmp_path / "ckpt.pt"
    stopped = DetectionTrainer(spec, faces, _config(), checkpoint=ckpt).fit(callback=lambda m: m.epoch < 1)
    assert stopped.status == "stopped" and stopped.epochs_trained == 1
    state = torch.load(ckpt, weights_only=False)  # the classification trainer's format
    assert set(state) == {"model", "optimizer", "scheduler", "epoch", "step", "generator", "torch_rng", "history",
                          "spec", "config"}
    resumed = DetectionTrainer(spec, faces, _config(), checkpoint=ckpt, resume=True)
    result = resumed.fit()
    assert result.status == "complete" and result.epochs_trained == 2
    assert [m.val_loss for m in result.history] == [m.val_loss for m in full_result.history]
    assert [m.val_accuracy for m in result.history] == [m.val_accuracy for m in full_result.history]
    assert torch.equal(_weights(resumed.model), _weights(full.model))


def test_nan_loss_fails_the_run_without_raising(spec, faces):
    result = DetectionTrainer(spec, faces, _config(lr=1e6, warmup_epochs=0)).fit()
    assert result.status == "failed" and "loss became" in result.reason


def test_refuses_a_classifier_or_classification_data(spec, faces):
    from rnnpool_nas.errors import UserError

    with pytest.raises(UserError, match="no detection heads"):
        DetectionTrainer(get_preset("rnnpool-tiny"), faces, _config())
    with pytest.raises(UserError, match="not a face-detection data set"):
        DetectionTrainer(spec, object(), _config())


# ------------------------------------------------------------------------------ evaluation


class _Oracle(torch.nn.Module):
    """A "detector" that outputs the encoded ground truth of known images, one anchor a face."""

    def __init__(self, spec, boxes_per_image):
        super().__init__()
        anchors = torch.from_numpy(anchors_for(spec))
        n, a = len(boxes_per_image), len(anchors)
        self.loc = torch.zeros(n, a, 4)
        self.conf = torch.tensor([10.0, -10.0]).repeat(n, a, 1)
        for i, boxes in enumerate(boxes_per_image):
            if len(boxes) == 0:
                continue
            gt = torch.from_numpy(np.asarray(boxes, dtype=np.float64))
            iou = box_iou(gt, cxcywh_to_xyxy(anchors))
            taken = set()
            for k in range(len(gt)):
                j = next(int(j) for j in torch.argsort(iou[k], descending=True) if int(j) not in taken)
                taken.add(j)
                self.loc[i, j] = encode(gt[k], anchors[j]).float()
                self.conf[i, j] = torch.tensor([-10.0, 10.0])

    def forward(self, x):
        assert len(x) == len(self.loc)  # the whole split in one batch
        return self.loc, self.conf


def test_ground_truth_as_detections_scores_one(spec, faces):
    boxes = [faces.val.boxes[i] for i in range(len(faces.val))]
    perfect = [(b, np.linspace(1.0, 0.5, len(b))) for b in boxes]
    scores = score_detections(perfect, boxes)
    assert scores["ap"] == 1.0 and scores["ap_at_most_3"] == 1.0
    assert scores["faces"] == sum(len(b) for b in boxes)
    # the same through the network's outputs: encoded, decoded, NMS'd
    result = evaluate_detection(_Oracle(spec, boxes), faces.val, spec, batch_size=len(boxes))
    assert result["ap"] == pytest.approx(1.0) and result["ap_at_most_3"] == pytest.approx(1.0)
    assert result["images"] == len(boxes) and result["skipped"] == 0
    # nothing detected: AP 0
    empty = [(np.zeros((0, 4)), np.zeros(0)) for _ in boxes]
    assert score_detections(empty, boxes)["ap"] == 0.0


def _wider(root):
    """A WIDER FACE folder with two val images of their own sizes, and its official .mat ground truth."""
    val = [("1--Handshaking/1_Handshaking_1.jpg", 200, 150, [(20, 30, 40, 44), (120, 60, 30, 36)]),
           ("2--Demonstration/2_Demonstration_7.jpg", 160, 120, [(50, 40, 48, 52)])]
    picture(root / "WIDER_train/images/0--Parade/0_Parade_0.jpg", 64, 48, [(4, 4, 20, 24)])
    for name, w, h, boxes in val:
        picture(root / "WIDER_val/images" / name, w, h, [(x, y, x + bw, y + bh) for x, y, bw, bh in boxes])
    split = root / "wider_face_split"
    split.mkdir(parents=True)
    row = (0, 0, 0, 0, 0, 0)
    (split / "wider_face_train_bbx_gt.txt").write_text(gt_text([("0--Parade/0_Parade_0.jpg", [(4, 4, 16, 20, *row)], True)]))
    (split / "wider_face_val_bbx_gt.txt").write_text(gt_text([(n, [(*b, *row) for b in boxes], True)
                                                              for n, _, _, boxes in val]))
    keep = {"easy": [1], "medium": [1, 2], "hard": [1, 2]}
    return write_fixture(root / "ground_truth", [
        ("1--Handshaking", [("1_Handshaking_1", val[0][3], keep)]),
        ("2--Demonstration", [("2_Demonstration_7", val[1][3], {s: [1] for s in keep})]),
    ])


def test_wider_protocol_maps_detections_to_original_pixels(spec, tmp_path):
    gt_dir = _wider(tmp_path)
    ds = load_detection_dataset(f"wider-face:{tmp_path}", channels=1)  # native sizes
    scaled = [to_input(np.zeros((*ds.val.image_size(i), 1), np.uint8), ds.val.boxes[i], SIZE, 1)[1]
              for i in range(len(ds.val))]
    oracle = _Oracle(spec, scaled)
    faces = oracle.conf[..., 1] > 0
    # distinct face scores: the official norm_score turns equal scores into 0/0 (nothing kept)
    oracle.conf[faces] = torch.stack([torch.zeros(int(faces.sum())), 2 + 0.5 * torch.arange(int(faces.sum()))], 1)
    for protocol in ("official", "python"):
        result = evaluate_detection(oracle, ds.val, spec, batch_size=2, wider_gt=gt_dir, wider_protocol=protocol)
        assert result["ap"] == pytest.approx(1.0)
        wider = result["wider"]
        assert wider["images"] == 2 and wider["protocol"] == protocol
        for setting in ("easy", "medium", "hard", "easy_at_most_3", "hard_at_most_3"):
            assert wider[setting] == pytest.approx(1.0), (protocol, setting)
    # every face found with one score: the Python ports normalise it to 1, the official code to 0/0
    same = _Oracle(spec, scaled)
    assert evaluate_detection(same, ds.val, spec, batch_size=2, wider_gt=gt_dir)["wider"]["hard"] == 0.0
    python = evaluate_detection(same, ds.val, spec, batch_size=2, wider_gt=gt_dir, wider_protocol="python")
    assert python["wider"]["hard"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------- loss, calibration


def test_ignored_boxes_are_neither_faces_nor_negatives(spec):
    anchors = torch.from_numpy(anchors_for(spec))
    face, ignored = np.array([[8.0, 8.0, 24.0, 24.0]]), np.array([[40.0, 20.0, 56.0, 36.0]])
    loc = torch.zeros(1, len(anchors), 4)
    conf = torch.zeros(1, len(anchors), 2)
    iou = box_iou(torch.from_numpy(ignored), cxcywh_to_xyxy(anchors))[0]
    conf[0, iou >= 0.35, 1] = 20.0  # very face-like where the ignored box is
    conf.requires_grad_(True)
    plain = detection_loss(loc, conf, anchors, [face])  # the box unannotated: those anchors are hard negatives
    ignoring = detection_loss(loc, conf, anchors, [face], [ignored])
    assert plain.num_pos == ignoring.num_pos > 0
    assert ignoring.conf < plain.conf
    ignoring.total.backward()
    assert conf.grad[0, iou >= 0.35].abs().max() == 0.0


def test_calibration_images_are_seeded_and_resized(faces):
    a = detection_calibration_images(faces.train, (30, 40, 3), count=8, seed=2)
    b = detection_calibration_images(faces.train, (30, 40, 3), count=8, seed=2)
    assert a.shape == (8, 30, 40, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(a, detection_calibration_images(faces.train, (30, 40, 3), count=8, seed=3))


# ------------------------------------------------------------------------------------------ CLI


def test_train_command_reports_float_and_int8_ap(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--preset", "rnnpool-face-m4", "--input", "60x80x1", "--dataset", "faces-synth",
                 "--limit", "32", "--epochs", "1", "--out", str(out), "--threads", "2"])
    assert code == 0
    text = capsys.readouterr().out
    assert "val AP" in text and "int8: AP" in text and "<= 3 faces" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "faces-synth" and metrics["result"]["status"] == "complete"
    i8 = metrics["int8"]
    for key in ("float_ap", "int8_ap", "float_ap_at_most_3", "int8_ap_at_most_3"):
        assert 0.0 <= i8[key] <= 1.0
    assert i8["images"] == 32 and i8["calibration_images"] == 32
    assert (out / "checkpoint.pt").exists() and json.loads((out / "arch.json").read_text())["detection"]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--preset", "rnnpool-face-m4", "--dataset", "lines"], "is a face detector"),
        (["--preset", "rnnpool-tiny", "--dataset", "faces-synth"], "is a classifier"),
        (["--preset", "rnnpool-tiny", "--dataset", "lines", "--wider-eval", "gt"], "--wider-eval"),
    ],
)
def test_train_command_refuses_mismatched_task(argv, message, capsys, tmp_path):
    code = main(["train", "--out", str(tmp_path / "x"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err


def test_detection_split_in_memory_trains(spec):
    """A DetectionDataset built from arrays (RGB, no faces in one image) trains for a grey spec."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (70, 90, 3), dtype=np.uint8) for _ in range(6)]
    boxes = [np.array([[10, 10, 30, 34]], np.float32)] * 5 + [np.zeros((0, 4), np.float32)]
    split = DetectionSplit.from_arrays("arrays", images, boxes)
    ds = DetectionDataset("arrays", split, split, channels=3)
    result = DetectionTrainer(spec, ds, _config(epochs=1, batch_size=4, val_limit=None)).fit()
    assert result.status == "complete", result.reason
