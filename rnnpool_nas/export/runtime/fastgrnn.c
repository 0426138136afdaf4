/* fastgrnn.c - one FastGRNN cell in Q24 integers (quant.py: QRNN, _nonlinearity).
 *
 * Fixed-point rules (bit-exact with rnnpool_nas/train/quant.py; Q24: real = q / 2^24, ONE = 2^24):
 *   projection, int8 input (RNN1):  wx = requant(W (x - zp), mW, sW)      31-bit mW, int32 acc
 *   projection, Q24 input (RNN2):   wx = requant15(W x, mW, sW)           15-bit mW, int64 acc
 *   pre = wx + requant15(U h, mU, sU)                                      int64 acc U h (< 2^47)
 *   z = gate(pre + bias_gate), c = update(pre + bias_update)               v = pre + bias in int64
 *     quantSigmoid: clamp((v + ONE + 1) >> 1, 0, ONE)    quantTanh: clamp(v, -ONE, ONE)
 *     sigmoid/tanh: u = clamp(v, -8 ONE, 8 ONE - 1) + 8 ONE, i = u >> 18, f = u & (2^18 - 1),
 *                   y = T[i] + (((T[i+1] - T[i]) * f + 2^17) >> 18)       (int64 product)
 *   g = ((sz (ONE - z) + ONE/2) >> 24) + sn
 *   h = (g c + z h_prev + ONE/2) >> 24                                     (64-bit products)
 * requant(a, m, s) = (a m + 2^(s-1)) >> s in int64; every >> is arithmetic (halves round up).
 * States, projections and pre-activations are held in int32: the reference checks that every
 * pre-activation and state fits int32; a projection is assumed to fit as well (|W x| < 128 in
 * real units), which the first step of each sweep (pre = wx, h = 0) checks for its pixel.
 *
 * How it is computed (same results, fewer cycles):
 *   - a requantized value that fits int32 is the low word of the 64-bit shift: for s < 32,
 *     (lo >> s) | (hi << (32 - s)) of p + 2^(s-1) (rn_requant_s32, rn_requant15_lo32), so pre is
 *     wx + that word in 32-bit arithmetic (exact modulo 2^32, and pre fits int32);
 *   - v = pre + bias is a saturating 32-bit add (QADD): every nonlinearity is constant beyond
 *     +-2^26, so saturating at +-2^31 changes nothing; the tables' clamp to [-8 ONE, 8 ONE - 1] is a
 *     28-bit SSAT, quantSigmoid's input is first saturated to 26 bits (its output is 0 or ONE
 *     beyond +-2 ONE);
 *   - the sweep keeps the nonlinearities' dispatch out of the unit loop (table pointers), and the
 *     U h products of two units share each loaded state word;
 *   - packed Q24 dot products (U h, and RNN2's W x): with |x_k| < 2^30 each Q24 value splits
 *     exactly into 16-bit halves x_k = hi_k 2^16 + lo_k (lo_k = the signed low half, |hi_k| <= 2^14 + 1),
 *     so sum_k w_k x_k = 2^16 sum_k w_k hi_k + sum_k w_k lo_k, two int32 sums of int8 x int16
 *     products (|sum| < n 2^22: exact for n <= 256) that SMLAD computes two terms per instruction
 *     from one loaded word of four int8 weights (rn_split16 packs the halves once per step in the
 *     lane order SXTB16 unpacks the weights in). A state at or past 2^30, a size not a multiple
 *     of 4, more than RN_SPLIT_MAX values or unaligned weights take the 64-bit SMLAL loop.
 */
#include "rn_runtime.h"
#include "rn_dot.h"
#include "rn_dsp.h"

#if defined(__GNUC__)
#define RN_NOINLINE __attribute__((noinline))
#define RN_ALWAYS_INLINE __attribute__((always_inline))
#else
#define RN_NOINLINE
#define RN_ALWAYS_INLINE
#endif

/* the general case of rn_requant15_lo32 (s >= 32: no such multiplier in practice), out of line */
static RN_NOINLINE int32_t rn_requant15_wide(int64_t p, int32_t s)
{
    return (int32_t)((p + ((int64_t)1 << (s - 1))) >> s);
}

