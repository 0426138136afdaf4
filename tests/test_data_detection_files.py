"""``wider-face:PATH`` and ``scut-head:PATH`` on small fixtures written here in the real formats."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rnnpool_nas.data import DataWarning, load_detection_dataset
from rnnpool_nas.data.wider_face import parse_ground_truth
from rnnpool_nas.errors import UserError

from .conftest import one_line_error


def picture(path: Path, width: int, height: int, boxes=(), fmt: str = "JPEG") -> None:
    """A black image with each box (x1, y1, x2, y2, pixels x1..x2-1) filled white."""
    a = np.zeros((height, width, 3), np.uint8)
    for x1, y1, x2, y2 in boxes:
        a[max(y1, 0) : y2, max(x1, 0) : x2] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, format=fmt, quality=95)


def bright(image: np.ndarray, box) -> tuple[float, float]:
    """(mean inside the box, mean of the 2-pixel ring around it) of channel 0."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    inside = image[y1:y2, x1:x2, 0].astype(float).mean()
    ring = np.zeros(image.shape[:2], bool)
    ring[max(y1 - 2, 0) : y2 + 2, max(x1 - 2, 0) : x2 + 2] = True
    ring[y1:y2, x1:x2] = False
    return inside, image[ring, 0].astype(float).mean()


# ---------------------------------------------------------------------------------- WIDER FACE


def gt_text(entries) -> str:
    """A ground-truth file as WIDER writes it: name, count, ten integers a box (trailing space)."""
    out = []
    for name, boxes, zeros_line in entries:
        out += [name, str(len(boxes))]
        out += [" ".join(str(v) for v in b) + " " for b in boxes]
        if not boxes and zeros_line:
            out.append("0 0 0 0 0 0 0 0 0 0 ")
    return "\n".join(out) + "\n"


def make_wider(root: Path) -> None:
    #                x   y  w  h  blur expr illum invalid occl pose
    valid = (4, 5, 6, 7, 1, 0, 0, 0, 0, 0)
    invalid = (20, 3, 6, 8, 0, 0, 0, 1, 0, 0)
    empty = (30, 20, 0, 5, 0, 0, 0, 0, 0, 0)
    sticking_out = (40, 10, 12, 9, 2, 0, 0, 0, 1, 0)  # 12 wide from x=40 in a 48-wide image
    train = [
        ("0--Parade/0_Parade_marchingband_1_5.jpg", [valid, invalid, empty], True),
        ("0--Parade/0_Parade_Parade_0_17.jpg", [], True),
        ("12--Group/12_Group_Group_12_1.jpg", [(2, 2, 9, 10, 0, 0, 0, 0, 0, 0), sticking_out], True),
    ]
    val = [
        ("1--Handshaking/1_Handshaking_1.jpg", [(10, 12, 14, 10, 0, 0, 0, 0, 0, 0)], True),
        ("1--Handshaking/1_Handshaking_2.jpg", [], False),  # a count of 0 without the zeros line is read too
    ]
    picture(root / "WIDER_train/images" / train[0][0], 40, 30, [(4, 5, 10, 12), (20, 3, 26, 11)])
    picture(root / "WIDER_train/images" / train[1][0], 40, 30)
    picture(root / "WIDER_train/images" / train[2][0], 48, 36, [(2, 2, 11, 12), (40, 10, 48, 19)])
    picture(root / "WIDER_val/images" / val[0][0], 40, 30, [(10, 12, 24, 22)])
    picture(root / "WIDER_val/images" / val[1][0], 40, 30)
    split = root / "wider_face_split"
    split.mkdir(parents=True, exist_ok=True)
    (split / "wider_face_train_bbx_gt.txt").write_text(gt_text(train))
    (split / "wider_face_val_bbx_gt.txt").write_text(gt_text(val))


