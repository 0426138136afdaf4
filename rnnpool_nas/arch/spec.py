"""Architectures as data: :class:`ArchSpec`, its stages, JSON in and out, validation, shapes.

A spec is an input shape ``(H, W, C)`` (rows, columns, channels: the paper's "640x480x3" is
``(480, 640, 3)``), a number of classes, an ordered list of stages and, for detectors, the
S3FD-style detection sources. Field names follow the paper: ``t`` expansion, ``c`` output
channels, ``n`` repeats, ``s`` stride of the first repeat; RNNPool ``patch_size``, ``stride``,
``h1``, ``h2``.

Everything here is torch-free. :func:`expand` turns a valid spec into the flat list of
:class:`Layer` records (one per block, with input and output shapes) that the builder, the cost
model and the exporter all walk, so they can never disagree about a shape.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from ..errors import UserError
from ..ops.geometry import PADDING_MODES, axis_geometry, pair

ACTIVATIONS = ("relu6", "relu", "none")
NONLINEARITIES = ("sigmoid", "tanh", "quantSigmoid", "quantTanh")
Shape = tuple[int, int, int]  # (H, W, C)


class SpecError(UserError):
    """An invalid architecture spec; the message names the stage and the field."""


# ----------------------------------------------------------------------------------- stages


@dataclass
class Conv:
    """``n`` convolutions (``kernel`` x ``kernel``, stride ``stride`` on the first), each with
    batch norm (unless ``batch_norm`` is false, then a bias) and ``activation``.
    ``depthwise`` sets ``groups`` to the input channels (then ``c`` must equal them)."""

    type: ClassVar[str] = "conv"
    c: int
    kernel: int = 3
    stride: int = 1
    n: int = 1
    groups: int = 1
    depthwise: bool = False
    activation: str = "relu6"
    batch_norm: bool = True


@dataclass
class Bottleneck:
    """MobileNetV2 inverted residual (MBConv), repeated ``n`` times: 1x1 expansion to ``t``
    times the input channels (omitted when ``t == 1``), ``kernel`` x ``kernel`` depthwise with
    stride ``s`` on the first repeat, linear 1x1 projection to ``c``; residual when the block's
    stride is 1 and its input has ``c`` channels."""

    type: ClassVar[str] = "bottleneck"
    t: int
    c: int
    n: int = 1
    s: int = 1
    kernel: int = 3
    activation: str = "relu6"


@dataclass
class DWSeparable:
    """Depthwise ``kernel`` x ``kernel`` (stride ``s`` on the first repeat) then pointwise 1x1 to
    ``c``, each with batch norm and ``activation``; repeated ``n`` times."""

    type: ClassVar[str] = "dwsep"
    c: int
    n: int = 1
    s: int = 1
    kernel: int = 3
    activation: str = "relu6"


@dataclass
class RNNPool:
    """An RNNPoolLayer: ``4 * h2`` output channels. ``padding`` as in ``ops.geometry``
    (the paper's models use ``"reference"``)."""

    type: ClassVar[str] = "rnnpool"
    patch_size: Union[int, list[int]]
    stride: Union[int, list[int]]
    h1: int
    h2: int
    padding: Union[int, str] = "reference"
    gate_nonlinearity: str = "sigmoid"
    update_nonlinearity: str = "tanh"
    w_rank: Union[int, None] = None
    u_rank: Union[int, None] = None


@dataclass
class Pool:
    """Pooling: ``kind`` ``avg``, ``max`` or ``rnnpool``. ``kernel`` ``None`` pools the whole
    map (global); an ``rnnpool`` pool is one RNNPool over the whole map (``h1``, ``h2``; default
    ``h1 = h2 = channels / 4``, so the channel count is kept)."""

    type: ClassVar[str] = "pool"
    kind: str = "avg"
    kernel: Union[int, None] = None
    stride: Union[int, None] = None
    h1: Union[int, None] = None
    h2: Union[int, None] = None


@dataclass
class Linear:
    """Flatten, optional dropout, then a fully connected layer to ``c`` outputs (default: the
    spec's ``num_classes``)."""

    type: ClassVar[str] = "linear"
    c: Union[int, None] = None
    dropout: float = 0.0


Stage = Union[Conv, Bottleneck, DWSeparable, RNNPool, Pool, Linear]
STAGE_TYPES: dict[str, type] = {cls.type: cls for cls in (Conv, Bottleneck, DWSeparable, RNNPool, Pool, Linear)}


@dataclass
class Source:
    """A detection source: the output of stage ``stage`` feeds one S3FD head (a 3x3 conv to 4
    box offsets and a 3x3 conv to class scores). ``l2norm`` rescales the map first (S3FD's
    L2Norm, learnable per-channel scale, initial 10); ``extra_conv`` (``{"c", "kernel",
    "stride"}``) runs a conv + ReLU before the prediction convs; ``max_out`` predicts 3
    background scores and keeps their max (S3FD's max-out background label); ``anchor`` is the
    square anchor's side in input pixels."""

    stage: int
    anchor: int
    l2norm: bool = False
    extra_conv: Union[dict[str, int], None] = None
    max_out: bool = False


@dataclass
class Detection:
    sources: list[Source]


@dataclass
class ArchSpec:
    """A network as data. ``input`` is ``(H, W, C)``."""

    input: tuple[int, int, int]
    num_classes: int
    stages: list[Stage]
    detection: Union[Detection, None] = None
    name: str = ""

    # ------------------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "input": list(self.input), "num_classes": self.num_classes}
        out["stages"] = [{"type": s.type, **_plain(dataclasses.asdict(s))} for s in self.stages]
        out["detection"] = None if self.detection is None else _plain(dataclasses.asdict(self.detection))
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any) -> "ArchSpec":
        """Parse and validate; every problem is a :class:`SpecError` naming the stage and field."""
        if not isinstance(data, dict):
            raise SpecError("an architecture spec must be a JSON object")
        _check_keys(data, {"name", "input", "num_classes", "stages", "detection"}, "spec")
        for key in ("input", "num_classes", "stages"):
            if key not in data:
                raise SpecError(f"spec: missing field {key!r}")
        shape = data["input"]
        if not (isinstance(shape, (list, tuple)) and len(shape) == 3 and all(_is_pos_int(v) for v in shape)):
            raise SpecError(f"spec: field 'input' must be [H, W, C] positive integers, got {shape!r}")
        if not _is_pos_int(data["num_classes"]):
            raise SpecError(f"spec: field 'num_classes' must be a positive integer, got {data['num_classes']!r}")
        if not isinstance(data["stages"], list) or not data["stages"]:
            raise SpecError("spec: field 'stages' must be a non-empty list")
        stages = [_stage_from_dict(i, s) for i, s in enumerate(data["stages"])]
        detection = None
        if data.get("detection") is not None:
            det = data["detection"]
            if not isinstance(det, dict) or not isinstance(det.get("sources"), list):
                raise SpecError("detection: must be an object with a list 'sources'")
            _check_keys(det, {"sources"}, "detection")
            sources = []
            for j, src in enumerate(det["sources"]):
                where = f"detection source {j}"
                if not isinstance(src, dict):
                    raise SpecError(f"{where}: must be an object")
                _check_keys(src, {f.name for f in dataclasses.fields(Source)}, where)
                try:
                    sources.append(Source(**src))
                except TypeError as exc:
                    raise SpecError(f"{where}: {exc}") from None
            detection = Detection(sources)
        spec = cls(tuple(shape), data["num_classes"], stages, detection, str(data.get("name", "")))
        spec.validate()
        return spec

    @classmethod
    def from_json(cls, text: str) -> "ArchSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        return cls.from_dict(data)

    def validate(self) -> list["Layer"]:
        """Check every field and shape; return the expanded layers."""
        return expand(self)

    def replace(self, **changes: Any) -> "ArchSpec":
        return dataclasses.replace(self, **changes)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _is_pos_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _check_keys(data: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SpecError(f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _stage_from_dict(index: int, data: Any) -> Stage:
    if not isinstance(data, dict) or "type" not in data:
        raise SpecError(f"stage {index}: must be an object with a 'type' ({', '.join(STAGE_TYPES)})")
    kind = data["type"]
    if kind not in STAGE_TYPES:
        raise SpecError(f"stage {index}: unknown type {kind!r} (one of {', '.join(STAGE_TYPES)})")
    cls = STAGE_TYPES[kind]
    fields = {f.name for f in dataclasses.fields(cls)}
    args = {k: v for k, v in data.items() if k != "type"}
    _check_keys(args, fields, f"stage {index} ({kind})")
    try:
        return cls(**args)
    except TypeError as exc:  # a required field is missing
        missing = str(exc).split("argument")[-1].strip(": '")
        raise SpecError(f"stage {index} ({kind}): missing field {missing!r}") from None


# ----------------------------------------------------------------------------------- layers


@dataclass(frozen=True)
class Layer:
    """One block of an expanded spec: what the builder instantiates and the cost model scores.

    ``kind``: ``conv``, ``bottleneck``, ``dwsep``, ``rnnpool``, ``pool`` or ``linear``.
    ``args`` holds the block's own settings (stride of this repeat, expansion, ...).
    """

    name: str  # "3.1": stage 3, repeat 1
    stage: int
    kind: str
    in_shape: Shape
    out_shape: Shape
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def in_elems(self) -> int:
        return math.prod(self.in_shape)

    @property
    def out_elems(self) -> int:
        return math.prod(self.out_shape)


def _conv_out(size: int, kernel: int, stride: int) -> int:
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def _need(where: str, name: str, value: Any, ok: bool, what: str) -> None:
    if not ok:
        raise SpecError(f"{where}: field {name!r} must be {what}, got {value!r}")


def _positive(where: str, stage: Any, *names: str) -> None:
    for name in names:
        value = getattr(stage, name)
        _need(where, name, value, _is_pos_int(value), "a positive integer")


def _activation(where: str, value: str) -> None:
    _need(where, "activation", value, value in ACTIVATIONS, f"one of {ACTIVATIONS}")


def _spatial(where: str, shape: Shape, kernel: int, stride: int, field_name: str = "stride") -> tuple[int, int]:
    h, w = _conv_out(shape[0], kernel, stride), _conv_out(shape[1], kernel, stride)
    if h < 1 or w < 1:
        raise SpecError(f"{where}: field {field_name!r} = {stride} empties the {shape[0]}x{shape[1]} map")
    return h, w


def expand(spec: ArchSpec) -> list[Layer]:
    """Validate ``spec`` and return its blocks with shapes; raises :class:`SpecError`."""
    shape: Shape = tuple(spec.input)  # type: ignore[assignment]
    layers: list[Layer] = []
    flat = False
    for i, st in enumerate(spec.stages):
        where = f"stage {i} ({st.type})"
        if flat and not isinstance(st, Linear):
            raise SpecError(f"{where}: follows a linear layer; only linear layers may")
        if isinstance(st, Conv):
            _positive(where, st, "c", "kernel", "stride", "n", "groups")
            _activation(where, st.activation)
            for r in range(st.n):
                cin = shape[2]
                groups = cin if st.depthwise else st.groups
                if st.depthwise and st.c != cin:
                    raise SpecError(f"{where}: channel mismatch: depthwise conv needs c == input channels ({cin}), got c={st.c}")
                if cin % groups or st.c % groups:
                    raise SpecError(f"{where}: channel mismatch: groups={groups} must divide input channels {cin} and c={st.c}")
                stride = st.stride if r == 0 else 1
                h, w = _spatial(where, shape, st.kernel, stride)
                out = (h, w, st.c)
                layers.append(Layer(f"{i}.{r}", i, "conv", shape, out, dict(
                    kernel=st.kernel, stride=stride, groups=groups, activation=st.activation, batch_norm=st.batch_norm)))
                shape = out
        elif isinstance(st, (Bottleneck, DWSeparable)):
            _positive(where, st, "c", "n", "s", "kernel", *(("t",) if isinstance(st, Bottleneck) else ()))
            _activation(where, st.activation)
            for r in range(st.n):
                stride = st.s if r == 0 else 1
                h, w = _spatial(where, shape, st.kernel, stride, "s")
                out = (h, w, st.c)
                args: dict[str, Any] = dict(kernel=st.kernel, stride=stride, activation=st.activation)
                if isinstance(st, Bottleneck):
                    args.update(t=st.t, residual=stride == 1 and shape[2] == st.c)
                layers.append(Layer(f"{i}.{r}", i, st.type, shape, out, args))
                shape = out
        elif isinstance(st, RNNPool):
            _positive(where, st, "h1", "h2")
            for name in ("w_rank", "u_rank"):
                value = getattr(st, name)
                _need(where, name, value, value is None or _is_pos_int(value), "a positive integer or null")
            for name in ("gate_nonlinearity", "update_nonlinearity"):
                value = getattr(st, name)
                _need(where, name, value, value in NONLINEARITIES, f"one of {NONLINEARITIES}")
            _need(where, "padding", st.padding,
                  st.padding in PADDING_MODES or (_is_pos_int(st.padding) or st.padding == 0), f"an int >= 0 or one of {PADDING_MODES}")
            try:
                (pr, pc), (sr, sc) = pair(st.patch_size, "patch_size"), pair(st.stride, "stride")
                gy = axis_geometry(shape[0], pr, sr, st.padding, axis="rows")
                gx = axis_geometry(shape[1], pc, sc, st.padding, axis="columns")
            except ValueError as exc:
                raise SpecError(f"{where}: {exc}") from None
            out = (gy.out, gx.out, 4 * st.h2)
            layers.append(Layer(f"{i}.0", i, "rnnpool", shape, out, dict(
                patch=(pr, pc), stride=(sr, sc), h1=st.h1, h2=st.h2, padding=st.padding,
                patches=(gy.patches, gx.patches), pad=(gy.pad_before, gy.pad_after, gx.pad_before, gx.pad_after),
                gate_nonlinearity=st.gate_nonlinearity, update_nonlinearity=st.update_nonlinearity,
                w_rank=st.w_rank, u_rank=st.u_rank)))
            shape = out
        elif isinstance(st, Pool):
            _need(where, "kind", st.kind, st.kind in ("avg", "max", "rnnpool"), "one of avg, max, rnnpool")
            if st.kernel is None:
                kernel_hw, stride_hw = (shape[0], shape[1]), (shape[0], shape[1])
            else:
                _positive(where, st, "kernel")
                stride = st.kernel if st.stride is None else st.stride
                _need(where, "stride", stride, _is_pos_int(stride), "a positive integer")
                if st.kernel > min(shape[:2]):
                    raise SpecError(f"{where}: field 'kernel' = {st.kernel} is larger than the {shape[0]}x{shape[1]} map")
                kernel_hw, stride_hw = (st.kernel, st.kernel), (stride, stride)
            h = (shape[0] - kernel_hw[0]) // stride_hw[0] + 1
            w = (shape[1] - kernel_hw[1]) // stride_hw[1] + 1
            c = shape[2]
            args = dict(kind=st.kind, kernel=kernel_hw, stride=stride_hw, global_pool=st.kernel is None)
            if st.kind == "rnnpool":
                h1 = st.h1 if st.h1 is not None else max(1, c // 4)
                h2 = st.h2 if st.h2 is not None else max(1, c // 4)
                _need(where, "h1", h1, _is_pos_int(h1), "a positive integer")
                _need(where, "h2", h2, _is_pos_int(h2), "a positive integer")
                args.update(h1=h1, h2=h2)
                c = 4 * h2
            out = (h, w, c)
            layers.append(Layer(f"{i}.0", i, "pool", shape, out, args))
            shape = out
        elif isinstance(st, Linear):
            c = spec.num_classes if st.c is None else st.c
            _need(where, "c", c, _is_pos_int(c), "a positive integer")
            _need(where, "dropout", st.dropout, isinstance(st.dropout, (int, float)) and 0 <= st.dropout < 1, "in [0, 1)")
            out = (1, 1, c)
            layers.append(Layer(f"{i}.0", i, "linear", shape, out, dict(dropout=float(st.dropout))))
            shape, flat = out, True
        else:  # pragma: no cover - from_dict only builds known types
            raise SpecError(f"{where}: unknown stage")
    if spec.detection is None:
        if shape[2] != spec.num_classes or shape[:2] != (1, 1):
            raise SpecError(
                f"stage {len(spec.stages) - 1}: a classifier must end in {spec.num_classes} outputs at 1x1 "
                f"(num_classes), it ends in {shape[0]}x{shape[1]}x{shape[2]}"
            )
    else:
        _check_detection(spec, layers)
    return layers


def _check_detection(spec: ArchSpec, layers: list[Layer]) -> None:
    assert spec.detection is not None
    if not spec.detection.sources:
        raise SpecError("detection: needs at least one source")
    stage_out = {layer.stage: layer.out_shape for layer in layers}
    for j, src in enumerate(spec.detection.sources):
        where = f"detection source {j}"
        _need(where, "stage", src.stage, isinstance(src.stage, int) and src.stage in stage_out,
              f"the index of a stage (0..{len(spec.stages) - 1})")
        _need(where, "anchor", src.anchor, _is_pos_int(src.anchor), "a positive integer")
        if src.extra_conv is not None:
            ec = src.extra_conv
            if not isinstance(ec, dict) or set(ec) - {"c", "kernel", "stride"} or not _is_pos_int(ec.get("c")):
                raise SpecError(f"{where}: field 'extra_conv' must be {{\"c\", \"kernel\", \"stride\"}} with positive c, got {ec!r}")
            for key in ("kernel", "stride"):
                _need(where, f"extra_conv.{key}", ec.get(key, 1), _is_pos_int(ec.get(key, 1)), "a positive integer")


def source_shapes(spec: ArchSpec, layers: list[Layer] | None = None) -> list[tuple[Shape, Shape, int]]:
    """For each detection source: (source map shape, prediction map shape, total stride)."""
    layers = expand(spec) if layers is None else layers
    assert spec.detection is not None
    stage_out: dict[int, tuple[Shape, int]] = {}
    total = 1
    for layer in layers:
        stride = layer.args.get("stride", 1)
        total *= stride[0] if isinstance(stride, tuple) else stride
        stage_out[layer.stage] = (layer.out_shape, total)
    out = []
    for src in spec.detection.sources:
        shape, stride = stage_out[src.stage]
        pred = shape
        if src.extra_conv is not None:
            k, s = src.extra_conv.get("kernel", 3), src.extra_conv.get("stride", 1)
            pred = (_conv_out(shape[0], k, s), _conv_out(shape[1], k, s), src.extra_conv["c"])
            stride *= s
        out.append((shape, pred, stride))
    return out
