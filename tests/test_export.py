"""``rnnpool-nas export``: the generated C is bit-exact with the int8 reference on the host, under
the sanitizers and on a Cortex-M4 under QEMU; its arena is the runtime convention; bad input.

The toolchains are part of the project (the Makefile installs them): a missing one fails here,
unless RNNPOOL_NAS_NO_ARM=1 says this machine cannot have them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnpool_nas.arch.spec import ArchSpec
from rnnpool_nas.cli import main
from rnnpool_nas.cost import evaluate
from rnnpool_nas.measure.untrained import untrained_model
from rnnpool_nas.run.budget import Budget
from rnnpool_nas.run.store import RunStore

# every kernel family: dense, grouped, depthwise and pointwise convolutions (stride 2), RNNPool
# with reference padding, MBConv with residual adds, depthwise-separable, max and average pooling,
# fully connected
SPEC = {
    "name": "every-kernel", "input": [16, 16, 1], "num_classes": 9, "stages": [
        {"type": "conv", "c": 8, "kernel": 3, "stride": 1},
        {"type": "rnnpool", "patch_size": 4, "stride": 2, "h1": 4, "h2": 3},
        {"type": "bottleneck", "t": 2, "c": 12, "n": 2, "s": 1, "kernel": 3},
        {"type": "conv", "c": 12, "kernel": 3, "stride": 2, "groups": 3},
        {"type": "dwsep", "c": 20, "n": 1, "s": 1, "kernel": 5},
        {"type": "pool", "kind": "max", "kernel": 2},
        {"type": "conv", "c": 24, "kernel": 1},
        {"type": "pool", "kind": "avg"},
        {"type": "linear"},
    ]}


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        if os.environ.get("RNNPOOL_NAS_NO_ARM") == "1":
            pytest.skip(f"{tool} is not installed (RNNPOOL_NAS_NO_ARM=1)")
        pytest.fail(f"{tool} is not installed: `make install` installs gcc-arm-none-eabi, "
                    "libnewlib-arm-none-eabi and qemu-system-arm")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A search run with one trained-looking trial (random weights, perturbed norms)."""
    root = tmp_path_factory.mktemp("export") / "run"
    spec = ArchSpec.from_dict(SPEC)
    budget = Budget(ram_bytes=16 * 1024)  # trial 0: 1.5 KiB (standard); trial 1: 24 KiB
    store = RunStore.create(root, {"space": {"name": "test"}, "budget": budget.to_dict(), "dataset": "lines",
                                   "data_dir": None, "limit": 600, "seed": 0})
    model = untrained_model(spec)
    for number, ram in ((0, 1000), (1, 10**9)):
        trial = store.trial_dir(number)
        (trial / "arch.json").write_text(spec.to_json())
        torch.save({"model": model.state_dict(), "spec": spec.to_dict()}, trial / "checkpoint.pt")
        store.record({"trial": number, "status": "complete", "accuracy": 0.5, "peak_ram_bytes": ram, "madds": 1,
                      "params": 1, "model_bytes": 1, "feasible": number == 0, "spec_path": str(trial / "arch.json"),
                      "checkpoint_path": str(trial / "checkpoint.pt")})
    (root / "trials" / "0001" / "arch.json").write_text(json.dumps({**SPEC, "input": [64, 64, 1]}))  # over budget
    return root


@pytest.fixture(scope="module")
def exported(run_dir) -> tuple[Path, dict]:
    out = run_dir.parent / "c"
    assert main([ "export", str(run_dir), "--trial", "0", "--out", str(out), "--val-images", "32", "--no-build"]) == 0
    return out, json.loads((out / "export.json").read_text())