def test_wider_reads_the_official_layout(tmp_path):
    make_wider(tmp_path)
    ds = load_detection_dataset(f"wider-face:{tmp_path}")
    assert ds.name == f"wider-face:{tmp_path}" and ds.channels == 3 and ds.skipped == 0
    assert len(ds.train) == 3 and len(ds.val) == 2 and ds.size is None  # images keep their own sizes
    assert ds.train.sources[0].endswith("WIDER_train/images/0--Parade/0_Parade_marchingband_1_5.jpg")
    # the invalid box and the zero-width one are dropped; the image without faces stays, with none
    assert ds.train.boxes[0].tolist() == [[4, 5, 10, 12]]
    assert ds.train.boxes[1].shape == (0, 4) and ds.val.boxes[1].shape == (0, 4)
    assert ds.train.boxes[2].tolist() == [[2, 2, 11, 12], [40, 10, 48, 19]]  # clipped to the 48-pixel width
    assert not any(g.any() for g in ds.train.ignore)
    sample = ds.train[0]
    assert sample.image.shape == (30, 40, 3) and ds.train.image_size(2) == (36, 48)
    inside, ring = bright(sample.image, sample.boxes[0])
    assert inside > 200 and ring < 100  # the box is where the face pixels are
    assert ds.val.boxes[0].tolist() == [[10, 12, 24, 22]]
    copy = pickle.loads(pickle.dumps(ds))  # picklable for DataLoader workers
    assert np.array_equal(copy.train[0].image, sample.image)


def test_wider_size_and_grey_scale_boxes_with_images(tmp_path):
    make_wider(tmp_path)
    ds = load_detection_dataset("wider-face", data_dir=tmp_path, size=(60, 80), channels=1)
    assert ds.size == (60, 80) and ds.channels == 1
    s = ds.train[0]
    assert s.image.shape == (60, 80, 1) and s.boxes.tolist() == [[8, 10, 20, 24]]
    inside, ring = bright(s.image, s.boxes[0])
    assert inside > 200 and ring < 100
    expected = [[80 * 2 / 48, 60 * 2 / 36, 80 * 11 / 48, 60 * 12 / 36], [80 * 40 / 48, 60 * 10 / 36, 80, 60 * 19 / 36]]
    np.testing.assert_allclose(ds.train.boxes[2], expected, rtol=1e-6)


def test_wider_limit_is_a_seeded_subset_in_file_order(tmp_path):
    make_wider(tmp_path)
    a = load_detection_dataset(f"wider-face:{tmp_path}", limit=2, seed=5)
    b = load_detection_dataset(f"wider-face:{tmp_path}", limit=2, seed=5)
    assert len(a.train) == 2 and len(a.val) == 2 and a.train.sources == b.train.sources
    names = ("0--Parade/0_Parade_marchingband_1_5.jpg", "0--Parade/0_Parade_Parade_0_17.jpg", "12--Group/12_Group_Group_12_1.jpg")
    order = [str(tmp_path / "WIDER_train/images" / n) for n in names]
    assert a.train.sources == sorted(a.train.sources, key=order.index)
    picks = {tuple(load_detection_dataset(f"wider-face:{tmp_path}", limit=1, seed=s).train.sources) for s in range(12)}
    assert len(picks) > 1


def test_wider_missing_annotation_file_or_folder(tmp_path):
    make_wider(tmp_path)
    (tmp_path / "wider_face_split/wider_face_val_bbx_gt.txt").unlink()
    with pytest.raises(UserError) as info:
        load_detection_dataset(f"wider-face:{tmp_path}")
    one_line_error(info, "expected the ground-truth file", str(tmp_path / "wider_face_split/wider_face_val_bbx_gt.txt"))
    with pytest.raises(UserError) as info:
        load_detection_dataset(f"wider-face:{tmp_path / 'nope'}")
    one_line_error(info, "wider-face", "not a folder")
    (tmp_path / "WIDER_train/images").rename(tmp_path / "WIDER_train/pictures")
    with pytest.raises(UserError) as info:
        load_detection_dataset(f"wider-face:{tmp_path}")
    one_line_error(info, str(tmp_path / "WIDER_train/images"))


