"""``rnnpool-nas measure`` and the Cortex-M4 latency predictor (issue 8).

The emulator runs a tiny exported model (its output must be the int8 reference's, its per-call
cycles must add up); the timing table prices hand-written Thumb-2 sequences as the Cortex-M4
TRM says; the predictor is positive, grows with the work and is wired into evaluate(), the
``cost`` command and latency budgets; the calibration runs end to end on a tiny grid.

The toolchain is part of the project (the Makefile installs it): a missing arm-none-eabi-gcc
fails here, unless RNNPOOL_NAS_NO_ARM=1 says this machine cannot have it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from rnnpool_nas.arch import get_preset
from rnnpool_nas.arch.spec import ArchSpec, expand, head_name
from rnnpool_nas.cli import main
from rnnpool_nas.cost import evaluate
from rnnpool_nas.cost import latency
from rnnpool_nas.run.budget import Budget

from .test_export import _need

# every classifier kernel family: dense and grouped convolutions, RNNPool with reference padding,
# fused MBConv blocks (with and without residual), depthwise-separable (depthwise, pointwise), max and
# average pooling, fc
SPEC = {
    "name": "tiny-every-kernel", "input": [12, 12, 1], "num_classes": 5, "stages": [
        {"type": "conv", "c": 4, "kernel": 3, "stride": 1},
        {"type": "rnnpool", "patch_size": 4, "stride": 2, "h1": 4, "h2": 2, "padding": "reference"},
        {"type": "bottleneck", "t": 2, "c": 8, "n": 2, "s": 1, "kernel": 3},
        {"type": "conv", "c": 8, "kernel": 3, "stride": 2, "groups": 2},
        {"type": "dwsep", "c": 12, "n": 1, "s": 1, "kernel": 3},
        {"type": "pool", "kind": "max", "kernel": 2},
        {"type": "pool", "kind": "avg"},
        {"type": "linear"},
    ]}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    from rnnpool_nas.measure.untrained import export_untrained

    out = tmp_path_factory.mktemp("measure") / "tiny"
    export_untrained(ArchSpec.from_dict(SPEC), out)
    return out


@pytest.fixture(scope="module")
def measured(exported) -> dict:
    _need("arm-none-eabi-gcc")
    from rnnpool_nas.measure import measure

    return measure(exported)


# ---------------------------------------------------------------------------------- measure


def test_measure_a_tiny_model(exported, measured):
    doc = json.loads((exported / "export.json").read_text())
    calls = measured["calls"]
    # the emulated run printed the int8 reference's output (measure raises otherwise)
    assert measured["output_matches_expected"]
    # the markers cover every kernel call, each ran and did work
    assert [c["marker"] for c in calls] == [c["marker"] for c in doc["calls"]] == list(range(1, len(doc["calls"]) + 1))
    assert {c["op"] for c in calls} == {"conv", "rnnpool", "mbconv", "pointwise", "depthwise", "maxpool", "avgpool", "fc"}
    assert all(c["cycles"] > 0 and c["instructions"] > 0 and c["cycles"] >= c["instructions"] for c in calls)
    total = measured["total"]
    assert sum(c["cycles"] for c in calls) + measured["copy_out"]["cycles"] == total["cycles"]
    # the whole program (start-up, printing) adds only what runs outside model_run
    assert measured["program"]["cycles"] > total["cycles"] > 0.9 * measured["program"]["cycles"] - 200_000
    assert total["ms"] == pytest.approx(total["cycles"] / 168e3)
    assert total["macs"] > 0 and 1 < total["cycles_per_mac"] < 100
    # the predictor, fitted on micro-benchmarks only, is close on this network it never saw
    assert abs(total["predicted_error"]) < 0.10
    assert json.loads((exported / "measure.json").read_text())["total"]["cycles"] == total["cycles"]
    layers = measured["layers"]
    assert [entry["layer"] for entry in layers] == [layer.name for layer in expand(ArchSpec.from_dict(SPEC))]
    assert sum(entry["cycles"] for entry in layers) == sum(c["cycles"] for c in calls)
    assert measured["emulator"]["instructions_per_second"] > 1e5
    # the flat profile: the runtime's kernels (and their helpers) by function
    functions = {f["function"]: f["cycles"] for f in measured["functions"]}
    assert sum(functions.values()) == measured["program"]["cycles"]
    # the stem and the RNNPool stream row by row (lower.plan): their row kernels, not the whole-map ones
    assert {"rn_pointwise_conv2d", "rn_depthwise_row", "rn_rnnpool_row", "rn_conv2d_row",
            "rn_stream_run"} <= set(functions)


def test_measure_command(exported, measured, capsys):
    assert main(["measure", str(exported), "--clock-mhz", "84"]) == 0
    out = capsys.readouterr().out
    assert "rnnpool" in out and "cyc/MAC" in out and "at 84 MHz" in out and "same as expected_output.bin" in out
    assert main(["measure", str(exported), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["total"]["cycles"] == measured["total"]["cycles"]  # deterministic


def test_python_block_counter_matches_the_c_one(exported, measured, monkeypatch):
    from rnnpool_nas.measure import emulate as em

    elf = exported / "build" / "model_m4.elf"
    if em._c_counter() is None:
        pytest.skip("no host C compiler: measure already counted in Python")
    monkeypatch.setattr(em, "_c_counter", lambda: None)
    slow = em.emulate(elf)
    fast_total = measured["program"]
    assert (slow.instructions, slow.cycles) == (fast_total["instructions"], fast_total["cycles"])


def test_flash_wait_states_add_their_cache_misses(exported, measured, capsys):
    """--flash-wait-states N: the same run, N cycles more per miss of the modelled flash caches,
    charged to the call that missed; the misses do not depend on N and the zero-wait run is the
    default (and unchanged by the model: its counters stay off)."""
    from rnnpool_nas.measure import measure

    assert measured["flash_wait_states"] == 0 and measured["flash"]["cycles"] == 0
    five = measure(exported, flash_wait_states=5, write=False)
    two = measure(exported, flash_wait_states=2, write=False)
    misses = five["flash"]["instruction_misses"] + five["flash"]["data_misses"]
    assert misses == two["flash"]["instruction_misses"] + two["flash"]["data_misses"]
    assert five["flash"]["data_misses"] > 0 and five["flash"]["instruction_misses"] > 0  # weights and code in flash
    # the caches hit most of the time: far fewer misses than instructions
    assert 0 < misses < 0.2 * measured["total"]["instructions"]
    assert five["total"]["instructions"] == measured["total"]["instructions"]
    extra = [b["cycles"] - a["cycles"] for a, b in zip(measured["calls"], five["calls"])]
    assert all(e >= 0 for e in extra) and sum(e > 0 for e in extra) >= len(extra) // 2
    assert five["program"]["cycles"] - measured["program"]["cycles"] == five["flash"]["cycles"] == 5 * misses
    assert 5 * (two["total"]["cycles"] - measured["total"]["cycles"]) == 2 * (five["total"]["cycles"]
                                                                             - measured["total"]["cycles"])
    assert measure(exported, write=False)["total"]["cycles"] == measured["total"]["cycles"]
    assert main(["measure", str(exported), "--flash-wait-states", "5"]) == 0
    out = capsys.readouterr().out
    assert "5 wait states" in out and f"{five['total']['cycles']:,} cycles" in out
    assert main(["measure", str(exported), "--flash-wait-states", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--flash-wait-states must be 0-15" in err


@pytest.mark.parametrize("case", ["not-a-folder", "not-an-export", "no-toolchain", "fault"])
def test_measure_errors_are_one_line(case, exported, tmp_path, monkeypatch, capsys):
    import rnnpool_nas.measure as measure_pkg

    target = tmp_path / "x"
    needle = {"not-a-folder": "not a folder", "not-an-export": "not an export", "no-toolchain": "make install",
              "fault": "model_mark="}[case]
    if case == "not-an-export":
        target.mkdir()
        (target / "model.c").write_text("int x;\n")
    elif case in ("no-toolchain", "fault"):
        shutil.copytree(exported, target, ignore=shutil.ignore_patterns("build"))
        if case == "no-toolchain":
            monkeypatch.setattr(measure_pkg.shutil, "which", lambda tool: None)
        else:  # an undefined instruction at the start of the first RNNPool call's kernel
            _need("arm-none-eabi-gcc")
            elf = measure_pkg.build_m4(target, log=lambda *_: None)
            _patch_function(elf, "rn_rnnpool_row", b"\x00\xde")  # UDF #0 (the RNNPool streams: lower.plan)
    assert main(["measure", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and needle in err and "Traceback" not in err, err
    if case == "fault":
        assert "pc=0x" in err and "rn_rnnpool_row" in err and "model_mark=" in err


def _patch_function(elf: Path, symbol: str, code: bytes) -> None:
    """Overwrite the first bytes of ``symbol``'s code in the ELF file (and keep make from rebuilding it)."""
    from elftools.elf.elffile import ELFFile

    with elf.open("rb") as f:
        e = ELFFile(f)
        (sym,) = e.get_section_by_name(".symtab").get_symbol_by_name(symbol)
        address = sym["st_value"] & ~1
        text = e.get_section_by_name(".text")
        offset = text["sh_offset"] + address - text["sh_addr"]
    data = bytearray(elf.read_bytes())
    data[offset:offset + len(code)] = code
    elf.write_bytes(bytes(data))


