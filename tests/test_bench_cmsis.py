"""benchmarks/bench_cmsis.py (issue 14): the runtime's kernels and CMSIS-NN's side by side on the
emulated Cortex-M4, both checked against the int8 reference.

Runs the benchmark on rnnpool-tiny's shapes (every family, small maps included, ~15 s): every
shape measured for both libraries, the runtime bit-exact with the reference, CMSIS-NN within its
double rounding; and the shape collection covers every preset's calls. Skipped without the
Cortex-M4 toolchain or the CMSIS-NN sources (benchmark only: never part of the package).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cmsis.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_cmsis", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_cmsis"] = module   # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_shapes_cover_every_family_of_the_presets():
    bench = _load()
    cases = bench.collect(["mobilenetv2", "rnnpool-face-m4", "rnnpool-tiny"], bench.FAMILIES)
    families = {c.family for c in cases}
    assert families == set(bench.FAMILIES)
    keys = [c.key for c in cases]
    assert len(keys) == len(set(keys))   # deduplicated
    # small maps and the stem are there, and the detector's heads
    assert any(c.family == "depthwise" and c.in_shape[:2] == (4, 4) for c in cases)
    assert any(c.family == "conv" and c.in_shape == (224, 224, 3) for c in cases)
    assert any(c.family == "conv" and c.out_shape[2] == 2 for c in cases)
    assert all(c.macs > 0 for c in cases)


@pytest.mark.slow
def test_side_by_side_on_rnnpool_tiny(tmp_path, capsys):
    bench = _load()
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not found")
    if not (bench.DEFAULT_CMSIS / "Include" / "arm_nnfunctions.h").is_file():
        pytest.skip(f"no CMSIS-NN sources at {bench.DEFAULT_CMSIS}")
    out = tmp_path / "rows.json"
    assert bench.main(["--presets", "rnnpool-tiny", "--work", str(tmp_path / "build"), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert {r["family"] for r in rows} == set(bench.FAMILIES)
    for r in rows:
        assert r["runtime"] > 0 and r["macs"] > 0
        if r["family"] == "rnnpool":
            continue
        assert r["cmsis"] > 0
        assert r["runtime_exact"] is True
        assert r["cmsis_max_diff"] <= 1
    text = capsys.readouterr().out
    assert "speed-up geometric mean" in text and "rnnpool" in text