@pytest.mark.parametrize(
    "text,line,needle",
    [
        ("a/b.jpg\ntwo\n", 2, "expected the number of boxes of a/b.jpg"),
        ("a/b.jpg\n1\n1 2 3 4 0 0 0 0 0\n", 3, "expected box 1 of 1 of a/b.jpg: ten numbers"),
        ("a/b.jpg\n2\n1 2 3 4 0 0 0 0 0 0 \n", 4, "found the end of the file"),
        ("a/b.jpg\n1\n1 2 3 4 0 0 0 0 0 0 \n5 5 5 5 0 0 0 0 0 0\n", 4, "expected an image path"),
        ("a/b.jpg\n1\n1 2 x 4 0 0 0 0 0 0\n", 3, "ten numbers"),
        ("a/b.jpg\n-1\n", 2, "an integer >= 0"),
    ],
)
def test_wider_malformed_line_names_file_and_line(tmp_path, text, line, needle):
    gt = tmp_path / "wider_face_train_bbx_gt.txt"
    gt.write_text(text)
    with pytest.raises(UserError) as info:
        parse_ground_truth(gt)
    one_line_error(info, f"{gt}:{line}:", needle)


def test_wider_bad_samples_are_skipped_and_counted(tmp_path):
    make_wider(tmp_path)
    images = tmp_path / "WIDER_train/images"
    gt = tmp_path / "wider_face_split/wider_face_train_bbx_gt.txt"
    entries = [
        ("0--Parade/0_Parade_marchingband_1_5.jpg", [(4, 5, 6, 7, 0, 0, 0, 0, 0, 0)], True),
        ("0--Parade/outside.jpg", [(2, 2, 5, 5, 0, 0, 0, 0, 0, 0), (100, 50, 8, 8, 0, 0, 0, 0, 0, 0)], True),
        ("0--Parade/junk.jpg", [(1, 1, 5, 5, 0, 0, 0, 0, 0, 0)], True),
        ("0--Parade/missing.jpg", [(1, 1, 5, 5, 0, 0, 0, 0, 0, 0)], True),
    ]
    picture(images / "0--Parade/outside.jpg", 40, 30)
    (images / "0--Parade/junk.jpg").write_bytes(b"this is not a JPEG at all")
    gt.write_text(gt_text(entries))
    with pytest.warns(DataWarning) as record:
        ds = load_detection_dataset(f"wider-face:{tmp_path}")
    assert len(ds.train) == 1 and ds.train.skipped == 3 and ds.skipped == 3 and len(ds.val) == 2
    message = str(record[0].message)
    assert "skipped 3 bad train sample(s)" in message and f"{gt}:7" in message and "lies outside" in message
    whys = dict(ds.train.bad)
    assert any("not a readable image" in w for w in whys.values())
    assert any(k.endswith(f"missing.jpg ({gt.name}:11)") and w == "missing image file" for k, w in whys.items())


def test_an_image_that_fails_to_decode_on_access_is_skipped(tmp_path):
    make_wider(tmp_path)
    path = tmp_path / "WIDER_train/images/0--Parade/0_Parade_Parade_0_17.jpg"
    data = path.read_bytes()
    scan = data.index(b"\xff\xda")  # start of scan: everything before it is header
    path.write_bytes(data[: scan + 20])  # the header survives: it passes the load-time check
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is wrong yet at load
        ds = load_detection_dataset(f"wider-face:{tmp_path}")
    assert len(ds.train) == 3 and ds.skipped == 0
    with pytest.warns(DataWarning, match="0_Parade_Parade_0_17.jpg: cannot decode"):
        assert ds.train.get(1) is None
    assert ds.train.skipped == 1 and ds.train.get(1) is None and ds.train.skipped == 1  # counted once
    assert ds.train[1].source == ds.train.sources[2]  # indexing moves on to the next good image
    assert [s.source for s in ds.train] == [ds.train.sources[0], ds.train.sources[2]]
    held = ds.train.preload()
    assert len(held) == 2 and held.skipped == 1


