"""``faces-synth``: real face crops pasted onto photographs and noise, with exact boxes, offline.

What an image is (every random choice below is drawn from a generator seeded by
(seed, split, index), so image i is the same whatever else is generated, and the layout, hence
the boxes, is drawn before any pixel and does not depend on the number of channels):

- faces: the 100 face crops (25x25, grey) of scikit-image's bundled ``lfw_subset``; crops 0-79
  are the training pool and 80-99 the validation pool (different crops; LFW identities may
  repeat across them). A face's height is log-uniform in ``[min_face, max_face]`` pixels
  (default 12 to half the image's shorter side: the paper cares about small faces), its width
  that times a uniform 0.8..1 (real face boxes are a little taller than wide); it is resized
  (Pillow bilinear), flipped left-right half the time, given a random gain (0.7..1.3) and offset
  (-25..25 grey levels) and, in RGB images, a random skin-like tint (red 1, green 0.72..0.92,
  blue 0.55..0.80 times the grey level); then pasted, opaque, at a uniformly random position
  that keeps it wholly inside the image. Its box is exactly the pasted rectangle.
- how many: 0 faces with probability 0.1, 1, 2 or 3 with probability 0.2 each (the paper's
  "at most 3 faces" cases), otherwise uniform in 4..``max_faces`` (default 12).
- occlusion: faces are pasted in order and a face may cover at most ``max_overlap`` (default
  25%) of the area of the smaller of itself and any face pasted before it; a face that finds no
  such place in 20 tries is left out, so an image may have fewer faces than drawn.
- distractors: 0..``max_distractors`` (default 3) of the subset's 100 non-face crops (patches of
  the same LFW photographs' backgrounds; same size rules, 0-79 train, 80-99 val) are pasted
  *before* the faces and get no box, so that a pasted rectangle's edges alone do not mean a face.
  Faces may cover them.
- background: with probability 0.7 a crop of one of the bundled photographs in
  :data:`PHOTOS` (a random window with the image's aspect ratio, 30-100% of the largest that
  fits, flipped half the time, gain 0.6..1.2), otherwise noise: uniform noise on a coarse grid
  (8 to 64 pixels a cell) upscaled bicubically, plus per-pixel grain (0..24 levels).
  ``astronaut`` and ``camera`` are left out on purpose: they show a person's face, which would
  be a face without a box. Only images that ship inside the scikit-image wheel are read (from
  the package folder, never through its downloader).

Grey images are the exact BT.601 luma of the colour ones' backgrounds (as elsewhere in
:mod:`rnnpool_nas.data`), with untinted faces. Any size works (default 240x320, RNNPool-Face-M4's
monochrome QVGA input; 480x640x3 for RNNPool-Face-Quant). Train has :data:`N_TRAIN` images and
val :data:`N_VAL`; ``limit`` keeps the first ``limit`` of each. This is for tests and demos: it
says whether a pipeline learns to find faces at all, not how well it does on real photographs;
real face-detection results need WIDER FACE (``wider-face:PATH``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from rnnpool_nas.errors import UserError

N_TRAIN, N_VAL = 10000, 1000
#: Side of the LFW crops.
CROP_SIDE = 25
#: Crop indices (into the 100 faces, and into the 100 non-faces) of each split.
POOLS = {"train": (0, 80), "val": (80, 100), "holdout": (0, 80)}
#: "holdout" is the search's validation split: the training crops, an independent stream of seeds.
SPLIT_IDS = {"train": 0, "val": 1, "holdout": 2}
#: The bundled scikit-image files used as backgrounds (no human face in any of them).
PHOTOS = (
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "brick.png",
    "grass.png",
    "gravel.png",
    "coins.png",
    "moon.png",
    "page.png",
    "text.png",
    "clock_motion.png",
    "cell.png",
    "ihc.png",
    "retina.jpg",
    "color.png",
    "chessboard_RGB.png",
)
#: Photographs with a shorter side of at least twice this are shrunk by an integer factor once.
PHOTO_SIDE = 512
#: Tries to place one face under the overlap rule before leaving it out.
PLACE_TRIES = 20


@dataclass(frozen=True)
class SynthOptions:
    """How images are made (see the module docstring); the defaults are RNNPool-Face-M4's input."""

    height: int = 240
    width: int = 320
    channels: int = 1
    min_face: int = 12
    max_face: int | None = None  # None: half the shorter side
    max_faces: int = 12
    max_distractors: int = 3
    max_overlap: float = 0.25
    photo_fraction: float = 0.7

    def __post_init__(self) -> None:
        if self.height < 16 or self.width < 16 or self.channels not in (1, 3):
            got = f"{self.height}x{self.width}x{self.channels}"
            raise ValueError(f"faces-synth needs height, width >= 16 and channels 1 or 3, got {got}")
        if not 4 <= self.min_face <= self.face_max <= min(self.height, self.width):
            raise ValueError(
                f"faces-synth needs 4 <= min_face <= max_face <= the shorter side, got {self.min_face}, {self.face_max}, "
                f"{min(self.height, self.width)}"
            )
        if self.max_faces < 0 or self.max_distractors < 0 or not 0 <= self.max_overlap <= 1:
            raise ValueError("faces-synth needs max_faces, max_distractors >= 0 and 0 <= max_overlap <= 1")

    @property
    def face_max(self) -> int:
        return min(self.height, self.width) // 2 if self.max_face is None else self.max_face


