"""The fused, row-streamed MBConv kernel rn_mbconv (runtime/mbconv.c), byte for byte.

Random bottleneck blocks quantized the exporter's way (quant._qconv stage by stage, each stage's
output range taken from the float conv of the previous stage's int8 output) run through the int8
reference QBlock.run, the unfused C kernels in sequence and rn_mbconv; all three must agree
exactly. The scratch is exactly RN_MBCONV_SCRATCH_BYTES, starts as garbage and is guarded, like
the output. The last tests pin the scratch macro to the Python formula and bound rn_mbconv's stack
on the Cortex-M4.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rnnpool_nas.export import RUNTIME_DIR, hostlib
from rnnpool_nas.train import quant
from rnnpool_nas.train.quant import QAdd, QBlock, QParams, choose_qparams, quantize_multiplier
from tests.test_export_kernels import ARM_CC, ARM_FLAGS, CHAIN_LIMIT, FRAME_LIMIT, _call_graph, _deepest


@pytest.fixture(scope="module")
def rt(tmp_path_factory) -> hostlib.HostRuntime:
    return hostlib.load(tmp_path_factory.mktemp("rn_runtime_mbconv"))


def _float_conv(qp: QParams, x: np.ndarray, wf: np.ndarray, bf: np.ndarray, stride: int, groups: int,
                act: str) -> np.ndarray:
    xf = torch.from_numpy(qp.dequantize(x)).permute(0, 3, 1, 2).double()
    k = wf.shape[-1]
    y = F.conv2d(xf, torch.from_numpy(wf), torch.from_numpy(bf), stride, k // 2, 1, groups)
    if act == "relu6":
        y = y.clamp(0.0, 6.0)
    elif act == "relu":
        y = y.clamp(min=0.0)
    return y.permute(0, 2, 3, 1).numpy()


def _block_case(seed: int, h: int, w: int, cin: int, t: int, cout: int, k: int, stride: int, residual: bool,
                act: str = "relu6", batch: int = 2) -> tuple[QBlock, np.ndarray]:
    """A random MBConv block as quant._quantize_block builds it ([expand], depthwise, project with
    no activation, [QAdd]) and an input batch."""
    rng = np.random.default_rng(seed)
    inp = choose_qparams(-rng.uniform(0.0, 3.0), rng.uniform(0.2, 3.0))
    x = rng.integers(-128, 128, size=(batch, h, w, cin), dtype=np.int8)
    hidden = cin * t
    stages = ([(cin, hidden, 1, 1, 1, act)] if t != 1 else []) + [(hidden, hidden, k, stride, hidden, act),
                                                                  (hidden, cout, 1, 1, 1, "none")]
    ops, q, y = [], inp, x
    for c_in, c_out, kk, s, groups, a in stages:
        wf = rng.normal(0.0, 1.5 / np.sqrt(kk * kk * c_in / groups), size=(c_out, c_in // groups, kk, kk))
        bf = rng.normal(0.0, 0.5, size=c_out)
        yf = _float_conv(q, y, wf, bf, s, groups, a)
        out = choose_qparams(float(yf.min()) * 0.9, float(yf.max()) * 0.9)  # a little saturation too
        op = quant._qconv(wf, bf, kk, s, groups, q, out, a)
        y, q = op.run(y), out
        ops.append(op)
    add = None
    if residual:
        total = inp.dequantize(x).astype(np.float64) + q.dequantize(y)
        final = choose_qparams(float(total.min()) * 0.9, float(total.max()) * 0.9)
        (ma, sa), (mb, sb) = quantize_multiplier(inp.scale / final.scale), quantize_multiplier(q.scale / final.scale)
        add = QAdd(inp, q, final, ma, sa, mb, sb)
    return QBlock("mb", ops, add), x


def _unfused(rt: hostlib.HostRuntime, block: QBlock, x: np.ndarray) -> np.ndarray:
    y = x
    for op in block.ops:
        y = rt.run(op, y)
    return np.stack([rt.run_add(block.add, a, b) for a, b in zip(x, y)]) if block.add is not None else y


MBCONV_CASES = [  # h, w, cin, t, cout, kernel, stride, residual, activation
    (7, 9, 5, 6, 5, 3, 1, True, "relu6"),
    (9, 13, 3, 4, 7, 5, 2, False, "relu6"),
    (8, 1, 7, 1, 7, 3, 1, True, "relu"),  # width 1, t == 1: the depthwise reads the input
    (1, 6, 6, 1, 10, 5, 2, False, "relu6"),  # height 1
    (11, 11, 5, 3, 5, 5, 1, True, "relu6"),
    (6, 12, 10, 1, 10, 5, 1, True, "relu6"),  # t == 1, kernel 5, residual
    (13, 7, 3, 6, 9, 3, 2, False, "relu"),
    (2, 2, 9, 2, 6, 5, 1, False, "relu6"),  # a map smaller than the kernel
    (5, 4, 6, 1, 3, 3, 2, False, "relu6"),  # t == 1, stride 2
    (10, 5, 3, 2, 5, 1, 2, False, "relu6"),  # kernel 1 < stride: rows no window reaches
    (12, 10, 4, 3, 6, 3, 4, False, "relu6"),  # stride 4 > kernel 3: rows skipped, ring refilled
    (9, 8, 3, 5, 6, 4, 1, False, "none"),  # an even kernel (pad 2: one more output row and column)
    (4, 13, 11, 2, 11, 3, 1, True, "relu6"),  # width 13
    (3, 3, 1, 1, 1, 3, 1, True, "relu6"),  # one channel
    (6, 7, 2, 6, 3, 5, 2, False, "relu6"),  # odd sizes, stride 2 with kernel 5
    (8, 8, 8, 4, 8, 3, 1, True, "relu6"),  # whole words of channels: the packed pointwise and 3x3 blocks
    (9, 9, 8, 6, 16, 3, 2, False, "relu6"),
    (7, 7, 12, 1, 12, 3, 1, True, "none"),
    (5, 14, 4, 2, 4, 3, 1, True, "relu"),
]


@pytest.mark.parametrize("case", MBCONV_CASES)
def test_mbconv_matches_reference_and_unfused_kernels(rt, case):
    block, x = _block_case(sum(case[:7]), *case)
    ref = block.run(x)
    np.testing.assert_array_equal(_unfused(rt, block, x), ref)
    np.testing.assert_array_equal(rt.run_mbconv(block, x), ref)  # garbage scratch, guarded out and scratch
    assert len(np.unique(ref)) > min(ref.size // 2, 20)  # not a saturated constant


def test_mbconv_random_blocks(rt):
    """Many random shapes: widths 1..13, channel counts off multiples of 4, both kernels and
    strides, with and without expand and residual, scratch garbage of several patterns."""
    rng = np.random.default_rng(2024)
    for i in range(40):
        k, stride = int(rng.choice([3, 5])), int(rng.choice([1, 2]))
        t = int(rng.choice([1, 2, 3, 6]))
        cin = int(rng.integers(1, 12))
        residual = stride == 1 and bool(rng.integers(0, 2))
        cout = cin if residual else int(rng.integers(1, 12))
        h, w = int(rng.integers(1, 14)), int(rng.integers(1, 14))
        case = (h, w, cin, t, cout, k, stride, residual, str(rng.choice(["relu6", "relu", "none"])))
        block, x = _block_case(1000 + i, *case, batch=1)
        ref = block.run(x)[0]
        for fill in (0x3C, -128, 127, 0):
            np.testing.assert_array_equal(rt.mbconv(block, x[0], scratch_fill=fill), ref, err_msg=str(case))


def test_depthwise_row_reads_a_ring_of_rows(rt):
    """rn_depthwise_row on rows scattered in a ring (row iy in slot iy % ring, other slots garbage)
    is rn_depthwise_conv2d's output row, and so is it on the whole map (ring == in_h)."""
    rng = np.random.default_rng(5)
    for h, w, c, k, stride in [(9, 7, 5, 3, 1), (11, 6, 6, 5, 2), (4, 3, 3, 5, 1), (8, 5, 2, 3, 3)]:
        block, x = _block_case(h + w + c, h, w, c, 1, c, k, stride, False)
        dw = block.ops[0]
        img = x[0]
        ref = rt.run(dw, x[:1])[0]
        pad = k // 2
        args = (dw.weight.reshape(c, k * k), dw.bias, dw.multiplier, dw.shift)
        wt, b, m, s = (hostlib._arr(a, t) for a, t in zip(args, (np.int8, np.int32, np.int32, np.int8)))
        for ring in (k, k + 1, h):
            for oy in range(ref.shape[0]):
                iy0 = oy * stride - pad
                slots = rng.integers(-128, 128, size=(ring, w, c), dtype=np.int8)  # garbage
                for iy in range(max(iy0, 0), min(iy0 + k, h)):
                    slots[iy % ring] = img[iy]
                out = np.full(ref.shape[1] * c + 16, 0x5A, dtype=np.int8)
                rt.lib.rn_depthwise_row(slots.ctypes.data, ring, h, w, c, iy0, wt.ctypes.data, b.ctypes.data,
                                        m.ctypes.data, s.ctypes.data, k, stride, pad, dw.input.zero_point,
                                        dw.output.zero_point, dw.act_min, dw.act_max, out.ctypes.data)
                np.testing.assert_array_equal(out[: ref.shape[1] * c].reshape(ref.shape[1], c), ref[oy])
                assert np.all(out[ref.shape[1] * c:] == 0x5A)


