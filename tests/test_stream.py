"""Row-streamed segments in C (runtime/stream.c): every streamed kernel is byte for byte the int8
reference on odd shapes (strides 1 and 2, patch > stride, patch = stride, rectangular maps, every
RNNPool padding, MBConv with and without expansion and residual, grouped and depthwise
convolutions, detection heads with L2Norm, an extra conv and max-out), through model_run and
through model_run_stream (the input delivered row by row), on the host, under ASan/UBSan, and on a
Cortex-M4 under QEMU; the generated arena is the plan's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rnnpool_nas.arch.presets import get_preset, set_field
from rnnpool_nas.arch.spec import ArchSpec, expand, head_name
from rnnpool_nas.cost import evaluate
from rnnpool_nas.export.exporter import write_project
from rnnpool_nas.lower.plan import head_specs, mbconv_split_scratch_bytes, plan
from rnnpool_nas.measure.untrained import untrained_model
from rnnpool_nas.train.quant import quantize

from .test_export import _make, _need


def _spec(name: str, shape, stages) -> ArchSpec:
    return ArchSpec.from_dict({"name": name, "input": list(shape), "num_classes": 5, "stages": stages})


CASES = {
    # dense stem stride 2 on 3 channels (rectangular, odd), a 3x3 conv, RNNPool patch 3 > stride 2
    # (reference padding replicates the last row and column), MBConv t=2 with residual
    "stem-s2-rnnpool-3-2": _spec("a", (23, 17, 3), [
        {"type": "conv", "c": 6, "kernel": 3, "stride": 2},
        {"type": "conv", "c": 5, "kernel": 3, "stride": 1},
        {"type": "rnnpool", "patch_size": 3, "stride": 2, "h1": 4, "h2": 3},
        {"type": "bottleneck", "t": 2, "c": 12, "n": 2, "s": 1, "kernel": 3},
        {"type": "conv", "c": 12, "kernel": 1},
        {"type": "pool", "kind": "avg"}, {"type": "linear"}]),
    # 5x5 conv, RNNPool patch = stride (4/4) with "same" padding, depthwise-separable stride 2,
    # MBConv without expansion (t=1), MBConv 5x5 stride 2
    "patch-eq-stride-same": _spec("b", (26, 19, 1), [
        {"type": "conv", "c": 4, "kernel": 5, "stride": 1},
        {"type": "rnnpool", "patch_size": 4, "stride": 4, "h1": 3, "h2": 2, "padding": "same"},
        {"type": "dwsep", "c": 10, "n": 1, "s": 2, "kernel": 3},
        {"type": "bottleneck", "t": 1, "c": 10, "n": 1, "s": 1, "kernel": 3},
        {"type": "bottleneck", "t": 3, "c": 16, "n": 1, "s": 2, "kernel": 5},
        {"type": "pool", "kind": "max"}, {"type": "linear"}]),
    # grouped 3x3 conv, RNNPool patch 5 stride 3 with zero padding 1, a strided pointwise
    "grouped-padded-rnnpool": _spec("c", (21, 30, 2), [
        {"type": "conv", "c": 8, "kernel": 3, "stride": 1, "groups": 2},
        {"type": "rnnpool", "patch_size": [5, 3], "stride": [3, 2], "h1": 4, "h2": 4, "padding": 1},
        {"type": "conv", "c": 8, "kernel": 1, "stride": 2},
        {"type": "bottleneck", "t": 2, "c": 8, "n": 1, "s": 1, "kernel": 3},
        {"type": "pool", "kind": "avg"}, {"type": "linear"}]),
    # a stride-2 MBConv whose 3-row expanded ring would dominate: run in channel groups
    # (RN_MBCONV_SPLIT_SCRATCH_BYTES), reading 3 rows of the RNNPool's output at once
    "split-mbconv": _spec("f", (29, 22, 1), [
        {"type": "conv", "c": 4, "kernel": 3, "stride": 1},
        {"type": "rnnpool", "patch_size": 2, "stride": 2, "h1": 4, "h2": 4},
        {"type": "bottleneck", "t": 4, "c": 8, "n": 1, "s": 2, "kernel": 3},
        {"type": "pool", "kind": "avg"}, {"type": "linear"}]),
    # the same with 9 channels a group: the group's depthwise row and the assembled row stay
    # word-aligned in the scratch (RN_MBCONV_SPLIT_SCRATCH_BYTES), so the projection runs packed
    "split-mbconv-odd-groups": _spec("h", (29, 22, 1), [
        {"type": "conv", "c": 4, "kernel": 3, "stride": 1},
        {"type": "rnnpool", "patch_size": 2, "stride": 2, "h1": 4, "h2": 3},
        {"type": "bottleneck", "t": 3, "c": 8, "n": 1, "s": 2, "kernel": 3},
        {"type": "pool", "kind": "avg"}, {"type": "linear"}]),
    # a wide 1x1 conv into a global max pool: streamed, the pool keeps one row of maxima
    "wide-head-global-max": _spec("g", (18, 25, 2), [
        {"type": "conv", "c": 4, "kernel": 3, "stride": 2},
        {"type": "rnnpool", "patch_size": 3, "stride": 1, "h1": 3, "h2": 2},
        {"type": "conv", "c": 96, "kernel": 1},
        {"type": "pool", "kind": "max"}, {"type": "linear"}]),
    # RNNPool straight on the image (no stem), then MBConv stride 2 and a second RNNPool
    "rnnpool-first": _spec("d", (33, 20, 3), [
        {"type": "rnnpool", "patch_size": 6, "stride": 3, "h1": 4, "h2": 2},
        {"type": "bottleneck", "t": 2, "c": 8, "n": 2, "s": 2, "kernel": 3},
        {"type": "rnnpool", "patch_size": 2, "stride": 1, "h1": 3, "h2": 3},
        {"type": "pool", "kind": "avg"}, {"type": "linear"}]),
}


def _export(spec: ArchSpec, out: Path, seed: int = 0) -> dict:
    model = untrained_model(spec, seed)
    images = np.random.default_rng(seed).integers(0, 256, size=(3, *spec.input), dtype=np.uint8)
    qnet = quantize(model, images)
    return write_project(qnet, spec, out, images, ["background", "face"] if spec.detection else None)


def _detector() -> ArchSpec:
    """RNNPool-Face-Quant's layout at 45x62: a head on a map inside the streamed prefix (with an
    extra 3x3 stride-2 conv and max-out) and L2Norm heads."""
    return set_field(get_preset("rnnpool-face-quant"), "input", [45, 62, 3])


@pytest.mark.parametrize("case", CASES)
def test_plan_streams_the_prefix(case):
    spec = CASES[case]
    arena = plan(expand(spec))
    first = arena.segments[0]
    assert first.streamed and first.first == 0
    rnnpool = next(i for i, s in enumerate(arena.steps) if s.op == "rnnpool")
    assert first.last >= rnnpool  # everything up to and including the first RNNPool streams
    assert arena.arena_bytes <= plan(expand(spec), stream=False).arena_bytes
    assert evaluate(spec, "int8", "runtime").peak_ram_bytes == arena.arena_bytes


def test_host_bit_exact_one_case(tmp_path):
    """The default run's C check: one odd case through both entry points, with the sanitizers."""
    out = tmp_path / "c"
    doc = _export(CASES["stem-s2-rnnpool-3-2"], out)
    assert doc["calls"][0]["streamed"] and doc["calls"][2]["streamed"]
    assert "model_run_stream" in _make(out, "check")
    assert "clean" in _make(out, "asan")