@dataclass(frozen=True)
class Paste:
    """One crop pasted into an image: a face (with a box) or a distractor (without)."""

    face: bool
    crop: int
    x: int
    y: int
    w: int
    h: int
    flip: bool
    gain: float
    offset: float
    tint: tuple[float, float, float]


@dataclass(frozen=True)
class Background:
    """A photograph window (``photo`` >= 0) or noise (``photo`` == -1).

    The window has the image's aspect ratio and ``scale`` times the size of the largest such
    window in the photograph; ``fx``, ``fy`` place it as fractions of the room left around it.
    """

    photo: int
    scale: float
    fx: float
    fy: float
    flip: bool
    gain: float
    cell: int
    grain: int


@dataclass(frozen=True)
class Layout:
    """Everything about one image except its pixel noise, which comes from ``pixel_seed``."""

    background: Background
    pastes: tuple[Paste, ...]
    pixel_seed: int
    faces: tuple[Paste, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "faces", tuple(p for p in self.pastes if p.face))

    @property
    def boxes(self) -> np.ndarray:
        """float32 (K, 4) x1, y1, x2, y2 of the faces, in paste order."""
        b = np.array([(p.x, p.y, p.x + p.w, p.y + p.h) for p in self.faces], dtype=np.float32)
        return b.reshape(-1, 4)


def _data_dir() -> Path:
    try:
        import skimage.data
    except ImportError:
        raise UserError("faces-synth: needs scikit-image (pip install scikit-image), whose bundled images it uses") from None
    return Path(skimage.data.__file__).parent


@functools.lru_cache(maxsize=1)
def crops() -> tuple[np.ndarray, np.ndarray]:
    """(faces, non-faces): uint8 (100, 25, 25) each, from scikit-image's bundled ``lfw_subset``."""
    path = _data_dir() / "lfw_subset.npy"
    try:
        x = np.load(path)
    except OSError as e:
        raise UserError(f"faces-synth: cannot read scikit-image's bundled {path} ({e})") from None
    if x.shape != (200, CROP_SIDE, CROP_SIDE):
        raise UserError(f"faces-synth: expected 200 crops of 25x25 in {path}, found shape {x.shape}")
    if x.dtype != np.uint8:
        x = np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)
    x.setflags(write=False)
    return x[:100], x[100:]


@functools.lru_cache(maxsize=2)
def photos(channels: int) -> tuple[Image.Image, ...]:
    """The background photographs that ship inside scikit-image's wheel, as RGB or exact-luma L images."""
    from rnnpool_nas.data.images import adapt_images

    found = []
    for name in PHOTOS:
        path = _data_dir() / name
        if not path.is_file():  # a file the installed version fetches over the network instead
            continue
        with Image.open(path) as im:
            im = im.convert("RGB")
        factor = min(im.size) // PHOTO_SIDE
        if factor > 1:  # big photographs are shrunk once (box filter), so each window resizes fast
            im = im.reduce(factor)
        rgb = np.asarray(im)
        if channels == 1:
            grey = adapt_images(rgb[None], rgb.shape[0], rgb.shape[1], 1)[0, :, :, 0]
            found.append(Image.fromarray(grey))
        else:
            found.append(Image.fromarray(rgb))
    if not found:
        raise UserError(f"faces-synth: none of scikit-image's bundled photographs ({', '.join(PHOTOS)}) is in {_data_dir()}")
    return tuple(found)


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLIT_IDS[split], index])


def _overlap_ok(x: int, y: int, w: int, h: int, placed: list[Paste], max_overlap: float) -> bool:
    for p in placed:
        iw = min(x + w, p.x + p.w) - max(x, p.x)
        ih = min(y + h, p.y + p.h) - max(y, p.y)
        if iw > 0 and ih > 0 and iw * ih > max_overlap * min(w * h, p.w * p.h):
            return False
    return True


