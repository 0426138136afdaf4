"""The one lowering of a spec: kernel calls, row-streamed segments, buffer lifetimes, the arena.

The exporter's generated C (``export.codegen``), the ``runtime`` RAM convention
(``cost.ram.runtime``), the latency predictor (``cost.latency``) and ``rnnpool-nas measure`` all
read this module, so a network is predicted, generated and measured from one description.

Lowering (:func:`lower`; one step per kernel call of ``rnnpool_nas/export/runtime``):

- ``conv``: ``pointwise`` (1x1, one group), ``depthwise`` (groups == channels) or ``conv``.
- MBConv (``bottleneck``): one fused ``mbconv`` call, row by row: it holds ``kernel`` rows of
  the expanded input and one depthwise output row (:func:`mbconv_scratch_bytes`), never the
  expanded maps, and adds the residual row by row.
- ``dwsep``: ``depthwise``, ``pointwise``.
- RNNPool (and an RNNPool pool): one ``rnnpool`` step, patch by patch, with an int32 scratch of
  ``RN_RNNPOOL_SCRATCH_WORDS`` words (one patch's projections, the row and column summaries and
  the states; :func:`rnnpool_scratch_words`).
- ``pool``: ``avgpool`` / ``maxpool``; ``linear``: ``fc`` on the NHWC-flattened map.
- Detection head ``j`` (S3FD), right after the layer that produces its source map:
  ``l2norm`` (optional), ``conv`` (the optional extra conv), then the box ``conv`` writing
  straight into the caller's output buffer, and the score ``conv`` (into the output, or, with
  max-out, into a 4-channel arena map that ``maxout`` reduces into the output). The output
  buffer holds, per head in order, its ``P x 4`` offsets then its ``P x 2`` scores.

Segments (:func:`segments`): the layers are cut into consecutive segments. A *streamed* segment
runs its steps row by row (``export/runtime/stream.c``): output row ``oy`` of a step reads input
rows ``oy*stride - pad + [0, kernel)``, every step computes each output row as soon as its input
rows exist, and a map produced and read only inside the segment is a ring of the rows its readers
need at once (:attr:`Step.need`: ``kernel`` rows of a convolution, ``patch`` rows of RNNPool, one
row of a pointwise, L2Norm or max-out, and for MBConv one row, ``kernel // 2 + 1`` with a
residual, or ``kernel`` rows without an expansion), never more than the map. Nothing is
recomputed. Steps with a row kernel: ``conv``, ``depthwise``, ``pointwise``, ``mbconv``,
``rnnpool``, ``l2norm``, ``maxout``; a segment holding any other (pooling, ``fc``) runs whole maps
(the plan says so in :attr:`Segment.note`). Detection heads belong to the segment of their source
layer. The cut points are chosen (a dynamic programme over the layers) to minimise the peak RAM of
the program that streams its input (the arena's peak, plus the input rows where they are read:
``model_run_stream``'s ring, or the whole image when the first segment is not streamed), then the
number of streamed steps (each streamed row costs a call). ``stream=False`` gives
the whole-map plan of the runtime before streaming.

The network input is the caller's buffer and is not in the arena (it is counted, during the steps
that read it, only with ``count_input``); ``model_run_stream`` instead pulls input rows from a
callback into a ring of :attr:`ArenaPlan.input_rows` rows, outside the arena. A classifier's
logits are copied out of the arena into the caller's output buffer at the end.

Placement: each buffer lives from the step that writes it to the last step that reads it (every
buffer a streamed segment touches lives through the whole segment); sizes are rounded up to 4
bytes (int32 scratch, word-aligned maps). Buffers are placed largest first (ties: earliest first)
at the lowest 4-aligned offset where they overlap no placed buffer whose lifetime intersects theirs
(TFLite Micro's greedy planner). The arena is the highest end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..arch.spec import Layer, head_index, head_name
from ..errors import UserError
from ..ops.geometry import axis_geometry

INPUT = "input"  # the caller's input buffer (outside the arena)
OUTPUT = "output:"  # prefix of places in the caller's output buffer: "output:OFFSET"
#: Steps that have a row kernel (``stream.c``'s nodes).
ROW_OPS = ("conv", "depthwise", "pointwise", "mbconv", "rnnpool", "l2norm", "maxout")


def rnnpool_scratch_words(patch_h: int, patch_w: int, h1: int, h2: int) -> int:
    """``RN_RNNPOOL_SCRATCH_WORDS`` of ``rn_runtime.h``: int32 words the RNNPool kernel uses."""
    return patch_h * patch_w * h1 + (patch_h + patch_w) * h1 + max(patch_h, patch_w) * h2 + 4 * max(h1, h2)


def mbconv_scratch_bytes(expand: bool, kernel: int, in_w: int, out_w: int, hidden: int) -> int:
    """``RN_MBCONV_SCRATCH_BYTES`` of ``rn_runtime.h``: ``kernel`` expanded input rows (none
    without an expand, t == 1) and one depthwise output row, int8."""
    return (kernel * in_w * hidden if expand else 0) + out_w * hidden


#: Channel-group counts a streamed segment may run its stride-2 expanding MBConv blocks in: the
#: expanded ring shrinks G-fold, at the price of expanding each window row again for every output
#: row that reads it (1.5x the block's expansion MACs for 3x3 stride 2); the planner splits only
#: where that lowers the peak.
SPLITS = (1, 2, 4, 8)


def mbconv_split_scratch_bytes(groups: int, kernel: int, in_w: int, out_w: int, hidden: int) -> int:
    """``RN_MBCONV_SPLIT_SCRATCH_BYTES`` of ``rn_stream.h``: a ring of ``kernel`` rows of one
    channel group, one depthwise row of it, and the assembled depthwise output row (the last two
    word-aligned)."""
    gs = hidden // groups
    return _align(kernel * in_w * gs) + _align(out_w * gs) + out_w * hidden


def _splits(step: "Step", split: int) -> bool:
    """Whether ``step`` runs in ``split`` channel groups inside a segment split that way."""
    return (split > 1 and step.op == "mbconv" and step.expand and step.stride == 2 and step.hidden % split == 0
            and step.hidden // split >= 4)


def _align(n: int) -> int:
    return (n + 3) & ~3


@dataclass(slots=True)
class Buffer:
    name: str
    size: int  # bytes, a multiple of 4
    first: int = -1  # step that writes it
    last: int = -1  # last step that reads it
    offset: int = -1
    rows: int | None = None  # a map held as a ring of this many rows (None: whole, or a scratch)


@dataclass(slots=True)
class Step:
    """One kernel call: ``op`` on ``inputs`` (buffer names) into ``output`` (+ ``scratch``).

    Row geometry (steps with a row kernel): output row ``oy < rows`` reads input rows
    ``oy*stride - pad + [0, kernel)``; output rows from ``rows`` on repeat the last one (RNNPool's
    reference padding); ``need`` input rows must be held at once to compute a row."""

    layer: str
    op: str
    inputs: tuple[str, ...]
    output: str
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    scratch: str | None = None
    kernel: int = 1
    stride: int = 1
    pad: int = 0
    rows: int = 0
    need: int = 1
    expand: bool = False  # mbconv: has an expansion
    residual: bool = False  # mbconv: adds its input
    hidden: int = 0  # mbconv: expanded channels
    groups: int = 1  # mbconv streamed in channel groups (RN_MBCONV_SPLIT_SCRATCH_BYTES), see SPLITS
    global_pool: bool = False  # avgpool/maxpool over the whole map (streamed: an int32 accumulator row)
    inplace: bool = False  # mbconv run whole, its output over its input (rn_mbconv_inplace)


@dataclass
class Segment:
    """Steps ``first..last`` (inclusive) of layers ``layers``: streamed row by row, or whole maps."""

    first: int
    last: int
    layers: tuple[str, ...]
    streamed: bool
    note: str = ""
    split: int = 1  # its stride-2 MBConv blocks with an expansion run in this many channel groups


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
    segments: list[Segment] = field(default_factory=list)
    input_rows: int = 0  # rows of input a streamed input needs at once (model_run_stream's ring)

    def offset(self, name: str) -> int:
        return self.buffers[name].offset

    def segment_of(self, step: int) -> Segment:
        for seg in self.segments:
            if seg.first <= step <= seg.last:
                return seg
        raise KeyError(step)

    @property
    def input_row_bytes(self) -> int:
        h, w, c = self.steps[0].in_shape
        return w * c

    @property
    def stream_input_bytes(self) -> int:
        """Bytes of model_run_stream's input ring (the whole image when the first segment is not
        streamed)."""
        return self.input_rows * self.input_row_bytes


def lower(layers: list[Layer], heads: list[HeadSpec] | None = None) -> tuple[list[Step], dict[str, int]]:
    """Kernel calls of ``layers`` (and detection ``heads``) and the byte size of every arena
    buffer they write."""
    steps: list[Step] = []
    sizes: dict[str, int] = {}
    current = INPUT
    heads = heads or []
    out_offset = 0

    def emit(layer: Layer | str, op: str, src: tuple[str, ...], out_name: str, ins, outs, scratch: int = 0,
             scratch_bytes: int = 0, kernel: int = 1, stride: int = 1, pad: int | None = None, rows: int | None = None,
             need: int | None = None, expand: bool = False, residual: bool = False, hidden: int = 0) -> str:
        name = layer if isinstance(layer, str) else layer.name
        h, w, c = outs
        if not out_name.startswith(OUTPUT):
            sizes.setdefault(out_name, h * w * c)
        scratch_name = None
        if scratch or scratch_bytes:
            scratch_name = f"{name}/scratch"
            sizes[scratch_name] = 4 * scratch + scratch_bytes
        pad = kernel // 2 if pad is None else pad
        steps.append(Step(name, op, src, out_name, ins, outs, scratch_name, kernel, stride, pad,
                          h if rows is None else rows, kernel if need is None else need, expand, residual, hidden))
        return out_name

    def emit_heads(index: int, source: str) -> None:
        nonlocal out_offset
        for j, head in enumerate(heads):
            if head.after != index:
                continue
            name, x, shape = head_name(j), source, head.source
            if head.l2norm:
                x = emit(name, "l2norm", (x,), f"{name}/norm", shape, shape)
            if head.extra is not None:
                _, k, s = head.extra
                x = emit(name, "conv", (x,), f"{name}/extra", shape, head.pred, kernel=k, stride=s)
            ph, pw, _ = head.pred
            emit(name, "conv", (x,), f"{OUTPUT}{out_offset}", head.pred, (ph, pw, 4), kernel=3)
            out_offset += ph * pw * 4
            if head.max_out:
                four = emit(name, "conv", (x,), f"{name}/conf4", head.pred, (ph, pw, 4), kernel=3)
                emit(name, "maxout", (four,), f"{OUTPUT}{out_offset}", (ph, pw, 4), (ph, pw, 2))
            else:
                emit(name, "conv", (x,), f"{OUTPUT}{out_offset}", head.pred, (ph, pw, 2), kernel=3)
            out_offset += ph * pw * 2

    for index, layer in enumerate(layers):
        a, kind, (hi, wi, ci), out = layer.args, layer.kind, layer.in_shape, layer.out_shape
        name = layer.name
        if kind == "conv":
            op = ("pointwise" if a["kernel"] == 1 and a["groups"] == 1
                  else "depthwise" if a["groups"] == ci == out[2] else "conv")
            k, s = a["kernel"], a["stride"]
            current = emit(layer, op, (current,), f"{name}/out", layer.in_shape, out, kernel=k, stride=s,
                           pad=0 if op == "pointwise" else k // 2)
        elif kind == "bottleneck":
            k, expand = a["kernel"], a["t"] != 1
            scratch = mbconv_scratch_bytes(expand, k, wi, out[1], a["t"] * ci)
            need = (k // 2 + 1 if a["residual"] else 1) if expand else k
            current = emit(layer, "mbconv", (current,), f"{name}/out", layer.in_shape, out, scratch_bytes=scratch,
                           kernel=k, stride=a["stride"], need=need, expand=expand, residual=bool(a["residual"]),
                           hidden=a["t"] * ci)
        elif kind == "dwsep":
            k = a["kernel"]
            x = emit(layer, "depthwise", (current,), f"{name}/dw", layer.in_shape, (out[0], out[1], ci), kernel=k,
                     stride=a["stride"])
            current = emit(layer, "pointwise", (x,), f"{name}/out", (out[0], out[1], ci), out, pad=0)
        elif layer.is_rnnpool:
            ph, pw = a["patch"] if kind == "rnnpool" else a["kernel"]
            sh = a["stride"][0]
            words = rnnpool_scratch_words(ph, pw, a["h1"], a["h2"])
            gy = axis_geometry(hi, ph, sh, a["padding"] if kind == "rnnpool" else 0)
            current = emit(layer, "rnnpool", (current,), f"{name}/out", layer.in_shape, out, words, kernel=ph,
                           stride=sh, pad=gy.pad_before, rows=gy.patches)
        elif kind == "pool":
            op = "maxpool" if a["kind"] == "max" else "avgpool"
            if a["global_pool"]:  # streamed: every input row is summed (or maxed) as it arrives
                current = emit(layer, op, (current,), f"{name}/out", layer.in_shape, out, kernel=hi, pad=0, rows=1,
                               need=1)
                steps[-1].global_pool = True
            else:
                current = emit(layer, op, (current,), f"{name}/out", layer.in_shape, out, kernel=a["kernel"][0],
                               stride=a["stride"][0], pad=0)
        elif kind == "linear":
            current = emit(layer, "fc", (current,), f"{name}/out", layer.in_shape, out, kernel=hi, pad=0)
        else:
            raise UserError(f"the C runtime has no kernel for layer {name} ({kind})")
        emit_heads(index, current)
    return steps, sizes


def _layer_ranges(steps: list[Step], layers: list[Layer], heads: list[HeadSpec]) -> list[tuple[int, int]]:
    """For each layer, the steps ``[first, end)`` of its kernel calls and of the detection heads
    on its output (they run right after it)."""
    owner: list[int] = []
    index = {layer.name: i for i, layer in enumerate(layers)}
    for step in steps:
        j = head_index(step.layer)
        owner.append(index[step.layer] if j is None else heads[j].after)
    ranges = []
    for i in range(len(layers)):
        mine = [k for k, o in enumerate(owner) if o == i]
        ranges.append((mine[0], mine[-1] + 1))
    return ranges


def _readers(steps: list[Step]) -> dict[str, list[int]]:
    readers: dict[str, list[int]] = {}
    for i, step in enumerate(steps):
        for name in step.inputs:
            readers.setdefault(name, []).append(i)
    return readers


def has_row_kernel(step: Step) -> bool:
    """Whether ``step`` can run in a streamed segment."""
    return step.op in ROW_OPS or step.global_pool


def _pool_scratch(step: Step) -> int:
    """A streamed global pool's int32 accumulators."""
    return 4 * step.in_shape[2]