/* (acc * m + 2^(s-1)) >> s for |acc| < 2^47, |m| < 2^15, 1 <= s <= 62, as int32 (see above). */
static inline int32_t rn_requant15_lo32(int64_t acc, int32_t m, int32_t s)
{
    const int64_t p = acc * m;
    if (s < 32) {
        const uint64_t q = (uint64_t)p + ((uint32_t)1 << (s - 1));
        return (int32_t)(((uint32_t)q >> s) | ((uint32_t)(q >> 32) << (32 - s)));
    }
    return rn_requant15_wide(p, s);
}

/* y = T[i] + (((T[i+1] - T[i]) * f + 2^17) >> 18) over 1024 bins of [-8, 8), v in [-8 ONE, 8 ONE).
 * |T[i+1] - T[i]| < 2^19 and f < 2^18, so with d = 4 (T[i+1] - T[i]) and F = f 2^12 (both below
 * 2^31) the rounded shift is SMMULR(d, F) = (d F + 2^31) >> 32 = (dT f 2^14 + 2^31) >> 32. */
static inline RN_ALWAYS_INLINE int32_t rn_lut32(const int32_t *table, int32_t v)
{
    const uint32_t u = (uint32_t)(v + 8 * RN_ONE);                  /* [0, 2^28) */
    const int32_t i = (int32_t)(u >> RN_LUT_SHIFT);                 /* bin, [0, 1023] */
    const int32_t f12 = (int32_t)((u << (32 - RN_LUT_SHIFT)) >> (32 - RN_LUT_SHIFT - 12));   /* f 2^12 */
    const int32_t t0 = table[i];
    return t0 + rn_smmulr((table[i + 1] - t0) * 4, f12);
}

/* The nonlinearity `code` of v (a saturated int32: see the file's comment). */
static inline int32_t rn_nonlinearity32(int code, int32_t v)
{
    switch (code) {
    case RN_SIGMOID:
        return rn_lut32(rn_sigmoid_lut, RN_SSAT(v, 28));
    case RN_TANH:
        return rn_lut32(rn_tanh_lut, RN_SSAT(v, 28));
    case RN_QUANT_SIGMOID:
        v = (RN_SSAT(v, 26) + RN_ONE + 1) >> 1;
        return v < 0 ? 0 : (v > RN_ONE ? RN_ONE : v);
    default: /* RN_QUANT_TANH */
        return v < -RN_ONE ? -RN_ONE : (v > RN_ONE ? RN_ONE : v);
    }
}

int32_t rn_fastgrnn_nonlinearity(int code, int64_t v)
{
    return rn_nonlinearity32(code, v > INT32_MAX ? INT32_MAX : (v < INT32_MIN ? INT32_MIN : (int32_t)v));
}

/* The packed-halves path (see the file's comment): at most RN_SPLIT_MAX inputs (its stack buffer). */
#define RN_SPLIT_MAX 32

/* x (n values, n a multiple of 4) as packed 16-bit halves, four words per four values:
 * (lo0, lo2), (lo1, lo3), (hi0, hi2), (hi1, hi3), the lanes of rn_sxtb16 / rn_sxtb16_ror8 of the
 * weight word w0..w3. 0 when some |x_k| >= 2^30 (then hi_k might not fit 16 bits). */
static inline int rn_split16(const int32_t *x, int n, int32_t *packed)
{
    uint32_t big = 0;
    int k;
    for (k = 0; k < n; k += 4, packed += 4) {
        const int32_t x0 = x[k], x1 = x[k + 1], x2 = x[k + 2], x3 = x[k + 3];
        const int32_t l0 = (int16_t)x0, l1 = (int16_t)x1, l2 = (int16_t)x2, l3 = (int16_t)x3;
        big |= ((uint32_t)x0 + 0x40000000u) | ((uint32_t)x1 + 0x40000000u)
             | ((uint32_t)x2 + 0x40000000u) | ((uint32_t)x3 + 0x40000000u);
        packed[0] = rn_pkhbt(l0, l2);
        packed[1] = rn_pkhbt(l1, l3);
        packed[2] = rn_pkhbt((int32_t)((uint32_t)x0 - (uint32_t)l0) >> 16, (int32_t)((uint32_t)x2 - (uint32_t)l2) >> 16);
        packed[3] = rn_pkhbt((int32_t)((uint32_t)x1 - (uint32_t)l1) >> 16, (int32_t)((uint32_t)x3 - (uint32_t)l3) >> 16);
    }
    return (big & 0x80000000u) == 0;
}

