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
import hashlib
import json
from dataclasses import dataclass
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

    # The same field names as Bottleneck's (minus ``t``) on purpose: spaces and presets set either
    # block with the same words; the two are different layers, not one with a flag.

    type: ClassVar[str] = "dwsep"
    c: int
    n: int = 1
    s: int = 1
    kernel: int = 3
    activation: str = "relu6"


@dataclass
class RNNPool:
    """An RNNPoolLayer: ``4 * h2`` output channels. ``padding`` as in ``ops.geometry``
    (the paper's models use ``"reference"``). ``batch_norm`` adds a batch norm on the output:
    RNNPool's raw outputs sit near 0.5 with per-channel spreads down to ~1e-3, which 8-bit
    activations cannot resolve; normalised they can (the int8 layer folds the norm into its
    output requantization: no RAM, no MAdds). ``false`` is the paper's exact layer."""

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
    batch_norm: bool = True


@dataclass
class Pool:
    """Pooling: ``kind`` ``avg``, ``max`` or ``rnnpool``. ``kernel`` ``None`` pools the whole
    map (global); an ``rnnpool`` pool is one RNNPool over the whole map (``h1``, ``h2``; default
    ``h1 = h2 = channels / 4``, so the channel count is kept), followed by a batch norm."""

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

    def network_key(self) -> str:
        """A short digest of the network this spec builds: equal for equal networks, whatever
        their ``name`` (the search's rule for "trained already")."""
        data = self.to_dict()
        data.pop("name", None)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

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
        if max(shape[:2]) > MAX_INPUT_SIDE or shape[2] > MAX_INPUT_CHANNELS:
            raise SpecError(f"spec: input {'x'.join(map(str, shape))} is too large (at most {MAX_INPUT_SIDE} rows and "
                            f"columns, {MAX_INPUT_CHANNELS} channels)")
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
        except RecursionError:
            raise SpecError("JSON nested too deeply to be an architecture spec") from None
        try:
            return cls.from_dict(data)
        except RecursionError:
            raise SpecError("a spec nested too deeply") from None

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


class Layer:
    """One block of an expanded spec: what the builder instantiates and the cost model scores.

    ``kind``: ``conv``, ``bottleneck``, ``dwsep``, ``rnnpool``, ``pool`` or ``linear``;
    ``name`` is ``"STAGE.REPEAT"``; ``args`` holds the block's own settings (the stride of this
    repeat, the expansion, ...). A plain slotted class: the cost model makes thousands a second.
    """

    __slots__ = ("name", "stage", "kind", "in_shape", "out_shape", "args", "in_elems", "out_elems", "count")

    def __init__(self, name: str, stage: int, kind: str, in_shape: Shape, out_shape: Shape,
                 args: dict[str, Any] | None = None) -> None:
        self.name, self.stage, self.kind = name, stage, kind
        self.in_shape, self.out_shape = in_shape, out_shape
        self.args = {} if args is None else args
        self.in_elems = in_shape[0] * in_shape[1] * in_shape[2]
        self.out_elems = out_shape[0] * out_shape[1] * out_shape[2]
        self.count: Any = None  # the cost model's per-layer count, filled on first use

    def __repr__(self) -> str:
        return f"Layer({self.name} {self.kind} {self.in_shape} -> {self.out_shape})"

    @property
    def is_rnnpool(self) -> bool:
        """Whether the layer runs an RNNPool: an RNNPool stage, or a pool of kind ``rnnpool``
        (an RNNPool over the pool's windows, no padding). The one test the builder, the cost
        model, the lowering and the int8 converter ask."""
        return self.kind == "rnnpool" or (self.kind == "pool" and self.args["kind"] == "rnnpool")


def head_name(j: int) -> str:
    """The name of detection head ``j`` everywhere a head is named: its kernel calls in the
    lowering (export.json's and measure.json's ``layer``), its rows of the cost model's stages and
    of the latency per row. Layers are named ``STAGE.REPEAT``, so the two never meet."""
    return f"head{j}"