def _inplace_ok(steps: list[Step], readers: dict[str, list[int]], i: int, final: str | None,
                allowed: bool = True) -> bool:
    """Whether MBConv step ``i``, run on whole maps, can write its output over its input: an
    expansion and a residual, and nothing else reads the input."""
    step = steps[i]
    if not allowed:
        return False
    src = step.inputs[0]
    return (step.op == "mbconv" and step.expand and step.residual and src != INPUT and src != final
            and readers.get(src) == [i])


def _inplace_scratch(step: Step) -> int:
    """``RN_MBCONV_INPLACE_SCRATCH_BYTES``: the expanded ring, one depthwise row, one projected row."""
    _, w, c = step.in_shape
    return step.kernel * w * step.hidden + w * step.hidden + w * c


def _need(step: Step, split: int) -> int:
    return step.kernel if _splits(step, split) else step.need


def _ring_rows(steps: list[Step], readers: dict[str, list[int]], name: str, producer: int, first: int, last: int,
               final: str | None, split: int = 1) -> int | None:
    """Rows of map ``name`` (written by step ``producer``) a streamed segment of steps
    ``first..last`` holds; None: the whole map (read outside the segment, or the network's
    output)."""
    if name == final or name.startswith(OUTPUT):
        return None
    who = readers.get(name)
    if not who or who[0] < first or who[-1] > last:  # readers are in step order
        return None
    h = steps[producer].out_shape[0]
    rows = max(_need(steps[r], split) for r in who)
    return rows if rows < h else None


