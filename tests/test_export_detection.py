"""Export of a detector: the raw head outputs of the C build are bit-exact with the int8
reference on the host (sanitizers too) and on a Cortex-M4 under QEMU; detection outputs go
straight to the caller's buffer, so the arena is still the runtime convention's."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch

from rnnpool_nas.arch.build import build
from rnnpool_nas.arch.presets import get_preset, set_field
from rnnpool_nas.cost import evaluate
from rnnpool_nas.detect import anchors_for
from rnnpool_nas.export.exporter import write_project
from rnnpool_nas.train.quant import quantize

from .test_export import _make, _need


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    spec = set_field(get_preset("rnnpool-face-m4"), "input", (60, 80, 1))  # the M4 heads, 1/16 of the pixels
    torch.manual_seed(0)
    model = build(spec).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.5, 0.5)
    images = np.random.default_rng(0).integers(0, 256, size=(6, 60, 80, 1), dtype=np.uint8)
    qnet = quantize(model, images)
    out = tmp_path_factory.mktemp("det") / "c"
    doc = write_project(qnet, spec, out, images, ["background", "face"])
    return spec, qnet, out, doc


def test_layout_and_arena(detector):
    spec, qnet, out, doc = detector
    anchors = len(anchors_for(spec))
    assert doc["output"]["size"] == anchors * 6 and len(doc["output"]["heads"]) == 4
    assert doc["arena_bytes"] == evaluate(spec, "int8", "runtime").peak_ram_bytes
    header = (out / "model.h").read_text()
    assert f"#define MODEL_ANCHORS {anchors}" in header and "#define MODEL_HEADS 4" in header
    ops = [c["op"] for c in doc["calls"]]
    assert ops.count("l2norm") == 3 and ops.count("maxout") == 1
    assert np.fromfile(out / "val_expected.bin", dtype=np.int8).size == 6 * anchors * 6


def test_raw_outputs_bit_exact_host_asan_and_qemu(detector):
    _, _, out, _ = detector
    assert "bit-exact" in _make(out, "check")
    assert "clean" in _make(out, "asan")
    _need("arm-none-eabi-gcc")
    _need("qemu-system-arm")
    _make(out, "m4")
    qemu = [line for line in _make(out, "run-qemu").splitlines() if line.startswith("output:")]
    host = [line for line in _make(out, "run-host").splitlines() if line.startswith("output:")]
    assert len(qemu) == 1 and qemu == host


def _c_detections(out) -> list[list[tuple[float, ...]]]:
    _make(out, "host")
    text = subprocess.run([str(out / "build" / "model_host"), "--detect", str(out / "val_input.bin")],
                          capture_output=True, text=True, check=True).stdout
    images: list[list[tuple[float, ...]]] = []
    for line in text.splitlines():
        if line.startswith("image"):
            images.append([])
        elif line.startswith("box:"):
            images[-1].append(tuple(float(v) for v in line.split()[1:]))
    return images


def test_box_decoding_and_nms_in_c_match_python(detector):
    """model_detect (float C) against detect.decode_detections on the dequantized int8 outputs."""
    from rnnpool_nas.detect import decode_detections

    spec, qnet, out, _ = detector
    images = np.fromfile(out / "val_input.bin", dtype=np.int8).reshape(-1, *spec.input)
    loc, conf = qnet.detections((images.astype(np.int16) + 128).astype(np.uint8))
    python = decode_detections(loc, conf, anchors_for(spec))
    c = _c_detections(out)
    assert len(c) == len(python) == 6
    assert sum(len(b) for b in c) > 10  # the random detector finds something to suppress
    for c_boxes, (boxes, scores) in zip(c, python):
        assert len(c_boxes) == len(boxes)
        got = np.array(c_boxes).reshape(-1, 5)
        # the same boxes in the same order: the C follows numpy's order of operations (the last
        # bits may differ only through the C library's exp)
        np.testing.assert_allclose(got[:, 4], scores, rtol=1e-12)
        np.testing.assert_allclose(got[:, :4], boxes, rtol=1e-12, atol=1e-9)


def test_export_a_detector_end_to_end(tmp_path):
    """export() of a detector checkpoint on faces-synth: float and int8 AP in export.json, and
    the host build bit-exact on real (synthetic-face) validation images."""
    import json

    from rnnpool_nas.export.exporter import Source, export

    spec = set_field(get_preset("rnnpool-face-m4"), "input", (60, 80, 1))
    torch.manual_seed(1)
    model = build(spec)
    ckpt = tmp_path / "checkpoint.pt"
    torch.save({"model": model.state_dict()}, ckpt)
    source = Source(spec, ckpt, "faces-synth", limit=24, label="random face-m4")
    doc = export(source, tmp_path / "c", val_images=4, build=False, log=lambda line: None)
    assert doc["dataset"].startswith("faces-synth")
    for key in ("float_ap", "int8_ap", "float_ap_at_most_3", "int8_ap_at_most_3"):
        assert 0.0 <= doc["accuracy"][key] <= 1.0
    assert json.loads((tmp_path / "c" / "export.json").read_text())["output"]["heads"]
    assert "bit-exact" in _make(tmp_path / "c", "check")
