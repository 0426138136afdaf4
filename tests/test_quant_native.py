"""The compiled int8 scorer (quant/native.py) gives the numpy integer reference's bytes.

Small odd-shaped random-weight networks cover every op it compiles: dense, grouped, depthwise and
pointwise convolutions (strides, odd kernels, ReLU/ReLU6 clamps), MBConv blocks with their
residual add, max and average pooling, the linear layer, RNNPool under every padding rule, odd
patches/strides and all four nonlinearities, and detection heads (L2Norm, extra convolution,
max-out). Plus: the scores that use it, the reference's overflow errors, the fallback without a
C compiler and the build cache.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from rnnpool_nas.arch import get_preset
from rnnpool_nas.arch.spec import ArchSpec
from rnnpool_nas.measure.untrained import untrained_model
from rnnpool_nas.quant import native
from rnnpool_nas.quant.convert import quantize
from rnnpool_nas.quant.reference import QConv, QL2Norm, QParams, QRNNPool
from rnnpool_nas.train.recipe import evaluate_int8

ODD = {"name": "odd", "input": [19, 23, 3], "num_classes": 5, "stages": [
    {"type": "conv", "c": 8, "kernel": 3, "stride": 2, "groups": 1, "activation": "relu6"},
    {"type": "conv", "c": 12, "kernel": 3, "stride": 1, "groups": 2, "activation": "relu"},
    {"type": "conv", "c": 12, "kernel": 5, "stride": 1, "depthwise": True, "activation": "relu6"},
    {"type": "pool", "kind": "max", "kernel": 2, "stride": 2},
    {"type": "bottleneck", "t": 3, "c": 12, "n": 2, "s": 1, "kernel": 3, "activation": "relu6"},
    {"type": "conv", "c": 20, "kernel": 1, "stride": 2, "activation": "none"},
    {"type": "pool", "kind": "avg", "kernel": None, "stride": None},
    {"type": "linear", "c": None, "dropout": 0.0}]}

FINAL_POOL = {"name": "final-pool", "input": [20, 18, 1], "num_classes": 4, "stages": [
    {"type": "conv", "c": 8, "kernel": 3, "stride": 2, "activation": "relu6"},
    {"type": "bottleneck", "t": 2, "c": 12, "n": 1, "s": 2, "kernel": 3, "activation": "relu6"},
    {"type": "pool", "kind": "rnnpool", "kernel": None, "stride": None, "h1": 6, "h2": 5},  # one patch
    {"type": "linear", "c": None, "dropout": 0.0}]}

CLASSIFIERS = {
    # a final pool (one patch an image: sixteen images share the lanes) and six patches an image
    # (two share them); 7 images leave a partial group
    "rnnpool-final-pool": lambda: ArchSpec.from_dict(FINAL_POOL),
    "tiny-six-patches": lambda: get_preset("rnnpool-tiny", input=(12, 8, 1), classes=3, patch_size=4, stride=4,
                                           padding=0),
    "tiny": lambda: get_preset("rnnpool-tiny", input=(29, 23, 2), classes=7),
    "tiny-quant-nonlinearities": lambda: get_preset("rnnpool-tiny", input=(28, 28, 1), classes=4,
                                                    gate_nonlinearity="quantSigmoid", update_nonlinearity="quantTanh"),
    "tiny-same-odd-patch": lambda: get_preset("rnnpool-tiny", input=(27, 30, 1), classes=4, batch_norm=False,
                                              padding="same", patch_size=[3, 5], stride=[2, 3]),
    "tiny-zero-padding-tanh-gate": lambda: get_preset("rnnpool-tiny", input=(21, 26, 3), classes=3, padding=1,
                                                      patch_size=[5, 4], stride=[3, 2], h1=5, h2=7,
                                                      gate_nonlinearity="tanh", update_nonlinearity="sigmoid"),
    "mobilenet-rnnpool": lambda: get_preset("mobilenetv2-0.35x-rnnpool-vww", input=(40, 36, 3), classes=3),
    "odd-convs-pools": lambda: ArchSpec.from_dict(ODD),
}
DETECTORS = {
    "face-m4": lambda: get_preset("rnnpool-face-m4", input=(48, 64, 1)),
    "face-quant": lambda: get_preset("rnnpool-face-quant", input=(64, 80, 3)),
    "face-a": lambda: get_preset("rnnpool-face-a", input=(64, 96, 1)),
}


def _net(make, images: int, seed: int = 0):
    spec = make()
    model = untrained_model(spec, seed=seed)
    h, w, c = spec.input
    x = np.random.default_rng(seed).integers(0, 256, (8 + images, h, w, c), dtype=np.uint8)
    return model, quantize(model, x[:8]), x[8:]


def _lib():
    lib = native.library()
    if lib is None:
        pytest.skip("no C compiler")
    return lib


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_classifier_logits_are_the_references_bytes(name):
    _, qnet, x = _net(CLASSIFIERS[name], images=7)
    ref = qnet.run(x)
    for threads in (1, 3):  # 7 images over 3 threads: uneven slices, joined in order
        got = native.NativeNet(qnet, _lib(), threads=threads).run(x)
        assert got.dtype == np.int8
        np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("flags", [("-DQOP_GENERIC",), ("-mno-avx512f",)], ids=["plain-c", "no-avx512"])
def test_other_hosts_builds_give_the_same_bytes(flags):
    """The builds other hosts get: plain C (no x86 vector instructions: QOP_GENERIC), and an AVX2
    host's (8-lane vectors, vpmaddwd; only where the compiler targets x86)."""
    _lib()
    import platform

    if flags[0].startswith("-m") and platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("an x86 flag")
    lib = native.variant(*flags)
    assert lib.qop_lanes() == (4 if flags == ("-DQOP_GENERIC",) else 8)
    for name in ("odd-convs-pools", "mobilenet-rnnpool"):
        _, qnet, x = _net(CLASSIFIERS[name], images=3)
        runner = native.NativeNet(qnet, lib, threads=1)
        assert {op.form for b in runner.net.blocks for op in b.ops if isinstance(op, native.NativeConv)} >= {"g", "d"}
        np.testing.assert_array_equal(runner.run(x), qnet.run(x))
    _, qnet, x = _net(DETECTORS["face-m4"], images=2)
    np.testing.assert_array_equal(native.NativeNet(qnet, lib, threads=1).run(x), qnet.run(x))