@pytest.mark.slow
@pytest.mark.parametrize("case", [*CASES, "detector"])
def test_streamed_kernels_bit_exact_host_asan_qemu(case, tmp_path):
    spec = _detector() if case == "detector" else CASES[case]
    out = tmp_path / "c"
    doc = _export(spec, out, seed=1)
    assert doc["arena_bytes"] == evaluate(spec, "int8", "runtime").peak_ram_bytes
    assert any(c["streamed"] for c in doc["calls"])
    if case == "detector":  # the stage-1 head streams with the prefix, writing its rows to the output
        assert all(c["streamed"] for c in doc["calls"] if c["layer"] == head_name(0))
    assert "bit-exact" in _make(out, "check")
    assert "clean" in _make(out, "asan")
    _need("arm-none-eabi-gcc")
    _need("qemu-system-arm")
    qemu = [line for line in _make(out, "run-qemu").splitlines() if line.startswith("output:")]
    host = [line for line in _make(out, "run-host").splitlines() if line.startswith("output:")]
    assert len(qemu) == 1 and qemu == host


#: A layer with no row kernel (a 2x2 average pool) inside the prefix (the issue's "bad input").
UNSTREAMABLE = _spec("e", (20, 19, 1), [
    {"type": "conv", "c": 4, "kernel": 3, "stride": 1},
    {"type": "pool", "kind": "avg", "kernel": 2},
    {"type": "rnnpool", "patch_size": 4, "stride": 2, "h1": 4, "h2": 4},
    {"type": "pool", "kind": "avg"}, {"type": "linear"}])


