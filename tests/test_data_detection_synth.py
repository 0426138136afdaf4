"""``faces-synth`` and the detection registry: determinism, sizes, channels, exact boxes, errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from rnnpool_nas.data import DetectionSplit, list_detection_datasets, load_dataset, load_detection_dataset
from rnnpool_nas.data import faces_synth as fs
from rnnpool_nas.errors import UserError

from .conftest import one_line_error


def test_default_is_m4_input_and_deterministic():
    ds = load_detection_dataset("faces-synth", limit=6)
    assert ds.name == "faces-synth" and ds.classes == ["background", "face"] and ds.num_classes == 2
    assert ds.channels == 1 and ds.size == (240, 320) and len(ds.train) == 6 and len(ds.val) == 6 and ds.skipped == 0
    again = load_detection_dataset("faces-synth", limit=6)
    other = load_detection_dataset("faces-synth", limit=6, seed=1)
    for i in range(6):
        a, b = ds.train[i], again.train[i]
        assert a.image.shape == (240, 320, 1) and a.image.dtype == np.uint8
        assert a.boxes.dtype == np.float32 and a.boxes.shape[1:] == (4,) and a.ignore.dtype == bool
        assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
        assert np.array_equal(ds.train.boxes[i], a.boxes)  # known without painting
    assert any(not np.array_equal(ds.train[i].image, other.train[i].image) for i in range(6))
    assert any(not np.array_equal(ds.train[i].image, ds.val[i].image) for i in range(6))


def test_each_image_depends_only_on_seed_split_and_index():
    small = load_detection_dataset("faces-synth", limit=3)
    big = load_detection_dataset("faces-synth", limit=8)
    for i in (2, 1, 0):  # any order, any limit: the same image
        assert np.array_equal(small.train[i].image, big.train[i].image)
    images, boxes = fs.generate(3, seed=0, split="train", start=5)
    for k in range(3):
        assert np.array_equal(images[k], big.train[5 + k].image) and np.array_equal(boxes[k], big.train.boxes[5 + k])
    more = load_detection_dataset("faces-synth", limit=fs.N_VAL + 1)  # val has N_VAL images, train more
    assert (len(more.train), len(more.val)) == (fs.N_VAL + 1, fs.N_VAL)


def test_quant_size_rgb_and_layout_independent_of_channels():
    grey = load_detection_dataset("faces-synth", size=(480, 640), limit=4)
    rgb = load_detection_dataset("faces-synth", size=(480, 640), channels=3, limit=4)
    assert rgb.channels == 3 and rgb.size == (480, 640)
    for i in range(4):
        assert rgb.train[i].image.shape == (480, 640, 3)
        assert np.array_equal(grey.train.boxes[i], rgb.train.boxes[i])
    assert any(np.abs(rgb.train[i].image.astype(int)[..., 0] - rgb.train[i].image[..., 2]).max() > 30 for i in range(4))
    square = load_detection_dataset("faces-synth", size=96, limit=2)
    assert square.train[0].image.shape == (96, 96, 1)


def test_boxes_lie_in_the_image_and_counts_follow_the_stated_mix():
    opts = fs.SynthOptions()
    layouts = [fs.make_layout(7, "train", i, opts) for i in range(1500)]
    counts = np.array([len(layout.faces) for layout in layouts])
    assert counts.max() <= opts.max_faces
    assert 0.07 < np.mean(counts == 0) < 0.13
    assert 0.52 < np.mean((counts >= 1) & (counts <= 3)) < 0.68
    for layout in layouts[:300]:
        b = layout.boxes
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= 320).all() and (b[:, 3] <= 240).all()
        heights = b[:, 3] - b[:, 1]
        assert ((heights >= 12) & (heights <= 120)).all()
        for p in layout.pastes:
            assert (0 <= p.crop < 80) and p.w >= 1 and p.h >= 1
        faces = layout.faces
        for j, q in enumerate(faces):  # the stated occlusion limit, pair by pair
            for p in faces[:j]:
                iw = min(p.x + p.w, q.x + q.w) - max(p.x, q.x)
                ih = min(p.y + p.h, q.y + q.h) - max(p.y, q.y)
                if iw > 0 and ih > 0:
                    assert iw * ih <= 0.25 * min(p.w * p.h, q.w * q.h)
    val = [fs.make_layout(7, "val", i, opts) for i in range(100)]
    assert all(80 <= p.crop < 100 for layout in val for p in layout.pastes)


def test_a_pasted_crop_is_exactly_its_box():
    faces, _ = fs.crops()
    opts = fs.SynthOptions(height=64, width=80)
    background = fs.Background(-1, 0.0, 0.0, 0.0, False, 1.0, 16, 0)
    same = fs.Paste(True, 3, 10, 7, 25, 25, False, 1.0, 0.0, (1.0, 1.0, 1.0))
    scaled = fs.Paste(True, 5, 40, 20, 30, 36, True, 1.0, 0.0, (1.0, 1.0, 1.0))
    layout = fs.Layout(background, (same, scaled), pixel_seed=1)
    image = fs.render(layout, opts)[:, :, 0]
    assert layout.boxes.tolist() == [[10, 7, 35, 32], [40, 20, 70, 56]]
    assert np.array_equal(image[7:32, 10:35], faces[3])  # unscaled: the crop itself, pixel for pixel
    expected = np.asarray(Image.fromarray(faces[5]).resize((30, 36), Image.Resampling.BILINEAR))[:, ::-1]
    assert np.array_equal(image[20:56, 40:70], expected)
    bare = fs.render(layout, opts, pastes=False)[:, :, 0]
    changed = image != bare
    changed[7:32, 10:35] = changed[20:56, 40:70] = False
    assert not changed.any()  # nothing outside the boxes moved


def test_generated_images_change_only_inside_pasted_boxes():
    for channels in (1, 3):
        opts = fs.SynthOptions(channels=channels)
        for i in range(12):
            layout = fs.make_layout(3, "train", i, opts)
            image, bare = fs.render(layout, opts), fs.render(layout, opts, pastes=False)
            covered = np.zeros((240, 320), bool)
            for p in layout.pastes:
                covered[p.y : p.y + p.h, p.x : p.x + p.w] = True
            diff = (image != bare).any(axis=2)
            assert not (diff & ~covered).any()
            for x1, y1, x2, y2 in layout.boxes.astype(int):  # tight: every edge row and column shows the face
                for edge in (diff[y1, x1:x2], diff[y2 - 1, x1:x2], diff[y1:y2, x1], diff[y1:y2, x2 - 1]):
                    assert edge.mean() > 0.5


def test_lazy_split_and_preload_agree():
    lazy = load_detection_dataset("faces-synth", limit=4)
    held = load_detection_dataset("faces-synth", limit=4, preload=True)
    assert isinstance(held.train, DetectionSplit) and len(held.train) == 4
    for a, b in zip(lazy.train, held.train):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes) and a.source == b.source
    assert lazy.train.image_size(0) == (240, 320) and lazy.train.face_counts().shape == (4,)
    with pytest.raises(IndexError):
        lazy.train[4]
    copy = pickle.loads(pickle.dumps(lazy))  # a split can go to DataLoader workers (spawn) or Ray actors
    assert np.array_equal(copy.train[2].image, lazy.train[2].image)


def test_names_and_arguments():
    assert list(list_detection_datasets()) == ["faces-synth", "wider-face:PATH", "scut-head:PATH"]
    assert load_detection_dataset("Faces-Synth", limit=1).name == "faces-synth"
    cases = [
        ("faces_synth", {}, ("did you mean faces-synth",)),
        ("widerface:/x", {}, ("did you mean wider-face",)),
        ("faces-synth:/tmp", {}, ("takes no path",)),
        ("faces-synth", {"channels": 2}, ("channels must be 1 or 3",)),
        ("faces-synth", {"size": (0, 5)}, ("size must be (height, width)",)),
        ("faces-synth", {"size": (8, 8)}, ("faces-synth", "16")),
        ("faces-synth", {"limit": 0}, ("limit must be a positive integer",)),
        ("faces-synth", {"seed": -1}, ("seed must be a non-negative integer",)),
        ("faces-synth", {"splits": ("train", "test")}, ("splits must name two of train, val",)),
        ("wider-face", {}, ("wider-face: needs a folder",)),
        ("scut-head:/a", {"data_dir": "/b"}, ("two folders", "/a", "/b")),
    ]
    for name, kwargs, needles in cases:
        with pytest.raises(UserError) as info:
            load_detection_dataset(name, **kwargs)
        one_line_error(info, *needles)


def test_classification_loader_points_detection_names_here():
    for name in ("faces-synth", "wider-face:/x", "scut-head:/x"):
        with pytest.raises(UserError) as info:
            load_dataset(name)
        one_line_error(info, "face-detection data set", "load_detection_dataset")
