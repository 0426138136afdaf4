"""``wider-face:PATH``: WIDER FACE as distributed (http://shuoyang1213.me/WIDERFACE/).

Layout under PATH (the four archives unzipped side by side, as the EdgeML README asks)::

    WIDER_train/images/<event>/<file>.jpg
    WIDER_val/images/<event>/<file>.jpg
    wider_face_split/wider_face_train_bbx_gt.txt
    wider_face_split/wider_face_val_bbx_gt.txt

The ground-truth files (format from ``wider_face_split/readme.txt``) repeat, per image: the
image's path under ``images/``, the number of boxes, then one line per box of ten integers
``x1 y1 w h blur expression illumination invalid occlusion pose``. An image with no face has a
count of 0 followed by one line of ten zeros, which is skipped (a file without that line is read
too). WIDER's test set has no boxes and is not loaded.

Boxes: ``x1, y1, x1 + w, y1 + h`` in pixels (see :mod:`rnnpool_nas.data.detection` for the
convention). Dropped, as the official tools and the EdgeML/S3FD preparation do: boxes marked
``invalid`` (1) and boxes with ``w <= 0`` or ``h <= 0``. The others are kept, none flagged
``ignore`` (the official evaluation's easy/medium/hard subsets come from its .mat files, which
this loader does not read); a box sticking out of its image is clipped to it. Images whose
boxes are all dropped stay in the set with no box (the EdgeML training list leaves them out;
a trainer may too).

Bad input: a missing folder or ground-truth file is a UserError; so is a line that breaks the
file's structure (a file-name line that is not an image path, a count that is not a
non-negative integer, a box line that is not ten numbers, a file that ends early): the message
names the file and the line number. A bad sample (a missing image file, one that is not an
image, a box wholly outside its image) is skipped and counted, and one warning names the first
with the ground-truth line it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnpool_nas.data.types import (DetectionDataset, DetectionSplit, UnreadableImage, clip_boxes, files_split,
                                    image_header, seeded_order, warn_bad)
from rnnpool_nas.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
#: Columns of a ground-truth box line.
COLUMNS = ("x1", "y1", "w", "h", "blur", "expression", "illumination", "invalid", "occlusion", "pose")
INVALID = COLUMNS.index("invalid")


@dataclass(frozen=True)
class WiderEntry:
    """One image of a ground-truth file: its path under images/, its kept boxes, where it was read."""

    file: str
    boxes: np.ndarray  # float32 (K, 4) x1, y1, x2, y2 of the kept boxes
    box_lines: tuple[int, ...]  # the ground-truth line of each kept box
    line: int  # the line of the file name
    dropped: int  # boxes dropped (invalid or empty)


def annotation_file(root: Path, split: str) -> Path:
    return root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"


def parse_ground_truth(path: Path) -> list[WiderEntry]:
    """The entries of a ``wider_face_{split}_bbx_gt.txt`` file; UserError naming file:line if malformed."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        raise UserError(f"wider-face: expected the ground-truth file {path}, which does not exist") from None
    except OSError as e:
        raise UserError(f"wider-face: cannot read {path}: {e.strerror or e}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    entries: list[WiderEntry] = []
    n = len(lines)
    i = 0

    def bad(k: int, what: str) -> UserError:
        found = f"found {lines[k].strip()[:60]!r}" if k < n else "found the end of the file"
        return UserError(f"wider-face: {path}:{k + 1}: {what}, {found}")

    def numbers(k: int) -> list[float] | None:
        if k >= n:
            return None
        parts = lines[k].split()
        try:
            values = [float(v) for v in parts]
        except ValueError:
            return None
        return values if len(values) == len(COLUMNS) else None

    while i < n:
        name = lines[i].strip()
        if not name.lower().endswith(IMAGE_SUFFIXES):
            raise bad(i, "expected an image path (event/name.jpg)")
        if i + 1 >= n:
            raise bad(i + 1, "expected the number of boxes")
        try:
            count = int(lines[i + 1].strip())
        except ValueError:
            count = -1
        if count < 0:
            raise bad(i + 1, f"expected the number of boxes of {name} (an integer >= 0)")
        first = i + 2
        boxes, box_lines, dropped = [], [], 0
        for k in range(first, first + count):
            values = numbers(k)
            if values is None:
                raise bad(k, f"expected box {k - first + 1} of {count} of {name}: ten numbers ({' '.join(COLUMNS)})")
            x, y, w, h = values[:4]
            if values[INVALID] == 1 or w <= 0 or h <= 0:
                dropped += 1
                continue
            boxes.append((x, y, x + w, y + h))
            box_lines.append(k + 1)
        i = first + count
        if count == 0 and numbers(i) is not None:  # the official files put one line of zeros here
            i += 1
        entries.append(WiderEntry(name, np.array(boxes, np.float32).reshape(-1, 4), tuple(box_lines), first - 1, dropped))
    return entries


def load_split(
    root: Path, split: str, *, seed: int, size: tuple[int, int] | None, channels: int, limit: int | None, stream: int
) -> DetectionSplit:
    """One split of WIDER FACE (see the module docstring); images are decoded on access."""
    gt = annotation_file(root, split)
    images_dir = root / f"WIDER_{split}" / "images"
    if not images_dir.is_dir():
        raise UserError(f"wider-face: expected the {split} images under {images_dir}, which is not a folder")
    entries = parse_ground_truth(gt)
    if not entries:
        raise UserError(f"wider-face: {gt} lists no image")
    kept: list[tuple[int, Path, np.ndarray, np.ndarray, tuple[int, int]]] = []
    bad: list[tuple[str, str]] = []
    for j in seeded_order(len(entries), limit, seed, stream):
        if limit is not None and len(kept) >= limit:
            break
        e = entries[j]
        path = images_dir / e.file
        try:
            height, width = image_header(path)
        except UnreadableImage as err:
            bad.append((f"{path} ({gt.name}:{e.line})", str(err)))
            continue
        boxes, outside = clip_boxes(e.boxes, height, width)
        if outside.any():
            k = int(np.flatnonzero(outside)[0])
            x1, y1, x2, y2 = (float(v) for v in e.boxes[k])
            why = f"box {x1:g},{y1:g} {x2 - x1:g}x{y2 - y1:g} lies outside {e.file} ({width}x{height})"
            bad.append((f"{gt}:{e.box_lines[k]}", why))
            continue
        kept.append((j, path, boxes, np.zeros(len(boxes), dtype=bool), (height, width)))
    warn_bad("wider-face", split, bad, stacklevel=6)  # the caller of load_detection_dataset
    return files_split(f"wider-face:{split}", kept, size=size, channels=channels, bad=bad)


def load(
    root: Path, *, seed: int, size: tuple[int, int] | None, channels: int, limit: int | None, splits: tuple[str, str]
) -> DetectionDataset:
    """The ``wider-face`` :class:`~rnnpool_nas.data.detection.DetectionDataset` under ``root``."""
    if not root.is_dir():
        raise UserError(
            f"wider-face: expected the WIDER FACE folder (WIDER_train, WIDER_val, wider_face_split) at {root}, which is not a folder"
        )
    options = {"seed": seed, "size": size, "channels": channels, "limit": limit}
    train, val = (load_split(root, s, stream=10 + k, **options) for k, s in enumerate(splits))
    return DetectionDataset(f"wider-face:{root}", train, val, channels)