def _paste(rng: np.random.Generator, opts: SynthOptions, face: bool, split: str, placed: list[Paste]) -> Paste | None:
    lo, hi = POOLS[split]
    crop, flip, gain, offset, green, blue = rng.random(6).tolist()  # one draw per paste: fast
    crop = lo + min(int(crop * (hi - lo)), hi - lo - 1)
    tint = (1.0, 0.72 + 0.20 * green, 0.55 + 0.25 * blue)
    log_lo, log_span = math.log(opts.min_face), math.log(opts.face_max / opts.min_face)
    for _ in range(PLACE_TRIES if face else 1):
        size, aspect, fx, fy = rng.random(4).tolist()
        h = min(int(round(math.exp(log_lo + log_span * size))), opts.height)
        w = min(max(1, int(round(h * (0.8 + 0.2 * aspect)))), opts.width)
        x = min(int(fx * (opts.width - w + 1)), opts.width - w)
        y = min(int(fy * (opts.height - h + 1)), opts.height - h)
        if not face or _overlap_ok(x, y, w, h, placed, opts.max_overlap):
            return Paste(face, crop, x, y, w, h, flip < 0.5, 0.7 + 0.6 * gain, -25 + 50 * offset, tint)
    return None


def make_layout(seed: int, split: str, index: int, opts: SynthOptions) -> Layout:
    """The layout (background, pasted crops, boxes) of image ``index`` of ``split``."""
    rng = _rng(seed, split, index)
    kind, pick, scale, fx, fy, flip, gain, u, count, distract = rng.random(10).tolist()
    if kind < opts.photo_fraction:
        photo = min(int(pick * len(PHOTOS)), len(PHOTOS) - 1)
        background = Background(photo, 0.3 + 0.7 * scale, fx, fy, flip < 0.5, 0.6 + 0.6 * gain, 0, 0)
    else:
        cell = (8, 16, 32, 64)[min(int(pick * 4), 3)]
        background = Background(-1, 0.0, 0.0, 0.0, False, 1.0, cell, min(int(scale * 25), 24))
    if u < 0.1:
        n_faces = 0
    elif u < 0.7:
        n_faces = 1 + min(int(count * 3), 2)
    else:
        top = max(4, opts.max_faces)
        n_faces = 4 + min(int(count * (top - 3)), top - 4)
    n_faces = min(n_faces, opts.max_faces)
    n_distractors = min(int(distract * (opts.max_distractors + 1)), opts.max_distractors)
    pastes: list[Paste] = []
    for _ in range(n_distractors):
        p = _paste(rng, opts, False, split, [])
        assert p is not None
        pastes.append(p)
    faces: list[Paste] = []
    for _ in range(n_faces):
        p = _paste(rng, opts, True, split, faces)
        if p is not None:
            faces.append(p)
    return Layout(background, tuple(pastes + faces), int(rng.integers(0, 2**63)))


def _photo_window(im: Image.Image, background: Background, height: int, width: int) -> tuple[float, float, float, float]:
    """The window (a Pillow box) of photograph ``im`` that a photo background shows."""
    pw, ph = im.size
    cw = min(pw, ph * width / height) * background.scale
    ch = cw * height / width
    x0, y0 = background.fx * (pw - cw), background.fy * (ph - ch)
    return (x0, y0, x0 + cw, y0 + ch)


#: Room around the image in the grain texture, for a random window.
GRAIN_ROOM = 64


@functools.lru_cache(maxsize=4)
def _grain_texture(height: int, width: int, channels: int) -> np.ndarray:
    """int16 noise uniform in -24..24, a little larger than the image (windows of it are the grain)."""
    rng = np.random.default_rng(20250101)
    t = rng.integers(-24, 25, size=(height + GRAIN_ROOM, width + GRAIN_ROOM, channels), dtype=np.int16)
    t.setflags(write=False)
    return t


def _background(layout: Layout, opts: SynthOptions) -> np.ndarray:
    """The background of ``layout`` as a new uint8 (height, width, channels) array."""
    b, h, w, c = layout.background, opts.height, opts.width, opts.channels
    if b.photo >= 0:
        ims = photos(c)
        im = ims[b.photo % len(ims)]
        out = im.resize((w, h), Image.Resampling.BILINEAR, box=_photo_window(im, b, h, w))
        if b.flip:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        lut = np.clip(np.rint(np.arange(256) * b.gain), 0, 255).astype(np.uint8).tolist()
        return np.array(out.point(lut * c)).reshape(h, w, c)
    rng = np.random.default_rng(layout.pixel_seed)
    gh, gw = h // b.cell + 2, w // b.cell + 2
    coarse = rng.integers(0, 256, size=(gh, gw, c), dtype=np.uint8)
    smooth = Image.fromarray(coarse[:, :, 0] if c == 1 else coarse)
    out = np.asarray(smooth.resize((w, h), Image.Resampling.BICUBIC)).reshape(h, w, c)
    if not b.grain:
        return out.copy()
    dy, dx = (int(v) for v in rng.integers(0, GRAIN_ROOM, size=2))
    noise = _grain_texture(h, w, c)[dy : dy + h, dx : dx + w] * b.grain // 24  # -grain..grain
    total = out.astype(np.int16)
    total += noise
    return np.clip(total, 0, 255, out=total).astype(np.uint8)