/* The two halves' sums of one row: sum_k w_k x_k = hi 2^16 + lo. */
typedef struct {
    int32_t lo, hi;
} rn_split_sum_t;

/* sum_k w[k] x[k] for the n int8 weights w (4-aligned) and the values rn_split16 packed. */
static inline rn_split_sum_t rn_dot_split(const int8_t *w, const int32_t *packed, int n)
{
    rn_split_sum_t r = {0, 0};
    const int32_t *const end = packed + n;
    for (; packed < end; packed += 4, w += 4) {
        const int32_t wv = rn_load4(w);
        const int32_t we = rn_sxtb16(wv), wo = rn_sxtb16_ror8(wv);
        r.lo = rn_smlad(we, packed[0], r.lo);
        r.lo = rn_smlad(wo, packed[1], r.lo);
        r.hi = rn_smlad(we, packed[2], r.hi);
        r.hi = rn_smlad(wo, packed[3], r.hi);
    }
    return r;
}

/* The same for the two weight rows w0 and w0 + n: each loaded word of values feeds both. */
static inline RN_ALWAYS_INLINE void rn_dot2_split(const int8_t *w0, const int32_t *packed, int n, rn_split_sum_t *r0,
                                 rn_split_sum_t *r1)
{
    int32_t lo0 = 0, hi0 = 0, lo1 = 0, hi1 = 0;
    const int8_t *w1 = w0 + n;
    int k;
#if defined(__GNUC__)
#pragma GCC unroll 4
#endif
    for (k = 0; k < n; k += 4, packed += 4, w0 += 4, w1 += 4) {
        const int32_t a = rn_load4(w0), b = rn_load4(w1);
        const int32_t ae = rn_sxtb16(a), ao = rn_sxtb16_ror8(a), be = rn_sxtb16(b), bo = rn_sxtb16_ror8(b);
        int32_t x = packed[0];
        lo0 = rn_smlad(ae, x, lo0);
        lo1 = rn_smlad(be, x, lo1);
        x = packed[1];
        lo0 = rn_smlad(ao, x, lo0);
        lo1 = rn_smlad(bo, x, lo1);
        x = packed[2];
        hi0 = rn_smlad(ae, x, hi0);
        hi1 = rn_smlad(be, x, hi1);
        x = packed[3];
        hi0 = rn_smlad(ao, x, hi0);
        hi1 = rn_smlad(bo, x, hi1);
    }
    r0->lo = lo0;
    r0->hi = hi0;
    r1->lo = lo1;
    r1->hi = hi1;
}

/* requant15(hi 2^16 + lo, m, s) as int32 (the low word; exact when it fits): |m| < 2^15, so
 * m 2^16 fits int32 and the product is hi (m 2^16) + lo m, one SMULL and one SMLAL. */
static inline RN_ALWAYS_INLINE int32_t rn_requant15_split(rn_split_sum_t a, int32_t m, int32_t s)
{
    const int32_t hi = a.hi, lo = a.lo, m16 = m * 65536;
    const int64_t p = (int64_t)hi * m16 + (int64_t)lo * m;   /* SMULL, SMLAL */
    if (s < 32) {
        const uint64_t q = (uint64_t)p + ((uint32_t)1 << (s - 1));
        return (int32_t)(((uint32_t)q >> s) | ((uint32_t)(q >> 32) << (32 - s)));
    }
    return rn_requant15_wide(p, s);
}

/* whether the rows of n_in int8 weights at w can take the packed-halves path */
static inline int rn_splittable(const int8_t *w, int n_in)
{
    return (n_in & 3) == 0 && n_in <= RN_SPLIT_MAX && rn_aligned4(w);
}

/* (acc * m + 2^(s-1)) >> s for a 32-bit acc and 1 <= s <= 62, as int32: exact when the result
 * fits int32 (its low word otherwise); always inlined, so that each caller's accumulator stays a
 * 32-bit value (one SMULL). */
