"""``scut-head:PATH``: SCUT-HEAD (https://github.com/HCIILAB/SCUT-HEAD-Dataset-Release) in its Pascal-VOC layout.

The paper fine-tunes RNNPool-Face-M4 on Part B (2405 images crawled from the web, 43930 heads;
1905 for training, 500 for testing); Part A (classroom surveillance frames) has the same layout.
PATH is a part's folder (``SCUT_HEAD_Part_B``), or a folder holding ``SCUT_HEAD_Part_B``::

    Annotations/<id>.xml           one Pascal-VOC file per image
    JPEGImages/<id>.jpg
    ImageSets/Main/{train,val,trainval,test}.txt   one image id per line

Train and val are the ids of ``ImageSets/Main/train.txt`` and ``val.txt`` (``splits`` may name
``trainval`` or ``test`` instead). SCUT-HEAD names every box ``person`` although each one is a
head (the whole head, occluded parts included, no extra background); objects named ``person``
or ``head`` (any case) are read as the detection target and any other object is ignored.
Coordinates follow Pascal VOC (1-based, inclusive pixel indices), so a box is
``xmin - 1, ymin - 1, xmax, ymax`` in the continuous convention of
:mod:`rnnpool_nas.data.detection`; objects marked ``<difficult>1</difficult>`` are kept with
``ignore`` set (VOC's evaluation neither rewards nor punishes them). A box with no area is
dropped; a box sticking out of its image is clipped. The image's real size (from its header)
is what counts, not the XML's ``<size>``.

Bad input: a missing folder or split file is a UserError. A bad sample (a missing or malformed
XML file, an object whose box is missing or not numbers, a box wholly outside its image, a
missing or undecodable image) is skipped and counted; one warning names the first, with the XML
line where it applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.parsers import expat

import numpy as np

from rnnpool_nas.data.types import (DetectionDataset, DetectionSplit, UnreadableImage, clip_boxes, files_split,
                                    image_header, seeded_order, warn_bad)
from rnnpool_nas.errors import UserError

PART_B = "SCUT_HEAD_Part_B"
#: Object names read as heads (lower case).
HEAD_NAMES = ("person", "head")
_BOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")


class BadAnnotation(Exception):
    """A per-image annotation problem: ``where`` (file:line) and ``why``."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}")
        self.where, self.why = where, why


@dataclass(frozen=True)
class VocObject:
    name: str
    box: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax as written (1-based, inclusive)
    difficult: bool
    line: int


@dataclass(frozen=True)
class VocAnnotation:
    filename: str | None
    objects: list[VocObject]