def _sizes(steps: list[Step], sizes: dict[str, int], cuts: list[Segment], final: str | None) -> dict[str, tuple[int, int | None]]:
    """Bytes and ring rows of every arena buffer under the segmentation ``cuts``."""
    readers = _readers(steps)
    out: dict[str, tuple[int, int | None]] = {name: (size, None) for name, size in sizes.items()}
    for seg in cuts:
        if not seg.streamed:
            continue
        for i in range(seg.first, seg.last + 1):
            step = steps[i]
            if step.output in out:
                rows = _ring_rows(steps, readers, step.output, i, seg.first, seg.last, final, seg.split)
                if rows is not None:
                    _, w, c = step.out_shape
                    out[step.output] = (rows * w * c, rows)
            if step.scratch is not None and _splits(step, seg.split):
                out[step.scratch] = (_split_scratch(step, seg.split), None)
    return out


def _split_scratch(step: Step, split: int) -> int:
    return mbconv_split_scratch_bytes(split, step.kernel, step.in_shape[1], step.out_shape[1], step.hidden)


def _segment_note(steps: list[Step], first: int, last: int) -> str:
    bad = sorted({steps[i].op for i in range(first, last + 1) if not has_row_kernel(steps[i])})
    return f"whole maps: no row kernel for {', '.join(bad)}" if bad else ""