static inline RN_ALWAYS_INLINE int32_t rn_requant_s32(int32_t acc, int32_t m, int32_t s)
{
    const int64_t p = (int64_t)acc * m;   /* SMULL */
    if (s < 32) {
        const uint64_t q = (uint64_t)p + ((uint32_t)1 << (s - 1));
        return (int32_t)(((uint32_t)q >> s) | ((uint32_t)(q >> 32) << (32 - s)));
    }
    return rn_requant15_wide(p, s);
}

/* the packed path of rn_fastgrnn_project_s8 (n_in a multiple of 4, x and w 4-aligned) */
static void rn_project_s8_packed(const rn_fastgrnn_t *cell, const int8_t *x, int32_t x_zp, int32_t *wx)
{
    const int n_in = cell->input;
    const int n = cell->hidden;
    const int8_t *w = cell->w;
    const int32_t *const wm = cell->w_mult;
    const int8_t *const ws = cell->w_shift;
    const int32_t nzp = (int32_t)(((uint32_t)(-x_zp) & 0xFFFFu) * 0x10001u);   /* (-zp, -zp) */
    int j, i;
    if (n_in == 4) {   /* one word of input (RNNPool on a 4-channel map): unpacked once for all rows */
        const int32_t xv = rn_load4(x);
        const int32_t xe = rn_sxtab16(nzp, xv), xo = rn_sxtab16_ror8(nzp, xv);
        for (j = 0; j < n; ++j, w += 4) {
            const int32_t wv = rn_load4(w);
            wx[j] = rn_requant_s32(rn_smlad(xo, rn_sxtb16_ror8(wv), rn_smlad(xe, rn_sxtb16(wv), 0)), wm[j], ws[j]);
        }
        return;
    }
    for (j = 0; j + 1 < n; j += 2, w += 2 * n_in) {
        int32_t a0 = 0, a1 = 0;
        for (i = 0; i < n_in; i += 4) {
            const int32_t xv = rn_load4(x + i);
            const int32_t xe = rn_sxtab16(nzp, xv), xo = rn_sxtab16_ror8(nzp, xv);
            int32_t wv = rn_load4(w + i);
            a0 = rn_smlad(xe, rn_sxtb16(wv), a0);
            a0 = rn_smlad(xo, rn_sxtb16_ror8(wv), a0);
            wv = rn_load4(w + n_in + i);
            a1 = rn_smlad(xe, rn_sxtb16(wv), a1);
            a1 = rn_smlad(xo, rn_sxtb16_ror8(wv), a1);
        }
        wx[j] = rn_requant_s32(a0, wm[j], ws[j]);
        wx[j + 1] = rn_requant_s32(a1, wm[j + 1], ws[j + 1]);
    }
    if (j < n) {
        wx[j] = rn_requant_s32(rn_dot_s8(x, w, n_in, x_zp), wm[j], ws[j]);
    }
}

void rn_fastgrnn_project_s8(const rn_fastgrnn_t *cell, const int8_t *x, int32_t x_zp, int32_t *wx)
{
    /* two rows of W per pass; with whole words (input a multiple of 4, aligned) the input is
     * unpacked with the zero point subtracted (SXTAB16: |x - zp| <= 255 fits 16 bits) and each
     * unpacked word feeds both rows' SMLADs (rn_project_s8_packed) */
    const int n_in = cell->input;
    const int n = cell->hidden;
    const int8_t *w = cell->w;
    int j, i;
    if ((n_in & 3) == 0 && rn_aligned4(x) && rn_aligned4(w)) {
        rn_project_s8_packed(cell, x, x_zp, wx);
        return;
    }
    for (j = 0; j + 1 < n; j += 2, w += 2 * n_in) {
        int32_t a0 = 0, a1 = 0;
        for (i = 0; i < n_in; ++i) {
            const int32_t v = x[i] - x_zp;
            a0 += w[i] * v;
            a1 += w[n_in + i] * v;
        }
        wx[j] = rn_requant_s32(a0, cell->w_mult[j], cell->w_shift[j]);
        wx[j + 1] = rn_requant_s32(a1, cell->w_mult[j + 1], cell->w_shift[j + 1]);
    }
    if (j < n) {
        wx[j] = rn_requant_s32(rn_dot_s8(x, w, n_in, x_zp), cell->w_mult[j], cell->w_shift[j]);
    }
}

