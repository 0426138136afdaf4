"""The runtime convention: the C runtime's memory plan, and the cost model reporting exactly it."""

from __future__ import annotations

import pytest

from rnnpool_nas.arch.presets import get_preset, list_presets
from rnnpool_nas.arch.spec import ArchSpec, SpecError, expand, head_name
from rnnpool_nas.cost import evaluate
from rnnpool_nas.cost.arena import INPUT, OUTPUT, head_specs, mbconv_scratch_bytes, plan, rnnpool_scratch_words
from rnnpool_nas.errors import UserError

from .conftest import one_line_error

PRESETS = [p.name for p in list_presets()]


def _check_plan(arena) -> None:
    bufs = list(arena.buffers.values())
    for b in bufs:
        assert b.offset >= 0 and b.offset % 4 == 0 and b.size % 4 == 0
        assert b.offset + b.size <= arena.arena_bytes
        assert 0 <= b.first <= b.last
        assert b.rows is None or 0 < b.rows
    for i, a in enumerate(bufs):  # two buffers alive at the same step never share a byte
        for b in bufs[i + 1:]:
            if a.first <= b.last and b.first <= a.last:
                assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset, (a, b)
    assert arena.arena_bytes == max(b.offset + b.size for b in bufs)


@pytest.mark.parametrize("name", PRESETS)
def test_presets_plan_is_sound_and_the_cost_model_reports_it(name):
    spec = get_preset(name)
    arena = plan(expand(spec), heads=head_specs(spec))
    _check_plan(arena)
    costs = evaluate(spec, "int8", "runtime")
    assert costs.peak_ram_bytes == arena.arena_bytes
    assert max(s.ram_bytes for s in costs.stages) == arena.arena_bytes
    # a layer run on whole maps holds its input and output at once
    whole = {name for seg in arena.segments if not seg.streamed for name in seg.layers}
    for layer in expand(spec)[1:]:
        if layer.name in whole:
            assert arena.arena_bytes >= layer.in_elems + layer.out_elems
    # streaming never costs RAM: the whole-map plan is an option of the planner
    assert arena.arena_bytes <= plan(expand(spec), heads=head_specs(spec), stream=False).arena_bytes


def _tiny(stages) -> ArchSpec:
    return ArchSpec.from_dict({"name": "t", "input": [8, 8, 1], "num_classes": 3, "stages": stages})


def test_hand_computed_arena():
    """conv 8x8x4 (256 B) -> conv 8x8x8 (512 B) -> avg pool (8 B) -> linear (3 -> 4 B).
    Whole maps: the two conv outputs live together (768 B); the pool's output reuses the first
    map's bytes. Streamed: the two convs and the global pool run row by row; the first conv's
    output is a ring of the second's 3 kernel rows (3 * 8 * 4 = 96 B), the second's a ring of one
    row (64 B) that the pool sums into 8 int32 words (32 B) before writing its 8 B."""
    spec = _tiny([{"type": "conv", "c": 4, "kernel": 3}, {"type": "conv", "c": 8, "kernel": 3},
                  {"type": "pool", "kind": "avg"}, {"type": "linear"}])
    whole = plan(expand(spec), stream=False)
    _check_plan(whole)
    assert [s.op for s in whole.steps] == ["conv", "conv", "avgpool", "fc"]
    assert whole.arena_bytes == 256 + 512
    assert whole.steps[0].inputs == (INPUT,)  # the caller's input is not in the arena
    # counting the input adds it while it is read
    assert plan(expand(spec), count_input=True, stream=False).layer_peaks["0.0"] == 768 + 64
    arena = plan(expand(spec))
    _check_plan(arena)
    assert [(s.first, s.last, s.streamed) for s in arena.segments] == [(0, 2, True), (3, 3, False)]
    assert arena.buffers["0.0/out"].rows == 3 and arena.buffers["0.0/out"].size == 96
    assert arena.buffers["1.0/out"].rows == 1 and arena.buffers["2.0/scratch"].size == 32
    assert arena.arena_bytes == 96 + 64 + 32 + 8
    assert evaluate(spec, "int8", "runtime").peak_ram_bytes == 200
    # the input is read during the whole streamed segment
    assert plan(expand(spec), count_input=True).layer_peaks["1.0"] == 200 + 64


