"""S3FD's training augmentation for face detection, with exact box transforms (numpy + Pillow).

S3FD (Zhang et al., ICCV 2017, section 3.4; the RNNPool face models are trained with its
PyTorch port) augments each training image with:

- colour distortion: brightness, contrast, saturation and hue, each applied with probability
  0.5 (S3FD.pytorch's deltas: brightness x(1 +- 0.125), contrast and saturation x(1 +- 0.5),
  hue +-18 in Pillow's 256-step HSV hue), in one of its two orders chosen at random; grey images
  get brightness and contrast only. Here it runs after the resize (it is pointwise but for
  contrast, which uses the mean grey level), so it costs the network input's pixels, not the
  photograph's;
- a random crop that zooms in on small faces: one of five windows, the largest that fits and
  four of 0.3..1 times that size, each at a random position and each required to hold at least
  one (non-ignored) face wholly (up to 50 tries; a window that finds none is not a candidate;
  without candidates the whole image is used; an image without faces takes any window). S3FD's
  windows are squares of the shorter side; here they have the aspect ratio of the output size,
  which is the same thing for a square output and keeps 320x240 or 640x480 inputs undistorted.
  Window corners and sizes are whole pixels. A face is kept when its centre lies in the window
  (``x0 <= cx < x0 + w``), and clipped to it; the others are dropped (S3FD's rule);
- resize of the window to the output size (Pillow bilinear), boxes scaled by the same factors;
- horizontal flip with probability 0.5: ``x1, x2 -> W - x2, W - x1``.

No expansion (zoom-out) and no PyramidBox data-anchor-sampling (EdgeML turns on the latter for
half its images; not used here). Boxes whose size after the transform is below ``min_face``
pixels (square root of the area) are flagged ``ignore`` rather than dropped, so their pixels
are not trained as background. Coordinates are continuous (see
:mod:`rnnpool_nas.data.detection`), so every geometric step maps boxes exactly; the image only
differs by the resampling filter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance

from rnnpool_nas.data.types import DetectionSample

#: (x0, y0, width, height) of a crop window, whole pixels.
Window = tuple[int, int, int, int]


def _to_pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)


def _from_pil(im: Image.Image, channels: int) -> np.ndarray:
    a = np.asarray(im, dtype=np.uint8)
    return a.reshape(a.shape[0], a.shape[1], channels)


def crop_window_size(height: int, width: int, out_size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(w, h) of a window of ``scale`` times the largest with the aspect ratio of ``out_size`` that fits."""
    aspect = out_size[1] / out_size[0]
    w_max = min(float(width), height * aspect)
    w = int(min(width, max(1, round(w_max * scale))))
    h = int(min(height, max(1, round(w / aspect))))
    return w, h


def choose_crop(
    height: int,
    width: int,
    boxes: np.ndarray,
    rng: np.random.Generator,
    out_size: tuple[int, int],
    *,
    scales: tuple[float, float] = (0.3, 1.0),
    random_windows: int = 4,
    tries: int = 50,
) -> Window:
    """S3FD's crop window of a ``height x width`` image with faces ``boxes`` (see the module docstring)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    candidates: list[Window] = []
    for scale in [1.0, *rng.uniform(scales[0], scales[1], size=random_windows).tolist()]:
        w, h = crop_window_size(height, width, out_size, scale)
        for _ in range(tries):
            x0 = int(rng.integers(0, width - w + 1))
            y0 = int(rng.integers(0, height - h + 1))
            inside = (boxes[:, 0] >= x0) & (boxes[:, 1] >= y0) & (boxes[:, 2] <= x0 + w) & (boxes[:, 3] <= y0 + h)
            if len(boxes) == 0 or inside.any():
                candidates.append((x0, y0, w, h))
                break
    if not candidates:
        return (0, 0, width, height)
    return candidates[int(rng.integers(0, len(candidates)))]


def crop_boxes(boxes: np.ndarray, ignore: np.ndarray, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """The boxes whose centre lies in ``window``, in its coordinates and clipped to it, with their flags."""
    x0, y0, w, h = window
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    keep = (cx >= x0) & (cx < x0 + w) & (cy >= y0) & (cy < y0 + h)
    b = b[keep] - np.array([x0, y0, x0, y0], dtype=np.float64)
    np.clip(b[:, 0::2], 0, w, out=b[:, 0::2])
    np.clip(b[:, 1::2], 0, h, out=b[:, 1::2])
    return b, np.asarray(ignore, dtype=bool)[keep]


def resize_sample(image: np.ndarray, boxes: np.ndarray, out_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``image`` resized to ``out_size`` (height, width; Pillow bilinear, aspect not kept) and its boxes scaled."""
    h, w, c = image.shape
    out_h, out_w = out_size
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * np.array([out_w / w, out_h / h, out_w / w, out_h / h])
    if (h, w) == (out_h, out_w):
        return image, b.astype(np.float32)
    resized = _to_pil(np.ascontiguousarray(image)).resize((out_w, out_h), Image.Resampling.BILINEAR)
    return _from_pil(resized, c), b.astype(np.float32)