def test_mbconv_rejects_what_it_cannot_run(rt):
    block, x = _block_case(1, 5, 5, 3, 2, 4, 3, 1, False)
    with pytest.raises(ValueError, match="channels"):
        rt.mbconv(block, x[0, :, :, :2])
    with pytest.raises(ValueError, match="MBConv"):
        hostlib.mbconv_struct(QBlock("conv", block.ops[:1]))


def macro_values(tmp_path, header: str, macro: str, cases: list[tuple]) -> list[int]:
    """What the runtime's ``macro`` of ``header`` gives for each tuple of arguments (compiled with
    the host's gcc; the test is skipped without one)."""
    cc = shutil.which("gcc")
    if cc is None:
        pytest.skip("no host gcc")
    body = "".join(f'    printf("%d\\n", {macro}({", ".join(map(str, case))}));\n' for case in cases)
    src = tmp_path / "macro.c"
    src.write_text(f'#include <stdio.h>\n#include "{header}"\nint main(void)\n{{\n{body}    return 0;\n}}\n')
    subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-pedantic", f"-I{RUNTIME_DIR}", "-o", str(tmp_path / "m"),
                    str(src)], check=True)
    printed = subprocess.run([str(tmp_path / "m")], capture_output=True, text=True, check=True).stdout.split()
    return [int(v) for v in printed]


