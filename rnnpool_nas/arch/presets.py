"""A registry of named architecture builders: the paper's models as specs (torch-free).

``get_preset(name, input=..., classes=..., width=..., **fields)`` returns an :class:`ArchSpec`.
``fields`` override RNNPool settings on every RNNPool stage (``h1=8``, ``patch_size=4``) or one
field of one stage with a dotted path (``stages.3.c=32``, ``detection.sources.0.anchor=24``).

Width multipliers scale every conv/bottleneck channel count to the nearest multiple of 8 (at
least 8); RNNPool hidden sizes are the paper's per-model settings and are not scaled (override
them). Where the paper's tables and its reference code differ, the presets follow the reference
code (facts file, section 7) and say so in their description.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import UserError
from .spec import ArchSpec, Bottleneck, Conv, Detection, DWSeparable, Linear, Pool, RNNPool, Source, SpecError, Stage

Builder = Callable[[float], ArchSpec]


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    builder: Builder


PRESETS: dict[str, Preset] = {}


def register(name: str, description: str) -> Callable[[Builder], Builder]:
    def wrap(fn: Builder) -> Builder:
        PRESETS[name] = Preset(name, description, fn)
        return fn

    return wrap


def list_presets() -> list[Preset]:
    return list(PRESETS.values())


#: the largest width multiplier (a 64x MobileNetV2 has billions of parameters already)
MAX_WIDTH = 64.0


def get_preset(
    name: str,
    *,
    input: tuple[int, int, int] | None = None,
    classes: int | None = None,
    width: float | None = None,
    **fields: Any,
) -> ArchSpec:
    """Build preset ``name`` with overrides; unknown names suggest the closest ones."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=3, cutoff=0.4)
        hint = f"; did you mean {' or '.join(close)}?" if close else f"; known: {', '.join(PRESETS)}"
        raise UserError(f"unknown preset {name!r}{hint}")
    if width is not None and not (isinstance(width, (int, float)) and 0 < width <= MAX_WIDTH):
        raise UserError(f"width must be a number above 0 and at most {MAX_WIDTH:g}, got {width!r}")
    spec = PRESETS[name].builder(1.0 if width is None else float(width))
    if input is not None:
        spec.input = tuple(input)  # type: ignore[assignment]
    if classes is not None:
        spec.num_classes = classes
    for path, value in fields.items():
        spec = set_field(spec, path, value)
    spec.validate()
    return spec


def set_field(spec: ArchSpec, path: str, value: Any) -> ArchSpec:
    """A copy of ``spec`` with one field set. ``path``: an RNNPool field name (every RNNPool
    stage; ``rnnpool.`` prefix optional), ``stages.I.FIELD``, ``detection.sources.J.FIELD``,
    ``input``, ``num_classes`` or ``name``."""
    data = spec.to_dict()
    parts = path.split(".")
    if parts[0] == "rnnpool":
        parts = parts[1:]
    rnnpool_fields = {f.name for f in dataclasses.fields(RNNPool)}
    if len(parts) == 1 and parts[0] in rnnpool_fields:
        targets = [s for s in data["stages"] if s["type"] == "rnnpool"]
        if not targets:
            raise UserError(f"--set {path}: this architecture has no RNNPool stage")
        for stage in targets:
            stage[parts[0]] = copy.deepcopy(value)
    elif len(parts) == 1 and parts[0] in ("input", "num_classes", "name"):
        data[parts[0]] = value
    elif parts[0] in ("stages", "detection") and len(parts) >= 3:
        node: Any = data
        for key in parts[:-1]:
            try:
                node = node[int(key)] if isinstance(node, list) else node[key]
            except (KeyError, IndexError, ValueError, TypeError):
                raise UserError(f"--set {path}: no such place in the spec (at {key!r})") from None
        if not isinstance(node, dict):
            raise UserError(f"--set {path}: does not name a field")
        node[parts[-1]] = value
    else:
        raise UserError(
            f"--set {path}: unknown field (an RNNPool field: {', '.join(sorted(rnnpool_fields))}; "
            "or stages.I.FIELD, detection.sources.J.FIELD)"
        )
    return ArchSpec.from_dict(data)


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON when it parses (``8``, ``0.5``, ``[6, 4]``, ``null``), a plain
    string otherwise (``reference``); ``6,4`` is the pair ``[6, 4]``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if "," in text:
        try:
            return [json.loads(v) for v in text.split(",")]
        except json.JSONDecodeError:
            pass
    return text


# -------------------------------------------------------------------------------- builders