void rn_fastgrnn_project_q24(const rn_fastgrnn_t *cell, const int32_t *x, int32_t *wx)
{
    const int n_in = cell->input;
    const int n = cell->hidden;
    const int8_t *w = cell->w;
    int32_t packed[RN_SPLIT_MAX];
    int j, k;
    if (rn_splittable(w, n_in) && rn_split16(x, n_in, packed)) {
        for (j = 0; j + 1 < n; j += 2, w += 2 * n_in) {
            rn_split_sum_t a0, a1;
            rn_dot2_split(w, packed, n_in, &a0, &a1);
            wx[j] = rn_requant15_split(a0, cell->w_mult[j], cell->w_shift[j]);
            wx[j + 1] = rn_requant15_split(a1, cell->w_mult[j + 1], cell->w_shift[j + 1]);
        }
        if (j < n) {
            wx[j] = rn_requant15_split(rn_dot_split(w, packed, n_in), cell->w_mult[j], cell->w_shift[j]);
        }
        return;
    }
    for (j = 0; j < n; ++j, w += n_in) {
        int64_t acc = 0;
        for (k = 0; k < n_in; ++k) {
            acc += (int64_t)(int32_t)w[k] * x[k];   /* SMLAL */
        }
        wx[j] = rn_requant15_lo32(acc, cell->w_mult[j], cell->w_shift[j]);
    }
}

static const int32_t *rn_table(int code)
{
    return code == RN_SIGMOID ? rn_sigmoid_lut : (code == RN_TANH ? rn_tanh_lut : 0);
}

/* pre[j] = wx[j] + requant15(U[j] . h) for every unit, h packed by rn_split16 (n a multiple of 4):
 * two units per pass share each packed word. */
static inline RN_ALWAYS_INLINE void rn_pre_split(const rn_fastgrnn_t *cell, const int32_t *wx, const int32_t *packed,
                                                 int n, int32_t *pre)
{
    const int8_t *u = cell->u;
    const int32_t *const um = cell->u_mult;
    const int8_t *const us = cell->u_shift;
    int j;
    for (j = 0; j < n; j += 2, u += 2 * n) {
        rn_split_sum_t a0, a1;
        rn_dot2_split(u, packed, n, &a0, &a1);
        pre[j] = (int32_t)((uint32_t)wx[j] + (uint32_t)rn_requant15_split(a0, um[j], us[j]));
        pre[j + 1] = (int32_t)((uint32_t)wx[j + 1] + (uint32_t)rn_requant15_split(a1, um[j + 1], us[j + 1]));
    }
}

/* One unit's new state from its pre-activation and previous state (the gate, the update and their
 * mix; lg/lu as in rn_step); sz16 = 16 sz (sz, ONE - z <= 2^25: both times 16 fit). */
static inline RN_ALWAYS_INLINE int32_t rn_unit(const rn_fastgrnn_t *cell, int32_t pre, int32_t h_prev, int32_t bias_gate,
                              int32_t bias_update, const int32_t *lg, const int32_t *lu, int32_t sz16, int32_t sn)
{
    const int32_t vg = rn_qadd(pre, bias_gate);
    const int32_t vu = rn_qadd(pre, bias_update);
    const int32_t z = lg ? rn_lut32(lg, RN_SSAT(vg, 28)) : rn_nonlinearity32(cell->gate, vg);
    const int32_t c = lu ? rn_lut32(lu, RN_SSAT(vu, 28)) : rn_nonlinearity32(cell->update, vu);
    const int32_t g = rn_smmulr(sz16, (RN_ONE - z) * 16) + sn;   /* ((sz (ONE - z) + ONE/2) >> 24) + sn */
    return (int32_t)(((int64_t)g * c + (int64_t)z * h_prev + RN_ONE / 2) >> RN_Q);
}

/* one step; h_new must not alias h. lg/lu: the gate's and update's tables, or NULL for
 * quantSigmoid/quantTanh (then the cell's code decides). Two passes keep each loop's working set in
 * registers: the pre-activations (into h_new), then the nonlinearities and the new state. */
