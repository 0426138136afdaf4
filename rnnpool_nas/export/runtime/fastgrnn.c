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
 *     (lo >> s) | (hi << (32 - s)) of p + 2^(s-1) (rn_requant_lo32, rn_requant15_lo32), so pre is
 *     wx + that word in 32-bit arithmetic (exact modulo 2^32, and pre fits int32);
 *   - v = pre + bias is a saturating 32-bit add (QADD): every nonlinearity is constant beyond
 *     +-2^26, so saturating at +-2^31 changes nothing; the tables' clamp to [-8 ONE, 8 ONE - 1] is a
 *     28-bit SSAT, quantSigmoid's input is first saturated to 26 bits (its output is 0 or ONE
 *     beyond +-2 ONE);
 *   - the sweep keeps the nonlinearities' dispatch out of the unit loop (table pointers), and the
 *     U h products of two units share each loaded state word.
 */
#include "rn_runtime.h"
#include "rn_dot.h"
#include "rn_dsp.h"

/* (acc * m + 2^(s-1)) >> s for a 32-bit acc and 1 <= s <= 62, as int32: exact when the result
 * fits int32 (its low word otherwise). */
static inline int32_t rn_requant_lo32(int32_t acc, int32_t m, int32_t s)
{
    const int64_t p = (int64_t)acc * m;
    if (s < 32) {
        const uint64_t q = (uint64_t)p + ((uint32_t)1 << (s - 1));
        return (int32_t)(((uint32_t)q >> s) | ((uint32_t)(q >> 32) << (32 - s)));
    }
    return (int32_t)((p + ((int64_t)1 << (s - 1))) >> s);
}

#if defined(__GNUC__)
#define RN_NOINLINE __attribute__((noinline))
#else
#define RN_NOINLINE
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
static inline int32_t rn_lut32(const int32_t *table, int32_t v)
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

void rn_fastgrnn_project_s8(const rn_fastgrnn_t *cell, const int8_t *x, int32_t x_zp, int32_t *wx)
{
    /* two rows of W per pass; with whole words (input a multiple of 4, aligned) the input is
     * unpacked with the zero point subtracted (SXTAB16: |x - zp| <= 255 fits 16 bits) and each
     * unpacked word feeds both rows' SMLADs */
    const int n_in = cell->input;
    const int n = cell->hidden;
    const int8_t *w = cell->w;
    const int packed = (n_in & 3) == 0 && rn_aligned4(x) && rn_aligned4(w);
    const int32_t nzp = (int32_t)(((uint32_t)(-x_zp) & 0xFFFFu) * 0x10001u);   /* (-zp, -zp) */
    int j, i;
    for (j = 0; j + 1 < n; j += 2, w += 2 * n_in) {
        int32_t a0 = 0, a1 = 0;
        if (packed) {
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
        } else {
            for (i = 0; i < n_in; ++i) {
                const int32_t v = x[i] - x_zp;
                a0 += w[i] * v;
                a1 += w[n_in + i] * v;
            }
        }
        wx[j] = rn_requant_lo32(a0, cell->w_mult[j], cell->w_shift[j]);
        wx[j + 1] = rn_requant_lo32(a1, cell->w_mult[j + 1], cell->w_shift[j + 1]);
    }
    if (j < n) {
        wx[j] = rn_requant_lo32(rn_dot_s8(x, w, n_in, x_zp), cell->w_mult[j], cell->w_shift[j]);
    }
}

void rn_fastgrnn_project_q24(const rn_fastgrnn_t *cell, const int32_t *x, int32_t *wx)
{
    const int n_in = cell->input;
    const int n = cell->hidden;
    const int8_t *w = cell->w;
    int j, k;
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

/* one step; h_new must not alias h. lg/lu: the gate's and update's tables, or NULL for
 * quantSigmoid/quantTanh (then the cell's code decides). Two passes keep each loop's working set in
 * registers: the pre-activations (into h_new), then the nonlinearities and the new state. */
static inline void rn_step(const rn_fastgrnn_t *cell, const int32_t *wx, const int32_t *h, int32_t *h_new,
                           const int32_t *lg, const int32_t *lu)
{
    const int n = cell->hidden;
    const int8_t *u = cell->u;
    int j, k;
    for (j = 0; j + 1 < n; j += 2, u += 2 * n) {   /* pre = wx + requant15(U h): two units share each h[k] */
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
        for (j = 0; j < n; ++j) {
            const int32_t pre = h_new[j];
            const int32_t vg = rn_qadd(pre, bias_gate[j]);
            const int32_t vu = rn_qadd(pre, bias_update[j]);
            const int32_t z = lg ? rn_lut32(lg, RN_SSAT(vg, 28)) : rn_nonlinearity32(cell->gate, vg);
            const int32_t c = lu ? rn_lut32(lu, RN_SSAT(vu, 28)) : rn_nonlinearity32(cell->update, vu);
            const int32_t g = rn_smmulr(sz16, (RN_ONE - z) * 16) + sn;   /* ((sz (ONE - z) + ONE/2) >> 24) + sn */
            h_new[j] = (int32_t)(((int64_t)g * c + (int64_t)z * h[j] + RN_ONE / 2) >> RN_Q);
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