def _make(out: Path, *targets: str) -> str:
    proc = subprocess.run(["make", "-s", "-C", str(out), *targets], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_project_layout_and_arena(exported):
    out, doc = exported
    for name in ("model.c", "model.h", "Makefile", "main_host.c", "main_m4.c", "startup_m4.c", "mps2_an386.ld",
                 "sample_input.bin", "expected_output.bin", "val_input.bin", "val_expected.bin", "export.json",
                 "runtime/rn_runtime.h", "runtime/rnnpool.c", "runtime/conv.c"):
        assert (out / name).is_file(), name
    spec = ArchSpec.from_dict(doc["spec"])
    assert doc["arena_bytes"] == evaluate(spec, "int8", "runtime").peak_ram_bytes
    assert f"#define MODEL_ARENA_BYTES {doc['arena_bytes']}" in (out / "model.h").read_text()
    assert (out / "sample_input.bin").stat().st_size == 16 * 16
    assert (out / "val_expected.bin").stat().st_size == 32 * 9
    source = (out / "model.c").read_text()
    kernels = {"conv": "rn_conv2d(", "depthwise": "rn_depthwise_conv2d(", "pointwise": "rn_pointwise_conv2d(",
               "rnnpool": "rn_rnnpool(", "mbconv": "rn_mbconv(", "maxpool": "rn_maxpool(", "avgpool": "rn_avgpool(",
               "fc": "rn_fully_connected("}
    assert "malloc" not in source
    # one marker per kernel call, described in export.json for the latency tools: a whole-map
    # call sets it itself, a streamed one is a node of its segment's table (stream.c sets it)
    assert [c["marker"] for c in doc["calls"]] == list(range(1, doc["kernel_calls"] + 1))
    for call in doc["calls"]:
        if call["streamed"]:
            assert f"{{&L{call['layer'].replace('.', '_')}" in source or call["op"] == "maxout"
            assert f", {call['marker']}, RN_NODE_" in source, call
        else:
            assert f"MODEL_MARK({call['marker']});" in source
            assert kernels[call["op"]] in source or (call["op"] == "mbconv" and "rn_mbconv_inplace(" in source), call
    # the stem and the RNNPool stream (row by row); pooling and the classifier run whole maps
    assert [c["streamed"] for c in doc["calls"]][:2] == [True, True]
    assert "rn_stream_run(" in source
    assert not any(c["streamed"] for c in doc["calls"] if c["op"] in ("maxpool", "fc"))  # a 2x2 max pool, the fc
    assert {c["op"] for c in doc["calls"]} == {"conv", "depthwise", "pointwise", "rnnpool", "mbconv", "maxpool",
                                               "avgpool", "fc"}
    assert any(c["args"].get("residual") for c in doc["calls"] if c["op"] == "mbconv")
    assert 0.0 <= doc["accuracy"]["agreement"] <= 1.0 and doc["accuracy"]["images"] > 0


def test_host_build_is_bit_exact_and_sanitizer_clean(exported):
    out, _ = exported
    assert "bit-exact" in _make(out, "check")
    assert "clean" in _make(out, "asan")


def test_cortex_m4_under_qemu_prints_the_host_output(exported):
    _need("arm-none-eabi-gcc")
    _need("qemu-system-arm")
    out, _ = exported
    _make(out, "m4")
    sizes = _make(out, "size")
    assert ".text" in sizes and ".bss" in sizes
    qemu = [line for line in _make(out, "run-qemu").splitlines() if line.startswith("output:")]
    host = [line for line in _make(out, "run-host").splitlines() if line.startswith("output:")]
    assert len(qemu) == 1 and qemu == host
    expected = np.fromfile(out / "expected_output.bin", dtype=np.int8)
    assert host[0] == "output: " + " ".join(f"{int(b) & 0xFF:02x}" for b in expected)


def test_export_with_build_records_measured_sizes(run_dir, tmp_path):
    _need("arm-none-eabi-gcc")
    _need("qemu-system-arm")
    out = tmp_path / "built"
    assert main(["export", str(run_dir), "--trial", "0", "--out", str(out), "--val-images", "8"]) == 0
    b = json.loads((out / "export.json").read_text())["build"]
    assert b["host_bit_exact"] and b["qemu_matches_host"]
    assert b["bss"] >= json.loads((out / "export.json").read_text())["arena_bytes"]
    assert 0 < b["stack_measured_bytes"] <= b["stack_bound_bytes"] + 64
    assert b["ram_bytes"] == b["data"] + b["bss"] + b["stack_measured_bytes"]


@pytest.mark.parametrize("case", ["missing", "corrupt", "over-budget", "no-trial", "no-such-trial", "not-a-run"])
def test_bad_input_is_one_line(case, run_dir, tmp_path, capsys):
    args = ["export", str(run_dir), "--trial", "0", "--out", str(tmp_path / "o"), "--no-build"]
    needle = {"missing": "missing", "corrupt": "corrupt", "over-budget": "--force", "no-trial": "--trial",
              "no-such-trial": "no trial 7", "not-a-run": "not a run"}[case]
    if case in ("missing", "corrupt"):
        damaged = tmp_path / "run"
        shutil.copytree(run_dir, damaged)
        ckpt = damaged / "trials" / "0000" / "checkpoint.pt"
        ckpt.unlink() if case == "missing" else ckpt.write_bytes(b"\x00garbage")
        args[1] = str(damaged)
    elif case == "over-budget":
        args[3] = "1"
    elif case == "no-trial":
        args = args[:2] + args[4:]
    elif case == "no-such-trial":
        args[3] = "7"
    elif case == "not-a-run":
        args[1] = str(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and needle in err and "Traceback" not in err, err
    assert not (tmp_path / "o" / "export.json").exists()


def test_export_a_model_trained_with_train(run_dir, tmp_path, capsys):
    """--checkpoint/--arch: the layout `rnnpool-nas train` writes (the data set from metrics.json)."""
    trained = tmp_path / "train"
    trained.mkdir()
    shutil.copy(run_dir / "trials" / "0000" / "checkpoint.pt", trained / "checkpoint.pt")
    shutil.copy(run_dir / "trials" / "0000" / "arch.json", trained / "arch.json")
    args = ["export", "--checkpoint", str(trained / "checkpoint.pt"), "--arch", str(trained / "arch.json"),
            "--out", str(tmp_path / "c"), "--val-images", "4", "--no-build"]
    assert main(args) == 2 and "metrics.json" in capsys.readouterr().err  # which data set?
    (trained / "metrics.json").write_text(json.dumps({"dataset": "lines"}))
    assert main(args) == 0
    doc = json.loads((tmp_path / "c" / "export.json").read_text())
    assert doc["dataset"] == "lines" and (tmp_path / "c" / "val_input.bin").stat().st_size == 4 * 16 * 16
    assert "bit-exact" in _make(tmp_path / "c", "check")