# ---------------------------------------------------------------------------------- timing table


def _assemble(source: str, tmp_path: Path) -> bytes:
    _need("arm-none-eabi-gcc")
    asm, obj, raw = tmp_path / "t.s", tmp_path / "t.o", tmp_path / "t.bin"
    asm.write_text(".syntax unified\n.thumb\n" + source + "\n")
    subprocess.run(["arm-none-eabi-as", "-mcpu=cortex-m4", "-mthumb", "-o", str(obj), str(asm)], check=True)
    subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", "-j", ".text", str(obj), str(raw)], check=True)
    return raw.read_bytes()


@pytest.mark.parametrize("source, cycles, exit_refill", [
    ("adds r0, r1, r2", 1, 0),                                     # data processing: 1
    ("ldr r0, [r1]", 2, 0),                                        # load: 2
    ("ldr r0, [r1]\nldr r2, [r3, #4]", 3, 0),                      # back-to-back loads pipeline: 2 + 1
    ("ldrsb.w r5, [r3, #1]!\nldrsb.w r6, [r4, #1]!", 3, 0),        # the runtime's dot product: 2 + 1
    ("ldr r0, [r1]\nldr r2, [r0]", 4, 0),                          # the second address needs the first load
    ("adds r3, #1\nldr r0, [r3]", 4, 0),                           # address from the previous ALU result: +1
    ("str r0, [r1, #4]", 1, 0),                                    # store, immediate offset: 1
    ("str r0, [r1, r2]", 2, 0),                                    # store, register offset: 2
    ("ldrd r0, r1, [r2]", 3, 0),                                   # LDRD: 3
    ("mul r0, r1, r2\nmla r0, r1, r2, r3\nsmlal r0, r1, r2, r3\nsmlabb r0, r1, r2, r3\nsmlad r0, r1, r2, r3", 5, 0),
    ("push {r4, r5, r6, r7, lr}", 6, 0),                           # 1 + N
    ("pop {r4, pc}", 6, 0),                                        # 1 + N + 3 (load to PC)
    ("bx lr", 3, 0),                                               # register branch: 1 + 2
    ("bl .+64", 2, 0),                                             # immediate branch: 1 + 1
    ("b.n .+16", 2, 0),
    ("cmp r0, #3\nbeq.n .+16", 2, 1),                              # conditional: 1, + 1 when taken
    ("cmp r0, #1\nit eq\nmoveq r0, #2", 2, 0),                     # IT folds onto a 16-bit instruction
    ("cmp.w r0, #1\nit eq\nmoveq r0, #2", 3, 0),                   # ... but not onto a 32-bit one
])
def test_timing_table_prices_trm_sequences(source, cycles, exit_refill, tmp_path):
    from rnnpool_nas.measure.timing import price

    cost = price(_assemble(source, tmp_path))
    assert (cost.cycles, cost.exit_refill) == (cycles, exit_refill), source
    assert cost.instructions == source.count("\n") + 1