# ---------------------------------------------------------------------------------- SCUT-HEAD


def voc(filename: str, width: int, height: int, objects) -> str:
    """A Pascal-VOC annotation as SCUT-HEAD writes them; objects are (name, xmin, ymin, xmax, ymax, difficult).

    The first object starts on line 10, and each object takes 12 lines.
    """
    lines = [
        "<annotation>",
        "  <folder>JPEGImages</folder>",
        f"  <filename>{filename}</filename>",
        "  <size>",
        f"    <width>{width}</width>",
        f"    <height>{height}</height>",
        "    <depth>3</depth>",
        "  </size>",
        "  <segmented>0</segmented>",
    ]
    for name, x1, y1, x2, y2, difficult in objects:
        lines += [
            "  <object>",
            f"    <name>{name}</name>",
            "    <pose>Unspecified</pose>",
            "    <truncated>0</truncated>",
            f"    <difficult>{difficult}</difficult>",
            "    <bndbox>",
            f"      <xmin>{x1}</xmin>",
            f"      <ymin>{y1}</ymin>",
            f"      <xmax>{x2}</xmax>",
            f"      <ymax>{y2}</ymax>",
            "    </bndbox>",
            "  </object>",
        ]
    return "\n".join(lines + ["</annotation>"]) + "\n"