@pytest.mark.parametrize("top", [2**20, 2**31, 2**43, 2**46])
def test_l2norm_division_is_the_references(top):
    """The L2Norm's rounded division: in double with a correction step while the caller's bound
    holds (255 max|mult| + 2^32 < 2^52: up to 2^43 here), in integers beyond it (2^46); every
    sign, zero pixels included."""
    rng = np.random.default_rng(top)
    c = 37
    x = rng.integers(-128, 128, (500, c), dtype=np.int8)
    x[:5] = 3  # pixels equal to the zero point: r = 0
    x[5:10, 1:] = 3  # one channel off the zero point
    op = QL2Norm(rng.integers(-top, top, c, dtype=np.int64), QParams(0.1, 3), QParams(0.05, -2))
    native_op = native.NativeL2Norm(op, _lib())
    assert native_op.small == (top <= 2**43)
    np.testing.assert_array_equal(native_op.run(x), op.run(x))


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_detector_outputs_are_the_references_bytes(name):
    _, qnet, x = _net(DETECTORS[name], images=3)
    runner = native.NativeNet(qnet, _lib(), threads=2)
    np.testing.assert_array_equal(runner.run(x), qnet.run(x))  # every head's raw int8 outputs
    for got, ref in zip(runner.detections(x), qnet.detections(x)):
        np.testing.assert_array_equal(got, ref)


def test_every_op_is_compiled_not_delegated():
    """The networks above really ran compiled code: no op fell back to the reference."""
    _, qnet, _ = _net(CLASSIFIERS["odd-convs-pools"], images=1)
    runner = native.NativeNet(qnet, _lib())
    convs = [op for b in runner.net.blocks for op in b.ops if isinstance(op, native.NativeConv)]
    assert convs and all(op.exact for op in convs)
    kinds = {type(op).__name__ for b in runner.net.blocks for op in [*b.ops, b.add] if op is not None}
    assert {"NativeConv", "NativePool", "NativeAdd", "QLinear"} <= kinds


def test_int8_scores_use_it_and_match_the_reference_path():
    model, qnet, x = _net(CLASSIFIERS["tiny"], images=40, seed=1)
    labels = np.random.default_rng(1).integers(0, 7, len(x))
    ref = evaluate_int8(qnet, model, x, labels, reference=True)
    assert evaluate_int8(qnet, model, x, labels, batch_size=13) == ref
    with torch.no_grad():
        f = model(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255).argmax(1).numpy()
    assert ref["int8_accuracy"] == float(np.mean(qnet.run(x).argmax(1) == labels))
    assert ref["float_accuracy"] == float(np.mean(f == labels))