def test_timing_table_division_and_unaligned_targets(tmp_path):
    from rnnpool_nas.measure.timing import division_cycles, price

    assert division_cycles(0xFFFFFFFF, 1, signed=False) == 12      # a 32-bit quotient: the slowest
    assert division_cycles(5, 7, signed=False) == 2                 # a zero quotient: the fastest
    assert division_cycles(100, 7, signed=False) == 4               # 4 quotient bits
    assert division_cycles((-100) & 0xFFFFFFFF, 7, signed=True) == 4
    assert division_cycles(1, 0, signed=True) == 2
    code = _assemble("sdiv r0, r1, r2\nldr.w r0, [r1, #256]", tmp_path)
    cost = price(code)
    assert cost.divides == (0,) and cost.cycles == 2               # the division is charged when it runs
    assert price(code[4:], address=2).entry_penalty == 1            # a branch to an unaligned 32-bit instruction
    assert price(code[4:], address=4).entry_penalty == 0


# ---------------------------------------------------------------------------------- predictor


def _rnnpool(h1=8, h2=8, patch=4, cin=8, size=28):
    return get_preset("rnnpool-tiny", input=(size, size, 1), h1=h1, h2=h2, patch_size=patch)


def test_latency_model_file_matches_the_runtime():
    model = latency.load_model()
    assert set(model.coefficients) == set(latency.FEATURES)
    assert all(c >= 0 for coef in model.coefficients.values() for c in coef.values())
    assert not latency.stale(model), ("the C runtime changed since cost/latency_m4.json was fitted: "
                                      "run python -m rnnpool_nas.measure.calibrate")


