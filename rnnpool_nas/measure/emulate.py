"""Run a Cortex-M4 ELF in Unicorn and count its instructions and cycles, per kernel call.

The exported project's ``m4`` build (``build/model_m4.elf``: vector table at 0, FLASH at 0, RAM at
0x20000000, semihosting through ``bkpt 0xab``) runs here instruction by instruction in Unicorn's
Thumb M-class CPU (its Cortex-M4 model). Cycles come from :mod:`rnnpool_nas.measure.timing`: a
block hook counts how often each translated basic block runs, entered sequentially or by a taken
branch, and how often each block's exit branch is taken; afterwards every block is decoded once
with capstone and priced once, and the counts are multiplied out. SDIV/UDIV are priced from their
operands by a code hook on their addresses only. The block hook is a small C function
(``csrc/blockcount.c``, built with the host's ``cc`` on first use and cached in
``~/.cache/rnnpool_nas``) or, without a compiler or with ``RNNPOOL_NAS_NO_EXT=1``, the same
counting in Python (several times slower).

Per kernel call: the generated ``model.c`` stores k + 1 into ``volatile uint32_t model_mark``
before kernel call k (0 after ``model_run``); a write hook on that one word switches the counters,
so :attr:`Emulation.segments` maps each marker value to the instructions and cycles run under
it (the stores sit between calls: a call's figure includes its argument set-up, the few
instructions before the next store, and the blocks that contain the store itself).

Flash wait states (``flash_wait_states=N``, ``rnnpool-nas measure --flash-wait-states N``): the
TRM's table assumes zero-wait memory, as mps2-an386's SRAMs are; a real STM32F4/L4 runs its code
and ``const`` data (the weights, the RNNPool tables) from flash with N wait states (F4 at 168 MHz: 5,
L4 at 80 MHz: 4) behind the ART accelerator. The model (``csrc/blockcount.c``): a 64-line
instruction cache (16-byte lines, 4 ways, LRU) that every executed block's lines pass through and an
8-line data cache (fully associative, LRU) that every data read from flash passes through; each miss
costs N cycles (a line fill), added per marker. It ignores the prefetch buffer (which hides some
sequential instruction misses: the estimate errs high) and assumes the caches and prefetch are on.
Needs the compiled counter.
"""

from __future__ import annotations

import bisect
import ctypes
import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import UserError
from .timing import BlockCost, block_cost, disassembler, division_cycles

FLASH = (0x00000000, 4 << 20)
RAM = (0x20000000, 4 << 20)
SEMIHOST_WRITE0, SEMIHOST_EXIT = 0x04, 0x18
MARK_SYMBOL = "model_mark"
EXCP_BKPT = 7  # QEMU's ARM exception number that Unicorn reports for BKPT
# count keys (shared with csrc/blockcount.c): address << 12 | size, flags, marker << SEG_SHIFT
SIZE_BITS, JUMP, TAKEN, SEG_SHIFT = 12, 1 << 44, 1 << 45, 46
KEY_MASK = JUMP - 1
CSRC = Path(__file__).with_name("csrc") / "blockcount.c"


@dataclass
class Segment:
    """What ran while ``model_mark`` held ``marker``."""

    marker: int
    instructions: int = 0
    cycles: int = 0


@dataclass
class Emulation:
    """The result of :func:`emulate`."""

    output: str                      # what the program wrote through semihosting
    exit_code: int | None            # SYS_EXIT's reason (0x20026: a normal exit)
    instructions: int
    cycles: int
    segments: dict[int, Segment] = field(default_factory=dict)  # by marker value (0: outside the model)
    wall_seconds: float = 0.0
    blocks: int = 0                  # distinct basic blocks translated
    functions: dict[str, Segment] = field(default_factory=dict)  # by function symbol (a flat profile)
    block_profile: dict[int, Segment] = field(default_factory=dict)  # by block address (emulate(..., blocks=True))
    flash_wait_states: int = 0
    flash_misses: dict[int, tuple[int, int]] = field(default_factory=dict)  # marker -> (instruction, data) misses

    @property
    def instructions_per_second(self) -> float:
        return self.instructions / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def output_line(self, prefix: str = "output:") -> str | None:
        """The first line of the program's output that starts with ``prefix``."""
        return next((line for line in self.output.splitlines() if line.startswith(prefix)), None)