def test_unstreamable_segment_falls_back_to_whole_maps():
    """The plan runs the pool's segment on whole maps and says so; the arena stays the cost
    model's, to the byte."""
    arena = plan(expand(UNSTREAMABLE))
    pool = next(seg for seg in arena.segments if "1.0" in seg.layers)
    assert not pool.streamed and "no row kernel for avgpool" in pool.note
    assert evaluate(UNSTREAMABLE, "int8", "runtime").peak_ram_bytes == arena.arena_bytes


def test_unstreamable_segment_exports_bit_exact(tmp_path):
    """Nothing crashes: the export runs the pool on whole maps (its call is not streamed, the stem
    before it is), MODEL_ARENA_BYTES is the plan's arena, and both entry points give the
    int8 reference's bytes on the host."""
    out = tmp_path / "c"
    doc = _export(UNSTREAMABLE, out)
    arena = plan(expand(UNSTREAMABLE))
    streamed = {c["layer"]: c["streamed"] for c in doc["calls"]}
    assert streamed["1.0"] is False and streamed["0.0"] is True
    assert doc["arena_bytes"] == arena.arena_bytes == evaluate(UNSTREAMABLE, "int8", "runtime").peak_ram_bytes
    assert f"#define MODEL_ARENA_BYTES {arena.arena_bytes}" in (out / "model.h").read_text()
    assert "model_run_stream" in _make(out, "check")