static inline void rn_step(const rn_fastgrnn_t *cell, const int32_t *wx, const int32_t *h, int32_t *h_new,
                           const int32_t *lg, const int32_t *lu)
{
    const int n = cell->hidden;
    const int8_t *u = cell->u;
    int32_t packed[RN_SPLIT_MAX];
    int j, k;
    if (rn_splittable(u, n) && rn_split16(h, n, packed)) {   /* pre = wx + requant15(U h), packed */
        if (n == 8) {
            rn_pre_split(cell, wx, packed, 8, h_new);   /* a constant size: the k loop unrolls */
        } else if (n == 16) {
            rn_pre_split(cell, wx, packed, 16, h_new);
        } else {
            rn_pre_split(cell, wx, packed, n, h_new);
        }
        j = n;
    } else {
        j = 0;
    }
    for (; j + 1 < n; j += 2, u += 2 * n) {   /* pre = wx + requant15(U h): two units share each h[k] */
        const int8_t *const u1 = u + n;
        int64_t a0 = 0, a1 = 0;
        for (k = 0; k < n; ++k) {
            const int32_t hk = h[k];
            a0 += (int64_t)(int32_t)u[k] * hk;    /* SMLAL */
            a1 += (int64_t)(int32_t)u1[k] * hk;
        }
        h_new[j] = (int32_t)((uint32_t)wx[j] + (uint32_t)rn_requant15_lo32(a0, cell->u_mult[j], cell->u_shift[j]));
        h_new[j + 1] = (int32_t)((uint32_t)wx[j + 1]
                                 + (uint32_t)rn_requant15_lo32(a1, cell->u_mult[j + 1], cell->u_shift[j + 1]));
    }
    if (j < n) {
        int64_t a0 = 0;
        for (k = 0; k < n; ++k) {
            a0 += (int64_t)(int32_t)u[k] * h[k];
        }
        h_new[j] = (int32_t)((uint32_t)wx[j] + (uint32_t)rn_requant15_lo32(a0, cell->u_mult[j], cell->u_shift[j]));
    }
    {
        const int32_t *const bias_gate = cell->bias_gate, *const bias_update = cell->bias_update;
        const int32_t sz16 = cell->sz * 16, sn = cell->sn;   /* sz, ONE - z <= 2^25: both times 16 fit */
        if (lg && lu) {   /* both from tables (sigmoid/tanh, the usual cell): no dispatch in the loop */
            for (j = 0; j < n; ++j) {
                const int32_t pre = h_new[j];
                const int32_t z = rn_lut32(lg, RN_SSAT(rn_qadd(pre, bias_gate[j]), 28));
                const int32_t c = rn_lut32(lu, RN_SSAT(rn_qadd(pre, bias_update[j]), 28));
                const int32_t g = rn_smmulr(sz16, (RN_ONE - z) * 16) + sn;
                h_new[j] = (int32_t)(((int64_t)g * c + (int64_t)z * h[j] + RN_ONE / 2) >> RN_Q);
            }
        } else {
            for (j = 0; j < n; ++j) {
                h_new[j] = rn_unit(cell, h_new[j], h[j], bias_gate[j], bias_update[j], lg, lu, sz16, sn);
            }
        }
    }
}

void rn_fastgrnn_step(const rn_fastgrnn_t *cell, const int32_t *wx, const int32_t *h, int32_t *h_new)
{
    rn_step(cell, wx, h, h_new, rn_table(cell->gate), rn_table(cell->update));
}

void rn_fastgrnn_sweep(const rn_fastgrnn_t *cell, const int32_t *wx, int steps, int step_words,
                       int32_t *h, int32_t *tmp)
{
    /* The state ping-pongs between h and tmp; start in the buffer that makes the last step
     * write h, so no copy is needed. */
    const int32_t *const lg = rn_table(cell->gate), *const lu = rn_table(cell->update);
    int32_t *cur = (steps & 1) ? tmp : h;
    int32_t *next;
    int t, j;
    for (j = 0; j < cell->hidden; ++j) {
        cur[j] = 0;
    }
    for (t = 0; t < steps; ++t) {
        next = cur == h ? tmp : h;
        rn_step(cell, wx + t * step_words, cur, next, lg, lu);
        cur = next;
    }
}
