"""Cortex-M4 instruction timings: what the emulator charges each instruction, per basic block.

Source: Arm Cortex-M4 Processor Technical Reference Manual, revision r0p1 (ARM DDI 0439B, reissued
as 100166_0001_00), section 3.3 "Instruction set summary": Table 3-1 "Cortex-M4 instruction set
summary" (cycle counts with zero wait states; P = pipeline refill, N = registers in a list), its
notes, and section 3.3.2 "Load/store timings" (the pairing rules). The figures below cite them as
"T3-1" (the table), "T3-1 note" and "3.3.2". The table used, by class:

===========================================  =========  ==============================================
class (capstone instruction ids)             cycles     source
===========================================  =========  ==============================================
data processing: MOV/MOVW/MOVT, ADD, ADC,    1          T3-1 (Move, Add, Subtract, Logical, Shift,
SUB, SBC, RSB, logical, shifts, compares,               Compare, Saturate, Extend, Bitfield,
extend, bitfield, reverse, saturate, SIMD               Reverse); the DSP/SIMD add, subtract,
add/subtract (SADD16, QADD8, ...), SEL, USAD8           pack and select instructions likewise
IT                                           0 or 1     T3-1 note: folded (0 cycles) onto a
                                                        preceding 16-bit instruction, else 1
multiplies: MUL, MLA, MLS, SMULL, UMULL,     1          T3-1 (Multiply: every form is one cycle
SMLAL, UMLAL, UMAAL, and the DSP ones                   on the M4's single-cycle MAC); the DSP
(SMLABB..., SMLAD, SMLALD, SMMLA, SMUAD, ...)           multiplies likewise
SDIV, UDIV                                   2-12       T3-1 note "early termination ... based on
                                                        the number of leading ones and zeroes":
                                                        charged 2 + ceil(10 * q / 32) for a quotient
                                                        of q significant bits (read from the
                                                        operands when the division runs: the
                                                        documented range, linear in q; the
                                                        manual gives no finer rule)
LDR, LDRB, LDRH, LDRSB, LDRSH, LDREX*        2, or 1    T3-1 (Load: 2), 3.3.2: "pipelined when
                                                        possible": 1 right after a single LDR
                                                        whose destination the address does not use
LDR into PC                                  2 + 3      3.3.2 ("two cycles for the load, and three
                                                        cycles for the pipeline reload")
STR, STRB, STRH, immediate offset            1          T3-1 note b ("stores with immediate offsets
                                                        take one cycle")
STR, STRB, STRH, register offset             2, or 1    T3-1 (Store: 2); 3.3.2: "STR can only be
                                                        pipelined when it follows an LDR"
STREX*                                       as LDR     3.3.2 ("STREX is treated more like an LDR")
LDRD, STRD                                   3          3.3.2 ("requires three cycles"), never
                                                        pipelined with a neighbour
LDM, POP, STM, PUSH                          1 + N      T3-1; never pipelined with a neighbour
LDM/POP with PC                              1 + N + 3  T3-1 (1 + N + P), P as for LDR into PC
address dependency                           +1         3.3.2: a load/store whose address depends on
                                                        the result of the preceding data-processing
                                                        instruction stalls one cycle
B, BL, B<c>, CBZ, CBNZ                       1 (+1)     T3-1 (1 + P when taken, 1 when not); T3-1
                                                        note a: "taken branches with an immediate
                                                        are normally 1 cycle of pipeline reload"
BX, BLX, MOV/ADD to PC                       1 + 2      T3-1 note a: "taken branches with register
                                                        operand are normally 2 cycles of pipeline
                                                        reload"
TBB, TBH                                     6          3.3.2 ("at least six cycles")
branch to an unaligned 32-bit instruction    +1         T3-1 (P "ranges from 1 to 3 depending on
                                                        the alignment and width of the target")
anything else (barriers, BKPT, SVC, ...)     1          T3-1 (ISB/DSB/DMB: 1 + B, B >= 0; unused)
===========================================  =========  ==============================================

Simplifications, all small for this runtime: pairing rules apply inside a basic block only (the
first load of a block costs 2); an instruction in an IT block is charged as if its condition
passed; zero wait states (the mps2-an386 SSRAMs are zero-wait, as the table assumes); no unaligned
data accesses (the runtime's word accesses are aligned) and no fetch contention on literal loads
(3.3.2: "might add a cycle").

How the emulator uses it: :func:`block_cost` prices one basic block once (its instructions, the
static cycles, and how a non-sequential entry into it and a taken exit from it are charged); the
emulator multiplies by the block's executions and adds, on each taken branch, the exit's refill
(conditional exits only: an unconditional branch's refill is in the static figure) and the
target's unaligned-32-bit penalty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from capstone import CS_ARCH_ARM, CS_MODE_MCLASS, CS_MODE_THUMB, Cs
from capstone import arm_const as A

#: Pipeline refills (P of T3-1) by the kind of branch.
REFILL_IMMEDIATE = 1   # T3-1 note a
REFILL_REGISTER = 2    # T3-1 note a
REFILL_LOAD_PC = 3     # 3.3.2, LDR PC
UNALIGNED_TARGET = 1   # T3-1: P grows with an unaligned 32-bit target
TABLE_BRANCH = 6       # 3.3.2, TBB/TBH
DIV_MIN, DIV_MAX = 2, 12  # T3-1, SDIV/UDIV

_LOAD_SINGLE = {A.ARM_INS_LDR, A.ARM_INS_LDRB, A.ARM_INS_LDRH, A.ARM_INS_LDRSB, A.ARM_INS_LDRSH,
                A.ARM_INS_LDRT, A.ARM_INS_LDRBT, A.ARM_INS_LDRHT, A.ARM_INS_LDRSBT, A.ARM_INS_LDRSHT,
                A.ARM_INS_LDREX, A.ARM_INS_LDREXB, A.ARM_INS_LDREXH,
                A.ARM_INS_STREX, A.ARM_INS_STREXB, A.ARM_INS_STREXH}
_STORE_SINGLE = {A.ARM_INS_STR, A.ARM_INS_STRB, A.ARM_INS_STRH, A.ARM_INS_STRT, A.ARM_INS_STRBT,
                 A.ARM_INS_STRHT}
_DOUBLE = {A.ARM_INS_LDRD, A.ARM_INS_STRD, A.ARM_INS_LDREXD, A.ARM_INS_STREXD}
_MULTIPLE = {A.ARM_INS_LDM, A.ARM_INS_LDMDB, A.ARM_INS_LDMIB, A.ARM_INS_LDMDA, A.ARM_INS_POP,
             A.ARM_INS_STM, A.ARM_INS_STMDB, A.ARM_INS_STMIB, A.ARM_INS_STMDA, A.ARM_INS_PUSH}
_BRANCH_IMMEDIATE = {A.ARM_INS_B, A.ARM_INS_BL, A.ARM_INS_CBZ, A.ARM_INS_CBNZ}
_BRANCH_REGISTER = {A.ARM_INS_BX, A.ARM_INS_BLX}
_TABLE = {A.ARM_INS_TBB, A.ARM_INS_TBH}
DIVIDES = {A.ARM_INS_SDIV, A.ARM_INS_UDIV}
_PC = A.ARM_REG_PC


def disassembler() -> Cs:
    """A capstone decoder for the M-profile Thumb-2 instruction set, with operand details."""
    cs = Cs(CS_ARCH_ARM, CS_MODE_THUMB | CS_MODE_MCLASS)
    cs.detail = True
    return cs


@dataclass(frozen=True, slots=True)
class BlockCost:
    """One basic block, priced once (see the module docstring)."""

    instructions: int
    cycles: int          # every instruction, unconditional exits' refills included
    exit_refill: int     # refill added when a *conditional* exit branch is taken (0: none)
    entry_penalty: int   # added on a non-sequential entry (a branch to an unaligned 32-bit first instruction)
    divides: tuple[int, ...] = ()  # addresses of SDIV/UDIV, charged when they run (division_cycles)


def _address_registers(insn) -> set[int]:
    regs = set()
    for op in insn.operands:
        if op.type == A.ARM_OP_MEM:
            if op.mem.base:
                regs.add(op.mem.base)
            if op.mem.index:
                regs.add(op.mem.index)
    return regs


def _written(insn) -> set[int]:
    try:
        return set(insn.regs_access()[1])
    except Exception:  # pragma: no cover - capstone cannot say for a few system instructions
        return set()


def _register_list(insn) -> list[int]:
    return [op.reg for op in insn.operands if op.type == A.ARM_OP_REG]


def block_cost(insns: list) -> BlockCost:
    """Price the capstone instructions ``insns`` of one basic block (T3-1 and 3.3.2)."""
    cycles = 0
    exit_refill = 0
    divides = []
    prev = None          # the previous instruction
    prev_kind = ""       # "load" (a pipelinable single load), "store", "dp" (data processing), "other"
    prev_dest: set[int] = set()
    for i, insn in enumerate(insns):
        iid = insn.id
        last = i == len(insns) - 1
        conditional = insn.cc not in (A.ARM_CC_AL, A.ARM_CC_INVALID)
        addr_regs = _address_registers(insn)
        dependent = prev_kind == "dp" and bool(addr_regs & prev_dest)   # 3.3.2 address dependency
        kind = "other"
        writes = _written(insn)
        if iid == A.ARM_INS_IT:
            cost = 0 if prev is not None and prev.size == 2 else 1   # T3-1 note: IT folding
            kind = prev_kind  # folded: the pairing state passes through
            writes = prev_dest
        elif iid in _LOAD_SINGLE:
            regs = _register_list(insn)
            if _PC in regs[:1]:
                cost = 2 + REFILL_LOAD_PC
                if conditional and last:
                    cost, exit_refill = 2, REFILL_LOAD_PC
            else:
                pipelined = prev_kind == "load" and not (addr_regs & prev_dest)
                cost = 1 if pipelined else 2
                kind = "load"
            cost += dependent
            writes = set(regs[:1])
        elif iid in _STORE_SINGLE:
            mem = [op for op in insn.operands if op.type == A.ARM_OP_MEM]
            register_offset = bool(mem and mem[0].mem.index)
            if register_offset:
                cost = 1 if prev_kind == "load" and not (addr_regs & prev_dest) else 2
            else:
                cost = 1
            cost += dependent
            kind = "store"
        elif iid in _DOUBLE:
            cost = 3 + dependent
        elif iid in _MULTIPLE:
            regs = _register_list(insn)
            if iid not in (A.ARM_INS_POP, A.ARM_INS_PUSH):
                regs = regs[1:]  # the base register
            cost = 1 + len(regs)
            if _PC in regs:
                if conditional and last:
                    exit_refill = REFILL_LOAD_PC
                else:
                    cost += REFILL_LOAD_PC
        elif iid in _BRANCH_IMMEDIATE:
            cost = 1
            if iid == A.ARM_INS_BL or (iid == A.ARM_INS_B and not conditional):
                cost += REFILL_IMMEDIATE
            else:
                exit_refill = REFILL_IMMEDIATE
        elif iid in _BRANCH_REGISTER:
            cost = 1
            if conditional and last:
                exit_refill = REFILL_REGISTER
            else:
                cost += REFILL_REGISTER
        elif iid in _TABLE:
            cost = TABLE_BRANCH
        elif iid in DIVIDES:
            cost = 0  # charged when it runs, from its operands (division_cycles)
            divides.append(insn.address)
            kind = "dp"
        else:
            cost = 1
            kind = "dp"
            if _PC in writes:  # MOV PC, ADD PC: T3-1 "1 + P"
                if conditional and last:
                    exit_refill = REFILL_REGISTER
                else:
                    cost += REFILL_REGISTER
        cycles += cost
        prev, prev_kind, prev_dest = insn, kind, writes
    first = insns[0] if insns else None
    entry = UNALIGNED_TARGET if first is not None and first.size == 4 and first.address % 4 == 2 else 0
    return BlockCost(len(insns), cycles, exit_refill, entry, tuple(divides))


def division_cycles(dividend: int, divisor: int, signed: bool) -> int:
    """SDIV/UDIV cycles for these 32-bit operands: T3-1's 2-12, by the quotient's significant
    bits (early termination; see the table in the module docstring)."""
    if signed:
        dividend = dividend - (1 << 32) if dividend & 0x80000000 else dividend
        divisor = divisor - (1 << 32) if divisor & 0x80000000 else divisor
        dividend, divisor = abs(dividend), abs(divisor)
    if divisor == 0:
        return DIV_MIN
    q = (dividend // divisor).bit_length()
    return DIV_MIN + math.ceil((DIV_MAX - DIV_MIN) * q / 32)


def price(code: bytes, address: int = 0) -> BlockCost:
    """Decode Thumb-2 ``code`` at ``address`` and price it as one block (tests, debugging)."""
    return block_cost(list(disassembler().disasm(code, address)))