def test_ring_rows_are_what_the_readers_need():
    spec = CASES["patch-eq-stride-same"]
    arena = plan(expand(spec))
    rows = {name: b.rows for name, b in arena.buffers.items()}
    assert rows["0.0/out"] == 4  # RNNPool's patch rows
    readers = {}
    for i, step in enumerate(arena.steps):
        for name in step.inputs:
            readers.setdefault(name, []).append(step)
    for name, buf in arena.buffers.items():
        if buf.rows is not None:
            h, w, c = next(s.out_shape for s in arena.steps if s.output == name)
            assert buf.rows == max(s.need for s in readers[name]) < h
            assert buf.size == -(-buf.rows * w * c // 4) * 4


def test_split_mbconv_is_planned_where_it_lowers_the_peak():
    spec = CASES["split-mbconv"]
    arena = plan(expand(spec))
    mb = next(s for s in arena.steps if s.op == "mbconv")
    assert mb.groups > 1 and mb.need == 3 and arena.segment_of(arena.steps.index(mb)).split == mb.groups
    assert arena.buffers[mb.scratch].size == -(-mbconv_split_scratch_bytes(mb.groups, 3, 11, 6, 64) // 4) * 4
    assert arena.buffers["1.0/out"].rows == 3
    unsplit = plan(expand(spec), stream=True)
    assert unsplit.arena_bytes == arena.arena_bytes  # deterministic


def test_split_scratch_macro_matches_the_planner(tmp_path):
    """RN_MBCONV_SPLIT_SCRATCH_BYTES (what stream.c lays out) is the planner's formula, odd group
    sizes included (the words it rounds up to)."""
    from .test_export_mbconv import macro_values

    cases = [(4, 3, 11, 6, 64), (4, 3, 11, 6, 36), (8, 3, 15, 8, 72), (2, 5, 7, 4, 30)]
    got = macro_values(tmp_path, "rn_stream.h", "RN_MBCONV_SPLIT_SCRATCH_BYTES", cases)
    assert got == [mbconv_split_scratch_bytes(*case) for case in cases]
    assert mbconv_split_scratch_bytes(4, 3, 11, 6, 36) == 300 + 56 + 6 * 36  # 297 and 54 rounded up to words


def test_whole_map_residual_blocks_run_in_place_and_global_pools_stream():
    arena = plan(expand(CASES["stem-s2-rnnpool-3-2"]))
    inplace = [s for s in arena.steps if s.inplace]
    assert inplace and all(s.output == s.inputs[0] and s.op == "mbconv" for s in inplace)
    assert all(not arena.segment_of(arena.steps.index(s)).streamed for s in inplace)
    wide = plan(expand(CASES["wide-head-global-max"]))
    pool = next(s for s in wide.steps if s.op == "maxpool")
    seg = wide.segment_of(wide.steps.index(pool))
    assert pool.global_pool and seg.streamed and wide.buffers[pool.scratch].size == 4 * 96
    assert wide.buffers["2.0/out"].rows == 1  # the 1x1 conv's output: one row at a time


def test_detector_heads_stream_with_their_source():
    spec = _detector()
    arena = plan(expand(spec), heads=head_specs(spec))
    head0 = [i for i, s in enumerate(arena.steps) if s.layer == head_name(0)]
    seg = arena.segment_of(head0[0])
    assert seg.streamed and all(seg.first <= i <= seg.last for i in head0)
    assert "1.0" in seg.layers  # the head's source layer


def _run_with_budget(root: Path, budget) -> Path:
    """A run with one complete trial of test_export's every-kernel spec under ``budget``."""
    import torch

    from rnnpool_nas.run.store import RunStore

    from .test_export import SPEC

    spec = ArchSpec.from_dict(SPEC)
    store = RunStore.create(root, {"space": {"name": "test"}, "budget": budget.to_dict(), "dataset": "lines",
                                   "data_dir": None, "limit": 200, "seed": 0})
    trial = store.trial_dir(0)
    (trial / "arch.json").write_text(spec.to_json())
    torch.save({"model": untrained_model(spec).state_dict(), "spec": spec.to_dict()}, trial / "checkpoint.pt")
    store.record({"trial": 0, "status": "complete", "accuracy": 0.5, "peak_ram_bytes": 1, "madds": 1, "params": 1,
                  "model_bytes": 1, "feasible": True, "spec_path": str(trial / "arch.json"),
                  "checkpoint_path": str(trial / "checkpoint.pt")})
    return root


def test_export_refuses_an_arena_over_the_ram_budget(tmp_path, capsys):
    """The run was budgeted under the paper's standard convention, which the trial meets, but the
    exported arena is larger: refused without --force (one line), a warning with it."""
    from rnnpool_nas.cli import main
    from rnnpool_nas.run.budget import Budget

    from .test_export import SPEC

    spec = ArchSpec.from_dict(SPEC)
    standard = evaluate(spec, "int8", "standard").peak_ram_bytes
    assert evaluate(spec, "int8", "runtime").peak_ram_bytes > standard
    run = _run_with_budget(tmp_path / "run", Budget(ram_bytes=standard, convention="standard"))
    args = ["export", str(run), "--trial", "0", "--out", str(tmp_path / "c"), "--val-images", "2", "--no-build"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "arena" in err and "--force" in err and "standard convention" in err, err
    assert not (tmp_path / "c" / "export.json").exists()
    assert main(args + ["--force"]) == 0
    assert "warning:" in capsys.readouterr().out
    assert (tmp_path / "c" / "export.json").exists()


def _search_convention(tmp_path: Path, extra: list[str]) -> str:
    import json

    from rnnpool_nas.cli import main

    space = str(Path(__file__).parent / "data" / "tiny_space.yaml")
    out = tmp_path / "run"
    assert main(["search", "--space", space, "--ram-budget", "64KB", "--trials", "1", "--cost-only",
                 "--out", str(out), *extra]) == 0
    return json.loads((out / "config.json").read_text())["budget"]["convention"]


def test_search_budgets_the_exported_arena_by_default(tmp_path):
    """Without --convention (and without a profile naming one) a search's RAM budget is the
    runtime convention's: the arena the exported C needs."""
    assert _search_convention(tmp_path, []) == "runtime"


@pytest.mark.slow
@pytest.mark.parametrize("extra", [["--convention", "standard"], ["--constraints", "vww-250k"]])
def test_a_flag_or_a_profile_still_chooses_the_convention(tmp_path, extra):
    assert _search_convention(tmp_path, extra) == "standard"  # vww-250k.yaml says standard


def test_cost_count_input_reports_both_ways(capsys):
    """--count-input: the peak with the whole image held (model_run), and the RAM of
    model_run_stream (the arena + the input rows it holds)."""
    import json

    from rnnpool_nas.cli import main

    assert main(["cost", "--preset", "rnnpool-tiny", "--convention", "runtime", "--count-input", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    spec = get_preset("rnnpool-tiny")
    arena = plan(expand(spec))
    assert doc["input_counted"] and doc["peak_ram_bytes"] > arena.arena_bytes
    assert doc["input_stream_bytes"] == arena.input_rows * 28 == 3 * 28  # the stem's 3 kernel rows
    assert doc["peak_ram_stream_input_bytes"] == arena.arena_bytes + 3 * 28
    assert main(["cost", "--preset", "rnnpool-tiny", "--convention", "runtime", "--count-input"]) == 0
    text = capsys.readouterr().out
    assert "input image counted" in text and "model_run_stream" in text