def test_mbconv_is_one_streamed_call():
    """An MBConv holds its input, its output and ``kernel`` expanded rows + one depthwise row."""
    spec = _tiny([{"type": "conv", "c": 8, "kernel": 3},
                  {"type": "bottleneck", "c": 8, "t": 2, "kernel": 3, "s": 1, "n": 1},
                  {"type": "pool", "kind": "avg"}, {"type": "linear"}])
    arena = plan(expand(spec), stream=False)
    _check_plan(arena)
    assert [s.op for s in arena.steps] == ["conv", "mbconv", "avgpool", "fc"]
    mb = arena.steps[1]
    assert arena.buffers[mb.scratch].size == mbconv_scratch_bytes(True, 3, 8, 8, 16) == 3 * 8 * 16 + 8 * 16
    # block input (512) + output (512) + scratch (512) at the MBConv; the whole maps would need 2560
    assert arena.arena_bytes == 512 + 512 + 512
    # streamed after the conv: the block reads each input row once to expand it and again for the
    # residual one row later, so the conv's output is a ring of 2 rows (2 * 8 * 8 = 128 B); its
    # own output is one row (64 B) that the global pool sums (32 B of int32) into its 8 B
    streamed = plan(expand(spec))
    _check_plan(streamed)
    assert streamed.segments[0].streamed and streamed.buffers["0.0/out"].rows == 2
    assert streamed.arena_bytes == 128 + 512 + 64 + 32 + 8


def test_rnnpool_scratch():
    spec = get_preset("rnnpool-tiny")
    arena = plan(expand(spec))
    step = next(s for s in arena.steps if s.op == "rnnpool")
    assert arena.buffers[step.scratch].size == 4 * rnnpool_scratch_words(4, 4, 8, 8) == 4 * (128 + 64 + 32 + 32)


def test_runtime_convention_errors():
    with pytest.raises(UserError) as e:
        evaluate(get_preset("rnnpool-tiny"), "float32", "runtime")
    one_line_error(e, "int8")


def test_detection_heads_write_to_the_output_buffer():
    """Heads run right after their source layer; offsets and scores go to the caller's buffer
    (outside the arena), so only L2Norm / extra-conv / max-out maps take arena space."""
    spec = get_preset("rnnpool-face-m4")
    layers = expand(spec)
    arena = plan(layers, heads=head_specs(spec))
    _check_plan(arena)
    assert arena.output is None
    assert evaluate(spec, "int8", "runtime").peak_ram_bytes == arena.arena_bytes
    outs = [s.output for s in arena.steps if s.output.startswith(OUTPUT)]
    sizes = [h * w * c for s in arena.steps if s.output.startswith(OUTPUT) for h, w, c in [s.out_shape]]
    assert [int(o[len(OUTPUT):]) for o in outs] == [sum(sizes[:i]) for i in range(len(sizes))]
    assert sum(sizes) == 6 * (30 * 40 * 2 + 15 * 20 * 2)
    first_head = next(i for i, s in enumerate(arena.steps) if s.layer == head_name(0))
    assert arena.steps[first_head - 1].layer == "2.0" and arena.steps[first_head].op == "l2norm"
    assert arena.arena_bytes < 188 * 1024  # the paper's RNNPool-Face-M4 on an STM32F439: 188 KB


@pytest.mark.parametrize("space_name", ["fashion-mnist", "face-detection"])
def test_the_streamed_sweep_is_the_direct_estimate(space_name):
    """``segments`` scores every streamed segment from one start in one incremental sweep; it
    must give exactly the figure of the direct per-segment estimate, for every end and split
    (search candidates of a classifier space and a detector space, and every preset)."""
    import importlib

    import optuna

    from rnnpool_nas.search.space import SearchSpace

    P = importlib.import_module("rnnpool_nas.lower.plan")  # the package's `plan` is the function
    space = SearchSpace.load(space_name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    specs = [get_preset(name) for name in PRESETS]
    while len(specs) < len(PRESETS) + 12:
        try:
            specs.append(space.build(space.suggest(study.ask())))
        except (SpecError, UserError):  # a combination the space cannot build: draw again
            continue
    checked = 0
    for spec in specs:
        heads = head_specs(spec)
        steps, sizes = P.lower(expand(spec), heads)
        final = None if heads else steps[-1].output
        readers = P._readers(steps)
        for first in range(len(steps)):
            end = first
            while end + 1 < len(steps) and P.has_row_kernel(steps[end + 1]):
                end += 1
            for split in P.SPLITS:
                sweep = P._streamed_sweep(steps, sizes, readers, first, end, final, split)
                for last in range(first, end + 1):
                    assert sweep[last - first] == P._estimate(steps, sizes, readers, first, last, True, final, split)
                    checked += 1
    assert checked > 1000
