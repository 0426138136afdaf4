"""Architecture specs: JSON round trips, presets, and invalid specs named precisely."""

from __future__ import annotations

import json

import pytest

from rnnpool_nas.arch import ArchSpec, SpecError, expand, get_preset, list_presets
from rnnpool_nas.arch.presets import parse_value, set_field
from rnnpool_nas.arch.spec import parse_input_shape
from rnnpool_nas.errors import UserError

PRESET_NAMES = [p.name for p in list_presets()]


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_round_trip_through_json(name):
    spec = get_preset(name)
    text = spec.to_json()
    again = ArchSpec.from_json(text)
    assert again == spec
    assert again.to_json() == text
    assert json.loads(text)["stages"][0]["type"] in ("conv", "rnnpool")


def test_paper_shapes():
    layers = expand(get_preset("mobilenetv2-rnnpool"))
    rnnpool = next(layer for layer in layers if layer.kind == "rnnpool")
    assert rnnpool.in_shape == (112, 112, 32) and rnnpool.out_shape == (28, 28, 64)
    assert rnnpool.args["patches"] == (27, 27)  # whole patches, then replicate-padded to 28
    m4 = expand(get_preset("rnnpool-face-m4"))
    assert next(layer for layer in m4 if layer.kind == "rnnpool").out_shape == (30, 40, 64)
    quant = expand(get_preset("rnnpool-face-quant"))
    assert next(layer for layer in quant if layer.kind == "rnnpool").out_shape == (60, 80, 32)
    vww = expand(get_preset("mobilenetv2-0.35x-rnnpool-vww"))
    channels = [layer.out_shape[2] for layer in vww if layer.kind == "bottleneck"]
    assert channels == [24] * 4 + [32] * 3 + [56] * 3 + [112]  # facts file, section 7


def test_overrides():
    spec = get_preset("mobilenetv2-rnnpool", input=(96, 96, 1), classes=10, width=0.5, h1=8, patch_size=4)
    assert spec.input == (96, 96, 1) and spec.num_classes == 10
    pool = next(s for s in spec.stages if s.type == "rnnpool")
    assert (pool.h1, pool.h2, pool.patch_size) == (8, 16, 4)
    assert spec.stages[0].c == 16  # 32 * 0.5
    spec = set_field(spec, "stages.2.c", 24)
    assert spec.stages[2].c == 24
    assert parse_value("[6, 4]") == [6, 4] and parse_value("6,4") == [6, 4] and parse_value("same") == "same"


def test_unknown_preset_suggests():
    with pytest.raises(UserError, match="did you mean mobilenetv2-rnnpool"):
        get_preset("mobilenet-rnnpool")


def _data(**changes):
    data = get_preset("mobilenetv2-rnnpool").to_dict()
    data.update(changes)
    return data


def _with_stage(index, **fields):
    data = _data()
    data["stages"][index].update(fields)
    return data


@pytest.mark.parametrize(
    "data,message",
    [
        (_with_stage(0, depthwise=True), r"stage 0 \(conv\): channel mismatch: depthwise conv needs c == input channels \(3\)"),
        (_with_stage(0, groups=2), r"stage 0 \(conv\): channel mismatch: groups=2"),
        (_with_stage(7, kind="max", kernel=9), r"stage 7 \(pool\): field 'kernel' = 9 is larger than the 7x7 map"),
        (_with_stage(1, patch_size=200), r"stage 1 \(rnnpool\): patch_size 200 is larger than the input \(112\) along rows"),
        (_with_stage(1, hidden=3), r"stage 1 \(rnnpool\): unknown field 'hidden'"),
        (_with_stage(1, h1=0), r"stage 1 \(rnnpool\): field 'h1' must be a positive integer, got 0"),
        (_with_stage(1, padding="full"), r"stage 1 \(rnnpool\): field 'padding'"),
        (_with_stage(2, t="six"), r"stage 2 \(bottleneck\): field 't' must be a positive integer, got 'six'"),
        (_data(stages=[{"type": "conv"}]), r"stage 0 \(conv\): missing field 'c'"),
        (_data(stages=[{"type": "transformer"}]), r"stage 0: unknown type 'transformer'"),
        (_data(input=[224, 224]), r"field 'input' must be \[H, W, C\]"),
        (_data(colour="red"), r"spec: unknown field 'colour'"),
        (_with_stage(8, c=5), r"a classifier must end in 1000 outputs at 1x1 \(num_classes\), it ends in 1x1x5"),
        (_data(detection={"sources": [{"stage": 42, "anchor": 16}]}), r"detection source 0: field 'stage'"),
    ],
)
def test_invalid_specs_name_stage_and_field(data, message):
    with pytest.raises(SpecError, match=message) as info:
        ArchSpec.from_dict(data)
    assert "\n" not in str(info.value)


def test_not_json():
    with pytest.raises(SpecError, match="not valid JSON"):
        ArchSpec.from_json("{stages: ")


def test_input_shape_parsing():
    assert parse_input_shape("96x128x3") == (96, 128, 3)
    assert parse_input_shape("28x28") == (28, 28, 1)
    for bad in ("96x96x", "a", "0x3x3", "1x2x3x4"):
        with pytest.raises(UserError, match="HxWxC"):
            parse_input_shape(bad)


def test_cached_expansion_is_keyed_on_content():
    """Editing a spec in place gives a new expansion, never a stale cached one."""
    spec = get_preset("mobilenetv2-rnnpool")
    before = expand(spec)[1].out_shape
    spec.stages[1].h2 = 8
    assert expand(spec)[1].out_shape == before[:2] + (32,)
