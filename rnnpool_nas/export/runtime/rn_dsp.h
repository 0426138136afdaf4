/* rn_dsp.h - the packed 16-bit arithmetic the fast kernels are written in (internal).
 *
 * The Cortex-M4's DSP extension multiplies two pairs of 16-bit values and adds both products to a
 * 32-bit accumulator in one cycle (SMLAD). The kernels feed it int8 data four bytes at a time:
 *
 *   v = rn_load4(p)               the bytes p[0..3] as one word (a single LDR; p must be 4-aligned)
 *   rn_sxtb16(v)                  the 16-bit pair (p[0], p[2]), sign-extended          (SXTB16)
 *   rn_sxtb16_ror8(v)             the pair (p[1], p[3])                                (SXTB16 ROR #8)
 *   rn_smlad(a, b, acc)           acc + a.lo * b.lo + a.hi * b.hi                      (SMLAD)
 *   rn_sxtab16(o, v), _ror8       o + rn_sxtb16(v) (_ror8) lane by lane: unpack and add an offset
 *                                 pair in one instruction                               (SXTAB16)
 *
 * so sum_{i<4} x[i] w[i] = smlad(sxtb16_ror8(x), sxtb16_ror8(w), smlad(sxtb16(x), sxtb16(w), acc)):
 * both operands are split the same way, so no reordering of weights or inputs is needed.
 * rn_smlabb/rn_smlatt multiply the low (high) halves only; rn_pkhbt packs two low halves;
 * rn_qadd is a saturating 32-bit add (QADD), RN_SSAT(v, b) saturates v to b signed bits (SSAT) and
 * rn_smmulr(a, b) = (a * b + 2^31) >> 32, the rounded high word of a 64-bit product (SMMULR).
 *
 * With __ARM_FEATURE_DSP (the Cortex-M4, M7, M33 with DSP; arm-none-eabi-gcc -mcpu=cortex-m4)
 * these are the ACLE intrinsics of <arm_acle.h> (and, for the two forms ACLE spells with __ror and
 * gcc 12 does not fold, a one-instruction asm); elsewhere (the host build, the tests, a Cortex-M0)
 * they are plain C with the same results, so the host runs the very same data flow as the Cortex-M4
 * and every test of the host build checks the packed code paths too. Define RN_NO_DSP to force the
 * plain C versions on an Arm target.
 *
 * Exactness: every product of an int8 weight and an int8 (or int8 minus a zero point, |v| <= 255)
 * value fits 16x16 bits; the accumulators wrap modulo 2^32 in both versions (SMLAD sets the Q flag
 * and wraps), so any order of the same additions gives the reference's int32 sum whenever that sum
 * fits int32, which the int8 reference checks.
 */
#ifndef RN_DSP_H
#define RN_DSP_H

#include <stdint.h>
#include <string.h>

#include "rn_requant.h"

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP && !defined(RN_NO_DSP)
#define RN_DSP 1
#include <arm_acle.h>
#else
#define RN_DSP 0
#endif

/* whether p is 4-byte aligned (the packed paths load words only from aligned addresses: an
 * unaligned LDR costs 1-2 extra cycles on the Cortex-M4 and faults on the Cortex-M0) */
static inline int rn_aligned4(const void *p)
{
    return ((uintptr_t)p & 3u) == 0;
}

static inline int32_t rn_load4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);   /* one LDR on the Cortex-M4 */
    return v;
}

#if RN_DSP

static inline int32_t rn_sxtb16(int32_t v)
{
    return __sxtb16(v);
}

static inline int32_t rn_sxtb16_ror8(int32_t v)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

static inline int32_t rn_smlad(int32_t a, int32_t b, int32_t acc)
{
    return __smlad(a, b, acc);
}

static inline int32_t rn_sxtab16(int32_t o, int32_t v)
{
    return __sxtab16(o, v);
}

static inline int32_t rn_sxtab16_ror8(int32_t o, int32_t v)
{
    int32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(o), "r"(v));
    return r;
}

static inline int32_t rn_smlabb(int32_t a, int32_t b, int32_t acc)
{
    return __smlabb(a, b, acc);
}

static inline int32_t rn_smlatt(int32_t a, int32_t b, int32_t acc)
{
    return __smlatt(a, b, acc);
}