def test_progress_is_reported_only_for_long_scorings(monkeypatch):
    model, qnet, x = _net(CLASSIFIERS["tiny"], images=20, seed=2)
    labels = np.zeros(len(x), np.int64)
    calls = []
    evaluate_int8(qnet, model, x, labels, batch_size=5, progress=lambda d, t: calls.append((d, t)))
    assert calls == []  # well under the 5 s
    import rnnpool_nas.train.loop as loop

    ticks = iter(range(0, 1000, 3))  # every batch "takes" 3 s
    monkeypatch.setattr(loop.time, "perf_counter", lambda: next(ticks))
    evaluate_int8(qnet, model, x, labels, batch_size=5, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(10, 20), (20, 20)]


@pytest.mark.parametrize("name", ["rnnpool-final-pool", "tiny-six-patches", "tiny"])
def test_rnnpool_alone_gives_every_images_own_bytes(name):
    """RNNPool on its own, random inputs that differ per image: several images share the lanes when
    an image has few patches (16 a group for one patch, 2 for six; 7 images leave a partial group),
    so a patch read from or written to the wrong image would show here."""
    _, qnet, x = _net(CLASSIFIERS[name], images=1)
    y = (x.astype(np.int16) - 128).astype(np.int8)
    for block in qnet.blocks:  # the pool's input shape: run the network up to it
        pool = next((op for op in block.ops if isinstance(op, QRNNPool)), None)
        if pool is not None:
            break
        y = block.run(y)
    xin = np.random.default_rng(5).integers(-128, 128, (7, *y.shape[1:]), dtype=np.int8)
    ref = pool.run(xin)
    assert len({ref[i].tobytes() for i in range(len(ref))}) > len(ref) // 2  # the images' outputs differ
    np.testing.assert_array_equal(native.NativeRNNPool(pool, _lib()).run(xin), ref)


def test_overflows_raise_the_references_error():
    _, qnet, x = _net(CLASSIFIERS["tiny"], images=2)
    lib = _lib()
    pool = next(op for b in qnet.blocks for op in b.ops if isinstance(op, QRNNPool))
    xin = np.random.default_rng(3).integers(-128, 128, (2, 29, 23, 16), dtype=np.int8)
    shifted = dataclasses.replace(pool.rnn1, w_shift=np.ones_like(pool.rnn1.w_shift))  # W x beyond int32
    bad_pool = dataclasses.replace(pool, rnn1=shifted)
    with pytest.raises(OverflowError):
        bad_pool.run(xin)
    with pytest.raises(OverflowError):
        native.NativeRNNPool(bad_pool, lib).run(xin)
    conv = next(op for b in qnet.blocks for op in b.ops if isinstance(op, QConv))
    bad_conv = dataclasses.replace(conv, bias=np.full_like(conv.bias, 2**31 - 2))
    img = (x.astype(np.int16) - 128).astype(np.int8)
    with pytest.raises(OverflowError):
        bad_conv.run(img)
    runner = native.NativeConv(bad_conv, lib)
    assert not runner.exact  # an int32 accumulator could overflow: the reference runs (and raises)
    with pytest.raises(OverflowError):
        runner.run(img)


def test_without_a_compiler_the_reference_scores_and_says_so_once(monkeypatch, capsys):
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setenv("RNNPOOL_NAS_NO_EXT", "1")
    _, qnet, x = _net(CLASSIFIERS["tiny"], images=1)
    assert native.int8_runner(qnet) is qnet
    assert native.int8_runner(qnet) is qnet
    out = capsys.readouterr().out
    assert out.count("no C compiler") == 1 and "numpy reference" in out


def test_the_build_is_cached_by_digest_outside_the_source_tree(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    if native._compiler() is None:
        pytest.skip("no C compiler")
    lib = native.library()
    built = list((tmp_path / "rnnpool_nas").glob("qnet-*.so"))
    assert lib is not None and [p.name for p in built] == [f"qnet-{native.build_key(native._compiler())}.so"]
    monkeypatch.setattr(native, "_state", {})
    stamp = built[0].stat().st_mtime_ns
    assert native.library() is not None and built[0].stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_a_compiler_that_fails_falls_back_to_the_reference(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # found, exits 1
    _, qnet, x = _net(CLASSIFIERS["tiny"], images=2)
    assert native.int8_runner(qnet) is qnet
    out = capsys.readouterr().out
    assert "building the int8 scoring kernels failed" in out and "numpy reference" in out
    assert not list((tmp_path / "rnnpool_nas").glob("*.so"))