def parse_voc(path: Path) -> VocAnnotation:
    """A Pascal-VOC XML file's filename and objects; BadAnnotation naming file:line if malformed."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadAnnotation(str(path), "missing annotation file") from None
    except OSError as e:
        raise BadAnnotation(str(path), f"cannot read ({e.strerror or e})") from None
    parser = expat.ParserCreate()
    stack: list[str] = []
    texts: list[list[str]] = []
    filename: list[str] = []
    objects: list[VocObject] = []
    current: dict[str, tuple[str, int]] | None = None
    object_depth = -1
    object_line = 0

    def start(tag: str, attrs: dict) -> None:
        nonlocal current, object_depth, object_line
        stack.append(tag)
        texts.append([])
        if tag == "object" and current is None and len(stack) == 2:
            current, object_depth, object_line = {}, len(stack), parser.CurrentLineNumber

    def end(tag: str) -> None:
        nonlocal current
        text = "".join(texts.pop()).strip()
        rel = tuple(stack[object_depth:]) if current is not None else ()
        line = parser.CurrentLineNumber
        if rel in (("name",), ("difficult",)) or (len(rel) == 2 and rel[0] == "bndbox"):  # not a <part>'s
            current[rel[-1]] = (text, line)
        if tag == "filename" and len(stack) == 2:
            filename.append(text)
        if current is not None and len(stack) == object_depth:
            objects.append(_object(path, current, object_line))
            current = None
        stack.pop()

    def chars(data: str) -> None:
        if texts:
            texts[-1].append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        raise BadAnnotation(f"{path}:{e.lineno}", f"malformed XML ({expat.errors.messages[e.code]})") from None
    return VocAnnotation(filename[0] if filename else None, objects)


def _object(path: Path, fields: dict[str, tuple[str, int]], line: int) -> VocObject:
    name = fields.get("name", ("", line))[0]
    box = []
    for f in _BOX_FIELDS:
        if f not in fields:
            raise BadAnnotation(f"{path}:{line}", f"object {name!r} has no bndbox/{f}")
        text, at = fields[f]
        try:
            box.append(float(text))
        except ValueError:
            raise BadAnnotation(f"{path}:{at}", f"{f} of object {name!r} is not a number: {text[:30]!r}") from None
    difficult = fields.get("difficult", ("0", line))[0] not in ("", "0")
    return VocObject(name, (box[0], box[1], box[2], box[3]), difficult, line)


def part_folder(root: Path) -> Path:
    """The folder that holds Annotations/, JPEGImages/ and ImageSets/ (``root`` or its Part B)."""
    if not root.is_dir():
        raise UserError(
            f"scut-head: expected a SCUT-HEAD part folder (Annotations, JPEGImages, ImageSets) at {root}, which is not a folder"
        )
    if not (root / "Annotations").is_dir() and (root / PART_B / "Annotations").is_dir():
        return root / PART_B
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        if not (root / sub).is_dir():
            raise UserError(
                f"scut-head: expected {root / sub} (the Pascal-VOC layout of a SCUT-HEAD part), which is not a folder"
            )
    return root


def read_ids(folder: Path, split: str) -> list[str]:
    path = folder / "ImageSets" / "Main" / f"{split}.txt"
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        raise UserError(f"scut-head: expected the {split} list {path}, which does not exist") from None
    ids = [line.split()[0] for line in lines if line.strip()]
    if not ids:
        raise UserError(f"scut-head: {path} lists no image id")
    return ids


def _sample(folder: Path, image_id: str) -> tuple[Path, np.ndarray, np.ndarray, tuple[int, int]]:
    """(image path, boxes, ignore, (height, width)) of one id; BadAnnotation or UnreadableImage if bad."""
    xml = folder / "Annotations" / f"{image_id}.xml"
    ann = parse_voc(xml)
    image = folder / "JPEGImages" / f"{image_id}.jpg"
    if not image.is_file() and ann.filename:
        image = folder / "JPEGImages" / ann.filename
    height, width = image_header(image)
    heads = [o for o in ann.objects if o.name.strip().lower() in HEAD_NAMES]
    raw = np.array([(x1 - 1, y1 - 1, x2, y2) for x1, y1, x2, y2 in (o.box for o in heads)], dtype=np.float32).reshape(-1, 4)
    keep = (raw[:, 2] > raw[:, 0]) & (raw[:, 3] > raw[:, 1])
    boxes, outside = clip_boxes(raw[keep], height, width)
    kept = [o for o, k in zip(heads, keep) if k]
    if outside.any():
        o = kept[int(np.flatnonzero(outside)[0])]
        x1, y1, x2, y2 = o.box
        raise BadAnnotation(f"{xml}:{o.line}", f"box {x1:g},{y1:g} to {x2:g},{y2:g} lies outside {image.name} ({width}x{height})")
    return image, boxes, np.array([o.difficult for o in kept], dtype=bool), (height, width)


def load_split(
    folder: Path, split: str, *, seed: int, size: tuple[int, int] | None, channels: int, limit: int | None, stream: int
) -> DetectionSplit:
    """One split of a SCUT-HEAD part (see the module docstring); images are decoded on access."""
    ids = read_ids(folder, split)
    kept: list[tuple[int, Path, np.ndarray, np.ndarray, tuple[int, int]]] = []
    bad: list[tuple[str, str]] = []
    for j in seeded_order(len(ids), limit, seed, stream):
        if limit is not None and len(kept) >= limit:
            break
        try:
            kept.append((j, *_sample(folder, ids[j])))
        except BadAnnotation as e:
            bad.append((e.where, e.why))
        except UnreadableImage as e:
            bad.append((str(folder / "JPEGImages" / f"{ids[j]}.jpg"), str(e)))
    warn_bad("scut-head", split, bad, stacklevel=6)  # the caller of load_detection_dataset
    return files_split(f"scut-head:{split}", kept, size=size, channels=channels, bad=bad)


def load(
    root: Path, *, seed: int, size: tuple[int, int] | None, channels: int, limit: int | None, splits: tuple[str, str]
) -> DetectionDataset:
    """The ``scut-head`` :class:`~rnnpool_nas.data.detection.DetectionDataset` under ``root``."""
    folder = part_folder(root)
    options = {"seed": seed, "size": size, "channels": channels, "limit": limit}
    train, val = (load_split(folder, s, stream=20 + k, **options) for k, s in enumerate(splits))
    return DetectionDataset(f"scut-head:{root}", train, val, channels)