@pytest.mark.parametrize("op, small, large", [
    ("pointwise", ((8, 8, 16), (8, 8, 16), {}), ((8, 8, 32), (8, 8, 16), {})),
    ("depthwise", ((8, 8, 16), (8, 8, 16), {"kernel": 3, "stride": 1, "pad": 1, "groups": 16}),
     ((8, 8, 16), (8, 8, 16), {"kernel": 5, "stride": 1, "pad": 2, "groups": 16})),
    ("conv", ((16, 16, 1), (16, 16, 8), {"kernel": 3, "stride": 1, "pad": 1, "groups": 1}),
     ((16, 16, 3), (16, 16, 8), {"kernel": 3, "stride": 1, "pad": 1, "groups": 1})),
    ("fc", ((1, 1, 64), (1, 1, 10), {}), ((1, 1, 128), (1, 1, 10), {})),
    ("add", ((4, 4, 8), (4, 4, 8), {}), ((4, 4, 16), (4, 4, 16), {})),
    ("avgpool", ((4, 4, 8), (1, 1, 8), {"kernel": (4, 4), "stride": (4, 4)}),
     ((8, 8, 8), (1, 1, 8), {"kernel": (8, 8), "stride": (8, 8)})),
    ("maxpool", ((4, 4, 8), (2, 2, 8), {"kernel": (2, 2), "stride": (2, 2)}),
     ((4, 4, 8), (2, 2, 8), {"kernel": (3, 3), "stride": (1, 1)})),
    ("rnnpool", ((8, 8, 4), (4, 4, 16), {"patch": (4, 4), "stride": (2, 2), "pad": (1, 1), "patches": (4, 4), "h1": 4,
                                         "h2": 4, "lut": 2}),
     ((8, 8, 4), (4, 4, 16), {"patch": (4, 4), "stride": (2, 2), "pad": (1, 1), "patches": (4, 4), "h1": 8, "h2": 4,
                              "lut": 2})),
    ("mbconv", ((8, 8, 16), (8, 8, 16), {"kernel": 3, "stride": 1, "t": 2, "residual": True, "pad": 1}),
     ((8, 8, 16), (8, 8, 16), {"kernel": 3, "stride": 1, "t": 6, "residual": True, "pad": 1})),
    ("l2norm", ((8, 8, 16), (8, 8, 16), {}), ((8, 8, 32), (8, 8, 32), {})),
    ("maxout", ((8, 8, 4), (8, 8, 2), {}), ((16, 8, 4), (16, 8, 2), {})),
])
def test_predictor_is_positive_and_grows_with_the_work(op, small, large):
    model = latency.load_model()
    fs, fl = latency.call_features(op, *small), latency.call_features(op, *large)
    cs, cl = model.call_cycles(op, fs), model.call_cycles(op, fl)
    assert 0 < cs < cl
    assert latency.call_macs(op, fs) <= latency.call_macs(op, fl)
    assert set(fs) == set(latency.FEATURES[op]) | {"macs_total"}