def scale_channels(c: int, width: float) -> int:
    """Channels scaled by ``width``, to the nearest multiple of 8 (at least 8); exact at 1.0: the
    presets' width multiplier, and the search spaces' (``search.space``)."""
    if width == 1.0:
        return c
    return max(8, int(c * width / 8 + 0.5) * 8)


_ch = scale_channels  # the short name the preset tables below use


def _bottlenecks(rows: list[tuple[int, int, int, int]], width: float) -> list[Stage]:
    return [Bottleneck(t=t, c=_ch(c, width), n=n, s=s) for t, c, n, s in rows]


_MBV2_ROWS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
_MBV2_RNNPOOL_ROWS = [(6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def _classifier_tail(last: int, dropout: float = 0.2) -> list[Stage]:
    return [Conv(c=last, kernel=1), Pool(kind="avg"), Linear(dropout=dropout)]


@register("mobilenetv2", "MobileNetV2 1.0, 224x224x3, 1000 classes (the paper's base; ~300M MAdds)")
def mobilenetv2(width: float) -> ArchSpec:
    last = 1280 if width <= 1.0 else _ch(1280, width)
    stages: list[Stage] = [Conv(c=_ch(32, width), kernel=3, stride=2), *_bottlenecks(_MBV2_ROWS, width)]
    return ArchSpec((224, 224, 3), 1000, stages + _classifier_tail(last), name="mobilenetv2")


@register("mobilenetv2-rnnpool", "MobileNetV2-RNNPool (table A): RNNPool 6x6 stride 4, h1=h2=16 replaces the 112/56 px stages")
def mobilenetv2_rnnpool(width: float) -> ArchSpec:
    last = 1280 if width <= 1.0 else _ch(1280, width)
    stages: list[Stage] = [
        Conv(c=_ch(32, width), kernel=3, stride=2),
        RNNPool(patch_size=6, stride=4, h1=16, h2=16),
        *_bottlenecks(_MBV2_RNNPOOL_ROWS, width),
    ]
    return ArchSpec((224, 224, 3), 1000, stages + _classifier_tail(last), name="mobilenetv2-rnnpool")


@register("mobilenetv2-0.35x-vww", "MobileNetV2-0.35x for Visual Wake Words, 224x224x3, 2 classes, 320-channel last conv")
def mobilenetv2_035_vww(width: float) -> ArchSpec:
    w = 0.35 * width
    stages: list[Stage] = [Conv(c=_ch(32, w), kernel=3, stride=2), *_bottlenecks(_MBV2_ROWS, w)]
    return ArchSpec((224, 224, 3), 2, stages + _classifier_tail(_ch(320, width)), name="mobilenetv2-0.35x-vww")


@register(
    "mobilenetv2-0.35x-rnnpool-vww",
    "MobileNetV2-0.35x + RNNPool for Visual Wake Words (reference code): stem 8, RNNPool 6/4 h1=h2=8, 2 classes",
)
def mobilenetv2_035_rnnpool_vww(width: float) -> ArchSpec:
    w = 0.35 * width
    stages: list[Stage] = [
        Conv(c=_ch(32, w), kernel=3, stride=2),
        RNNPool(patch_size=6, stride=4, h1=8, h2=8),
        *_bottlenecks(_MBV2_RNNPOOL_ROWS, w),
    ]
    return ArchSpec((224, 224, 3), 2, stages + _classifier_tail(_ch(320, width)), name="mobilenetv2-0.35x-rnnpool-vww")


def _sources(stages: list[int], anchors: list[int], l2norm: int = 3) -> list[Source]:
    """One head per stage; the first ``l2norm`` sources get S3FD's L2Norm, the first max-out."""
    return [Source(stage=s, anchor=a, l2norm=j < l2norm, max_out=j == 0) for j, (s, a) in enumerate(zip(stages, anchors))]


_ANCHORS = [16, 32, 64, 128, 256, 512]


@register(
    "rnnpool-face-quant",
    "RNNPool-Face-Quant, 480x640x3 (reference code: RNNPool 8/4 h1=h2=8, giving the table's 32 channels), 6 heads",
)
def rnnpool_face_quant(width: float) -> ArchSpec:
    rows = [(2, 16, 4, 1), (2, 24, 4, 2), (2, 32, 2, 2), (2, 64, 1, 2), (2, 96, 1, 2)]
    stages: list[Stage] = [
        Conv(c=4, kernel=3, stride=2),
        Conv(c=4, kernel=3, stride=1),
        RNNPool(patch_size=8, stride=4, h1=8, h2=8),
        *_bottlenecks(rows, width),
    ]
    sources = [Source(stage=1, anchor=16, extra_conv={"c": 8, "kernel": 3, "stride": 2}, max_out=True)]
    sources += [Source(stage=3, anchor=32, l2norm=True), Source(stage=4, anchor=64, l2norm=True)]
    sources += [Source(stage=5, anchor=128), Source(stage=6, anchor=256), Source(stage=7, anchor=512)]
    return ArchSpec((480, 640, 3), 2, stages, Detection(sources), name="rnnpool-face-quant")


@register("rnnpool-face-m4", "RNNPool-Face-M4, 240x320x1 (reference code: RNNPool 8/4 h1=h2=16), 4 heads at strides 8, 8, 16, 16")
def rnnpool_face_m4(width: float) -> ArchSpec:
    stages: list[Stage] = [
        Conv(c=4, kernel=3, stride=2),
        RNNPool(patch_size=8, stride=4, h1=16, h2=16),
        *_bottlenecks([(2, 32, 1, 1), (2, 32, 1, 1), (2, 64, 1, 2), (2, 64, 1, 1)], width),
    ]
    sources = [
        Source(stage=2, anchor=16, l2norm=True, max_out=True),
        Source(stage=3, anchor=32, l2norm=True),
        Source(stage=4, anchor=64, l2norm=True),
        Source(stage=5, anchor=128),
    ]
    return ArchSpec((240, 320, 1), 2, stages, Detection(sources), name="rnnpool-face-m4")


# RNNPool-Face-A and -B below share their shape (an RNNPool, a few stages, _bottlenecks rows, six
# heads): they are two rows of the paper's table, kept as data side by side, not one builder.
@register("rnnpool-face-a", "RNNPool-Face-A, 480x640x3 (RNNPool 8/4 h1=16, h2=4 for the table's 16 channels), 6 heads")
def rnnpool_face_a(width: float) -> ArchSpec:
    stages: list[Stage] = [
        RNNPool(patch_size=8, stride=4, h1=16, h2=4),
        DWSeparable(c=_ch(16, width), n=4, s=1),
        DWSeparable(c=_ch(16, width), n=1, s=2),
        *_bottlenecks([(1, 16, 3, 1), (1, 24, 3, 2), (1, 32, 2, 2), (2, 128, 1, 2), (2, 160, 1, 2)], width),
    ]
    return ArchSpec((480, 640, 3), 2, stages, Detection(_sources([1, 3, 4, 5, 6, 7], _ANCHORS)), name="rnnpool-face-a")


@register("rnnpool-face-b", "RNNPool-Face-B, 480x640x3 (RNNPool 8/4 h1=h2=6), 6 heads")
def rnnpool_face_b(width: float) -> ArchSpec:
    stages: list[Stage] = [
        RNNPool(patch_size=8, stride=4, h1=6, h2=6),
        Conv(c=_ch(24, width), kernel=3, n=4),
        Conv(c=_ch(96, width), kernel=3, stride=2),
        Conv(c=_ch(32, width), kernel=1),
        *_bottlenecks([(6, 32, 3, 1), (6, 64, 3, 2), (6, 128, 2, 2), (6, 160, 1, 2), (6, 320, 1, 2)], width),
    ]
    return ArchSpec((480, 640, 3), 2, stages, Detection(_sources([1, 4, 5, 6, 7, 8], _ANCHORS)), name="rnnpool-face-b")


@register("rnnpool-face-c", "RNNPool-Face-C, 480x640x3 (RNNPool 8/4 h1=h2=16), 6 heads")
def rnnpool_face_c(width: float) -> ArchSpec:
    rows = [(6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 2), (6, 160, 2, 2), (6, 320, 1, 2)]
    stages: list[Stage] = [RNNPool(patch_size=8, stride=4, h1=16, h2=16), *_bottlenecks(rows, width)]
    return ArchSpec((480, 640, 3), 2, stages, Detection(_sources([1, 2, 3, 4, 5, 6], _ANCHORS)), name="rnnpool-face-c")


@register("rnnpool-tiny", "a small RNNPool classifier for 28x28 grey images (Fashion-MNIST), ~8 KiB int8 peak RAM")
def rnnpool_tiny(width: float) -> ArchSpec:
    stages: list[Stage] = [
        Conv(c=_ch(16, width), kernel=3, stride=1),
        RNNPool(patch_size=4, stride=2, h1=8, h2=8),
        *_bottlenecks([(4, 32, 2, 2), (4, 64, 2, 2)], width),
        *_classifier_tail(_ch(128, width), dropout=0.1),
    ]
    return ArchSpec((28, 28, 1), 10, stages, name="rnnpool-tiny")


__all__ = ["PRESETS", "Preset", "get_preset", "list_presets", "parse_value", "register", "set_field", "SpecError"]
