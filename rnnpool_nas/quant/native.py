"""The int8 reference's RNNPool compiled for the host (``csrc/qrnnpool.c``, loaded with ctypes).

RNNPool's Q24 recurrences are most of the time of scoring an int8 network; numpy runs them as
dozens of passes over int64 arrays per step. :class:`NativeRNNPool` runs the same integer
arithmetic (same values: tests/test_quant_native.py compares it byte for byte with
:meth:`QRNNPool.run`) as a C loop over the sequences of a sweep in lockstep, built with the host's
compiler on first use into ``$XDG_CACHE_HOME/rnnpool_nas`` (default ``~/.cache/rnnpool_nas``),
named by a digest of the source, the flags and the CPU, so checkouts share a build and a build
is never run on another kind of CPU. When no C compiler is found (or ``RNNPOOL_NAS_NO_EXT=1``)
:func:`native_rnnpool` returns ``None`` and says so once on stdout; callers then run the numpy
reference. numpy and ctypes only: no torch.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np

from ..ops.geometry import axis_geometry
from .reference import LUT_BINS, QRNN, QRNNPool, lut

SOURCE = Path(__file__).parent / "csrc" / "qrnnpool.c"
#: -march=native: the build is named by the CPU it is made on (see :func:`build_key`); -fwrapv:
#: int64 arithmetic wraps as numpy's does (only ever reached when a reference check fails).
CFLAGS = ("-std=c99", "-O3", "-march=native", "-fwrapv", "-shared", "-fPIC")
NONLINEARITY_CODES = {"sigmoid": 0, "tanh": 1, "quantSigmoid": 2, "quantTanh": 3}

_P = ctypes.c_void_p
_I64 = ctypes.c_int64
_I32 = ctypes.c_int32


class _Cell(ctypes.Structure):
    """``qrn_cell_t``."""

    _fields_ = [("w", _P), ("u", _P), *[(name, _P) for name in ("w_mult", "w_shift", "u_mult", "u_shift",
                                                               "bias_gate", "bias_update")],
                ("sz", _I64), ("sn", _I64), ("input", _I32), ("hidden", _I32), ("gate", _I32), ("update", _I32)]


class _Pool(ctypes.Structure):
    """``qrn_pool_t``."""

    _fields_ = [("rnn1", _Cell), ("rnn2", _Cell),
                *[(name, _I32) for name in ("patch_h", "patch_w", "stride_h", "stride_w", "pad_top", "pad_left",
                                            "patches_h", "patches_w", "replicate_h", "replicate_w")],
                ("in_zp", _I64), ("out_zp", _I64),
                *[(name, _P) for name in ("out_mult", "out_shift", "out_bias", "w1t", "sigmoid_table",
                                          "sigmoid_slope", "tanh_table", "tanh_slope")]]


def _cpu() -> str:
    """What ``-march=native`` depends on: the CPU's model and feature flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    wanted = [line for line in lines if line.split(":")[0].strip() in ("model name", "flags", "Features")]
    return "\n".join(sorted(set(wanted))) or platform.processor() or platform.machine()


def build_key(cc: str) -> str:
    """A digest of what the build depends on: the source, the compiler, the flags and the CPU."""
    digest = hashlib.sha256(SOURCE.read_bytes())
    for part in (cc, *CFLAGS, _cpu(), platform.machine(), platform.system()):
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rnnpool_nas"


_lock = threading.Lock()
_state: dict[str, object] = {}


def _compiler() -> str | None:
    if os.environ.get("RNNPOOL_NAS_NO_EXT", "") not in ("", "0"):
        return None
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("cc")


def _say_once(text: str) -> None:
    if not _state.get("said"):
        _state["said"] = True
        print(f"rnnpool_nas: {text}", flush=True)


