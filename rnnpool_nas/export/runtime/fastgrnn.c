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
 */
#include "rn_runtime.h"
#include "rn_dot.h"

/* y = T[i] + (((T[i+1] - T[i]) * f + 2^17) >> 18) over 1024 bins of [-8, 8). */
static inline int32_t rn_lut_interp(const int32_t *table, int64_t v)
{
    int32_t u, i, f;
    if (v < -8 * (int64_t)RN_ONE) {
        v = -8 * (int64_t)RN_ONE;
    } else if (v > 8 * (int64_t)RN_ONE - 1) {
        v = 8 * (int64_t)RN_ONE - 1;
    }
    u = (int32_t)v + 8 * RN_ONE;                 /* [0, 2^28) */
    i = u >> RN_LUT_SHIFT;                       /* bin, [0, 1023] */
    f = u & (((int32_t)1 << RN_LUT_SHIFT) - 1);  /* fraction within the bin */
    return table[i] + (int32_t)(((int64_t)(table[i + 1] - table[i]) * f
                                 + ((int64_t)1 << (RN_LUT_SHIFT - 1))) >> RN_LUT_SHIFT);
}

static inline int32_t rn_nonlinearity(int code, int64_t v)
{
    switch (code) {
    case RN_SIGMOID:
        return rn_lut_interp(rn_sigmoid_lut, v);
    case RN_TANH:
        return rn_lut_interp(rn_tanh_lut, v);
    case RN_QUANT_SIGMOID:
        v = (v + RN_ONE + 1) >> 1;
        return v < 0 ? 0 : (v > RN_ONE ? RN_ONE : (int32_t)v);
    default: /* RN_QUANT_TANH */
        return v < -RN_ONE ? -RN_ONE : (v > RN_ONE ? RN_ONE : (int32_t)v);
    }
}

int32_t rn_fastgrnn_nonlinearity(int code, int64_t v)
{
    return rn_nonlinearity(code, v);
}

void rn_fastgrnn_project_s8(const rn_fastgrnn_t *cell, const int8_t *x, int32_t x_zp, int32_t *wx)
{
    const int n_in = cell->input;
    const int n = cell->hidden;
    const int8_t *w = cell->w;
    int j;
    for (j = 0; j < n; ++j, w += n_in) {
        wx[j] = (int32_t)rn_requant(rn_dot_s8(x, w, n_in, x_zp), cell->w_mult[j], cell->w_shift[j]);
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
        wx[j] = (int32_t)rn_requant15(acc, cell->w_mult[j], cell->w_shift[j]);
    }
}

/* inlined into the sweep: one call per sweep, not per step */
static inline void rn_step(const rn_fastgrnn_t *cell, const int32_t *wx, const int32_t *h, int32_t *h_new)
{
    const int n = cell->hidden;
    const int8_t *u = cell->u;
    int j, k;
    for (j = 0; j < n; ++j, u += n) {
        int64_t uh = 0;
        int64_t pre, g;
        int32_t z, c;
        for (k = 0; k < n; ++k) {
            uh += (int64_t)(int32_t)u[k] * h[k];    /* SMLAL */
        }
        pre = (int64_t)wx[j] + rn_requant15(uh, cell->u_mult[j], cell->u_shift[j]);
        z = rn_nonlinearity(cell->gate, pre + cell->bias_gate[j]);
        c = rn_nonlinearity(cell->update, pre + cell->bias_update[j]);
        g = (((int64_t)cell->sz * (RN_ONE - z) + RN_ONE / 2) >> RN_Q) + cell->sn;
        h_new[j] = (int32_t)((g * c + (int64_t)z * h[j] + RN_ONE / 2) >> RN_Q);
    }
}

void rn_fastgrnn_step(const rn_fastgrnn_t *cell, const int32_t *wx, const int32_t *h, int32_t *h_new)
{
    rn_step(cell, wx, h, h_new);
}

void rn_fastgrnn_sweep(const rn_fastgrnn_t *cell, const int32_t *wx, int steps, int step_words,
                       int32_t *h, int32_t *tmp)
{
    /* The state ping-pongs between h and tmp; start in the buffer that makes the last step
     * write h, so no copy is needed. */
    int32_t *cur = (steps & 1) ? tmp : h;
    int32_t *next;
    int t, j;
    for (j = 0; j < cell->hidden; ++j) {
        cur[j] = 0;
    }
    for (t = 0; t < steps; ++t) {
        next = cur == h ? tmp : h;
        rn_step(cell, wx + t * step_words, cur, next);
        cur = next;
    }
}
