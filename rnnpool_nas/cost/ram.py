"""Peak RAM of a spec under the paper's two conventions (facts file, section 2), in elements.

``standard`` (layer by layer; the paper's headline tables):
- MBConv / depthwise-separable block: input + output (the expanded map is never whole).
- Convolution, pooling, linear: input + output. A 1x1 convolution followed by a global pool is
  computed on the fly into the pool: input + pooled output.
- RNNPoolLayer and every layer in front of it (the *prefix*) are computed patch by patch: for
  each output patch only its receptive field in each prefix map is computed, so the layer costs
  its output + the largest (input region + output region) of one patch through the prefix +
  RNNPool's own working buffer ``max(r, c) * h1 + 4 * h2``. A second RNNPool (or an RNNPool
  pool) is an ordinary layer: input + output.
- The input image is not counted (a camera may stream it) unless ``count_input``: then it is
  held until the last layer that reads it (the whole prefix when an RNNPool follows it).
- Detection heads run when their source map is produced and stream their predictions to the
  decoder: source + the extra conv's output. A head whose source lies in the patch-wise prefix is
  computed in the same patch pass and costs nothing extra.

``optimal`` (row by row, no recomputation; Proposition 1 and Claim 4):
- The first *run* (the RNNPool and its prefix; without an RNNPool, the leading convolutions
  and the first block) is computed row by row from the streamed image: its output + for every
  map q inside the run ``c_q * w_q * clip(RF_q - S_q, 0, h_q)`` rows, where RF_q is how many rows
  of q one output row needs and S_q the product of strides from q to the output; the image's
  rows count (its whole size only with ``count_input``). For MobileNetV2 this is the paper's
  ``112*2*32 + 112*2*32 + 112*112*16 + 224*5*3``; as in Proposition 1, an MBConv's expanded map
  counts its rows even when ``t = 1``.
- Every later MBConv block (``k`` x ``k`` depthwise, stride ``s``): Proposition 1,
  ``max(|in| + (k-s) w_out c_out, |out| + (k-s) w_in c_in) + (k-s) t c_in w_in``; other
  convolutions the same without the expansion term; pooling and linear layers: input + output.
- "Rows" run along the longer side, so the row width ``w`` is the shorter side of a map.

Both return one :class:`RamRow` per layer (and per detection head) so a report can show which
block sets the peak.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..arch.spec import ArchSpec, Layer, head_name, source_shapes
from ..lower.plan import head_specs, plan


@dataclass(slots=True)
class RamRow:
    name: str
    kind: str
    elems: int
    note: str = ""


def _prims(layer: Layer) -> list[tuple[int, int, int, int, int]]:
    """The layer as primitive ops (kernel, stride, out_channels, out_h, out_w) along rows."""
    a = layer.args
    (hi, wi, ci), (ho, wo, co) = layer.in_shape, layer.out_shape
    if layer.kind == "bottleneck":
        hidden = a["t"] * ci
        return [(1, 1, hidden, hi, wi), (a["kernel"], a["stride"], hidden, ho, wo), (1, 1, co, ho, wo)]
    if layer.kind == "dwsep":
        return [(a["kernel"], a["stride"], ci, ho, wo), (1, 1, co, ho, wo)]
    if layer.kind in ("rnnpool", "pool"):
        return [(a["patch" if layer.kind == "rnnpool" else "kernel"][0], a["stride"][0], co, ho, wo)]
    if layer.kind == "conv":
        return [(a["kernel"], a["stride"], co, ho, wo)]
    return [(hi, hi, co, ho, wo)]  # linear: the whole map at once


def _first_rnnpool(layers: list[Layer]) -> int | None:
    for i, layer in enumerate(layers):
        if layer.kind == "rnnpool":
            return i
    return None


def _feeds_global_pool(layer: Layer, nxt: Layer | None) -> bool:
    """A 1x1 convolution whose output goes straight into a global average/max pool: computed
    pixel by pixel into the pool, its output map is never held."""
    return (
        layer.kind == "conv" and layer.args["kernel"] == 1 and nxt is not None and nxt.kind == "pool"
        and nxt.args["global_pool"] and not nxt.is_rnnpool
    )


def _rnn_buffer(layer: Layer) -> int:
    r, c = layer.args["patch"]
    return max(r, c) * layer.args["h1"] + 4 * layer.args["h2"]


def _patch_buffer(prefix: list[Layer], region: tuple[int, int]) -> int:
    """Largest (input region + output region) of one RNNPool patch through the prefix maps."""
    rh, rw = region
    worst = 0
    for layer in reversed(prefix):
        prims = _prims(layer)
        channels_in = [layer.in_shape[2]] + [p[2] for p in prims[:-1]]
        for (k, s, cout, _, _), cin in zip(reversed(prims), reversed(channels_in)):
            rh_in, rw_in = (rh - 1) * s + k, (rw - 1) * s + k
            worst = max(worst, rh * rw * cout + rh_in * rw_in * cin)
            rh, rw = rh_in, rw_in
    return worst


def _run_rows(layers: list[Layer], input_shape: tuple[int, int, int], count_input: bool) -> int:
    """Claim 4 for a run starting at the image: output + the rows of every map inside it."""
    maps: list[tuple[int, int, int]] = [input_shape]  # (h, w, c) of every map, image first
    prims: list[tuple[int, int]] = []
    for layer in layers:
        for k, s, c, h, w in _prims(layer):
            prims.append((k, s))
            maps.append((h, w, c))
    rows_of: list[int] = []  # from the last inner map back to the image
    rf, stride = 1, 1
    for (k, s), (h, w, c) in zip(reversed(prims), reversed(maps[:-1])):
        rf, stride = (rf - 1) * s + k, stride * s
        rows_of.append(c * min(h, w) * min(max(rf - stride, 0), max(h, w)))
    if count_input:  # the whole image instead of its rows
        rows_of[-1] = math.prod(input_shape)
    return math.prod(maps[-1]) + sum(rows_of)


def standard(spec: ArchSpec, layers: list[Layer], count_input: bool = False) -> list[RamRow]:
    rows: list[RamRow] = []
    first = _first_rnnpool(layers)
    image = spec.input[0] * spec.input[1] * spec.input[2] if count_input else 0
    start = 0
    if first is not None:  # the patch-wise prefix and the RNNPool itself
        note = f"patch by patch inside RNNPool {layers[first].name}"
        rows.extend(RamRow(layer.name, layer.kind, image, note) for layer in layers[:first])
        layer = layers[first]
        elems = layer.out_elems + _patch_buffer(layers[:first], layer.args["patch"]) + _rnn_buffer(layer) + image
        rows.append(RamRow(layer.name, layer.kind, elems, "output + one patch's buffers"))
        start, image = first + 1, 0
    n = len(layers)
    i = start
    while i < n:
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < n else None
        if _feeds_global_pool(layer, nxt):
            rows.append(RamRow(layer.name, layer.kind, layer.in_elems + nxt.out_elems + (image if i == 0 else 0),
                               f"fused with the global pool {nxt.name}"))
            rows.append(RamRow(nxt.name, nxt.kind, 0, f"computed on the fly by {layer.name}"))
            i += 2
            continue
        if i == 0:  # the image: held (count_input) or streamed
            rows.append(RamRow(layer.name, layer.kind, image + layer.out_elems))
        else:
            rows.append(RamRow(layer.name, layer.kind, layer.in_elems + layer.out_elems))
        i += 1
    rows.extend(_head_rows(spec, layers, first))
    return rows


def _head_rows(spec: ArchSpec, layers: list[Layer], first: int | None) -> list[RamRow]:
    if spec.detection is None:
        return []
    out = []
    stage_of_first = layers[first].stage if first is not None else -1
    for j, (src, (shape, pred, _)) in enumerate(zip(spec.detection.sources, source_shapes(spec, layers))):
        if src.stage < stage_of_first:
            out.append(RamRow(head_name(j), "head", 0, f"patch by patch inside RNNPool {layers[first].name}"))
            continue
        extra = math.prod(pred) if src.extra_conv is not None else 0
        out.append(RamRow(head_name(j), "head", math.prod(shape) + extra, "source + extra conv; predictions streamed"))
    return out


def optimal(spec: ArchSpec, layers: list[Layer], count_input: bool = False) -> list[RamRow]:
    first = _first_rnnpool(layers)
    if first is None:  # leading convolutions and the first block
        first = 0
        while first < len(layers) - 1 and layers[first].kind == "conv" and layers[first].args["kernel"] > 1:
            first += 1
    run = layers[: first + 1]
    rows = [RamRow(layer.name, layer.kind, 0, f"row by row inside {run[-1].name}") for layer in run[:-1]]
    elems = _run_rows(run, spec.input, count_input)
    if run[-1].kind == "rnnpool":
        elems += _rnn_buffer(run[-1])
    rows.append(RamRow(run[-1].name, run[-1].kind, elems, "row-by-row run from the image"))
    rest = layers[first + 1 :]
    for i, layer in enumerate(rest):
        a = layer.args
        (hi, wi, ci), (ho, wo, co) = layer.in_shape, layer.out_shape
        if i > 0 and _feeds_global_pool(rest[i - 1], layer):
            rows.append(RamRow(layer.name, layer.kind, 0, f"computed on the fly by {rest[i - 1].name}"))
        elif _feeds_global_pool(layer, rest[i + 1] if i + 1 < len(rest) else None):
            elems = layer.in_elems + rest[i + 1].out_elems
            rows.append(RamRow(layer.name, layer.kind, elems, f"fused with the global pool {rest[i + 1].name}"))
        elif layer.kind in ("bottleneck", "dwsep", "conv", "rnnpool"):
            k = a["patch"][0] if layer.kind == "rnnpool" else a["kernel"]
            s = a["stride"][0] if layer.kind == "rnnpool" else a["stride"]
            keep = max(k - s, 0)
            elems = max(layer.in_elems + keep * min(ho, wo) * co, layer.out_elems + keep * min(hi, wi) * ci)
            if layer.kind == "bottleneck":
                elems += keep * a["t"] * ci * min(hi, wi)
            rows.append(RamRow(layer.name, layer.kind, elems, "Proposition 1" if layer.kind == "bottleneck" else "row by row"))
        else:
            rows.append(RamRow(layer.name, layer.kind, layer.in_elems + layer.out_elems))
    rows.extend(_head_rows(spec, layers, _first_rnnpool(layers)))
    return rows


def runtime(spec: ArchSpec, layers: list[Layer], count_input: bool = False) -> list[RamRow]:
    """The exported C runtime's static arena (``lower.plan``: whole-map and row-streamed
    segments), in bytes of int8 maps, rings of rows and int32 scratch: each layer's (and head's)
    row is the arena's high-water mark while its kernels run (a streamed segment's layers share
    one), so the peak is exactly the arena the exporter allocates. Detection outputs go straight
    to the caller's output buffer and are not in the arena."""
    heads = head_specs(spec)
    return runtime_rows(layers, len(heads), plan(layers, count_input, heads))


def runtime_rows(layers: list[Layer], n_heads: int, arena) -> list[RamRow]:
    """:func:`runtime`'s rows from a plan already made."""
    notes: dict[str, str] = {}
    for seg in arena.segments:
        note = (f"row by row ({seg.layers[0]}..{seg.layers[-1]})" if seg.streamed
                else seg.note or "arena high-water mark")
        for k in range(seg.first, seg.last + 1):
            notes.setdefault(arena.steps[k].layer, note)
    rows = [RamRow(layer.name, layer.kind, arena.layer_peaks[layer.name], notes[layer.name]) for layer in layers]
    rows += [RamRow(name, "head", arena.layer_peaks.get(name, 0), notes.get(name, ""))
             for name in map(head_name, range(n_heads))]
    return rows


CONVENTIONS = {"standard": standard, "optimal": optimal, "runtime": runtime}