def test_predictor_monotone_in_macs_within_a_family():
    model = latency.load_model()
    for op, shapes in (("pointwise", [((7, 7, c), (7, 7, 32)) for c in (8, 16, 24, 48, 96)]),
                       ("pointwise", [((1, 28, c), (1, 28, 96)) for c in (4, 8, 16, 32, 64)]),
                       ("fc", [((1, 1, n), (1, 1, 10)) for n in (32, 64, 320, 1280)])):
        cycles = [model.call_cycles(op, latency.call_features(op, a, b, {})) for a, b in shapes]
        assert cycles == sorted(cycles) and len(set(cycles)) == len(cycles), op
    tiny = [evaluate(_rnnpool(h1=h)).latency_cycles for h in (4, 8, 16)]
    assert tiny == sorted(tiny) and tiny[0] > 0


def test_evaluate_reports_latency_per_stage_and_in_total():
    spec = get_preset("rnnpool-tiny")
    costs = evaluate(spec)
    assert costs.latency_cycles > 0 and costs.latency_ms == pytest.approx(costs.latency_cycles / 168e3, rel=1e-6)
    staged = sum(s.latency_cycles for s in costs.stages)
    assert staged == pytest.approx(costs.latency_cycles - latency.load_model().overhead_cycles, abs=len(costs.stages))
    assert all(s.latency_ms > 0 for s in costs.stages)
    fast = evaluate(spec, clock_mhz=336.0, profile=False)
    assert fast.latency_cycles == costs.latency_cycles and fast.latency_ms == pytest.approx(costs.latency_ms / 2)
    assert not fast.stages
    # the same prediction whatever the RAM convention or element type
    assert evaluate(spec, "float32", "optimal").latency_cycles == costs.latency_cycles
    # per call: the kernel calls of the runtime's lowering
    calls = latency.predict_calls(expand(spec))
    assert sum(c.cycles for c in calls) == pytest.approx(staged, abs=len(costs.stages))


def test_every_kernel_the_lowering_emits_is_calibrated():
    """A new kernel (or a new lowering) needs features and a recalibration: see UncalibratedKernel."""
    from rnnpool_nas.arch.presets import list_presets
    from rnnpool_nas.cost.arena import lower

    from rnnpool_nas.cost.arena import head_specs

    model = latency.load_model()
    for spec in [get_preset(p.name) for p in list_presets()] + [ArchSpec.from_dict(SPEC)]:
        ops = {step.op for step in lower(expand(spec), head_specs(spec))[0]}
        assert ops <= set(model.coefficients), (spec.name, ops - set(model.coefficients), latency.UncalibratedKernel.__doc__)
        assert latency.predict_spec(spec)[1] > 0


