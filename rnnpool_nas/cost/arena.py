"""The ``runtime`` RAM convention: the static arena the exported C runtime actually uses.

The exporter lowers a spec to a fixed sequence of kernel calls (:func:`lower`) and places every
intermediate buffer in one static arena (:func:`plan`); ``rnnpool-nas cost --convention runtime``
reports the same plan's size, so the prediction and the generated C cannot disagree.

Lowering (one step per kernel call of ``rnnpool_nas/export/runtime``):

- ``conv``: ``pointwise`` (1x1, one group), ``depthwise`` (groups == channels) or ``conv``.
- MBConv (``bottleneck``): one fused ``mbconv`` call, row by row: it holds ``kernel`` rows of
  the expanded input and one depthwise output row (:func:`mbconv_scratch_bytes`), never the
  expanded maps, and adds the residual row by row.
- ``dwsep``: ``depthwise``, ``pointwise``.
- RNNPool (and an RNNPool pool): one ``rnnpool`` step over the whole map, patch by patch, with
  an int32 scratch of ``RN_RNNPOOL_SCRATCH_WORDS`` words (one patch's projections, the row and
  column summaries and the states; :func:`rnnpool_scratch_words`).
- ``pool``: ``avgpool`` / ``maxpool``; ``linear``: ``fc`` on the NHWC-flattened map.

- Detection head ``j`` (S3FD), right after the layer that produces its source map:
  ``l2norm`` (optional), ``conv`` (the optional extra conv), then the box ``conv`` writing
  straight into the caller's output buffer, and the score ``conv`` (into the output, or, with
  max-out, into a 4-channel arena map that ``maxout`` reduces into the output). The output
  buffer holds, per head in order, its ``P x 4`` offsets then its ``P x 2`` scores.

Every map is computed whole (no row streaming: that is the ``optimal`` convention, not what this
runtime does yet). The network input is the caller's buffer and is not in the arena (it is
counted, during the steps that read it, only with ``count_input``); a classifier's logits are
copied out of the arena into the caller's output buffer at the end.

Placement: each buffer lives from the step that writes it to the last step that reads it; sizes
are rounded up to 4 bytes (int32 scratch, word-aligned maps). Buffers are placed largest first
(ties: earliest first) at the lowest 4-aligned offset where they overlap no placed buffer whose
lifetime intersects theirs (TFLite Micro's greedy planner). The arena is the highest end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..arch.spec import Layer
from ..errors import UserError

INPUT = "input"  # the caller's input buffer (outside the arena)
OUTPUT = "output:"  # prefix of places in the caller's output buffer: "output:OFFSET"


def rnnpool_scratch_words(patch_h: int, patch_w: int, h1: int, h2: int) -> int:
    """``RN_RNNPOOL_SCRATCH_WORDS`` of ``rn_runtime.h``: int32 words the RNNPool kernel uses."""
    return patch_h * patch_w * h1 + (patch_h + patch_w) * h1 + max(patch_h, patch_w) * h2 + 4 * max(h1, h2)


def mbconv_scratch_bytes(expand: bool, kernel: int, in_w: int, out_w: int, hidden: int) -> int:
    """``RN_MBCONV_SCRATCH_BYTES`` of ``rn_runtime.h``: ``kernel`` expanded input rows (none
    without an expand, t == 1) and one depthwise output row, int8."""
    return (kernel * in_w * hidden if expand else 0) + out_w * hidden


def _align(n: int) -> int:
    return (n + 3) & ~3


@dataclass(slots=True)
class Buffer:
    name: str
    size: int  # bytes, a multiple of 4
    first: int = -1  # step that writes it
    last: int = -1  # last step that reads it
    offset: int = -1


@dataclass(slots=True)
class Step:
    """One kernel call: ``op`` on ``inputs`` (buffer names) into ``output`` (+ ``scratch``)."""

    layer: str
    op: str
    inputs: tuple[str, ...]
    output: str
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    scratch: str | None = None


@dataclass(frozen=True, slots=True)
class HeadSpec:
    """What the lowering needs of one detection head."""

    after: int  # index of the layer whose output is the source map
    source: tuple[int, int, int]
    pred: tuple[int, int, int]  # the prediction map (after the optional extra conv)
    l2norm: bool
    extra: tuple[int, int, int] | None  # (channels, kernel, stride)
    max_out: bool


def head_specs(spec) -> list[HeadSpec]:
    """The detection heads of ``spec`` (an ArchSpec), in output order."""
    from ..arch.spec import expand, source_shapes

    if spec.detection is None:
        return []
    layers = expand(spec)
    last = {layer.stage: i for i, layer in enumerate(layers)}
    out = []
    for src, (shape, pred, _) in zip(spec.detection.sources, source_shapes(spec, layers)):
        extra = None
        if src.extra_conv is not None:
            extra = (src.extra_conv["c"], src.extra_conv.get("kernel", 3), src.extra_conv.get("stride", 1))
        out.append(HeadSpec(last[src.stage], shape, pred, src.l2norm, extra, src.max_out))
    return out


@dataclass
class ArenaPlan:
    steps: list[Step]
    buffers: dict[str, Buffer]
    arena_bytes: int
    output: str | None  # the buffer holding a classifier's output after the last step (None: heads)
    layer_peaks: dict[str, int] = field(default_factory=dict)  # arena high-water mark per layer

    def offset(self, name: str) -> int:
        return self.buffers[name].offset


def lower(layers: list[Layer], heads: list[HeadSpec] | None = None) -> tuple[list[Step], dict[str, int]]:
    """Kernel calls of ``layers`` (and detection ``heads``) and the byte size of every arena
    buffer they write."""
    steps: list[Step] = []
    sizes: dict[str, int] = {}
    current = INPUT
    heads = heads or []
    out_offset = 0

    def emit(layer: Layer | str, op: str, src: tuple[str, ...], out_name: str, ins, outs, scratch: int = 0,
             scratch_bytes: int = 0) -> str:
        name = layer if isinstance(layer, str) else layer.name
        h, w, c = outs
        if not out_name.startswith(OUTPUT):
            sizes.setdefault(out_name, h * w * c)
        scratch_name = None
        if scratch or scratch_bytes:
            scratch_name = f"{name}/scratch"
            sizes[scratch_name] = 4 * scratch + scratch_bytes
        steps.append(Step(name, op, src, out_name, ins, outs, scratch_name))
        return out_name

    def emit_heads(index: int, source: str) -> None:
        nonlocal out_offset
        for j, head in enumerate(heads):
            if head.after != index:
                continue
            name, x, shape = f"head{j}", source, head.source
            if head.l2norm:
                x = emit(name, "l2norm", (x,), f"{name}/norm", shape, shape)
            if head.extra is not None:
                x = emit(name, "conv", (x,), f"{name}/extra", shape, head.pred)
            ph, pw, _ = head.pred
            emit(name, "conv", (x,), f"{OUTPUT}{out_offset}", head.pred, (ph, pw, 4))
            out_offset += ph * pw * 4
            if head.max_out:
                four = emit(name, "conv", (x,), f"{name}/conf4", head.pred, (ph, pw, 4))
                emit(name, "maxout", (four,), f"{OUTPUT}{out_offset}", (ph, pw, 4), (ph, pw, 2))
            else:
                emit(name, "conv", (x,), f"{OUTPUT}{out_offset}", head.pred, (ph, pw, 2))
            out_offset += ph * pw * 2

    for index, layer in enumerate(layers):
        a, kind, (hi, wi, ci), out = layer.args, layer.kind, layer.in_shape, layer.out_shape
        name = layer.name
        if kind == "conv":
            op = ("pointwise" if a["kernel"] == 1 and a["groups"] == 1
                  else "depthwise" if a["groups"] == ci == out[2] else "conv")
            current = emit(layer, op, (current,), f"{name}/out", layer.in_shape, out)
        elif kind == "bottleneck":
            scratch = mbconv_scratch_bytes(a["t"] != 1, a["kernel"], wi, out[1], a["t"] * ci)
            current = emit(layer, "mbconv", (current,), f"{name}/out", layer.in_shape, out, scratch_bytes=scratch)
        elif kind == "dwsep":
            x = emit(layer, "depthwise", (current,), f"{name}/dw", layer.in_shape, (out[0], out[1], ci))
            current = emit(layer, "pointwise", (x,), f"{name}/out", (out[0], out[1], ci), out)
        elif kind == "rnnpool" or (kind == "pool" and a["kind"] == "rnnpool"):
            ph, pw = a["patch"] if kind == "rnnpool" else a["kernel"]
            words = rnnpool_scratch_words(ph, pw, a["h1"], a["h2"])
            current = emit(layer, "rnnpool", (current,), f"{name}/out", layer.in_shape, out, words)
        elif kind == "pool":
            op = "maxpool" if a["kind"] == "max" else "avgpool"
            current = emit(layer, op, (current,), f"{name}/out", layer.in_shape, out)
        elif kind == "linear":
            current = emit(layer, "fc", (current,), f"{name}/out", layer.in_shape, out)
        else:
            raise UserError(f"the C runtime has no kernel for layer {name} ({kind})")
        emit_heads(index, current)
    return steps, sizes


def plan(layers: list[Layer], count_input: bool = False, heads: list[HeadSpec] | None = None) -> ArenaPlan:
    """Lower ``layers`` (and detection ``heads``) and place their buffers in one arena (see the
    module docstring)."""
    steps, sizes = lower(layers, heads)
    if not steps:
        raise UserError("the architecture has no layers to run")
    buffers = {name: Buffer(name, _align(size)) for name, size in sizes.items()}
    for i, step in enumerate(steps):
        for name in (step.output, step.scratch):
            if name in buffers and buffers[name].first < 0:
                buffers[name].first = i
        for name in (*step.inputs, step.output, step.scratch):
            if name is not None and name in buffers:
                buffers[name].last = i
    final: str | None = None
    if not heads:
        final = steps[-1].output
        if final == INPUT:
            raise UserError("the architecture's output is its input")
        buffers[final].last = len(steps)  # copied out after the last step
    placed: list[Buffer] = []
    for buf in sorted(buffers.values(), key=lambda b: (-b.size, b.first, b.name)):
        busy = sorted((p.offset, p.offset + p.size) for p in placed if p.first <= buf.last and buf.first <= p.last)
        offset = 0
        for start, end in busy:
            if offset + buf.size <= start:
                break
            offset = max(offset, end)
        buf.offset = offset
        placed.append(buf)
    arena = max((b.offset + b.size for b in buffers.values()), default=0)
    h, w, c = steps[0].in_shape
    input_last = max(i for i, step in enumerate(steps) if INPUT in step.inputs)
    peaks: dict[str, int] = {}
    for i, step in enumerate(steps):
        live = [b for b in buffers.values() if b.first <= i <= b.last]
        high = max((b.offset + b.size for b in live), default=0)
        if count_input and i <= input_last:
            high += h * w * c
        peaks[step.layer] = max(peaks.get(step.layer, 0), high)
    return ArenaPlan(steps, buffers, arena, final, peaks)