def _load_elf(path: Path):
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with path.open("rb") as f:
            elf = ELFFile(f)
            if elf["e_machine"] != "EM_ARM":
                raise UserError(f"{path} is not an ARM executable ({elf['e_machine']})")
            segments = [(seg["p_paddr"], seg.data()) for seg in elf.iter_segments()
                        if seg["p_type"] == "PT_LOAD" and seg["p_filesz"] > 0]
            symbols = {}
            funcs = []
            symtab = elf.get_section_by_name(".symtab")
            if symtab is not None:
                for sym in symtab.iter_symbols():
                    if sym.name and sym["st_info"]["type"] in ("STT_OBJECT", "STT_FUNC"):
                        symbols[sym.name] = sym["st_value"]
                    if sym["st_info"]["type"] == "STT_FUNC" and sym["st_size"] > 0:
                        funcs.append((sym["st_value"] & ~1, sym["st_size"], sym.name))
            return segments, symbols, funcs
    except (OSError, ELFError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def _divisions(uc_read, funcs) -> list[tuple[int, bool, int, int]]:
    """(address, signed, dividend register, divisor register) of every SDIV/UDIV in a function."""
    from capstone import arm_const as A

    cs = disassembler()
    out = []
    for start, size, _ in funcs:
        code = bytes(uc_read(start, size))
        for insn in cs.disasm(code, start):
            if insn.id in (A.ARM_INS_SDIV, A.ARM_INS_UDIV):
                regs = [op.reg for op in insn.operands if op.type == A.ARM_OP_REG]
                out.append((insn.address, insn.id == A.ARM_INS_SDIV, regs[1], regs[2]))
    return out


_UC_REG = None


def _unicorn_reg(capstone_reg: int) -> int:
    """Unicorn's register id of a capstone ARM register (r0-r12, sp, lr)."""
    global _UC_REG
    if _UC_REG is None:
        from capstone import arm_const as A
        from unicorn import arm_const as U

        _UC_REG = {getattr(A, f"ARM_REG_R{i}"): getattr(U, f"UC_ARM_REG_R{i}") for i in range(13)}
        _UC_REG.update({A.ARM_REG_SB: U.UC_ARM_REG_R9, A.ARM_REG_SL: U.UC_ARM_REG_R10,
                        A.ARM_REG_FP: U.UC_ARM_REG_R11, A.ARM_REG_IP: U.UC_ARM_REG_R12,
                        A.ARM_REG_SP: U.UC_ARM_REG_SP, A.ARM_REG_LR: U.UC_ARM_REG_LR})
    return _UC_REG[capstone_reg]


#: seconds a budgeted emulation runs before its instructions are counted (see ``emulate``)
FREE_RUN_S = 20.0


def emulate(elf: str | Path, timeout_s: float = 0.0, blocks: bool = False,
            on_mark: Callable[[int, Callable[[str, int], bytes]], None] | None = None,
            flash_wait_states: int = 0, max_instructions: int = 0) -> Emulation:
    """Run ``elf`` from reset to semihosting SYS_EXIT; see the module docstring. An emulator
    fault (or ``timeout_s`` > 0 passing, or more than ``max_instructions`` > 0 executed: a
    ``model_run`` that never returns) is a :class:`UserError` naming the PC and the marker.
    ``blocks=True`` also fills :attr:`Emulation.block_profile` (instructions and cycles per basic
    block, for tuning a kernel's inner loops). ``on_mark(value, read)`` is called on every store
    to ``model_mark``, before it lands (what the previous marker's code wrote is complete), with
    ``read(symbol, nbytes)`` giving the bytes of a data symbol of the ELF (benchmarks use it to
    check a kernel's output); it does not change the counts. ``flash_wait_states`` > 0 adds the
    flash model's cycles (see the module docstring) to every marker's cycles."""
    from unicorn import UC_ARCH_ARM, UC_HOOK_BLOCK, UC_HOOK_CODE, UC_HOOK_INTR, UC_HOOK_MEM_READ, UC_HOOK_MEM_WRITE
    from unicorn import UC_MODE_MCLASS, UC_MODE_THUMB, Uc, UcError
    from unicorn import arm_const as U

    path = Path(elf)
    if not path.is_file():
        raise UserError(f"{path} is missing")
    loads, symbols, funcs = _load_elf(path)
    uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
    if hasattr(uc, "ctl_set_cpu_model") and hasattr(U, "UC_CPU_ARM_CORTEX_M4"):
        uc.ctl_set_cpu_model(U.UC_CPU_ARM_CORTEX_M4)
    for base, size in (FLASH, RAM):
        uc.mem_map(base, size)
    for addr, data in loads:
        if not any(base <= addr and addr + len(data) <= base + size for base, size in (FLASH, RAM)):
            raise UserError(f"{path}: a segment at {addr:#x} lies outside FLASH and RAM of mps2-an386")
        uc.mem_write(addr, data)
    vectors = bytes(uc.mem_read(0, 8))
    sp, pc = int.from_bytes(vectors[:4], "little"), int.from_bytes(vectors[4:8], "little")
    uc.reg_write(U.UC_ARM_REG_SP, sp)

    on_mark_user = on_mark
    segments_py: dict[int, dict[int, int]] = {}
    div_cycles: dict[int, int] = {}        # marker -> cycles of divisions
    text: list[str] = []
    state = {"marker": 0, "exit": None, "fault": None}
    counter = _c_counter()
    if flash_wait_states < 0:
        raise UserError(f"flash wait states must be 0 or more, got {flash_wait_states}")
    if flash_wait_states and counter is None:
        raise UserError("flash wait states need the compiled block counter: a host C compiler (cc) and "
                        "RNNPOOL_NAS_NO_EXT unset")
    if counter is not None:
        counter.rn_reset()
        counter.rn_flash_reset(FLASH[0] + FLASH[1], 1 if flash_wait_states else 0)
        if flash_wait_states:
            _hook_add_c(uc, UC_HOOK_MEM_READ, ctypes.cast(counter.rn_read_hook, ctypes.c_void_p),
                        FLASH[0], FLASH[0] + FLASH[1] - 1)
        fptr = ctypes.cast(counter.rn_block_hook, ctypes.c_void_p)
        _hook_add_c(uc, UC_HOOK_BLOCK, fptr)
    else:
        # the hot path keeps its state in a list: the counts, end of the last block, its key
        hot = [{}, -1, 0]

        def on_block(uc_, address, size, _):
            key = (address << SIZE_BITS) | size
            counts = hot[0]
            if address == hot[1]:
                counts[key] = counts.get(key, 0) + 1
            else:
                counts[key | JUMP] = counts.get(key | JUMP, 0) + 1
                taken = hot[2] | TAKEN
                counts[taken] = counts.get(taken, 0) + 1
            hot[1] = address + size
            hot[2] = key

        segments_py[0] = hot[0]
        uc.hook_add(UC_HOOK_BLOCK, on_block)

    def read_symbol(name: str, nbytes: int) -> bytes:
        if name not in symbols:
            raise KeyError(f"{path} has no symbol {name}")
        return bytes(uc.mem_read(symbols[name] & ~1, nbytes))

    def on_mark(uc_, access, address, size, value, _):
        marker = value & 0xFFFFFFFF
        if on_mark_user is not None:
            on_mark_user(marker, read_symbol)
        state["marker"] = marker
        if counter is not None:
            counter.rn_set_segment(marker)
        else:
            hot[0] = segments_py.setdefault(marker, {})

    def on_intr(uc_, intno, _):
        pc_now = uc_.reg_read(U.UC_ARM_REG_PC)
        if intno != EXCP_BKPT:
            state["fault"] = f"exception {intno}"
            uc_.emu_stop()
            return
        op, arg = uc_.reg_read(U.UC_ARM_REG_R0), uc_.reg_read(U.UC_ARM_REG_R1)
        if op == SEMIHOST_WRITE0:
            raw = bytearray()
            while len(raw) < 1 << 16:
                chunk = bytes(uc_.mem_read(arg + len(raw), 64))
                end = chunk.find(b"\0")
                raw += chunk if end < 0 else chunk[:end]
                if end >= 0:
                    break
            text.append(raw.decode("latin-1"))
        elif op == SEMIHOST_EXIT:
            state["exit"] = arg
            uc_.emu_stop()
            return
        else:
            state["fault"] = f"unsupported semihosting call {op:#x}"
            uc_.emu_stop()
            return
        uc_.reg_write(U.UC_ARM_REG_PC, (pc_now + 2) | 1)  # past the 16-bit BKPT

    uc.hook_add(UC_HOOK_INTR, on_intr)
    mark = symbols.get(MARK_SYMBOL)
    if mark is not None:
        uc.hook_add(UC_HOOK_MEM_WRITE, on_mark, begin=mark, end=mark + 3)
    for addr, signed, rn, rm in _divisions(uc.mem_read, funcs):
        def on_div(uc_, address, size, _, signed=signed, rn=_unicorn_reg(rn), rm=_unicorn_reg(rm)):
            m = state["marker"]
            div_cycles[m] = div_cycles.get(m, 0) + division_cycles(uc_.reg_read(rn), uc_.reg_read(rm), signed)
        uc.hook_add(UC_HOOK_CODE, on_div, begin=addr, end=addr)

    start = time.perf_counter()
    budgeted = False
    try:
        if max_instructions and not timeout_s:
            # the first FREE_RUN_S run unmetered (unicorn's instruction count is a per-instruction
            # hook, 3x slower); a program still running then continues under the budget
            uc.emu_start(pc | 1, 0xFFFFFFFF, timeout=int(FREE_RUN_S * 1e6))
            if state["fault"] is None and state["exit"] is None:
                budgeted = True
                # unicorn's count does not stop a branch-to-itself loop: a wall bound at a floor of
                # one instruction per microsecond backs it (the emulator runs 10-50 per microsecond)
                uc.emu_start(uc.reg_read(U.UC_ARM_REG_PC) | 1, 0xFFFFFFFF, count=int(max_instructions),
                             timeout=int((max_instructions / 1e6 + 10) * 1e6))
        else:
            uc.emu_start(pc | 1, 0xFFFFFFFF, timeout=int(timeout_s * 1e6))
    except UcError as exc:
        state["fault"] = str(exc)
    wall = time.perf_counter() - start
    if state["fault"] is None and state["exit"] is None:
        if budgeted:
            state["fault"] = (f"no exit after {FREE_RUN_S:g} s and then {max_instructions:,} more instructions "
                              f"(or {max_instructions / 1e6 + 10:,.0f} s), this model's budget: model_run does not return")
        else:
            state["fault"] = f"no exit within {timeout_s:g} s" if timeout_s else "the program stopped without exiting"
    if state["fault"] is not None:
        pc_now = uc.reg_read(U.UC_ARM_REG_PC)
        raise UserError(f"the emulated Cortex-M4 faulted ({state['fault']}) at pc={pc_now:#010x}"
                        f"{_where(pc_now, symbols)} while model_mark={state['marker']}")

    if counter is not None:
        n = counter.rn_used()
        keys, values = (ctypes.c_uint64 * n)(), (ctypes.c_uint64 * n)()
        counter.rn_dump(keys, values)
        pairs = zip(keys, values)
    else:
        pairs = ((k | (m << SEG_SHIFT), n) for m, counts in segments_py.items() for k, n in counts.items())
    cs = disassembler()
    costs: dict[int, BlockCost] = {}
    result = Emulation("".join(text), state["exit"], 0, 0, {}, wall, 0)
    starts = sorted(funcs)
    owner: dict[int, Segment] = {}  # block key -> its function's profile entry

    def function_of(address: int) -> Segment:
        i = bisect.bisect_right(starts, (address, 1 << 62)) - 1
        name = starts[i][2] if i >= 0 and address < starts[i][0] + starts[i][1] else "?"
        prof = result.functions.get(name)
        if prof is None:
            prof = result.functions[name] = Segment(0)
        return prof
    for full, n in pairs:
        key = full & KEY_MASK
        size = key & ((1 << SIZE_BITS) - 1)
        if size == 0:  # the "taken exit" of the block before the first one
            continue
        cost = costs.get(key)
        if cost is None:
            address = key >> SIZE_BITS
            cost = costs[key] = block_cost(list(cs.disasm(bytes(uc.mem_read(address, size)), address)))
        marker = full >> SEG_SHIFT
        seg = result.segments.get(marker)
        if seg is None:
            seg = result.segments[marker] = Segment(marker)
        prof = owner.get(key)
        if prof is None:
            prof = owner[key] = function_of(key >> SIZE_BITS)
        if full & TAKEN:
            seg.cycles += n * cost.exit_refill
            prof.cycles += n * cost.exit_refill
            continue
        cycles = n * (cost.cycles + (cost.entry_penalty if full & JUMP else 0))
        seg.instructions += n * cost.instructions
        seg.cycles += cycles
        prof.instructions += n * cost.instructions
        prof.cycles += cycles
        if blocks:
            entry = result.block_profile.setdefault(key >> SIZE_BITS, Segment(0))
            entry.instructions += n * cost.instructions
            entry.cycles += cycles
    for marker, cycles in div_cycles.items():
        result.segments.setdefault(marker, Segment(marker)).cycles += cycles
    if flash_wait_states:
        n = counter.rn_flash_segments()
        inst, data = (ctypes.c_uint64 * n)(), (ctypes.c_uint64 * n)()
        counter.rn_flash_misses(inst, data)
        result.flash_wait_states = flash_wait_states
        total = 0
        for marker in range(n):
            if inst[marker] or data[marker]:
                result.flash_misses[marker] = (inst[marker], data[marker])
                cycles = flash_wait_states * (inst[marker] + data[marker])
                result.segments.setdefault(marker, Segment(marker)).cycles += cycles
                total += cycles
        result.functions.setdefault("(flash wait states)", Segment(0)).cycles += total
    if div_cycles:  # division cycles are counted per marker, not per function
        result.functions.setdefault("(divisions)", Segment(0)).cycles += sum(div_cycles.values())
    for seg in result.segments.values():
        result.instructions += seg.instructions
        result.cycles += seg.cycles
    result.blocks = len(costs)
    return result


def _where(pc: int, symbols: dict[str, int]) -> str:
    best = max(((addr & ~1, name) for name, addr in symbols.items() if (addr & ~1) <= pc), default=None)
    return f" ({best[1]}+{pc - best[0]:#x})" if best else ""


_COUNTER: list = []


def _c_counter():
    """The compiled block counter (``csrc/blockcount.c``), or ``None`` to count in Python."""
    if _COUNTER:
        return _COUNTER[0]
    lib = None
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc and os.environ.get("RNNPOOL_NAS_NO_EXT") != "1":
        source = CSRC.read_bytes()
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rnnpool_nas"
        so = cache / f"blockcount-{hashlib.sha256(source).hexdigest()[:16]}.so"
        try:
            if not so.is_file():
                cache.mkdir(parents=True, exist_ok=True)
                tmp = so.with_suffix(f".{os.getpid()}.tmp")
                subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(tmp), str(CSRC)], check=True,
                               capture_output=True, timeout=120)
                os.replace(tmp, so)
            lib = ctypes.CDLL(str(so))
            u64 = ctypes.c_uint64
            lib.rn_set_segment.argtypes = [u64]
            lib.rn_used.restype = u64
            lib.rn_dump.argtypes = [ctypes.POINTER(u64), ctypes.POINTER(u64)]
            lib.rn_flash_reset.argtypes = [u64, ctypes.c_int]
            lib.rn_flash_segments.restype = u64
            lib.rn_flash_misses.argtypes = [ctypes.POINTER(u64), ctypes.POINTER(u64)]
        except (OSError, subprocess.SubprocessError):
            lib = None
    _COUNTER.append(lib)
    return lib


def _hook_add_c(uc, htype: int, fptr: ctypes.c_void_p, begin: int = 1, end: int = 0) -> None:
    """Register a C function as a Unicorn hook (the Python binding only takes Python callables);
    ``begin`` > ``end`` (the default): everywhere."""
    from unicorn import UcError
    from unicorn.unicorn_py3.unicorn import uc_hook_h, uclib

    handle = uc_hook_h()
    status = uclib.uc_hook_add(uc._uch, ctypes.byref(handle), htype, fptr, ctypes.c_void_p(0),
                               ctypes.c_uint64(begin), ctypes.c_uint64(end))
    if status != 0:
        raise UcError(status)