def test_an_uncalibrated_kernel_means_unknown_latency(monkeypatch):
    model = latency.load_model()
    partial = latency.LatencyModel({k: v for k, v in model.coefficients.items() if k != "rnnpool"}, 0.0)
    monkeypatch.setattr(latency, "load_model", lambda path=None: partial)
    with pytest.raises(latency.UncalibratedKernel, match="calibrate"):
        latency.predict_layers(expand(get_preset("rnnpool-tiny")), partial)
    assert evaluate(get_preset("rnnpool-tiny")).latency_cycles is None


def test_every_preset_has_a_latency_detectors_included():
    """Every kernel call of every preset (detection heads too: l2norm, the heads' convs, maxout) is
    calibrated, and predict_spec names the heads' cycles as evaluate()'s stage rows."""
    from rnnpool_nas.arch.presets import list_presets

    for preset in list_presets():
        spec = get_preset(preset.name)
        per_row, total = latency.predict_spec(spec)
        stages = [s.name for s in evaluate(spec, profile=True).stages]
        assert total > 0 and set(per_row) == set(stages), preset.name
        assert total == pytest.approx(sum(per_row.values()) + latency.load_model().overhead_cycles)
        if spec.detection is None:
            assert evaluate(spec, profile=False).latency_cycles == round(total)
    face = latency.predict_spec(get_preset("rnnpool-face-m4"))[0]
    assert all(face[head_name(j)] > 0 for j in range(4))


def test_evaluate_predicts_detectors():
    spec = get_preset("rnnpool-face-m4")
    costs = evaluate(spec)
    assert costs.latency_cycles == round(latency.predict_spec(spec)[1])
    assert all(s.latency_cycles is not None for s in costs.stages)


def test_mbconv_prediction_is_its_row_calls_plus_bookkeeping():
    """The fused block's model: the pointwise, depthwise and add models of its row calls (each fitted
    on its own micro-benchmarks) times coefficients near 1, plus the row loop."""
    model = latency.load_model()
    coef = model.coefficients["mbconv"]
    assert all(0.9 < coef[k] < 1.1 for k in ("expand", "depthwise", "project"))
    args = {"kernel": 3, "stride": 1, "t": 6, "residual": True, "pad": 1}
    f = latency.call_features("mbconv", (14, 14, 16), (14, 14, 16), args)
    assert f["expanded_rows"] == 14 and f["rows"] == 14
    taps = latency.valid_taps(14, 14, 3, 1, 1)
    assert f["macs_total"] == 14 * 14 * 16 * 96 * 2 + 96 * taps * taps
    no_res = latency.call_features("mbconv", (14, 14, 16), (14, 14, 16), {**args, "residual": False})
    assert no_res["add"] == 0 < f["add"] and model.call_cycles("mbconv", no_res) < model.call_cycles("mbconv", f)
    t1 = latency.call_features("mbconv", (14, 14, 16), (14, 14, 16), {**args, "t": 1})
    assert t1["expand"] == 0 and t1["expanded_rows"] == 0


