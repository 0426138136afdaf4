"""The analytical cost model: pure arithmetic on an :class:`ArchSpec`, no torch.

``evaluate(spec, dtype="int8", convention="standard")`` returns :class:`Costs`: peak RAM in
bytes (and which block sets it), MAdds, parameters, deployed model bytes, the exported int8
runtime's latency on a Cortex-M4 (``cost.latency``: cycles predicted from the shapes of its
kernel calls, and milliseconds at ``clock_mhz``) and a per-stage profile. Conventions live in ``cost.ram`` (``standard``, ``optimal``, and ``runtime``: the
exported C runtime's static arena, planned by the one lowering ``lower.plan``); each is a function
``(spec, layers, count_input) -> list[RamRow]`` in ``CONVENTIONS``. Sizes are bytes; the paper's KB/MB are KiB/MiB.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..arch.spec import ArchSpec, expand, source_shapes
from ..errors import UserError
from ..units import DEFAULT_CLOCK_MHZ, cycles_to_ms
from .latency import UncalibratedKernel, predict_spec
from .madds import Count, head_count, layer_count
from ..lower.plan import head_specs, plan
from .ram import CONVENTIONS, RamRow, runtime_rows

DTYPE_BYTES = {"int8": 1, "float32": 4}


@dataclass(slots=True)
class StageCost:
    name: str
    kind: str
    out_shape: tuple[int, int, int]
    ram_bytes: int
    madds: int
    params: int
    note: str = ""
    latency_cycles: int | None = None  # the Cortex-M4 runtime's kernel calls of this stage
    latency_ms: float | None = None


@dataclass
class Costs:
    peak_ram_bytes: int
    madds: int
    params: int
    model_bytes: int
    bottleneck: str
    convention: str
    dtype: str
    input_counted: bool
    stages: list[StageCost] = field(default_factory=list)
    latency_cycles: int | None = None
    latency_ms: float | None = None
    # runtime convention: model_run_stream's input ring (rows x width x channels; the whole image
    # when the first segment is not streamed) and the RAM of arena + that ring
    input_stream_bytes: int | None = None
    peak_ram_stream_input_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(
    spec: ArchSpec, dtype: str = "int8", convention: str = "standard", count_input: bool = False,
    profile: bool = True, clock_mhz: float = DEFAULT_CLOCK_MHZ,
) -> Costs:
    """Score ``spec``; raises ``UserError`` for an unknown dtype/convention, ``SpecError`` for
    an invalid spec. ``profile=False`` leaves ``stages`` empty (the search's fast path).
    Latency is the int8 C runtime's on a Cortex-M4 at ``clock_mhz`` (whatever ``dtype``: it is
    what the exporter ships), detectors' heads included; ``None`` for kernels newer than the
    latency model's calibration."""
    if dtype not in DTYPE_BYTES:
        raise UserError(f"unknown dtype {dtype!r} (one of {', '.join(DTYPE_BYTES)})")
    if convention not in CONVENTIONS:
        raise UserError(f"unknown RAM convention {convention!r} (one of {', '.join(CONVENTIONS)})")
    if convention == "runtime" and dtype != "int8":
        raise UserError("the runtime convention is the int8 C runtime's arena: use --dtype int8")
    nbytes = DTYPE_BYTES[dtype]
    layers = expand(spec)
    arena = None
    if convention == "runtime":  # one plan for the rows and the streamed input
        heads = head_specs(spec)
        arena = plan(layers, count_input, heads)
        ram_rows: list[RamRow] = runtime_rows(layers, len(heads), arena)
    else:
        ram_rows = CONVENTIONS[convention](spec, layers, count_input)
    counts: list[Count] = [layer_count(layer) for layer in layers]
    shapes: list[tuple[int, int, int]] = [layer.out_shape for layer in layers]
    if spec.detection is not None:
        for src, (shape, pred, _) in zip(spec.detection.sources, source_shapes(spec, layers)):
            counts.append(head_count(src, shape, pred))
            shapes.append(pred[:2] + (4 + (4 if src.max_out else 2),))
    madds = params = weights = channels = 0
    for count in counts:
        madds += count[0]
        params += count[1]
        weights += count[2]
        channels += count[3]
    peak_row = max(ram_rows, key=lambda row: row.elems)
    per_layer: dict[str, float] = {}
    cycles = None
    try:  # stage rows are layer names and head_name(j), as predict_spec names them
        per_layer, cycles = predict_spec(spec, layers, arena=arena)
    except UncalibratedKernel:  # a kernel newer than cost/latency_m4.json: unknown latency
        per_layer, cycles = {}, None
    stages = []
    if profile:
        for row, count, shape in zip(ram_rows, counts, shapes):
            stage = StageCost(row.name, row.kind, shape, row.elems * nbytes, count[0], count[1], row.note)
            if row.name in per_layer:
                stage.latency_cycles = round(per_layer[row.name])
                stage.latency_ms = cycles_to_ms(per_layer[row.name], clock_mhz)
            stages.append(stage)
    scale_bytes = 4 if dtype == "int8" else 0
    model_bytes = weights * nbytes + channels * (4 + scale_bytes)
    costs = Costs(peak_row.elems * nbytes, madds, params, model_bytes, peak_row.name, convention, dtype,
                  count_input, stages, None if cycles is None else round(cycles),
                  None if cycles is None else cycles_to_ms(cycles, clock_mhz))
    if arena is not None:
        costs.input_stream_bytes = arena.stream_input_bytes
        costs.peak_ram_stream_input_bytes = arena.arena_bytes + arena.stream_input_bytes
    return costs


__all__ = ["Costs", "StageCost", "CONVENTIONS", "DTYPE_BYTES", "evaluate"]