def _estimate(steps: list[Step], sizes: dict[str, int], readers: dict[str, list[int]], first: int, last: int,
              streamed: bool, final: str | None, split: int = 1, inplace_ok: bool = True) -> int:
    """The RAM a segment needs on its own: every buffer a streamed segment touches at once, or
    the largest live set of its steps run whole; with the input image where it is read (the rows
    model_run_stream holds for a streamed segment, the whole image otherwise)."""
    size: dict[str, int] = {}
    names: dict[int, tuple[str, ...]] = {}
    rename: dict[str, str] = {}
    for i in range(first, last + 1):
        step = steps[i]
        inplace = not streamed and step.scratch is not None and _inplace_ok(steps, readers, i, final, inplace_ok)
        touched = tuple(rename.get(n, n) for n in (*step.inputs, step.output, step.scratch) if n is not None)
        if inplace:
            rename[step.output] = step.inputs[0]
            touched = (step.inputs[0], step.scratch)
        names[i] = touched
        for n in touched:
            if n in sizes and n not in size:
                size[n] = sizes[n]
        if streamed and step.output in sizes:
            rows = _ring_rows(steps, readers, step.output, i, first, last, final, split)
            if rows is not None:
                _, w, c = step.out_shape
                size[step.output] = rows * w * c
        if streamed and step.scratch is not None and _splits(step, split):
            size[step.scratch] = _split_scratch(step, split)
        if streamed and step.global_pool:
            size[f"{step.layer}/scratch"] = _pool_scratch(step)
        if inplace:
            size[step.scratch] = _inplace_scratch(step)
    # the input image: model_run_stream's ring of rows (streamed), or the whole image
    image_at = [i for i in range(first, last + 1) if INPUT in steps[i].inputs]
    image = 0
    if image_at:
        h, w, c = steps[image_at[0]].in_shape
        image = (min(h, max(_need(steps[i], split) for i in image_at)) if streamed else h) * w * c
    if streamed:
        return image + sum(_align(v) for v in size.values())
    # whole maps: a buffer lives from its writer to its last reader inside the segment
    span: dict[str, list[int]] = {}
    for i in range(first, last + 1):
        for n in names[i]:
            if n in size:
                span.setdefault(n, [i, i])[1] = i
    return max(sum(_align(size[n]) for n, (a, b) in span.items() if a <= i <= b) + (image if i in image_at else 0)
               for i in range(first, last + 1))


