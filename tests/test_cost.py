"""The analytical cost model against the paper's figures and the built modules."""

from __future__ import annotations

import pytest
import torch
from fvcore.nn import FlopCountAnalysis

from rnnpool_nas.arch import expand, get_preset, list_presets
from rnnpool_nas.arch.build import build
from rnnpool_nas.cost import evaluate
from rnnpool_nas.errors import UserError
from rnnpool_nas.ops import RNNPoolLayer, rnnpool_plain

MIB = 2**20
PRESET_NAMES = [p.name for p in list_presets()]


def test_mobilenetv2_standard_peak():
    costs = evaluate(get_preset("mobilenetv2"), "float32", "standard")
    assert costs.peak_ram_bytes == 602_112 * 4  # first MBConv: 112x112x32 in + 112x112x16 out
    assert costs.peak_ram_bytes / MIB == pytest.approx(2.29, abs=0.01)
    assert costs.bottleneck == "1.0"
    assert costs.params == 3_504_872
    assert costs.madds == pytest.approx(300e6, rel=0.01)


def test_mobilenetv2_optimal_peak():
    costs = evaluate(get_preset("mobilenetv2"), "float32", "optimal")
    assert costs.peak_ram_bytes == (112 * 2 * 32 + 112 * 2 * 32 + 112 * 112 * 16 + 224 * 5 * 3) * 4
    assert costs.peak_ram_bytes / MIB == pytest.approx(0.83, abs=0.01)


def test_mobilenetv2_rnnpool_standard_peak():
    costs = evaluate(get_preset("mobilenetv2-rnnpool"), "float32", "standard")
    assert costs.peak_ram_bytes == 62_720 * 4  # 28x28x64 in + 14x14x64 out
    assert costs.peak_ram_bytes / MIB == pytest.approx(0.24, abs=0.005)
    assert costs.bottleneck == "2.0"  # the first bottleneck after RNNPool


def test_face_quant_int8_peak():
    costs = evaluate(get_preset("rnnpool-face-quant"), "int8", "standard")
    assert costs.peak_ram_bytes == 230_400  # 80x60x32 in + 80x60x16 out, 225 KiB
    assert costs.peak_ram_bytes / 1024 == 225
    assert costs.bottleneck == "3.0"


def test_input_counting_and_dtype():
    spec = get_preset("mobilenetv2-rnnpool")
    streamed, held = evaluate(spec, "int8"), evaluate(spec, "int8", count_input=True)
    assert held.peak_ram_bytes == max(streamed.peak_ram_bytes, held.stages[1].ram_bytes)
    assert held.stages[1].ram_bytes == streamed.stages[1].ram_bytes + 224 * 224 * 3
    assert evaluate(spec, "float32").peak_ram_bytes == 4 * streamed.peak_ram_bytes
    assert evaluate(spec, "float32").model_bytes > 3 * streamed.model_bytes


def test_bad_dtype_and_convention():
    with pytest.raises(UserError, match="dtype"):
        evaluate(get_preset("mobilenetv2"), "int4")
    with pytest.raises(UserError, match="convention"):
        evaluate(get_preset("mobilenetv2"), "int8", "psychic")


def test_profile_lists_every_block_and_head():
    spec = get_preset("rnnpool-face-m4")
    costs = evaluate(spec)
    assert len(costs.stages) == len(expand(spec)) + len(spec.detection.sources)
    assert max(s.ram_bytes for s in costs.stages) == costs.peak_ram_bytes
    assert sum(s.madds for s in costs.stages) == costs.madds


@pytest.fixture
def plain_rnnpool(monkeypatch):
    """Count RNNPool as the C reference computes a patch (W x inside every step), the same way
    the analytical model counts it."""
    monkeypatch.setattr(RNNPoolLayer, "forward", lambda self, x: rnnpool_plain(self, x))


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_counts_match_the_built_module(name, plain_rnnpool):
    spec = get_preset(name)
    costs = evaluate(spec)
    model = build(spec).eval()
    assert costs.params == sum(p.numel() for p in model.parameters())
    x = torch.zeros(1, spec.input[2], spec.input[0], spec.input[1])
    flops = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    matrix_ops = sum(v for k, v in flops.by_operator().items() if k in ("conv", "linear", "matmul", "addmm", "mm", "bmm"))
    assert costs.madds == pytest.approx(matrix_ops, rel=0.01)
