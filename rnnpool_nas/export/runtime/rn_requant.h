/* rn_requant.h - fixed-point requantization shared by every rnnpool_nas runtime kernel.
 *
 * Bit-exact with rnnpool_nas/train/quant.py (requant, requant15):
 *   requant(acc, m, s)   = (acc * m + 2^(s-1)) >> s   in int64, acc fits int32, |m| < 2^31
 *   requant15(acc, m, s) = (acc * m + 2^(s-1)) >> s   in int64, |acc| < 2^47,   |m| < 2^15
 * with 1 <= s <= 62. `>>` is an ARITHMETIC shift of a signed 64-bit value, so halves round
 * toward +inf (floor(x + 1/2)), exactly like numpy's int64 `>>`.
 *
 * Compiler assumption: right-shifting a negative signed integer is arithmetic (sign-extending).
 * C99 leaves it implementation-defined; gcc, clang, armcc and IAR all define it as arithmetic.
 * The typedefs below fail to compile (negative array size) on a compiler that does otherwise.
 */
#ifndef RN_REQUANT_H
#define RN_REQUANT_H

#include <stdint.h>

typedef char rn_assert_arithmetic_shift_s64[(((int64_t)-3 >> 1) == (int64_t)-2) ? 1 : -1];
typedef char rn_assert_arithmetic_shift_s32[(((int32_t)-3 >> 1) == (int32_t)-2) ? 1 : -1];

/* (acc * m + 2^(s-1)) >> s; acc must fit int32 (the int8 reference checks it does), which lets
 * the compiler use one 32x32->64 multiply (SMULL on the Cortex-M4). */
static inline int64_t rn_requant(int64_t acc, int32_t m, int32_t s)
{
    return ((int64_t)(int32_t)acc * m + ((int64_t)1 << (s - 1))) >> s;
}

/* Same rounding for a 64-bit accumulator (|acc| < 2^47) and a 15-bit multiplier (|m| < 2^15):
 * the product stays below 2^62. */
static inline int64_t rn_requant15(int64_t acc, int32_t m, int32_t s)
{
    return (acc * m + ((int64_t)1 << (s - 1))) >> s;
}

/* v clamped to [lo, hi] (a subrange of [-128, 127]) as int8. */
static inline int8_t rn_clamp_s8(int64_t v, int32_t lo, int32_t hi)
{
    if (v < lo) {
        v = lo;
    } else if (v > hi) {
        v = hi;
    }
    return (int8_t)v;
}

#endif /* RN_REQUANT_H */