def _streamed_sweep(steps: list[Step], sizes: dict[str, int], readers: dict[str, list[int]], first: int,
                    end: int, final: str | None, split: int) -> list[int]:
    """``[_estimate(first, last, streamed) for last in first..end]`` in one pass: the buffers a
    streamed segment touches grow step by step, and a map becomes a ring of rows (never whole
    again) once its last reader is inside the segment. Exactly :func:`_estimate`'s figures
    (tests/test_arena.py compares them segment by segment)."""
    size: dict[str, int] = {}
    total = 0

    def put(name: str, value: int) -> None:
        nonlocal total
        total += _align(value) - (_align(size[name]) if name in size else 0)
        size[name] = value

    ripe: dict[int, list[tuple[str, int]]] = {}  # step -> (map made inside, its ring's bytes): its last reader
    image_shape: tuple[int, int, int] | None = None
    image_need = 0
    out = []
    for i in range(first, end + 1):
        step = steps[i]
        for n in (*step.inputs, step.output, step.scratch):
            if n is not None and n in sizes and n not in size:
                put(n, sizes[n])
        name = step.output
        if name in sizes and name != final and not name.startswith(OUTPUT):
            who = readers.get(name)
            if who and who[0] >= first:
                rows = max(_need(steps[r], split) for r in who)
                if rows < step.out_shape[0]:
                    ripe.setdefault(who[-1], []).append((name, rows * step.out_shape[1] * step.out_shape[2]))
        if step.scratch is not None and _splits(step, split):
            put(step.scratch, _split_scratch(step, split))
        if step.global_pool:
            put(f"{step.layer}/scratch", _pool_scratch(step))
        for name, ring in ripe.pop(i, []):
            put(name, ring)
        if INPUT in step.inputs:
            image_shape = image_shape or step.in_shape
            image_need = max(image_need, _need(step, split))
        image = 0
        if image_shape is not None:
            h, w, c = image_shape
            image = min(h, image_need) * w * c
        out.append(image + total)
    return out