def hflip(image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` mirrored left-right and its boxes with it."""
    w = image.shape[1]
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    flipped = np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], axis=1).astype(np.float32)
    return np.ascontiguousarray(image[:, ::-1]), flipped


def apply_geometry(
    image: np.ndarray, boxes: np.ndarray, ignore: np.ndarray, window: Window, flip: bool, out_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop ``window``, resize to ``out_size``, optionally flip: (image, boxes, ignore)."""
    x0, y0, w, h = window
    b, g = crop_boxes(boxes, ignore, window)
    out, b = resize_sample(image[y0 : y0 + h, x0 : x0 + w], b, out_size)
    if flip:
        out, b = hflip(out, b)
    return out, b.astype(np.float32), g


@dataclass(frozen=True)
class ColourDistortion:
    """S3FD.pytorch's photometric distortion: (probability, delta) of each step."""

    brightness: tuple[float, float] = (0.5, 0.125)
    contrast: tuple[float, float] = (0.5, 0.5)
    saturation: tuple[float, float] = (0.5, 0.5)
    hue: tuple[float, float] = (0.5, 18.0)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A distorted copy of ``image`` (uint8 (H, W, 1 or 3)); grey images skip saturation and hue."""
        c = image.shape[2]
        im = _to_pil(image)
        first = rng.random() > 0.5
        steps = ("brightness", "contrast", "saturation", "hue") if first else ("brightness", "saturation", "hue", "contrast")
        for step in steps:
            prob, delta = getattr(self, step)
            draw, amount = rng.random(), rng.uniform(-delta, delta)  # drawn for every step: the stream does not depend on C
            if draw >= prob or (c == 1 and step in ("saturation", "hue")):
                continue
            if step == "brightness":
                im = ImageEnhance.Brightness(im).enhance(1 + amount)
            elif step == "contrast":
                im = ImageEnhance.Contrast(im).enhance(1 + amount)
            elif step == "saturation":
                im = ImageEnhance.Color(im).enhance(1 + amount)
            else:
                hue, sat, val = im.convert("HSV").split()
                shift = int(round(amount)) % 256
                hue = hue.point([(v + shift) % 256 for v in range(256)])
                im = Image.merge("HSV", (hue, sat, val)).convert("RGB")
        return _from_pil(im, c)


@dataclass(frozen=True)
class S3FDAugment:
    """S3FD's augmentation to a network input of ``out_size`` (height, width); call it on one image.

    ``aug(image, boxes, ignore, rng)`` returns (image uint8 (out_h, out_w, C), boxes float32
    (K', 4), ignore bool (K',)); :meth:`sample` does the same for a DetectionSample.
    """

    out_size: tuple[int, int]
    scales: tuple[float, float] = (0.3, 1.0)
    random_windows: int = 4
    tries: int = 50
    flip_prob: float = 0.5
    colour: ColourDistortion | None = ColourDistortion()
    min_face: float = 1.0

    def geometry(
        self, image: np.ndarray, boxes: np.ndarray, ignore: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Window, bool]:
        """The geometric part: (image, boxes, ignore, the window, whether flipped)."""
        h, w = image.shape[:2]
        ignore = np.zeros(len(boxes), bool) if ignore is None else np.asarray(ignore, dtype=bool)
        faces = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        options = {"scales": self.scales, "random_windows": self.random_windows, "tries": self.tries}
        window = choose_crop(h, w, faces[~ignore], rng, self.out_size, **options)
        flip = bool(rng.random() < self.flip_prob)
        out, b, g = apply_geometry(image, faces, ignore, window, flip, self.out_size)
        small = np.sqrt(np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)) < self.min_face
        return out, b, g | small, window, flip

    def __call__(
        self, image: np.ndarray, boxes: np.ndarray, ignore: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out, b, g, _, _ = self.geometry(image, boxes, ignore, rng)
        if self.colour is not None:
            out = self.colour(out, rng)
        return out, b, g

    def sample(self, s: DetectionSample, rng: np.random.Generator) -> DetectionSample:
        """The augmented copy of a :class:`~rnnpool_nas.data.detection.DetectionSample`."""
        image, boxes, ignore = self(s.image, s.boxes, s.ignore, rng)
        return DetectionSample(image, boxes, ignore, s.source)
