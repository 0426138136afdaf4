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

/* requant(acc, m, s) as an int32, saturated to +-2^30: exact whenever |requant| <= 2^30, and past
 * any int8 clamp (with a zero point in [-128, 127]) on the same side otherwise, so
 * rn_clamp32(zp + rn_requant32(...)) == rn_clamp_s8(zp + rn_requant(...)) always.
 * For s > 32 (multipliers m / 2^s below 1/4, the usual case) it needs only the high word of the
 * product: with p = acc * m = hi * 2^32 + lo (0 <= lo < 2^32),
 *   floor((p + 2^(s-1)) / 2^s) = floor((hi + 2^(s-33)) / 2^(s-32))
 * because 2^(s-1) is a multiple of 2^32 and lo / 2^32 < 1 cannot carry into the quotient; this is
 * one SMULL, an add and a shift instead of a 64-bit add and a 64-bit variable shift. */
static inline int32_t rn_requant32(int32_t acc, int32_t m, int32_t s)
{
    if (s > 32) {
        const int32_t hi = (int32_t)(((int64_t)acc * m) >> 32);   /* |hi| < 2^30 */
        return (hi + ((int32_t)1 << (s - 33))) >> (s - 32);
    } else {
        const int64_t v = rn_requant(acc, m, s);
        const int64_t lim = (int64_t)1 << 30;
        return (int32_t)(v > lim ? lim : (v < -lim ? -lim : v));
    }
}

/* rn_requant32's s > 32 case with its two constants precomputed: rnd = 2^(s-33), sh = s - 32. */
static inline int32_t rn_requant32_hi(int32_t acc, int32_t m, int32_t rnd, int32_t sh)
{
    return ((int32_t)(((int64_t)acc * m) >> 32) + rnd) >> sh;
}

/* v clamped to [lo, hi] (a subrange of [-128, 127]) as int8, for an int32 v. */
static inline int8_t rn_clamp32(int32_t v, int32_t lo, int32_t hi)
{
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    return (int8_t)v;
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