/* (lo & 0xFFFF) | (hi << 16) */
static inline int32_t rn_pkhbt(int32_t lo, int32_t hi)
{
    int32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(lo), "r"(hi));
    return r;
}

static inline int32_t rn_qadd(int32_t a, int32_t b)
{
    return __qadd(a, b);
}

#define RN_SSAT(v, bits) __ssat((v), (bits))
#define RN_SAT8(v) __ssat((v), 8)

static inline int32_t rn_smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

#else /* plain C: the same results on any host */

static inline int32_t rn_s8_of(uint32_t v)
{
    return (int32_t)(v & 0xFFu) - (int32_t)((v & 0x80u) << 1);
}

static inline int32_t rn_s16_of(uint32_t v)
{
    return (int32_t)(v & 0xFFFFu) - (int32_t)((v & 0x8000u) << 1);
}

static inline int32_t rn_pack16(int32_t lo, int32_t hi)
{
    return (int32_t)(((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16));
}

static inline int32_t rn_sxtb16(int32_t v)
{
    return rn_pack16(rn_s8_of((uint32_t)v), rn_s8_of((uint32_t)v >> 16));
}

static inline int32_t rn_sxtb16_ror8(int32_t v)
{
    return rn_pack16(rn_s8_of((uint32_t)v >> 8), rn_s8_of((uint32_t)v >> 24));
}

static inline int32_t rn_sxtab16(int32_t o, int32_t v)
{
    return rn_pack16(rn_s16_of((uint32_t)o) + rn_s8_of((uint32_t)v),
                     rn_s16_of((uint32_t)o >> 16) + rn_s8_of((uint32_t)v >> 16));
}

static inline int32_t rn_sxtab16_ror8(int32_t o, int32_t v)
{
    return rn_pack16(rn_s16_of((uint32_t)o) + rn_s8_of((uint32_t)v >> 8),
                     rn_s16_of((uint32_t)o >> 16) + rn_s8_of((uint32_t)v >> 24));
}

static inline int32_t rn_smlad(int32_t a, int32_t b, int32_t acc)
{
    const int32_t lo = rn_s16_of((uint32_t)a) * rn_s16_of((uint32_t)b);
    const int32_t hi = rn_s16_of((uint32_t)a >> 16) * rn_s16_of((uint32_t)b >> 16);
    return (int32_t)((uint32_t)acc + (uint32_t)lo + (uint32_t)hi);   /* wraps like SMLAD */
}

static inline int32_t rn_smlabb(int32_t a, int32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(rn_s16_of((uint32_t)a) * rn_s16_of((uint32_t)b)));
}

static inline int32_t rn_smlatt(int32_t a, int32_t b, int32_t acc)
{
    return (int32_t)((uint32_t)acc
                     + (uint32_t)(rn_s16_of((uint32_t)a >> 16) * rn_s16_of((uint32_t)b >> 16)));
}

static inline int32_t rn_pkhbt(int32_t lo, int32_t hi)
{
    return rn_pack16(lo, hi);
}

static inline int32_t rn_qadd(int32_t a, int32_t b)
{
    const int64_t v = (int64_t)a + b;
    return v > INT32_MAX ? INT32_MAX : (v < INT32_MIN ? INT32_MIN : (int32_t)v);
}

static inline int32_t rn_ssat(int32_t v, int bits)
{
    const int32_t hi = (int32_t)(((uint32_t)1 << (bits - 1)) - 1u);
    return v > hi ? hi : (v < -hi - 1 ? -hi - 1 : v);
}

#define RN_SSAT(v, bits) rn_ssat((v), (bits))
#define RN_SAT8(v) rn_ssat((v), 8)

static inline int32_t rn_smmulr(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a * b + ((int64_t)1 << 31)) >> 32);
}

#endif /* RN_DSP */

/* The int8 output of a requantized accumulator: clamp(zp + rn_requant32(acc, m, s), lo, hi); with
 * full != 0 the range is [-128, 127] (lo and hi unused): the kernels test that once per call, and
 * use the one-instruction saturation RN_SAT8 then (SSAT on the Cortex-M4). */
#define RN_OUT8(full, acc, m, s, zp, lo, hi) \
    ((full) ? (int8_t)RN_SAT8((zp) + rn_requant32((acc), (m), (s))) : rn_clamp32((zp) + rn_requant32((acc), (m), (s)), (lo), (hi)))


#endif /* RN_DSP_H */
