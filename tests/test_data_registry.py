"""The registry's names, arguments and errors, the Dataset contract, and ``adapt_images``."""

from __future__ import annotations

import time

import numpy as np
import pytest

from rnnpool_nas.data import Dataset, adapt_images, list_datasets, load_dataset
from rnnpool_nas.errors import UserError

from .conftest import one_line_error


def test_list_datasets():
    names = list_datasets()
    assert list(names) == ["fashion-mnist", "idx:PATH", "cifar10:PATH", "imagefolder:PATH", "lines", "shapes"]
    assert all(isinstance(d, str) and d and "\n" not in d for d in names.values())


@pytest.mark.parametrize(
    "name,suggestion",
    [("fashion_mnist", "fashion-mnist"), ("fashionmnist", "fashion-mnist"), ("cifar-10:/x", "cifar10"),
     ("line", "lines"), ("shape", "shapes"), ("image-folder:/x", "imagefolder")],
)
def test_unknown_name_suggests(name, suggestion):
    with pytest.raises(UserError) as info:
        load_dataset(name)
    one_line_error(info, repr(name), f"did you mean {suggestion}")


def test_unknown_name_without_close_match_lists_known():
    with pytest.raises(UserError) as info:
        load_dataset("zzz")
    message = one_line_error(info, "'zzz'", "known:")
    assert "did you mean" not in message and "imagefolder:PATH" in message


@pytest.mark.parametrize(
    "name,kwargs,needles",
    [
        ("idx", {}, ("idx: needs a folder", "idx:PATH")),
        ("cifar10", {}, ("cifar10: needs a folder",)),
        ("imagefolder", {}, ("imagefolder: needs a folder",)),
        ("lines:/tmp", {}, ("takes no path",)),
        ("idx:/a", {"data_dir": "/b"}, ("two folders", "/a", "/b")),
        ("lines", {"size": 0}, ("size must be a positive integer",)),
        ("lines", {"limit": 0}, ("limit must be a positive integer",)),
        ("lines", {"seed": -1}, ("seed must be a non-negative integer",)),
        ("lines", {"val_fraction": 1.0}, ("val_fraction",)),
        ("lines", {"size": 4}, ("lines:", "size")),
        ("shapes", {"size": 16}, ("shapes:", "size")),
    ],
)
def test_bad_arguments(name, kwargs, needles):
    with pytest.raises(UserError) as info:
        load_dataset(name, **kwargs)
    one_line_error(info, *needles)


def test_name_is_case_insensitive_and_path_may_repeat(tmp_path):
    assert load_dataset("LINES", limit=2).name == "lines"
    with pytest.raises(UserError) as info:  # same folder twice is fine; it is simply empty here
        load_dataset(f"idx:{tmp_path}", data_dir=str(tmp_path))
    one_line_error(info, "expected train-images-idx3-ubyte(.gz)", str(tmp_path))


def test_hflip_only_where_a_flip_keeps_the_label(tmp_path):
    assert not load_dataset("lines", limit=1).hflip  # 20 degrees would become 160
    assert load_dataset("shapes", limit=1).hflip


def test_dataset_contract():
    x = np.zeros((4, 6, 5, 3), np.uint8)
    ds = Dataset("t", x, np.zeros(4, np.int64), x[:2], np.zeros(2, np.int64), ["a", "b"])
    assert ds.input_shape == (6, 5, 3) and ds.num_classes == 2 and ds.skipped == 0 and ds.hflip
    with pytest.raises(ValueError, match="uint8"):
        Dataset("t", x.astype(np.float32), np.zeros(4), x, np.zeros(4), ["a"])
    with pytest.raises(ValueError, match="labels"):
        Dataset("t", x, np.zeros(3), x, np.zeros(4), ["a"])
    with pytest.raises(ValueError, match="multi_label"):
        Dataset("t", x, np.zeros(4), x, np.zeros(4), ["a", "b"], multi_label=True)


# ---- adapt_images -------------------------------------------------------------------------


def test_adapt_shapes_and_identity():
    grey = np.random.default_rng(0).integers(0, 256, (5, 28, 28, 1), dtype=np.uint8)
    assert adapt_images(grey, 28, 28, 1) is grey
    for h, w, c in [(32, 32, 1), (32, 32, 3), (14, 20, 3), (28, 28, 3), (7, 9, 1)]:
        out = adapt_images(grey, h, w, c)
        assert out.shape == (5, h, w, c) and out.dtype == np.uint8
    rgb = np.random.default_rng(1).integers(0, 256, (3, 10, 12, 3), dtype=np.uint8)
    assert adapt_images(rgb, 8, 8, 1).shape == (3, 8, 8, 1)
    assert adapt_images(rgb, 10, 12, 3) is rgb
    assert adapt_images(grey[:0], 16, 16, 3).shape == (0, 16, 16, 3)


def test_grey_to_rgb_repeats_and_rgb_to_grey_is_bt601():
    grey = np.array([[[[0], [37]], [[128], [255]]]], np.uint8)  # (1, 2, 2, 1)
    rgb = adapt_images(grey, 2, 2, 3)
    np.testing.assert_array_equal(rgb, np.repeat(grey, 3, axis=3))
    pixels = np.array([[[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 200, 30]]]], np.uint8)
    luma = adapt_images(pixels, 2, 2, 1)[0, :, :, 0]
    # 0.299 R + 0.587 G + 0.114 B, rounded: 76.245 -> 76, 149.685 -> 150, 29.07 -> 29, 123.81 -> 124
    np.testing.assert_array_equal(luma, [[76, 150], [29, 124]])
    # grey pixels (R = G = B = v) stay exactly v
    for v in (0, 1, 127, 128, 254, 255):
        assert adapt_images(np.full((1, 1, 1, 3), v, np.uint8), 1, 1, 1)[0, 0, 0, 0] == v


@pytest.mark.parametrize("c", [1, 3])
def test_resize_constant_stays_constant_and_follows_pillow(c):
    x = np.full((2, 28, 28, c), 93, np.uint8)
    for h, w in [(32, 32), (14, 14), (50, 17)]:
        assert (adapt_images(x, h, w, c) == 93).all()
    ramp = np.tile(np.arange(0, 240, 10, dtype=np.uint8), (24, 1))[None, :, :, None].repeat(c, axis=3)
    up = adapt_images(ramp, 24, 48, c)
    assert (np.diff(up[0, 5, :, 0].astype(int)) >= 0).all()  # a ramp stays a monotone ramp
    assert up[0, 5, 0, 0] == 0 and abs(int(up[0, 5, -1, 0]) - 230) <= 1


def test_adapt_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        adapt_images(np.zeros((2, 4, 4, 1), np.float32), 4, 4, 1)
    with pytest.raises(ValueError, match="uint8"):
        adapt_images(np.zeros((2, 4, 4), np.uint8), 4, 4, 1)
    with pytest.raises(ValueError, match="channels"):
        adapt_images(np.zeros((2, 4, 4, 1), np.uint8), 4, 4, 2)


def test_adapt_is_fast_enough():
    x = np.random.default_rng(0).integers(0, 256, (6000, 28, 28, 1), dtype=np.uint8)
    start = time.perf_counter()
    adapt_images(x, 32, 32, 3)
    # 60000 images take about 2.5 s on this machine; a tenth must stay well under 2 s
    assert time.perf_counter() - start < 2.0
