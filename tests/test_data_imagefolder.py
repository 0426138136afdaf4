"""``imagefolder:PATH`` on PNG folders written here, with and without train/ and val/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rnnpool_nas.data import DataWarning, load_dataset
from rnnpool_nas.errors import UserError

from .conftest import one_line_error


def png(path: Path, value: int, size: tuple[int, int] = (12, 10), mode: str = "RGB") -> None:
    """A constant PNG (``size`` is width x height) whose red (or grey) level is ``value``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 7, 200)
    Image.new(mode, size, color).save(path, format="PNG")


def make_folder(root: Path, counts: dict[str, int], start: int = 0, **kwargs) -> None:
    """``root/<class>/img_<j>.png`` with a distinct red level per image (so images are traceable)."""
    level = start
    for cls, n in counts.items():
        for j in range(n):
            png(root / cls / f"img_{j:02d}.png", level, **kwargs)
            level += 1


def levels(x: np.ndarray) -> list[int]:
    return [int(v) for v in x[:, 0, 0, 0]]


def test_flat_folder_split_is_stratified_and_deterministic(tmp_path):
    make_folder(tmp_path, {"cat": 10, "dog": 20, ".hidden": 3})
    (tmp_path / "dog" / ".DS_Store").write_bytes(b"junk")  # hidden files are ignored, not "skipped"
    ds = load_dataset(f"imagefolder:{tmp_path}", val_fraction=0.2, seed=3)
    assert ds.classes == ["cat", "dog"] and ds.num_classes == 2 and ds.skipped == 0
    assert ds.x_train.shape == (24, 10, 12, 3) and ds.input_shape == (10, 12, 3)
    assert ds.x_val.shape == (6, 10, 12, 3)
    assert np.bincount(ds.y_val).tolist() == [2, 4]  # 20% of each class
    assert (ds.x_train[:, :, :, 1] == 7).all() and (ds.x_train[:, :, :, 2] == 200).all()
    # each image keeps its own label (levels 0..9 are cats) and no image is in both splits
    for x, y in ((ds.x_train, ds.y_train), (ds.x_val, ds.y_val)):
        assert [int(v >= 10) for v in levels(x)] == y.tolist()
    assert sorted(levels(ds.x_train) + levels(ds.x_val)) == list(range(30))
    again = load_dataset(f"imagefolder:{tmp_path}", val_fraction=0.2, seed=3)
    assert levels(again.x_val) == levels(ds.x_val)
    other = load_dataset(f"imagefolder:{tmp_path}", val_fraction=0.2, seed=4)
    assert levels(other.x_val) != levels(ds.x_val)


def test_train_val_layout_and_grey_to_rgb(tmp_path):
    make_folder(tmp_path / "train", {"a": 3, "b": 2, "c": 1}, mode="L")
    make_folder(tmp_path / "val", {"a": 1, "c": 2}, start=100, mode="L")  # val may lack a class
    ds = load_dataset(f"imagefolder:{tmp_path}")
    assert ds.classes == ["a", "b", "c"]
    assert ds.y_train.tolist() == [0, 0, 0, 1, 1, 2] and ds.y_val.tolist() == [0, 2, 2]
    assert ds.x_val.shape == (3, 10, 12, 3)
    # grey images come back as RGB with three equal channels
    assert (ds.x_val[..., 0] == ds.x_val[..., 1]).all() and (ds.x_val[..., 1] == ds.x_val[..., 2]).all()
    assert levels(ds.x_val) == [100, 101, 102]