def segments(steps: list[Step], sizes: dict[str, int], layers: list[Layer], heads: list[HeadSpec],
             final: str | None, stream: bool = True, inplace: bool = True,
             streamed_estimates: dict[tuple[int, int, int], int] | None = None) -> list[Segment]:
    """Cut the layers into segments (module docstring): a dynamic programme over the cut points
    minimises the largest segment estimate, then (a second pass under that peak) the number of
    streamed steps. Every streamed segment from one start is scored in one sweep
    (:func:`_streamed_sweep`); ``streamed_estimates`` ((first step, last step, split) -> bytes)
    is filled and reused: a streamed segment's estimate does not depend on ``inplace``, so
    :func:`plan` shares it between its two plans of the same layers."""
    ranges = _layer_ranges(steps, layers, heads)
    n = len(layers)

    def options(i: int):
        """(end layer, streamed, split) of the segments starting at layer i."""
        yield i + 1, False, 1
        if not stream:
            return
        first = ranges[i][0]
        splitting = {split: False for split in SPLITS}  # a step of first..last splits this way
        for j in range(i + 1, n + 1):
            added = range(ranges[j - 1][0], ranges[j - 1][1])  # the steps of layer j - 1
            if not all(has_row_kernel(steps[k]) for k in added):
                break
            for split in SPLITS:
                splitting[split] = splitting[split] or any(_splits(steps[k], split) for k in added)
            last = ranges[j - 1][1] - 1
            if last > first or INPUT in steps[first].inputs:  # one step: worth it for the input's rows
                for split in SPLITS:
                    if split == 1 or splitting[split]:
                        yield j, True, split

    readers = _readers(steps)
    cost: dict[tuple[int, int, bool, int], int] = {}
    shared = streamed_estimates if streamed_estimates is not None else {}
    for i in range(n):
        first = ranges[i][0]
        chosen = list(options(i))
        for split in {split for _, streamed, split in chosen if streamed}:
            if (first, first, split) not in shared:  # every streamed segment from `first`, in one sweep
                end = max(ranges[j - 1][1] - 1 for j, streamed, _ in chosen if streamed)
                for last, c in enumerate(_streamed_sweep(steps, sizes, readers, first, end, final, split), first):
                    shared[(first, last, split)] = c
        for j, streamed, split in chosen:
            last = ranges[j - 1][1] - 1
            cost[(i, j, streamed, split)] = (shared[(first, last, split)] if streamed else
                                             _estimate(steps, sizes, readers, first, last, False, final, split, inplace))
    starting: list[list[tuple[int, bool, int, int]]] = [[] for _ in range(n)]  # i -> (j, streamed, split, cost)
    for (i, j, streamed, split), c in cost.items():
        starting[i].append((j, streamed, split, c))
    inf = float("inf")
    best = [inf] * (n + 1)  # pass 1: the smallest peak of layers [0, j)
    best[0] = 0
    for i in range(n):
        for j, streamed, split, c in starting[i]:
            if best[i] < inf:
                best[j] = min(best[j], max(best[i], c))
    peak = best[n]
    # pass 2, under that peak: the fewest split blocks (each re-expands rows), then streamed steps
    fewest: list[tuple[float, list[tuple[int, int, bool, int]]]] = [(inf, [])] * (n + 1)
    fewest[0] = (0, [])
    for i in range(n):
        if fewest[i][0] == inf:
            continue
        for j, streamed, split, c in starting[i]:
            if c > peak:
                continue
            first, last = ranges[i][0], ranges[j - 1][1] - 1
            count = fewest[i][0] + (last - first + 1 if streamed else 0)
            count += 1000 * sum(_splits(steps[k], split) for k in range(first, last + 1))
            if count < fewest[j][0]:
                fewest[j] = (count, fewest[i][1] + [(i, j, streamed, split)])
    out = []
    for i, j, streamed, split in fewest[n][1]:
        first, last = ranges[i][0], ranges[j - 1][1] - 1
        names = tuple(layer.name for layer in layers[i:j])
        note = "row by row" if streamed else _segment_note(steps, first, last)
        if split > 1:
            note += f", stride-2 MBConv in {split} channel groups"
        out.append(Segment(first, last, names, streamed, note, split))
    return out