def head_index(name: str) -> int | None:
    """``j`` for :func:`head_name` ``(j)``; ``None`` for a layer's name."""
    return int(name[4:]) if name.startswith("head") and name[4:].isdigit() else None


def _conv_out(size: int, kernel: int, stride: int) -> int:
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def _where(index: int, stage: Any) -> str:
    return f"stage {index} ({stage.type})"


def _fail(index: int, stage: Any, name: str, value: Any, what: str) -> SpecError:
    return SpecError(f"{_where(index, stage)}: field {name!r} must be {what}, got {value!r}")


def _positive(index: int, stage: Any, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(stage, name)
        if type(value) is not int or value <= 0:
            raise _fail(index, stage, name, value, "a positive integer")


def _activation(index: int, stage: Any) -> None:
    if stage.activation not in ACTIVATIONS:
        raise _fail(index, stage, "activation", stage.activation, f"one of {ACTIVATIONS}")


def _spatial(index: int, stage: Any, shape: Shape, kernel: int, stride: int, field_name: str) -> tuple[int, int]:
    h, w = _conv_out(shape[0], kernel, stride), _conv_out(shape[1], kernel, stride)
    if h < 1 or w < 1:
        raise SpecError(f"{_where(index, stage)}: field {field_name!r} = {stride} empties the {shape[0]}x{shape[1]} map")
    return h, w


_CONV_FIELDS = ("c", "kernel", "stride", "n", "groups")
_BOTTLENECK_FIELDS = ("t", "c", "n", "s", "kernel")
_DWSEP_FIELDS = ("c", "n", "s", "kernel")


#: Expanded stages by (index, type, fields, input shape, classes): a search scores thousands of
#: candidates that share most of their stages. Layers are never mutated after creation.
_STAGE_CACHE: dict[tuple, tuple[Layer, ...]] = {}
_STAGE_CACHE_MAX = 200_000


def _stage_key(i: int, st: Any, shape: Shape, num_classes: int) -> tuple | None:
    key = (i, type(st), shape, num_classes if isinstance(st, Linear) else 0, tuple(st.__dict__.values()))
    try:
        hash(key)
    except TypeError:  # a list-valued field (patch_size [r, c]): use its tuple
        key = key[:4] + (tuple(tuple(v) if type(v) is list else v for v in key[4]),)
        try:
            hash(key)
        except TypeError:
            return None
    return key


def expand(spec: ArchSpec) -> list[Layer]:
    """Validate ``spec`` and return its blocks with shapes; raises :class:`SpecError`."""
    shape: Shape = tuple(spec.input)  # type: ignore[assignment]
    layers: list[Layer] = []
    flat = False
    for i, st in enumerate(spec.stages):
        if flat and not isinstance(st, Linear):
            raise SpecError(f"{_where(i, st)}: follows a linear layer; only linear layers may")
        key = _stage_key(i, st, shape, spec.num_classes) if hasattr(st, "__dict__") else None
        block = _STAGE_CACHE.get(key) if key is not None else None
        if block is None:
            block = tuple(_expand_stage(i, st, shape, spec.num_classes))
            if key is not None:
                if len(_STAGE_CACHE) >= _STAGE_CACHE_MAX:
                    _STAGE_CACHE.clear()
                _STAGE_CACHE[key] = block
        layers.extend(block)
        shape = block[-1].out_shape
        flat = flat or isinstance(st, Linear)
    if spec.detection is None:
        if shape[2] != spec.num_classes or shape[:2] != (1, 1):
            raise SpecError(
                f"stage {len(spec.stages) - 1}: a classifier must end in {spec.num_classes} outputs at 1x1 "
                f"(num_classes), it ends in {shape[0]}x{shape[1]}x{shape[2]}"
            )
    else:
        _check_detection(spec, layers)
    return layers


def _expand_stage(i: int, st: Stage, shape: Shape, num_classes: int) -> list[Layer]:
    """The blocks of stage ``i`` given its input shape (validated)."""
    layers: list[Layer] = []
    if isinstance(st, Conv):
        _positive(i, st, _CONV_FIELDS)
        _activation(i, st)
        for r in range(st.n):
            cin = shape[2]
            groups = cin if st.depthwise else st.groups
            if st.depthwise and st.c != cin:
                raise SpecError(f"{_where(i, st)}: channel mismatch: depthwise conv needs c == input channels ({cin}), got c={st.c}")
            if cin % groups or st.c % groups:
                raise SpecError(f"{_where(i, st)}: channel mismatch: groups={groups} must divide input channels {cin} and c={st.c}")
            stride = st.stride if r == 0 else 1
            h, w = _spatial(i, st, shape, st.kernel, stride, "stride")
            out = (h, w, st.c)
            layers.append(Layer(f"{i}.{r}", i, "conv", shape, out, {
                "kernel": st.kernel, "stride": stride, "groups": groups, "activation": st.activation,
                "batch_norm": st.batch_norm}))
            shape = out
    elif isinstance(st, (Bottleneck, DWSeparable)):
        bottleneck = isinstance(st, Bottleneck)
        _positive(i, st, _BOTTLENECK_FIELDS if bottleneck else _DWSEP_FIELDS)
        _activation(i, st)
        for r in range(st.n):
            stride = st.s if r == 0 else 1
            h, w = _spatial(i, st, shape, st.kernel, stride, "s")
            out = (h, w, st.c)
            args: dict[str, Any] = {"kernel": st.kernel, "stride": stride, "activation": st.activation}
            if bottleneck:
                args.update(t=st.t, residual=stride == 1 and shape[2] == st.c)
            layers.append(Layer(f"{i}.{r}", i, st.type, shape, out, args))
            shape = out
    elif isinstance(st, RNNPool):
        layers.append(_rnnpool_layer(i, st, shape))
    elif isinstance(st, Pool):
        layers.append(_pool_layer(i, st, shape))
    elif isinstance(st, Linear):
        c = num_classes if st.c is None else st.c
        if type(c) is not int or c <= 0:
            raise _fail(i, st, "c", c, "a positive integer")
        if not (isinstance(st.dropout, (int, float)) and 0 <= st.dropout < 1):
            raise _fail(i, st, "dropout", st.dropout, "in [0, 1)")
        layers.append(Layer(f"{i}.0", i, "linear", shape, (1, 1, c), {"dropout": float(st.dropout)}))
    else:
        raise SpecError(f"stage {i}: not a stage ({type(st).__name__})")
    return layers


def _rnnpool_layer(i: int, st: RNNPool, shape: Shape) -> Layer:
    _positive(i, st, ("h1", "h2"))
    for name in ("w_rank", "u_rank"):
        value = getattr(st, name)
        if value is not None and (type(value) is not int or value <= 0):
            raise _fail(i, st, name, value, "a positive integer or null")
    for name in ("gate_nonlinearity", "update_nonlinearity"):
        if getattr(st, name) not in NONLINEARITIES:
            raise _fail(i, st, name, getattr(st, name), f"one of {NONLINEARITIES}")
    pad = st.padding
    if not (pad in PADDING_MODES or (type(pad) is int and pad >= 0)):
        raise _fail(i, st, "padding", pad, f"an int >= 0 or one of {PADDING_MODES}")
    try:
        (pr, pc), (sr, sc) = pair(st.patch_size, "patch_size"), pair(st.stride, "stride")
        gy = axis_geometry(shape[0], pr, sr, pad, axis="rows")
        gx = axis_geometry(shape[1], pc, sc, pad, axis="columns")
    except ValueError as exc:
        raise SpecError(f"{_where(i, st)}: {exc}") from None
    return Layer(f"{i}.0", i, "rnnpool", shape, (gy.out, gx.out, 4 * st.h2), {
        "patch": (pr, pc), "stride": (sr, sc), "h1": st.h1, "h2": st.h2, "padding": pad,
        "patches": (gy.patches, gx.patches), "pad": (gy.pad_before, gy.pad_after, gx.pad_before, gx.pad_after),
        "gate_nonlinearity": st.gate_nonlinearity, "update_nonlinearity": st.update_nonlinearity,
        "w_rank": st.w_rank, "u_rank": st.u_rank, "batch_norm": bool(st.batch_norm)})


def _pool_layer(i: int, st: Pool, shape: Shape) -> Layer:
    if st.kind not in ("avg", "max", "rnnpool"):
        raise _fail(i, st, "kind", st.kind, "one of avg, max, rnnpool")
    if st.kernel is None:
        kernel_hw, stride_hw = (shape[0], shape[1]), (shape[0], shape[1])
    else:
        _positive(i, st, ("kernel",))
        stride = st.kernel if st.stride is None else st.stride
        if type(stride) is not int or stride <= 0:
            raise _fail(i, st, "stride", stride, "a positive integer")
        if st.kernel > min(shape[:2]):
            raise SpecError(f"{_where(i, st)}: field 'kernel' = {st.kernel} is larger than the {shape[0]}x{shape[1]} map")
        kernel_hw, stride_hw = (st.kernel, st.kernel), (stride, stride)
    h = (shape[0] - kernel_hw[0]) // stride_hw[0] + 1
    w = (shape[1] - kernel_hw[1]) // stride_hw[1] + 1
    c = shape[2]
    args: dict[str, Any] = {"kind": st.kind, "kernel": kernel_hw, "stride": stride_hw, "global_pool": st.kernel is None}
    if st.kind == "rnnpool":
        h1 = st.h1 if st.h1 is not None else max(1, c // 4)
        h2 = st.h2 if st.h2 is not None else max(1, c // 4)
        for name, value in (("h1", h1), ("h2", h2)):
            if type(value) is not int or value <= 0:
                raise _fail(i, st, name, value, "a positive integer")
        args.update(h1=h1, h2=h2)
        c = 4 * h2
    return Layer(f"{i}.0", i, "pool", shape, (h, w, c), args)


def _check_detection(spec: ArchSpec, layers: list[Layer]) -> None:
    assert spec.detection is not None
    if not spec.detection.sources:
        raise SpecError("detection: needs at least one source")
    stage_out = {layer.stage: layer.out_shape for layer in layers}
    for j, src in enumerate(spec.detection.sources):
        where = f"detection source {j}"
        if not (type(src.stage) is int and src.stage in stage_out):
            raise SpecError(f"{where}: field 'stage' must be the index of a stage (0..{len(spec.stages) - 1}), got {src.stage!r}")
        if not _is_pos_int(src.anchor):
            raise SpecError(f"{where}: field 'anchor' must be a positive integer, got {src.anchor!r}")
        ec = src.extra_conv
        if ec is not None and not (
            isinstance(ec, dict) and not set(ec) - {"c", "kernel", "stride"}
            and all(_is_pos_int(ec.get(key, 1)) for key in ("c", "kernel", "stride")) and "c" in ec
        ):
            raise SpecError(f"{where}: field 'extra_conv' must be {{\"c\", \"kernel\", \"stride\"}} positive integers, got {ec!r}")


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


#: the largest input a spec may have: far beyond any microcontroller's camera, and small enough
#: that every count of the cost model (some walk the rows) stays instant
MAX_INPUT_SIDE, MAX_INPUT_CHANNELS = 16384, 4096


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """``"224x224x3"`` (rows x columns x channels) -> ``(224, 224, 3)``; ``"28x28"`` means one
    channel. Raises ``UserError`` naming the text otherwise."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 2:
        values.append(1)
    if len(values) != 3 or min(values) <= 0:
        raise UserError(f"--input must be HxWxC with positive integers (e.g. 224x224x3), got {text!r}")
    if max(values[:2]) > MAX_INPUT_SIDE or values[2] > MAX_INPUT_CHANNELS:
        raise UserError(f"--input {text} is too large: at most {MAX_INPUT_SIDE} rows and columns, "
                        f"{MAX_INPUT_CHANNELS} channels")
    return values[0], values[1], values[2]


def load_spec(path: str) -> ArchSpec:
    """Read a spec JSON file; a missing file or an invalid spec is a one-line ``UserError``."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise UserError(f"cannot read architecture file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"architecture file {path} is not UTF-8 text (a JSON spec is)") from None
    try:
        return ArchSpec.from_json(text)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