def test_mbconv_scratch_macro_matches_the_python_formula(tmp_path):
    cases = [(1, 3, 13, 13, 30), (0, 5, 7, 4, 11), (1, 5, 9, 5, 18), (0, 3, 1, 1, 1), (1, 1, 10, 5, 6)]
    got = macro_values(tmp_path, "rn_runtime.h", "RN_MBCONV_SCRATCH_BYTES", cases)
    assert got == [hostlib.mbconv_scratch_bytes(bool(e), *rest) for e, *rest in cases]
    # the saving the kernel exists for: a 3x3, t = 6 block over a 20x20x16 map
    fused = hostlib.mbconv_scratch_bytes(True, 3, 20, 20, 96)
    assert fused * 10 == 2 * 20 * 20 * 96  # a tenth of the expanded and depthwise maps held whole


def _public_calls(fn: str, calls: dict[str, set[str]]) -> set[str]:
    """The runtime functions ``fn`` calls, looking through static helpers (gcc names them
    ``file:name``)."""
    out: set[str] = set()
    for callee in calls.get(fn, ()):
        out |= _public_calls(callee, calls) if ":" in callee else {callee}
    return out


def test_mbconv_builds_for_cortex_m4_with_small_stack(tmp_path):
    if shutil.which(ARM_CC) is None:
        pytest.skip(f"{ARM_CC} not found")
    sources = [RUNTIME_DIR / f"{name}.c" for name in ("mbconv", "depthwise", "pointwise", "add")]
    for src in sources:
        proc = subprocess.run([ARM_CC, *ARM_FLAGS, "-fstack-usage", "-fcallgraph-info=su", "-c", str(src),
                               "-o", str(tmp_path / f"{src.stem}.o")], capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    frames, calls = _call_graph([(tmp_path / f"{src.stem}.ci").read_text() for src in sources])
    for fn in ("rn_mbconv", "rn_depthwise_row"):
        assert frames[fn] <= FRAME_LIMIT, (fn, frames[fn])
    for fn in ("rn_mbconv", "rn_mbconv_inplace"):  # through mbconv.c's own static helper (one row loop)
        assert _public_calls(fn, calls) == {"rn_pointwise_conv2d", "rn_depthwise_row", "rn_add"}, fn
    assert _deepest("rn_mbconv", frames, calls) <= CHAIN_LIMIT, _deepest("rn_mbconv", frames, calls)