def library() -> ctypes.CDLL | None:
    """The compiled kernel (built on first use, then cached), or ``None`` without a C compiler."""
    with _lock:
        if "lib" in _state:
            return _state["lib"]  # type: ignore[return-value]
        lib = None
        cc = _compiler()
        if cc is None:
            _say_once("no C compiler found (or RNNPOOL_NAS_NO_EXT=1): int8 RNNPool scoring runs the numpy "
                      "reference (slow)")
        else:
            so = cache_dir() / f"qrnnpool-{build_key(cc)}.so"
            if not so.is_file():
                so.parent.mkdir(parents=True, exist_ok=True)
                tmp = so.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
                proc = subprocess.run([cc, *CFLAGS, "-o", str(tmp), str(SOURCE)], capture_output=True, text=True,
                                      timeout=300)
                if proc.returncode != 0:  # a compiler that cannot build plain C99 is a broken setup
                    raise RuntimeError(f"building {SOURCE.name} failed:\n{proc.stdout}{proc.stderr}")
                os.replace(tmp, so)
            lib = ctypes.CDLL(str(so))
            lib.qrnnpool_work_words.argtypes = [ctypes.POINTER(_Pool)]
            lib.qrnnpool_work_words.restype = _I64
            lib.qrnnpool_run.argtypes = [ctypes.POINTER(_Pool), _P, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                         ctypes.c_int, _P, _P]
            lib.qrnnpool_run.restype = ctypes.c_int
        _state["lib"] = lib
        return lib


_TABLES = {name: (lut(name), np.diff(lut(name))) for name in ("sigmoid", "tanh")}


class NativeRNNPool:
    """A :class:`QRNNPool` run by the compiled kernel; :meth:`run` returns ``QRNNPool.run``'s
    bytes (and raises its ``OverflowError`` when one of its checks fails)."""

    def __init__(self, op: QRNNPool, lib: ctypes.CDLL) -> None:
        self.op, self.lib = op, lib
        self._keep: list[np.ndarray] = []
        self._shapes: dict[tuple[int, int], tuple[_Pool, int]] = {}
        assert len(_TABLES["sigmoid"][0]) == LUT_BINS + 1

    def _arr(self, a, dtype) -> int:
        arr = np.ascontiguousarray(a, dtype=dtype)
        if not np.array_equal(arr.astype(np.int64), np.asarray(a).astype(np.int64)):
            raise OverflowError(f"value out of range for {np.dtype(dtype).name}")
        self._keep.append(arr)
        return arr.ctypes.data

    def _cell(self, cell: QRNN) -> _Cell:
        hidden, inp = cell.w.shape
        i64 = [self._arr(getattr(cell, name), np.int64) for name in ("w_mult", "w_shift", "u_mult", "u_shift",
                                                                      "bias_gate", "bias_update")]
        return _Cell(self._arr(cell.w, np.int8), self._arr(cell.u, np.int8), *i64, int(cell.sz), int(cell.sn), inp,
                     hidden, NONLINEARITY_CODES[cell.gate], NONLINEARITY_CODES[cell.update])

    def _struct(self, h: int, w: int) -> tuple[_Pool, int]:
        """The kernel's parameters for an ``h x w`` input and its scratch words."""
        if (h, w) not in self._shapes:
            op = self.op
            (r, c), (sr, sc) = op.patch, op.stride
            gy, gx = axis_geometry(h, r, sr, op.padding), axis_geometry(w, c, sc, op.padding)
            tables = [self._arr(a, np.int64) for name in ("sigmoid", "tanh") for a in _TABLES[name]]
            p = _Pool(self._cell(op.rnn1), self._cell(op.rnn2), r, c, sr, sc, gy.pad_before, gx.pad_before,
                      gy.patches, gx.patches, gy.replicate, gx.replicate, op.input.zero_point, op.output.zero_point,
                      self._arr(op.out_mult, np.int64), self._arr(op.out_shift, np.int64),
                      self._arr(op.out_bias, np.int64), self._arr(op.rnn1.w.T, np.int64), *tables)
            self._shapes[(h, w)] = (p, int(self.lib.qrnnpool_work_words(ctypes.byref(p))))
        return self._shapes[(h, w)]

    def run(self, x: np.ndarray) -> np.ndarray:
        """int8 NHWC ``(N, H, W, C)`` -> int8 ``(N, out_h, out_w, 4 * h2)``."""
        x = np.ascontiguousarray(x, dtype=np.int8)
        n, h, w, c = x.shape
        p, words = self._struct(h, w)
        out = np.empty((n, p.patches_h + p.replicate_h, p.patches_w + p.replicate_w, 4 * p.rnn2.hidden), np.int8)
        work = np.empty(words, np.int64)
        if self.lib.qrnnpool_run(ctypes.byref(p), x.ctypes.data, n, h, w, c, out.ctypes.data, work.ctypes.data):
            return self.op.run(x)  # a check failed: the reference raises its own OverflowError
        return out


def native_rnnpool(op: QRNNPool) -> NativeRNNPool | None:
    """The compiled runner of ``op``, or ``None`` when no C compiler is available (said once)."""
    lib = library()
    return None if lib is None else NativeRNNPool(op, lib)