def plan(layers: list[Layer], count_input: bool = False, heads: list[HeadSpec] | None = None,
         stream: bool = True) -> ArenaPlan:
    """Lower ``layers`` (and detection ``heads``), cut them into segments and place their buffers
    in one arena (see the module docstring). ``stream=False``: every map whole, as the runtime
    did before streaming (no in-place MBConv either). The segment estimates ignore the placement's
    fragmentation, so the plans with and without in-place MBConv blocks are both placed and the
    smaller (arena + streamed input rows) is kept."""
    if not stream:
        return _plan(layers, count_input, heads, False, False)
    streamed_estimates: dict[tuple[int, int, int], int] = {}
    plans = [_plan(layers, count_input, heads, True, inplace, streamed_estimates) for inplace in (True, False)]
    return min(plans, key=lambda p: (p.arena_bytes + p.stream_input_bytes, sum(s.streamed for s in p.segments)))


def _plan(layers: list[Layer], count_input: bool, heads: list[HeadSpec] | None, stream: bool,
          inplace: bool, streamed_estimates: dict[tuple[int, int, int], int] | None = None) -> ArenaPlan:
    heads = heads or []
    steps, sizes = lower(layers, heads)
    if not steps:
        raise UserError("the architecture has no layers to run")
    final: str | None = None
    if not heads:
        final = steps[-1].output
        if final == INPUT:
            raise UserError("the architecture's output is its input")
    cuts = segments(steps, sizes, layers, heads, final, stream, inplace, streamed_estimates)
    readers = _readers(steps)
    rename: dict[str, str] = {}
    for seg in cuts:
        for i in range(seg.first, seg.last + 1):
            step = steps[i]
            alias = not seg.streamed and step.scratch is not None and _inplace_ok(steps, readers, i, final, inplace)
            step.inputs = tuple(rename.get(n, n) for n in step.inputs)
            if seg.streamed and _splits(step, seg.split):  # the split blocks read `kernel` input rows at once
                step.groups, step.need = seg.split, step.kernel
            if seg.streamed and step.global_pool:
                step.scratch = f"{step.layer}/scratch"
                sizes[step.scratch] = _pool_scratch(step)
            if alias:
                rename[step.output] = step.inputs[0]
                del sizes[step.output]
                step.output, step.inplace = step.inputs[0], True
                sizes[step.scratch] = _inplace_scratch(step)
    final = rename.get(final, final) if final is not None else None
    span = list(range(len(steps)))
    span_first, span_last = list(span), list(span)
    for seg in cuts:
        if seg.streamed:
            for i in range(seg.first, seg.last + 1):
                span_first[i], span_last[i] = seg.first, seg.last
    held = _sizes(steps, sizes, cuts, final)
    buffers = {name: Buffer(name, _align(size), rows=rows) for name, (size, rows) in held.items()}
    for i, step in enumerate(steps):
        for name in (step.output, step.scratch):
            if name in buffers and buffers[name].first < 0:
                buffers[name].first = span_first[i]
        for name in (*step.inputs, step.output, step.scratch):
            if name is not None and name in buffers:
                buffers[name].last = max(buffers[name].last, span_last[i])
    if final is not None:
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
    input_last = max(span_last[i] for i, step in enumerate(steps) if INPUT in step.inputs)
    readers = [i for i, step in enumerate(steps) if INPUT in step.inputs]
    first_seg = cuts[0]
    input_rows = h
    if first_seg.streamed and all(first_seg.first <= r <= first_seg.last for r in readers):
        input_rows = min(h, max(steps[r].need for r in readers))
    peaks: dict[str, int] = {}
    for i, step in enumerate(steps):
        live = [b for b in buffers.values() if b.first <= i <= b.last]
        high = max((b.offset + b.size for b in live), default=0)
        if count_input and i <= input_last:
            high += h * w * c
        peaks[step.layer] = max(peaks.get(step.layer, 0), high)
    return ArenaPlan(steps, buffers, arena, final, peaks, cuts, input_rows)