def test_corrupt_file_is_skipped_with_a_count(tmp_path):
    make_folder(tmp_path / "train", {"a": 3, "b": 3})
    make_folder(tmp_path / "val", {"a": 2, "b": 2})
    (tmp_path / "train" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    good = (tmp_path / "train" / "b" / "img_00.png").read_bytes()
    (tmp_path / "val" / "b" / "cut.png").write_bytes(good[: len(good) // 2])  # truncated PNG
    (tmp_path / "val" / "a" / "notes.txt").write_text("not an image")
    with pytest.warns(DataWarning, match=r"skipped 3 file\(s\)") as record:
        ds = load_dataset(f"imagefolder:{tmp_path}")
    assert ds.skipped == 3 and len(ds.x_train) == 6 and len(ds.x_val) == 4
    assert str(tmp_path) in str(record[0].message)


def test_mixed_sizes_need_a_size(tmp_path):
    make_folder(tmp_path, {"a": 4, "b": 4})
    png(tmp_path / "b" / "odd.png", 50, size=(20, 16))
    with pytest.raises(UserError) as info:
        load_dataset(f"imagefolder:{tmp_path}", val_fraction=0.25)
    message = one_line_error(info, "pass a size", "odd.png", "20x16", "12x10")
    assert str(tmp_path) in message
    ds = load_dataset(f"imagefolder:{tmp_path}", val_fraction=0.25, size=8)
    assert ds.input_shape == (8, 8, 3) and len(ds.x_train) + len(ds.x_val) == 9
    # resizing a constant image keeps it constant
    assert (ds.x_train[..., 2] == 200).all() and (ds.x_train[..., 1] == 7).all()


def test_limit_decodes_a_seeded_subset(tmp_path):
    make_folder(tmp_path / "train", {"a": 10, "b": 10})
    make_folder(tmp_path / "val", {"a": 5, "b": 5}, start=100)
    ds = load_dataset(f"imagefolder:{tmp_path}", limit=4, seed=1)
    assert len(ds.x_train) == 4 and len(ds.x_val) == 4
    assert levels(ds.x_train) == sorted(levels(ds.x_train))
    assert levels(load_dataset(f"imagefolder:{tmp_path}", limit=4, seed=1).x_train) == levels(ds.x_train)


def test_errors_name_the_folder(tmp_path):
    with pytest.raises(UserError) as info:
        load_dataset(f"imagefolder:{tmp_path / 'absent'}")
    one_line_error(info, str(tmp_path / "absent"), "one subfolder per class")
    with pytest.raises(UserError) as info:
        load_dataset(f"imagefolder:{tmp_path}")
    one_line_error(info, str(tmp_path), "one subfolder per class")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(UserError) as info:
        load_dataset(f"imagefolder:{tmp_path}")
    one_line_error(info, str(tmp_path), "found none")


def test_train_without_val_and_unknown_val_class(tmp_path):
    make_folder(tmp_path / "train", {"a": 2})
    with pytest.raises(UserError) as info:
        load_dataset(f"imagefolder:{tmp_path}")
    one_line_error(info, str(tmp_path), "train/ but no val/")
    make_folder(tmp_path / "val", {"a": 1, "zebra": 1})
    with pytest.raises(UserError) as info:
        load_dataset(f"imagefolder:{tmp_path}")
    one_line_error(info, str(tmp_path / "val"), "zebra")


def test_too_small_to_split_and_nothing_decodable(tmp_path):
    make_folder(tmp_path, {"a": 1, "b": 1})
    with pytest.raises(UserError) as info:
        load_dataset(f"imagefolder:{tmp_path}")
    one_line_error(info, str(tmp_path), "too few images")
    bad = tmp_path / "bad"
    for cls in ("a", "b"):
        (bad / cls).mkdir(parents=True)
        for j in range(3):
            (bad / cls / f"{j}.png").write_bytes(b"garbage")
    with pytest.raises(UserError) as info:
        load_dataset(f"imagefolder:{bad}", val_fraction=0.4)
    one_line_error(info, str(bad), "no decodable training image", "4 file(s) skipped")


def test_a_test_folder_is_never_seen_by_the_search(tmp_path):
    """train/ + val/ + test/: the search (holdout) trains on train/ and scores val/; test/ (levels
    200+) only reaches the non-holdout load that finalize scores once, which trains on train/ + val/."""
    make_folder(tmp_path / "train", {"a": 6, "b": 6}, mode="L")  # levels 0..11
    make_folder(tmp_path / "val", {"a": 2, "b": 2}, start=100, mode="L")
    make_folder(tmp_path / "test", {"a": 3, "b": 3}, start=200, mode="L")
    search = load_dataset(f"imagefolder:{tmp_path}", holdout=0.1)
    assert search.val_source == "holdout"
    assert sorted(levels(search.x_train)) == list(range(12)) and sorted(levels(search.x_val)) == list(range(100, 104))
    final = load_dataset(f"imagefolder:{tmp_path}")
    assert final.val_source == "test" and sorted(levels(final.x_val)) == list(range(200, 206))
    assert sorted(levels(final.x_train)) == list(range(12)) + list(range(100, 104))
    assert final.y_val.tolist() == [0, 0, 0, 1, 1, 1]


def test_train_and_test_folders_split_validation_off_train(tmp_path):
    make_folder(tmp_path / "train", {"a": 10, "b": 10}, mode="L")
    make_folder(tmp_path / "test", {"a": 2, "b": 2}, start=200, mode="L")
    search = load_dataset(f"imagefolder:{tmp_path}", holdout=0.2, seed=1)
    assert len(search.x_val) == 4 and np.bincount(search.y_val).tolist() == [2, 2]
    seen = levels(search.x_train) + levels(search.x_val)
    assert sorted(seen) == list(range(20))  # every training image once, no test image
    final = load_dataset(f"imagefolder:{tmp_path}")
    assert sorted(levels(final.x_val)) == list(range(200, 204)) and len(final.x_train) == 20


def test_a_test_folder_without_train_is_one_line(tmp_path):
    make_folder(tmp_path / "test", {"a": 2}, mode="L")
    with pytest.raises(UserError, match="test/ but no train/"):
        load_dataset(f"imagefolder:{tmp_path}")