def make_scut(root: Path, images: dict[str, tuple[int, int, list]], splits: dict[str, list[str]]) -> Path:
    part = root / "SCUT_HEAD_Part_B"
    for image_id, (w, h, objects) in images.items():
        # VOC boxes are 1-based and inclusive: pixels xmin-1 .. xmax-1 (0-based)
        heads = [(o[1] - 1, o[2] - 1, o[3], o[4]) for o in objects if o[0] == "person"]
        picture(part / "JPEGImages" / f"{image_id}.jpg", w, h, heads)
        (part / "Annotations").mkdir(parents=True, exist_ok=True)
        (part / "Annotations" / f"{image_id}.xml").write_text(voc(f"{image_id}.jpg", w, h, objects))
    (part / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for split, ids in splits.items():
        (part / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return part


SCUT_IMAGES = {
    "PartB_00000": (48, 40, [("person", 5, 6, 14, 17, 0), ("person", 30, 4, 41, 15, 1), ("hat", 1, 1, 3, 3, 0)]),
    "PartB_00001": (40, 30, [("person", 1, 1, 10, 12, 0)]),
    "PartB_00002": (40, 30, []),
    "PartB_00003": (40, 30, [("person", 20, 10, 45, 25, 0)]),  # sticks out: clipped at 40
}
SCUT_SPLITS = {
    "train": ["PartB_00000", "PartB_00001", "PartB_00002"],
    "val": ["PartB_00003"],
    "trainval": ["PartB_00000"],
    "test": ["PartB_00003", "PartB_00001"],
}


def test_scut_head_reads_the_voc_layout(tmp_path):
    part = make_scut(tmp_path, SCUT_IMAGES, SCUT_SPLITS)
    for root in (tmp_path, part):  # the part's folder, or the folder holding it
        ds = load_detection_dataset(f"scut-head:{root}")
        assert len(ds.train) == 3 and len(ds.val) == 1 and ds.skipped == 0 and ds.channels == 3
        assert ds.train.sources[0] == str(part / "JPEGImages" / "PartB_00000.jpg")
        assert ds.train.boxes[0].tolist() == [[4, 5, 14, 17], [29, 3, 41, 15]]  # "hat" is not a head
        assert ds.train.ignore[0].tolist() == [False, True]  # difficult
        assert ds.train.boxes[2].shape == (0, 4) and ds.val.boxes[0].tolist() == [[19, 9, 40, 25]]
    s = ds.train[0]
    assert s.image.shape == (40, 48, 3)
    for box in s.boxes:
        inside, ring = bright(s.image, box)
        assert inside > 200 and ring < 100
    other = load_detection_dataset(f"scut-head:{tmp_path}", splits=("trainval", "test"), channels=1, size=(20, 24))
    assert len(other.train) == 1 and other.val.sources[1].endswith("PartB_00001.jpg")
    assert other.train[0].image.shape == (20, 24, 1) and other.train.boxes[0].tolist()[0] == [2, 2.5, 7, 8.5]


def test_scut_head_missing_pieces(tmp_path):
    part = make_scut(tmp_path, SCUT_IMAGES, SCUT_SPLITS)
    (part / "ImageSets/Main/val.txt").unlink()
    with pytest.raises(UserError) as info:
        load_detection_dataset(f"scut-head:{part}")
    one_line_error(info, "expected the val list", str(part / "ImageSets/Main/val.txt"))
    with pytest.raises(UserError) as info:
        load_detection_dataset(f"scut-head:{tmp_path / 'nothing'}")
    one_line_error(info, "scut-head", "not a folder")
    with pytest.raises(UserError) as info:
        load_detection_dataset(f"scut-head:{part / 'JPEGImages'}")
    one_line_error(info, "Annotations", "Pascal-VOC layout")
    with pytest.raises(UserError) as info:
        load_detection_dataset(f"scut-head:{part}", splits=("train", "validation"))
    one_line_error(info, "train, val, trainval, test")


def test_scut_head_bad_samples_are_skipped_with_file_and_line(tmp_path):
    images = dict(SCUT_IMAGES)
    images["PartB_00010"] = (40, 30, [("person", 2, 2, 9, 9, 0), ("person", 60, 40, 70, 50, 0)])  # 2nd wholly outside
    images["PartB_00011"] = (40, 30, [("person", 2, 2, 9, 9, 0)])
    images["PartB_00012"] = (40, 30, [("person", 2, 2, 9, 9, 0)])
    images["PartB_00013"] = (40, 30, [("person", 2, 2, 9, 9, 0)])
    ids = ["PartB_00001", "PartB_00010", "PartB_00011", "PartB_00012", "PartB_00013", "PartB_00099"]
    part = make_scut(tmp_path, images, {"train": ids, "val": ["PartB_00003"]})
    ann = part / "Annotations"
    (ann / "PartB_00011.xml").write_text((ann / "PartB_00011.xml").read_text().replace("</bndbox>", "</bndbx>"))
    (ann / "PartB_00012.xml").write_text((ann / "PartB_00012.xml").read_text().replace("<ymin>2</ymin>", "<ymin>two</ymin>"))
    (part / "JPEGImages/PartB_00013.jpg").write_bytes(b"GIF89a but not really")
    with pytest.warns(DataWarning) as record:
        ds = load_detection_dataset(f"scut-head:{part}")
    assert len(ds.train) == 1 and ds.train.skipped == 5
    bad = dict(ds.train.bad)
    assert "lies outside" in bad[f"{ann / 'PartB_00010.xml'}:22"]  # the line of the second <object>
    assert "malformed XML" in bad[f"{ann / 'PartB_00011.xml'}:20"]
    assert "ymin of object 'person' is not a number" in bad[f"{ann / 'PartB_00012.xml'}:17"]
    assert bad[str(ann / "PartB_00099.xml")] == "missing annotation file"
    assert "not a readable image" in bad[str(part / "JPEGImages/PartB_00013.jpg")]
    message = str(record[0].message)
    assert "skipped 5 bad train sample(s)" in message and "PartB_00010.xml:22" in message