def test_cost_command_prints_latency(capsys):
    assert main(["cost", "--preset", "rnnpool-tiny"]) == 0
    out = capsys.readouterr().out
    costs = evaluate(get_preset("rnnpool-tiny"))
    assert "M4 ms" in out and f"{costs.latency_cycles:,} cycles at 168 MHz" in out
    assert main(["cost", "--preset", "rnnpool-tiny", "--constraints", "cortex-m7-512k", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["latency_cycles"] == costs.latency_cycles
    assert doc["latency_ms"] == pytest.approx(costs.latency_cycles / 216e3)
    assert all(s["latency_ms"] is not None for s in doc["stages"])
    assert main(["cost", "--preset", "rnnpool-tiny", "--clock-mhz", "0"]) == 2


def test_latency_budget_marks_slow_candidates_infeasible():
    small, large = get_preset("rnnpool-tiny"), get_preset("rnnpool-tiny", width=2.0)
    fast, slow = evaluate(small), evaluate(large)
    assert slow.latency_ms > fast.latency_ms
    limit = (fast.latency_ms + slow.latency_ms) / 2 / 1e3
    budget = Budget(latency_s=limit)
    assert budget.violations(fast) == []
    (violation,) = budget.violations(slow)
    assert violation.startswith("latency ") and budget.excess(slow)[0] > 0 >= budget.excess(fast)[0]
    # a faster clock makes the slow one fit: the search evaluates at the budget's clock
    quick = Budget(latency_s=limit, clock_mhz=400.0)
    assert quick.violations(evaluate(large, clock_mhz=quick.clock_mhz)) == []


def test_latency_is_an_objective_column():
    from rnnpool_nas.run.pareto import OBJECTIVE_COLUMNS

    assert OBJECTIVE_COLUMNS["latency"] == "latency_ms"


# ---------------------------------------------------------------------------------- calibration


def test_calibration_runs_end_to_end_on_a_tiny_grid(tmp_path):
    _need("arm-none-eabi-gcc")
    from rnnpool_nas.measure.calibrate import calibrate

    out = tmp_path / "fit.json"
    doc = calibrate(out, per_family=2, seed=1, measurements=tmp_path / "m.json", log=lambda *_: None)
    model = latency.LatencyModel.from_dict(json.loads(out.read_text()))
    assert set(model.coefficients) == set(latency.FEATURES) and doc["runtime_sha256"] == latency.runtime_hash()
    assert model.overhead_cycles >= 0
    benches = json.loads((tmp_path / "m.json").read_text())
    assert len(benches) == doc["grid"]["benchmarks"] and all(b["cycles"] > 0 for b in benches)
    for b in benches:  # the fit reproduces its own grid closely
        f = latency.call_features(b["op"], b["in_shape"], b["out_shape"],
                                  {k: tuple(v) if isinstance(v, list) else v for k, v in b["args"].items()}, model)
        # a composite (MBConv) is modelled by the other families' fits of their row calls, which two
        # benchmarks per family determine only loosely (a depthwise path neither of them took)
        rel = 0.10 if b["op"] in latency.COMPOSITE else 0.05
        assert model.call_cycles(b["op"], f) == pytest.approx(b["cycles"], rel=rel)


def test_nnls_recovers_non_negative_coefficients():
    import numpy as np

    from rnnpool_nas.measure.calibrate import nnls

    rng = np.random.default_rng(0)
    a = rng.uniform(0, 10, size=(40, 4))
    x = np.array([3.0, 0.0, 1.5, 7.0])
    assert np.allclose(nnls(a, a @ x), x, atol=1e-8)
    assert (nnls(a, a @ np.array([1.0, -2.0, 0.5, 0.0])) >= 0).all()


def test_runtime_hash_ignores_comments_but_not_code(tmp_path):
    """A comment that explains a kernel leaves the calibration valid; a changed line of code makes
    it stale."""
    import shutil

    from rnnpool_nas.cost import latency

    runtime = tmp_path / "runtime"
    shutil.copytree(latency.RUNTIME_DIR, runtime)
    (tmp_path / "templates").mkdir()
    base = latency.runtime_hash(runtime)
    pool = runtime / "pool.c"
    text = pool.read_text()
    pool.write_text("/* a new comment */\n" + text.replace("{", "{ // and another\n", 1))
    assert latency.runtime_hash(runtime) == base
    pool.write_text(text.replace("(in_h - kh) / sh + 1", "(in_h - kh) / sh + 2", 1))
    assert latency.runtime_hash(runtime) != base
