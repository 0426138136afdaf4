"""The C runtime of the int8 exporter (rnnpool_nas/export/runtime), byte for byte against quant.py.

Every kernel family runs through ctypes (the runtime built once per session as a host shared
library with strict C99 flags) on several random shapes and is compared with the Python int8
reference op; one check per family anchors that reference to the float PyTorch op. The last
tests compile the runtime for the Cortex-M4 and bound its stack use.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rnnpool_nas.export import RUNTIME_DIR, gen_lut, hostlib, runtime_files
from rnnpool_nas.ops.rnnpool import RNNPoolLayer, rnnpool_plain
from rnnpool_nas.train import quant
from rnnpool_nas.train.quant import ONE, QAdd, QLinear, QParams, QPool, QRNNPool, choose_qparams, quantize_multiplier


@pytest.fixture(scope="session")
def rt(tmp_path_factory) -> hostlib.HostRuntime:
    return hostlib.load(tmp_path_factory.mktemp("rn_runtime"))


def _qparams(rng: np.random.Generator) -> QParams:
    return choose_qparams(-rng.uniform(0.0, 3.0), rng.uniform(0.2, 3.0))


def _images(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(-128, 128, size=shape, dtype=np.int8)


def _nchw(qp: QParams, x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(qp.dequantize(x)).permute(0, 3, 1, 2).double()


def _steps_off(qp: QParams, q: np.ndarray, reference: np.ndarray) -> float:
    """Largest |dequantized q - float reference| in output quantization steps."""
    return float(np.abs(qp.dequantize(q).astype(np.float64) - reference).max() / qp.scale)


# ------------------------------------------------------------------------------ convolutions


def _reference_sweep(cell, wx: np.ndarray) -> np.ndarray:
    """The reference cell stepped over the rows of ``wx`` from h = 0 (int64 state)."""
    h = np.zeros(cell.u.shape[0], dtype=np.int64)
    for row in wx:
        h = cell.step(row.astype(np.int64), h)
    return h


def _conv_case(seed: int, h: int, w: int, cin: int, cout: int, k: int, stride: int, groups: int, act: str = "none"):
    """A QConv quantized from a random float conv (the exporter's own path, quant._qconv), its
    input batch, and the float output of that conv on the dequantized input (NHWC)."""
    rng = np.random.default_rng(seed)
    inp = _qparams(rng)
    x = _images(rng, (2, h, w, cin))
    wf = rng.normal(0.0, 1.0 / np.sqrt(k * k * cin / groups), size=(cout, cin // groups, k, k))
    bf = rng.normal(0.0, 0.5, size=cout)
    yf = F.conv2d(_nchw(inp, x), torch.from_numpy(wf), torch.from_numpy(bf), stride, k // 2, 1, groups)
    if act == "relu6":
        yf = yf.clamp(0.0, 6.0)
    yf = yf.permute(0, 2, 3, 1).numpy()
    out = choose_qparams(float(yf.min()), float(yf.max()))
    return quant._qconv(wf, bf, k, stride, groups, inp, out, act), x, yf


def _conv_args(op):
    q = dict(in_zp=op.input.zero_point, out_zp=op.output.zero_point, act_min=op.act_min, act_max=op.act_max)
    return (op.weight, op.bias, op.multiplier, op.shift), q


CONV_CASES = [  # h, w, cin, cout, kernel, stride, groups, activation
    (7, 9, 3, 5, 3, 1, 1, "none"),
    (11, 8, 6, 7, 5, 2, 1, "none"),
    (9, 9, 4, 10, 3, 2, 1, "relu6"),
    (6, 7, 6, 4, 3, 1, 2, "relu"),
    (9, 10, 6, 9, 3, 2, 3, "none"),
    (5, 5, 4, 6, 5, 1, 2, "none"),
    (6, 5, 4, 6, 1, 2, 2, "none"),  # 1x1 grouped: rn_conv2d with pad 0
    (3, 4, 5, 3, 5, 1, 1, "none"),  # kernel larger than the map: every window clipped
    (8, 8, 1, 8, 3, 1, 1, "relu6"),  # a grey stem: four output channels per pass, twice
    (7, 9, 8, 2, 3, 1, 1, "none"),  # whole words of input (a detection head): packed, one channel per pass
    (6, 5, 16, 7, 3, 2, 1, "relu6"),  # packed: four channels, then three single ones
    (4, 4, 4, 4, 5, 1, 1, "none"),  # packed, every window clipped
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_reference(rt, case):
    h, w, cin, cout, k, stride, groups, act = case
    op, x, _ = _conv_case(sum(case[:7]), h, w, cin, cout, k, stride, groups, act)
    args, q = _conv_args(op)
    ref = op.run(x)
    for i in range(len(x)):
        got = rt.conv2d(x[i], *args, stride=stride, pad=k // 2, groups=groups, **q)
        np.testing.assert_array_equal(got, ref[i])


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_row_on_a_ring_matches_reference(rt, case):
    """rn_conv2d_row (a streamed segment's conv) with the window's rows in a ring of `kernel` and of
    `kernel + 1` slots (every way a window wraps round the ring's end), nothing else in it."""
    h, w, cin, cout, k, stride, groups, act = case
    op, x, _ = _conv_case(sum(case[:7]), h, w, cin, cout, k, stride, groups, act)
    args, q = _conv_args(op)
    ref = op.run(x)
    for ring in (k, k + 1):
        got = rt.conv2d(x[0], *args, stride=stride, pad=k // 2, groups=groups, ring=ring, **q)
        np.testing.assert_array_equal(got, ref[0])


def test_conv2d_without_padding_is_the_interior_of_the_padded_one(rt):
    op, x, _ = _conv_case(3, 9, 8, 5, 6, 5, 1, 1)
    args, q = _conv_args(op)
    got = rt.conv2d(x[0], *args, stride=1, pad=0, groups=1, **q)
    np.testing.assert_array_equal(got, op.run(x)[0, 2:-2, 2:-2])


@pytest.mark.parametrize("case", [(7, 9, 5, 3, 1), (8, 8, 7, 3, 2), (9, 6, 13, 5, 1), (11, 10, 4, 5, 2), (3, 3, 6, 5, 2),
                                  (9, 10, 16, 3, 1), (11, 13, 8, 3, 2), (6, 5, 12, 3, 1), (10, 14, 4, 3, 3),
                                  (2, 2, 8, 3, 1), (3, 3, 8, 3, 2), (4, 4, 16, 3, 1), (1, 2, 4, 3, 1), (5, 2, 3, 3, 2)])
def test_depthwise_conv2d_matches_reference(rt, case):
    h, w, c, k, stride = case
    op, x, _ = _conv_case(sum(case), h, w, c, c, k, stride, c, "relu6")
    args, q = _conv_args(op)
    ref = op.run(x)
    for i in range(len(x)):
        np.testing.assert_array_equal(rt.depthwise_conv2d(x[i], *args, stride=stride, pad=k // 2, **q), ref[i])
        # the generic kernel computes the same thing
        np.testing.assert_array_equal(rt.conv2d(x[i], *args, stride=stride, pad=k // 2, groups=c, **q), ref[i])


@pytest.mark.parametrize("case", [(7, 9, 5, 11, 1), (8, 5, 3, 6, 2), (9, 9, 16, 7, 2), (1, 1, 10, 3, 1), (5, 6, 1, 4, 3),
                                  (7, 9, 16, 10, 1), (6, 6, 12, 7, 1), (1, 1, 8, 5, 1)])
def test_pointwise_conv2d_matches_reference(rt, case):
    h, w, cin, cout, stride = case
    op, x, _ = _conv_case(sum(case), h, w, cin, cout, 1, stride, 1, "relu")
    args, q = _conv_args(op)
    ref = op.run(x)
    for i in range(len(x)):
        np.testing.assert_array_equal(rt.pointwise_conv2d(x[i], *args, stride=stride, **q), ref[i])
        np.testing.assert_array_equal(rt.conv2d(x[i], *args, stride=stride, pad=0, groups=1, **q), ref[i])


@pytest.mark.parametrize("case", [(9, 8, 6, 7, 3, 2, 1), (8, 8, 6, 6, 5, 1, 6), (7, 9, 5, 11, 1, 2, 1)])
def test_conv_kernels_track_float_conv(rt, case):
    """The anchor: dense, depthwise and pointwise C outputs within two steps of torch's conv2d."""
    op, x, yf = _conv_case(sum(case), *case)
    got = rt.run(op, x)
    np.testing.assert_array_equal(got, op.run(x))
    assert _steps_off(op.output, got, yf) <= 2.0


# ------------------------------------------------------------------------------ add, pool, linear


def _add_case(seed: int, shape: tuple[int, ...]):
    rng = np.random.default_rng(seed)
    qa, qb = _qparams(rng), _qparams(rng)
    a, b = _images(rng, shape), _images(rng, shape)
    yf = qa.dequantize(a).astype(np.float64) + qb.dequantize(b)
    out = choose_qparams(float(yf.min()) * 0.8, float(yf.max()) * 0.8)  # some saturation too
    (ma, sa), (mb, sb) = quantize_multiplier(qa.scale / out.scale), quantize_multiplier(qb.scale / out.scale)
    return QAdd(qa, qb, out, ma, sa, mb, sb), a, b, yf


@pytest.mark.parametrize("shape", [(1, 7, 9, 5), (2, 4, 4, 3), (1, 1, 1, 1), (1, 13, 11, 7)])
def test_add_matches_reference_in_place_too(rt, shape):
    op, a, b, _ = _add_case(sum(shape), shape)
    ref = op.run2(a, b)
    np.testing.assert_array_equal(rt.run_add(op, a, b), ref)
    args = (op.a.zero_point, op.m_a, op.s_a, op.b.zero_point, op.m_b, op.s_b, op.output.zero_point)
    np.testing.assert_array_equal(rt.add(a, b, *args, in_place="a"), ref)
    np.testing.assert_array_equal(rt.add(a, b, *args, in_place="b"), ref)


def test_requant_ties_round_up_like_the_reference(rt):
    """Multipliers that are exact powers of two make (acc * m) land on halves: the C rounding of
    those ties (toward +inf, arithmetic shift) must be the reference's."""
    rng = np.random.default_rng(2)
    a, b = _images(rng, (1, 6, 6, 4)), _images(rng, (1, 6, 6, 4))
    half = quantize_multiplier(0.5)
    assert half == (1 << 30, 31)
    op = QAdd(QParams(0.1, 3), QParams(0.1, -7), QParams(0.2, 1), *half, *half)
    np.testing.assert_array_equal(rt.run_add(op, a, b), op.run2(a, b))
    quarter = quantize_multiplier(0.25)  # a 2x2 average pool into the input's own scale
    pool = QPool("avg", (2, 2), (2, 2), QParams(0.1, 5), QParams(0.1, 5), *quarter)
    np.testing.assert_array_equal(rt.run(pool, a), pool.run(a))


def test_add_tracks_float_sum(rt):
    op, a, b, yf = _add_case(11, (1, 8, 8, 6))
    got = rt.run_add(op, a, b)
    lo, hi = op.output.dequantize(np.array([-128, 127], dtype=np.int8))
    assert _steps_off(op.output, got, np.clip(yf, lo, hi)) <= 1.0


def _avgpool_case(seed: int, h: int, w: int, c: int, kernel: tuple[int, int], stride: tuple[int, int]):
    rng = np.random.default_rng(seed)
    inp = _qparams(rng)
    x = _images(rng, (2, h, w, c))
    yf = F.avg_pool2d(_nchw(inp, x), kernel, stride).permute(0, 2, 3, 1).numpy()
    out = choose_qparams(float(yf.min()), float(yf.max()))
    mult, shift = quantize_multiplier(inp.scale / (out.scale * kernel[0] * kernel[1]))
    return QPool("avg", kernel, stride, inp, out, mult, shift), x, yf


POOL_CASES = [  # h, w, c, kernel, stride
    (8, 8, 3, (2, 2), (2, 2)),
    (9, 7, 5, (3, 2), (2, 3)),
    (7, 7, 6, (7, 7), (1, 1)),  # global average pool
    (10, 9, 1, (3, 3), (1, 2)),
]


@pytest.mark.parametrize("case", POOL_CASES)
def test_pools_match_reference(rt, case):
    h, w, c, kernel, stride = case
    op, x, _ = _avgpool_case(h * w + c, h, w, c, kernel, stride)
    np.testing.assert_array_equal(rt.run(op, x), op.run(x))
    mx = QPool("max", kernel, stride, op.input, op.input)
    np.testing.assert_array_equal(rt.run(mx, x), mx.run(x))


def test_pools_track_float_pools(rt):
    op, x, yf = _avgpool_case(5, 9, 8, 4, (3, 2), (2, 2))
    assert _steps_off(op.output, rt.run(op, x), yf) <= 1.0
    mx = QPool("max", (3, 2), (2, 2), op.input, op.input)
    ref = F.max_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2).double(), (3, 2), (2, 2)).permute(0, 2, 3, 1)
    np.testing.assert_array_equal(rt.run(mx, x), ref.numpy().astype(np.int8))


def _linear_case(seed: int, h: int, w: int, c: int, out_n: int):
    rng = np.random.default_rng(seed)
    inp = _qparams(rng)
    x = _images(rng, (2, h, w, c))
    wf = rng.normal(0.0, 1.0 / np.sqrt(h * w * c), size=(out_n, h * w * c))  # columns in NHWC order
    bf = rng.normal(0.0, 0.5, size=out_n)
    yf = (inp.dequantize(x).reshape(2, -1).astype(np.float64) @ wf.T) + bf
    out = choose_qparams(float(yf.min()), float(yf.max()))
    return QLinear(quant._qconv(wf[:, :, None, None], bf, 1, 1, 1, inp, out, "none")), x, yf


@pytest.mark.parametrize("case", [(1, 1, 10, 10), (3, 3, 7, 5), (4, 2, 5, 1), (2, 5, 9, 17)])
def test_fully_connected_matches_reference(rt, case):
    op, x, _ = _linear_case(sum(case), *case)
    np.testing.assert_array_equal(rt.run(op, x), op.run(x))


def test_fully_connected_tracks_float_linear(rt):
    op, x, yf = _linear_case(4, 3, 3, 8, 10)
    assert _steps_off(op.conv.output, rt.run(op, x), yf) <= 2.0


# ------------------------------------------------------------------------------ FastGRNN, RNNPool


def test_lut_file_is_generated_from_quant_lut(rt):
    np.testing.assert_array_equal(rt.sigmoid_lut, quant.lut("sigmoid"))
    np.testing.assert_array_equal(rt.tanh_lut, quant.lut("tanh"))
    assert gen_lut.LUT_FILE.read_text() == gen_lut.render(), "run python -m rnnpool_nas.export.gen_lut"
    assert gen_lut.main(["--check"]) == 0


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "quantSigmoid", "quantTanh"])
def test_nonlinearity_matches_reference(rt, name):
    rng = np.random.default_rng(len(name))
    edges = np.arange(-9, 10, dtype=np.int64) * ONE
    special = np.concatenate([edges, edges - 1, edges + 1, [-8 * ONE - 1, 8 * ONE - 1, 8 * ONE, 2**31 - 1, -(2**31),
                                                            2**40, -(2**40), ONE // 2, -(ONE // 2) - 1]])
    bins = np.arange(-8 * ONE, 8 * ONE, 1 << 18, dtype=np.int64)  # every bin start, and its middle
    v = np.concatenate([special, bins, bins + (1 << 17), bins + (1 << 17) - 1,
                        rng.integers(-10 * ONE, 10 * ONE, size=2000)]).astype(np.int64)
    np.testing.assert_array_equal(rt.nonlinearity(name, v), quant._nonlinearity(name, v))


def _rnnpool_case(seed, h, w, cin, patch, stride, padding, h1, h2, gate, update):
    """A QRNNPool quantized from a random float RNNPoolLayer + folded batch norm (quant._qrnn, the
    exporter's path), its input batch and the float output (NHWC) of the same layer."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    layer = RNNPoolLayer(cin, patch, stride, h1, h2, padding, gate, update, zeta_init=float(rng.normal(1.0, 1.0)),
                         nu_init=float(rng.normal(-3.0, 1.0)), use_kernel=False).double()
    with torch.no_grad():
        for cell, fan_in in ((layer.rnn1, cin), (layer.rnn2, h1)):
            cell.W.normal_(0.0, 1.0 / np.sqrt(fan_in))
            cell.U.normal_(0.0, 0.6 / np.sqrt(cell.hidden_size))
            cell.bias_gate.normal_(0.0, 0.8)
            cell.bias_update.normal_(0.0, 0.8)
    inp = _qparams(rng)
    x = _images(rng, (2, h, w, cin))
    with torch.no_grad():
        hf = rnnpool_plain(layer, _nchw(inp, x)).permute(0, 2, 3, 1).numpy()
    scale = rng.uniform(0.5, 2.0, size=4 * h2) * rng.choice([-1.0, 1.0], size=4 * h2)  # the folded batch norm
    shift = rng.normal(0.0, 0.3, size=4 * h2)
    yf = hf * scale + shift
    out = choose_qparams(float(yf.min()), float(yf.max()))
    mult, shift_bits = quant._multipliers(scale / (ONE * out.scale))
    bias = np.round(shift / out.scale).astype(np.int64)
    op = QRNNPool(quant._qrnn(layer.rnn1, inp.scale, False), quant._qrnn(layer.rnn2, 1 / ONE, True), layer.patch_size,
                  layer.stride, padding, inp, out, mult, shift_bits, bias)
    return op, x, yf


RNNPOOL_CASES = [  # h, w, cin, patch, stride, padding, h1, h2, gate, update
    (9, 9, 3, (4, 4), (2, 2), 0, 8, 8, "sigmoid", "tanh"),  # stride < patch
    (11, 13, 5, (3, 5), (4, 6), "same", 3, 5, "quantSigmoid", "quantTanh"),  # stride > patch
    (14, 12, 2, (6, 4), (4, 3), "reference", 16, 16, "sigmoid", "quantTanh"),  # replicated output
    (5, 7, 1, (2, 3), (1, 2), 1, 1, 1, "quantSigmoid", "tanh"),  # int padding, hidden 1
    (10, 8, 4, (5, 3), (2, 3), "same", 5, 2, "sigmoid", "tanh"),  # "same" padding at both ends
    (8, 9, 7, (4, 3), (4, 3), "valid", 2, 12, "tanh", "sigmoid"),  # a tanh gate: z < 0
    (12, 12, 3, (6, 6), (4, 4), "reference", 4, 4, "quantSigmoid", "quantTanh"),  # EdgeML-style, both axes
    (10, 9, 8, (4, 4), (2, 2), "reference", 8, 8, "sigmoid", "tanh"),  # whole words of input: packed projections
]


@pytest.mark.parametrize("case", RNNPOOL_CASES)
def test_rnnpool_matches_reference(rt, case):
    op, x, _ = _rnnpool_case(sum(case[:3]) + case[6] + case[7], *case)
    np.testing.assert_array_equal(rt.run(op, x), op.run(x))  # scratch: exact size, garbage, guarded


@pytest.mark.parametrize("case", RNNPOOL_CASES)
def test_rnnpool_row_on_a_ring_matches_reference(rt, case):
    """rn_rnnpool_row (a streamed segment's RNNPool) with the patch rows in a ring of patch_h and
    patch_h + 1 slots, nothing else in it: the same bytes, the left neighbour's columns reused."""
    op, x, _ = _rnnpool_case(sum(case[:3]) + case[6] + case[7], *case)
    ref = op.run(x)
    for ring in (case[3][0], case[3][0] + 1):
        np.testing.assert_array_equal(rt.rnnpool(op, x[1], ring=ring), ref[1])


@pytest.mark.parametrize("case", [RNNPOOL_CASES[0], RNNPOOL_CASES[1], RNNPOOL_CASES[2]])
def test_rnnpool_tracks_float_layer(rt, case):
    op, x, yf = _rnnpool_case(sum(case[:3]) + case[6] + case[7], *case)
    got = rt.run(op, x)
    assert got.shape == yf.shape
    assert _steps_off(op.output, got, yf) <= 3.0


def _tiny_state_rnnpool(seed, cin, patch, stride, padding, h1, h2, gate, update) -> QRNNPool:
    """An integer-built QRNNPool whose Q24 states stay within a few hundred LSBs and whose output
    stage is the identity (multiplier 1.0): the int8 output shows the final RNN2 state itself, so
    every internal rounding (LUT interpolation, g and h, requant15) is visible in the bytes. With
    realistic scales a Q24 LSB is ~1e-6 of an output step and the other tests cannot see it."""
    rng = np.random.default_rng(seed)

    def mults(reals, bits):
        return quant._multipliers(np.asarray(reals), bits)

    def cell(n_in, hidden, wx_reals, bits, state_input):
        w = rng.integers(-127, 128, size=(hidden, n_in)).astype(np.int8)
        u = rng.integers(-127, 128, size=(hidden, hidden)).astype(np.int8)
        w_mult, w_shift = mults(wx_reals * rng.uniform(0.5, 2.0, hidden), bits)
        u_mult, u_shift = mults(rng.uniform(0.5, 2.0, hidden) / (127 * hidden), 15)
        bias_gate = np.round(rng.normal(0.0, 1.5, hidden) * ONE).astype(np.int64)  # z all over the table
        bias_update = rng.integers(-40, 41, size=hidden).astype(np.int64)
        sz, sn = (int(round(ONE / (1 + np.exp(-v)))) for v in (rng.normal(1.0, 1.0), rng.normal(-4.0, 1.0)))
        return quant.QRNN(w, u, w_mult, w_shift, u_mult, u_shift, bias_gate, bias_update, sz, sn, gate, update,
                          state_input)

    rnn1 = cell(cin, h1, 40.0 / (127 * 128 * np.sqrt(cin)), 31, False)
    rnn2 = cell(h1, h2, 40.0 / (127 * 100 * np.sqrt(h1)), 15, True)
    out_mult, out_shift = mults(rng.choice([-1.0, 1.0], size=4 * h2), 31)
    out_bias = rng.integers(-10, 11, size=4 * h2)
    io = QParams(0.05, int(rng.integers(-20, 21)))
    return QRNNPool(rnn1, rnn2, patch, stride, padding, io, QParams(1.0, int(rng.integers(-5, 6))), out_mult,
                    out_shift, out_bias)


@pytest.mark.parametrize("case", [
    (3, (4, 4), (2, 2), 0, 8, 6, "sigmoid", "tanh"),
    (5, (3, 5), (4, 6), "same", 3, 5, "quantSigmoid", "quantTanh"),
    (2, (6, 4), (4, 3), "reference", 16, 16, "sigmoid", "quantTanh"),
    (1, (2, 3), (1, 2), 1, 1, 2, "quantSigmoid", "tanh"),
    (4, (4, 3), (3, 4), "same", 5, 4, "tanh", "tanh"),  # a sigmoid update has no tiny states: c ~ 1/2
])
def test_rnnpool_q24_rounding_is_bit_exact(rt, case):
    op = _tiny_state_rnnpool(len(str(case)), *case)
    x = _images(np.random.default_rng(7), (2, 11, 13, case[0]))
    got, ref = rt.run(op, x), op.run(x)
    assert np.mean(np.abs(ref.astype(int)) == 128) + np.mean(ref == 127) < 0.05  # states are visible, not clipped
    assert len(np.unique(ref)) > 20
    np.testing.assert_array_equal(got, ref)


def test_fastgrnn_projections_match_reference(rt):
    op = _tiny_state_rnnpool(9, 6, (4, 4), (4, 4), 0, 7, 5, "sigmoid", "tanh")
    op1, _, _ = _rnnpool_case(2, 8, 8, 6, (4, 4), (4, 4), 0, 7, 5, "sigmoid", "tanh")
    rng = np.random.default_rng(1)
    keep = hostlib._Keep()
    for rnn1, rnn2 in ((op.rnn1, op.rnn2), (op1.rnn1, op1.rnn2)):
        c1, c2 = hostlib.fastgrnn_struct(rnn1, keep), hostlib.fastgrnn_struct(rnn2, keep)
        out = np.zeros(rnn1.w.shape[0], np.int32)
        for _ in range(20):
            x = _images(rng, (6,))
            zp = int(rng.integers(-128, 128))
            rt.lib.rn_fastgrnn_project_s8(c1, x.ctypes.data, zp, out.ctypes.data)
            np.testing.assert_array_equal(out, rnn1.project(x, zp))
        out = np.zeros(rnn2.w.shape[0], np.int32)
        for scale in (100, ONE, 4 * ONE):
            h = rng.integers(-scale, scale, size=rnn2.w.shape[1]).astype(np.int32)
            rt.lib.rn_fastgrnn_project_q24(c2, h.ctypes.data, out.ctypes.data)
            np.testing.assert_array_equal(out, rnn2.project(h))


def test_fastgrnn_packed_halves_match_reference(rt):
    """Sizes that are multiples of 4 take the packed path (Q24 values split into 16-bit halves for
    SMLAD, fastgrnn.c): RNN2's projection and every step's U h, exact for states below 2^30 and
    through the 64-bit fallback at or past it (a state of 2^31 - 1 in the batch), for an unaligned
    weight pointer too."""
    keep = hostlib._Keep()
    rng = np.random.default_rng(5)
    stepped = 0
    for h1, h2 in ((8, 8), (16, 12), (4, 16)):
        op, _, _ = _rnnpool_case(h1 + h2, 8, 8, 3, (4, 4), (4, 4), 0, h1, h2, "sigmoid", "tanh")
        c2 = hostlib.fastgrnn_struct(op.rnn2, keep)
        out = np.zeros(h2, np.int32)
        for scale in (100, ONE, 1 << 29, (1 << 30) - 1, 1 << 31):
            x = rng.integers(-scale, scale, size=h1).astype(np.int64)
            if scale == 1 << 31:
                x[0] = (1 << 31) - 1   # past 2^30: the fallback
            x = x.astype(np.int32)
            rt.lib.rn_fastgrnn_project_q24(c2, x.ctypes.data, out.ctypes.data)
            # the C gives the low word of a projection past int32 (never so in a network), as before
            np.testing.assert_array_equal(out, op.rnn2.project(x).astype(np.int32), err_msg=f"h1={h1} scale={scale}")
        for cell in (op.rnn1, op.rnn2):
            hidden = cell.u.shape[0]
            c = hostlib.fastgrnn_struct(cell, keep)
            for big in (2 * ONE, 1 << 29):   # pre-activations in and far past the tables' range
                wx = rng.integers(-big, big, size=(9, hidden)).astype(np.int32)
                h_ref = _reference_sweep(cell, wx)
                h, tmp = np.zeros(hidden, np.int32), np.zeros(hidden, np.int32)
                rt.lib.rn_fastgrnn_sweep(c, wx.ctypes.data, 9, hidden, h.ctypes.data, tmp.ctypes.data)
                np.testing.assert_array_equal(h, h_ref)
            # a state past 2^30 (not reachable from h = 0 with bounded gates: set one directly)
            h_prev = rng.integers(-ONE, ONE, size=hidden).astype(np.int64)
            h_prev[-1] = (1 << 31) - 1
            wx1 = rng.integers(-ONE, ONE, size=hidden).astype(np.int64)
            try:
                want = cell.step(wx1, h_prev)
            except OverflowError:
                continue
            stepped += 1
            got = np.zeros(hidden, np.int32)
            hp, w32 = h_prev.astype(np.int32), wx1.astype(np.int32)
            rt.lib.rn_fastgrnn_step(c, w32.ctypes.data, hp.ctypes.data, got.ctypes.data)
            np.testing.assert_array_equal(got, want)
    assert stepped >= 2   # the fallback step ran (where the reference's state still fits int32)
    # an unaligned U (the packed loads need 4-aligned rows): the 64-bit loops, same result
    op, _, _ = _rnnpool_case(3, 8, 8, 3, (4, 4), (4, 4), 0, 8, 8, "sigmoid", "tanh")
    cell = op.rnn1
    buf = np.zeros(cell.u.size + 1, np.int8)
    buf[1:] = cell.u.reshape(-1)
    c = hostlib.fastgrnn_struct(cell, keep)
    c.u = buf[1:].ctypes.data
    wx = rng.integers(-2 * ONE, 2 * ONE, size=(5, 8)).astype(np.int32)
    h_ref = np.zeros(8, dtype=np.int64)
    for t in range(5):
        h_ref = cell.step(wx[t].astype(np.int64), h_ref)
    h, tmp = np.zeros(8, np.int32), np.zeros(8, np.int32)
    rt.lib.rn_fastgrnn_sweep(c, wx.ctypes.data, 5, 8, h.ctypes.data, tmp.ctypes.data)
    np.testing.assert_array_equal(h, h_ref)


@pytest.mark.parametrize("cin,h1", [(4, 16), (4, 5), (8, 7), (12, 8)])
def test_fastgrnn_packed_projection_matches_reference(rt, cin, h1):
    """RNN1's projection of whole words of input (one word: unpacked once for every row), aligned
    and not (the byte loop), every zero point."""
    op, _, _ = _rnnpool_case(cin + h1, 8, 8, cin, (4, 4), (4, 4), 0, h1, 4, "sigmoid", "tanh")
    keep = hostlib._Keep()
    c1 = hostlib.fastgrnn_struct(op.rnn1, keep)
    rng = np.random.default_rng(cin)
    out = np.zeros(h1, np.int32)
    buf = np.zeros(cin + 4, np.int8)
    for k in range(24):
        x = _images(rng, (cin,))
        zp = int(rng.integers(-128, 128)) if k else -128
        off = k % 2   # odd k: an unaligned pixel
        buf[off:off + cin] = x
        rt.lib.rn_fastgrnn_project_s8(c1, buf[off:].ctypes.data, zp, out.ctypes.data)
        np.testing.assert_array_equal(out, op.rnn1.project(x, zp))


def test_fastgrnn_sweep_matches_reference_step_by_step(rt):
    op, _, _ = _rnnpool_case(1, 8, 8, 3, (4, 4), (4, 4), 0, 6, 5, "sigmoid", "tanh")
    keep = hostlib._Keep()
    rng = np.random.default_rng(0)
    for cell in (op.rnn1, op.rnn2):
        c = hostlib.fastgrnn_struct(cell, keep)
        hidden = cell.u.shape[0]
        wx = rng.integers(-2 * ONE, 2 * ONE, size=(7, hidden)).astype(np.int32)
        h_ref = _reference_sweep(cell, wx)
        h, tmp = np.zeros(hidden, np.int32), np.zeros(hidden, np.int32)
        rt.lib.rn_fastgrnn_sweep(c, wx.ctypes.data, 7, hidden, h.ctypes.data, tmp.ctypes.data)
        np.testing.assert_array_equal(h, h_ref)
        h_ref = _reference_sweep(cell, wx[::-1])
        rt.lib.rn_fastgrnn_sweep(c, wx[6:].ctypes.data, 7, -hidden, h.ctypes.data, tmp.ctypes.data)
        np.testing.assert_array_equal(h, h_ref)


def test_scratch_macro_matches_the_planner_formula(tmp_path):
    cc = shutil.which("gcc")
    if cc is None:
        pytest.skip("no host gcc")
    cases = [(4, 4, 8, 8), (3, 5, 3, 5), (6, 4, 16, 16), (2, 3, 1, 1), (5, 3, 5, 2)]
    body = "".join(f'    printf("%d\\n", RN_RNNPOOL_SCRATCH_WORDS({a}, {b}, {c}, {d}));\n' for a, b, c, d in cases)
    src = tmp_path / "macro.c"
    src.write_text(f'#include <stdio.h>\n#include "rn_runtime.h"\nint main(void)\n{{\n{body}    return 0;\n}}\n')
    subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-pedantic", f"-I{RUNTIME_DIR}", "-o", str(tmp_path / "m"),
                    str(src)], check=True)
    printed = subprocess.run([str(tmp_path / "m")], capture_output=True, text=True, check=True).stdout.split()
    assert [int(v) for v in printed] == [hostlib.rnnpool_scratch_words(*c) for c in cases]


# ------------------------------------------------------------------------------ Cortex-M4 build

ARM_CC = "arm-none-eabi-gcc"
ARM_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
#: Frame of any one runtime function, and the deepest call chain under any public kernel, in bytes
#: (saved registers, spilled scalars and a few pointer tables). See the comment in
#: test_runtime_builds_for_cortex_m4_with_small_stack for why the bounds are what they are.
FRAME_LIMIT = 320
CHAIN_LIMIT = 640
PUBLIC_KERNELS = ["rn_conv2d", "rn_depthwise_conv2d", "rn_pointwise_conv2d", "rn_add", "rn_avgpool", "rn_maxpool",
                  "rn_fully_connected", "rn_rnnpool", "rn_fastgrnn_sweep"]


def _call_graph(ci_texts: list[str]) -> tuple[dict[str, int], dict[str, set[str]]]:
    """Frames and call edges from gcc's -fcallgraph-info=su files (VCG)."""
    frames: dict[str, int] = {}
    calls: dict[str, set[str]] = {}
    for text in ci_texts:
        for m in re.finditer(r'node: \{ title: "([^"]+)" label: "([^"]*)"', text):
            size = re.search(r"\\n(\d+) bytes \((\w+)\)", m.group(2))
            if size:
                assert size.group(2) == "static", f"{m.group(1)} has a {size.group(2)} stack frame"
                frames[m.group(1)] = int(size.group(1))
        for m in re.finditer(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"', text):
            calls.setdefault(m.group(1), set()).add(m.group(2))
    return frames, calls


def _deepest(fn: str, frames: dict[str, int], calls: dict[str, set[str]], path: tuple[str, ...] = ()) -> int:
    assert fn not in path, f"recursion through {fn}"
    below = [_deepest(c, frames, calls, path + (fn,)) for c in calls.get(fn, ())]
    return frames.get(fn, 0) + max(below, default=0)  # libc (memcpy/memset) counted as 0


def test_runtime_builds_for_cortex_m4_with_small_stack(tmp_path):
    """Every file compiles warning-free for the Cortex-M4; every frame is static and small.

    gcc -O2 keeps the convolutions' loop state partly on the stack: the fast kernels hold four
    accumulators and the unpacked 16-bit operands of a 2x2 or 4-window block in registers, so the
    loop-invariant state (per-channel requantization constants, pointers, bounds: ~30 values for
    13 registers) is spilled, and the largest frames (rn_depthwise_row, rn_pointwise_conv2d,
    rn_conv2d) are 230-290 bytes. The deepest chain, rn_mbconv -> rn_depthwise_row -> its 3x3
    block helper, is under 600 bytes: small against the 16 KiB stack of the exported projects
    (whose stack is measured on QEMU and bounded by the exporter from the same -fstack-usage).
    """
    if shutil.which(ARM_CC) is None:
        pytest.skip(f"{ARM_CC} not found: CI must install gcc-arm-none-eabi (with libnewlib-arm-none-eabi) so the "
                    "exported runtime is compiled for the Cortex-M4")
    sources = [p for p in runtime_files() if p.suffix == ".c"]
    for src in sources:
        proc = subprocess.run([ARM_CC, *ARM_FLAGS, "-fstack-usage", "-fcallgraph-info=su", "-c", str(src),
                               "-o", str(tmp_path / f"{src.stem}.o")], capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    su = "".join((tmp_path / f"{src.stem}.su").read_text() for src in sources)
    for line in su.splitlines():
        where, size, kind = line.split("\t")
        assert kind == "static", line
        assert int(size) <= FRAME_LIMIT, line
    frames, calls = _call_graph([(tmp_path / f"{src.stem}.ci").read_text() for src in sources])
    for kernel in PUBLIC_KERNELS:
        assert kernel in frames, kernel
        assert _deepest(kernel, frames, calls) <= CHAIN_LIMIT, (kernel, _deepest(kernel, frames, calls))


# ------------------------------------------------------------------------------ packed paths on the Cortex-M4

def _c_array(name: str, a, ctype: str) -> str:
    values = ", ".join(str(int(v)) for v in np.asarray(a).reshape(-1)) or "0"
    return f"static const {ctype} {name}[] = {{{values}}};"


_CTYPES = {np.int8: "int8_t", np.int32: "int32_t"}


def _struct_c(struct, arrays: dict[int, str]) -> str:
    """A C initializer of a hostlib ctypes structure; pointer fields name the arrays of ``arrays``
    (by address)."""
    import ctypes

    parts = []
    for name, ftype in struct._fields_:
        value = getattr(struct, name)
        if isinstance(value, ctypes.Structure):
            parts.append(f".{name} = {_struct_c(value, arrays)}")
        elif ftype is ctypes.c_void_p:
            parts.append(f".{name} = {arrays[value] if value else '0'}")
        else:
            parts.append(f".{name} = {int(value)}")
    return "{" + ", ".join(parts) + "}"


def _m4_cases():
    """(name, reference output, C statements) of kernel calls that take the packed (DSP) paths and
    their fallbacks: word-aligned channel counts, odd ones, an unaligned input, stride 1 and 2,
    four-window blocks and their tails, both kinds of nonlinearity."""
    arrays: list[str] = []
    calls: list[tuple[str, np.ndarray, str]] = []
    count = [0]

    def arr(a, dtype, align_off=0) -> str:
        count[0] += 1
        name = f"a{count[0]}"
        a = np.ascontiguousarray(np.asarray(a), dtype=dtype)
        if align_off:  # the data starts align_off bytes into a word-aligned array
            arrays.append(_c_array(name + "_raw", np.concatenate([np.zeros(align_off, dtype), a.reshape(-1)]),
                                   _CTYPES[dtype]).replace("static const", "static const __attribute__((aligned(4)))"))
            arrays.append(f"#define {name} ({name}_raw + {align_off})")
        else:
            arrays.append(_c_array(name, a, _CTYPES[dtype]).replace("static const", "static const __attribute__((aligned(4)))"))
        return name

    for h, w, cin, cout, stride, off in [(7, 9, 16, 10, 1, 0), (6, 6, 12, 7, 1, 0), (8, 8, 16, 8, 2, 0),
                                         (5, 5, 6, 4, 1, 0), (7, 9, 16, 10, 1, 1), (3, 3, 8, 1, 1, 0)]:
        op, x, _ = _conv_case(h + w + cin + cout, h, w, cin, cout, 1, stride, 1, "relu6")
        args = f"{arr(x[0], np.int8, off)}, {h}, {w}, {cin}, {arr(op.weight.reshape(cout, cin), np.int8)}, " \
               f"{arr(op.bias, np.int32)}, {arr(op.multiplier, np.int32)}, {arr(op.shift, np.int8)}, {cout}, {stride}, " \
               f"{op.input.zero_point}, {op.output.zero_point}, {op.act_min}, {op.act_max}"
        calls.append((f"pointwise {h}x{w}x{cin}->{cout} s{stride} +{off}", op.run(x)[0], f"rn_pointwise_conv2d({args}, OUT);"))
    for h, w, c, k, stride, act in [(9, 10, 16, 3, 1, "relu6"), (11, 13, 8, 3, 2, "relu6"), (6, 5, 12, 3, 1, "none"),
                                    (8, 8, 8, 5, 1, "relu6"), (1, 7, 4, 3, 1, "relu"), (10, 14, 4, 3, 2, "none")]:
        op, x, _ = _conv_case(h + w + c + k, h, w, c, c, k, stride, c, act)
        args = f"{arr(x[0], np.int8)}, {h}, {w}, {c}, {arr(op.weight.reshape(c, k * k), np.int8)}, " \
               f"{arr(op.bias, np.int32)}, {arr(op.multiplier, np.int32)}, {arr(op.shift, np.int8)}, {k}, {stride}, " \
               f"{k // 2}, {op.input.zero_point}, {op.output.zero_point}, {op.act_min}, {op.act_max}"
        calls.append((f"depthwise {h}x{w}x{c} k{k} s{stride}", op.run(x)[0], f"rn_depthwise_conv2d({args}, OUT);"))
    for h, w, cin, cout, k, stride, groups in [(9, 9, 3, 8, 3, 2, 1), (8, 8, 1, 6, 3, 1, 1), (7, 7, 4, 8, 3, 1, 2),
                                               (6, 7, 8, 6, 3, 1, 1)]:
        op, x, _ = _conv_case(h + cin + cout + k, h, w, cin, cout, k, stride, groups, "relu6")
        args = f"{arr(x[0], np.int8)}, {h}, {w}, {cin}, {arr(op.weight, np.int8)}, {arr(op.bias, np.int32)}, " \
               f"{arr(op.multiplier, np.int32)}, {arr(op.shift, np.int8)}, {cout}, {k}, {stride}, {k // 2}, {groups}, " \
               f"{op.input.zero_point}, {op.output.zero_point}, {op.act_min}, {op.act_max}"
        calls.append((f"conv {h}x{w}x{cin}->{cout} k{k} s{stride} g{groups}", op.run(x)[0], f"rn_conv2d({args}, OUT);"))
    for case in [(1, 1, 64, 10), (2, 2, 8, 7), (3, 3, 7, 5)]:
        op, x, _ = _linear_case(sum(case), *case)
        c = op.conv
        args = f"{arr(x[0], np.int8)}, {x[0].size}, {arr(c.weight.reshape(c.weight.shape[0], -1), np.int8)}, " \
               f"{arr(c.bias, np.int32)}, {arr(c.multiplier, np.int32)}, {arr(c.shift, np.int8)}, {c.weight.shape[0]}, " \
               f"{c.input.zero_point}, {c.output.zero_point}, {c.act_min}, {c.act_max}"
        calls.append((f"fc {case}", op.run(x)[0], f"rn_fully_connected({args}, OUT);"))
    for case in [(10, 9, 8, (4, 4), (2, 2), "reference", 8, 8, "sigmoid", "tanh"),
                 (9, 8, 4, (3, 3), (2, 2), 1, 6, 4, "quantSigmoid", "quantTanh"),
                 (8, 8, 12, (4, 4), (4, 4), 0, 5, 3, "tanh", "sigmoid"),
                 (9, 9, 4, (4, 4), (2, 2), "reference", 16, 12, "quantSigmoid", "tanh")]:  # packed U h, RNN2 W
        op, x, _ = _rnnpool_case(sum(case[:3]), *case)
        struct, keep = hostlib.rnnpool_struct(op, x.shape[1], x.shape[2])
        names = {a.ctypes.data: arr(a, a.dtype.type) for a in keep.arrays}
        words = hostlib.rnnpool_scratch_words(*op.patch, op.rnn1.w.shape[0], op.rnn2.w.shape[0])
        calls.append((f"rnnpool {case}", op.run(x)[0],
                      f"{{ static const rn_rnnpool_t p = {_struct_c(struct, names)}; static int32_t s[{words}]; "
                      f"rn_rnnpool(&p, {arr(x[0], np.int8)}, {x.shape[1]}, {x.shape[2]}, {x.shape[3]}, OUT, s); }}"))
    from tests.test_export_mbconv import _block_case

    for case in [(8, 8, 8, 4, 8, 3, 1, True), (9, 9, 8, 6, 16, 3, 2, False), (7, 7, 12, 1, 12, 3, 1, True)]:
        block, x = _block_case(sum(case[:5]), *case)
        struct, keep = hostlib.mbconv_struct(block)
        names = {a.ctypes.data: arr(a, a.dtype.type) for a in keep.arrays}
        k, s, w, hid = case[5], case[6], case[1], case[2] * case[3]
        out_w = (w + 2 * (k // 2) - k) // s + 1
        n = hostlib.mbconv_scratch_bytes(case[3] != 1, k, w, out_w, hid)
        calls.append((f"mbconv {case}", block.run(x)[0],
                      f"{{ static const rn_mbconv_t p = {_struct_c(struct, names)}; static int32_t s[{(n + 3) // 4}]; "
                      f"rn_mbconv(&p, {arr(x[0], np.int8)}, {case[0]}, {case[1]}, OUT, (int8_t *)s); }}"))
    return arrays, calls


def test_packed_kernels_are_bit_exact_on_the_cortex_m4(tmp_path):
    """The kernels built for the Cortex-M4 (with __ARM_FEATURE_DSP: SMLAD, SXTB16, SSAT, ...) and run
    in the emulator give the int8 reference's bytes, as the host build (plain C) does in the tests
    above: the same data flow with the DSP instructions instead of their C definitions."""
    if shutil.which(ARM_CC) is None:
        pytest.skip(f"{ARM_CC} not found")
    from rnnpool_nas.measure.emulate import emulate
    from rnnpool_nas.measure.microbench import TEMPLATES, m4_flags

    arrays, calls = _m4_cases()
    biggest = max(ref.size for _, ref, _ in calls)
    body = []
    for i, (_, _, stmt) in enumerate(calls):
        body.append(f"    memset(OUT, 0x5A, sizeof out_buf); {stmt} dump({i}, OUT, {calls[i][1].size});")
    src = "\n".join([
        "#include <stdint.h>", "#include <string.h>", '#include "rn_runtime.h"', '#include "semihost.h"',
        *arrays,
        f"static int32_t out_buf[{(biggest + 3) // 4 + 1}];", "#define OUT ((int8_t *)out_buf)",
        "volatile uint32_t model_mark;",
        "static void dump(int k, const int8_t *p, int n) {",
        "    static char line[16 + 2 * 4096]; static const char hex[] = \"0123456789abcdef\"; int i, j = 0;",
        "    line[j++] = 'k'; line[j++] = (char)('A' + k / 26); line[j++] = (char)('A' + k % 26); line[j++] = ' ';",
        "    for (i = 0; i < n; i++) { line[j++] = hex[(p[i] >> 4) & 15]; line[j++] = hex[p[i] & 15]; }",
        "    line[j++] = '\\n'; line[j] = 0; semihost_write(line);", "}",
        "int main(void) {", *body, '    semihost_write("done\\n");', "    return 0;", "}", ""])
    (tmp_path / "drv.c").write_text(src)
    for name in ("startup_m4.c", "semihost.h", "mps2_an386.ld"):
        shutil.copy2(TEMPLATES / name, tmp_path / name)
    elf = tmp_path / "drv.elf"
    sources = [str(tmp_path / "drv.c"), str(tmp_path / "startup_m4.c")] + [str(p) for p in runtime_files()
                                                                            if p.suffix == ".c"]
    proc = subprocess.run([ARM_CC, "-std=c99", "-Wall", "-Wextra", "-Werror", *m4_flags(), f"-I{tmp_path}",
                           f"-I{RUNTIME_DIR}", "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
                           "-Wl,--gc-sections", "-T", str(tmp_path / "mps2_an386.ld"), "-o", str(elf), *sources],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "__ARM_FEATURE_DSP" in subprocess.run([ARM_CC, *m4_flags(), "-dM", "-E", "-x", "c", "/dev/null"],
                                                 capture_output=True, text=True).stdout
    result = emulate(elf)
    lines = {line[1:3]: line[4:] for line in result.output.splitlines() if line.startswith("k")}
    assert result.output.rstrip().endswith("done")
    for i, (name, ref, _) in enumerate(calls):
        key = chr(ord("A") + i // 26) + chr(ord("A") + i % 26)
        got = np.frombuffer(bytes.fromhex(lines[key]), dtype=np.int8)
        np.testing.assert_array_equal(got, ref.reshape(-1), err_msg=name)