def _patch(p: Paste, channels: int) -> np.ndarray:
    """The pixels (uint8 (h, w, channels)) a paste puts into the image."""
    faces, non_faces = crops()
    crop = (faces if p.face else non_faces)[p.crop]
    im = Image.fromarray(crop).resize((p.w, p.h), Image.Resampling.BILINEAR)
    if p.flip:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    grey = np.asarray(im, dtype=np.float32) * p.gain + p.offset
    pixels = grey[:, :, None] if channels == 1 else grey[:, :, None] * np.asarray(p.tint, dtype=np.float32)
    return np.rint(np.clip(pixels, 0, 255)).astype(np.uint8)


def render(layout: Layout, opts: SynthOptions, pastes: bool = True) -> np.ndarray:
    """The uint8 (height, width, channels) image of ``layout`` (``pastes=False``: its background only)."""
    canvas = _background(layout, opts)
    for p in layout.pastes if pastes else ():
        canvas[p.y : p.y + p.h, p.x : p.x + p.w] = _patch(p, opts.channels)
    return canvas


def generate(
    n: int, *, seed: int = 0, split: str = "train", start: int = 0, options: SynthOptions | None = None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Images ``start .. start + n - 1`` of ``split`` in memory: uint8 (n, H, W, C) and their boxes."""
    opts = SynthOptions() if options is None else options
    images = np.empty((n, opts.height, opts.width, opts.channels), dtype=np.uint8)
    boxes = []
    for k in range(n):
        layout = make_layout(seed, split, start + k, opts)
        images[k] = render(layout, opts)
        boxes.append(layout.boxes)
    return images, boxes


class _Painter:
    """``painter(i)`` renders ``layouts[i]``; picklable, for DataLoader workers."""

    def __init__(self, layouts: list[Layout], opts: SynthOptions) -> None:
        self.layouts, self.opts = layouts, opts

    def __call__(self, i: int) -> np.ndarray:
        return render(self.layouts[i], self.opts)


def synth_split(n: int, seed: int, split: str, opts: SynthOptions):
    """A lazy :class:`~rnnpool_nas.data.detection.DetectionSplit` of the first ``n`` images of ``split``."""
    from rnnpool_nas.data.types import DetectionSplit

    layouts = [make_layout(seed, split, i, opts) for i in range(n)]
    boxes = [layout.boxes for layout in layouts]
    ignore = [np.zeros(len(b), dtype=bool) for b in boxes]
    sources = [f"faces-synth:{split}[{i}]" for i in range(n)]
    sizes = [(opts.height, opts.width)] * n
    paint = _Painter(layouts, opts)
    return DetectionSplit.from_reader(f"faces-synth:{split}", sources, boxes, ignore, sizes, paint, size=None, channels=opts.channels)


def load(*, seed: int, size: tuple[int, int] | None, channels: int, limit: int | None, splits: tuple[str, str],
         holdout: float | None = None):
    """The ``faces-synth`` :class:`~rnnpool_nas.data.detection.DetectionDataset` (see the module docstring)."""
    from rnnpool_nas.data.types import DetectionDataset

    height, width = (240, 320) if size is None else size
    try:
        opts = SynthOptions(height=height, width=width, channels=channels)
    except ValueError as e:
        raise UserError(str(e)) from None
    crops()
    photos(channels)  # fail at load, not on first access, when scikit-image is missing
    counts = {"train": N_TRAIN, "val": N_VAL, "holdout": min(N_VAL, max(1, round(N_VAL * (holdout or 0.1) / 0.1)))}
    if holdout is not None:  # the search's validation: its own stream, never the val (test) images
        splits = (splits[0], "holdout")
    train_split, val_split = splits
    n_train, n_val = (counts[s] if limit is None else min(limit, counts[s]) for s in splits)
    return DetectionDataset(
        "faces-synth", synth_split(n_train, seed, train_split, opts), synth_split(n_val, seed, val_split, opts), channels
    )
