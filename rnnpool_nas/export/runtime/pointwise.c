/* pointwise.c - 1x1 int8 convolution, NHWC (quant.py: QConv with kernel 1, groups 1).
 *
 * Fixed-point rules (bit-exact with rnnpool_nas/train/quant.py):
 *   acc[o] = bias[o] + sum_i w[o, i] * (x[i] - in_zp)                         (int32)
 *   out[o] = clamp(out_zp + ((acc * mult[o] + 2^(shift[o]-1)) >> shift[o]), act_min, act_max)
 *            (int64 product, arithmetic shift: halves round toward +inf)
 * No padding; stride s samples the pixels (0, s, 2s, ...): out_h = (in_h - 1)/s + 1, same for w.
 *
 * Speed (the runtime's hottest kernel: MBConv's expand and project are pointwise rows):
 *   - the zero point leaves the dot product: sum w (x - zp) = sum w x - zp sum w (exact on
 *     integers, rn_dot.h), and sum w is computed once per output channel per call, not per pixel;
 *   - two output channels times two pixels per pass (a 2x2 block): each loaded input word feeds two
 *     channels and each weight word two pixels, four int32 accumulators;
 *   - four channels per step with 16-bit pairs (rn_dsp.h: one LDR and two SXTB16 unpack four int8
 *     values, SMLAD does two multiply-accumulates) when in_c is a multiple of 4 and the input and
 *     weights are word-aligned; a plain int8 loop otherwise (same block, same results);
 *   - requantization from the product's high word (rn_requant32), and a saturation (SSAT) for the
 *     usual activation range [-128, 127].
 * With stride 1 the pixels of the whole map are consecutive, so pixel pairs run across rows.
 */
#include "rn_runtime.h"
#include "rn_dsp.h"

/* sum of n int8 weights (n a multiple of 4 and w aligned when packed) */
static inline int32_t pw_wsum(const int8_t *w, int n, int packed)
{
    int32_t s = 0;
    int i = 0;
    if (packed) {
        const int32_t ones = 0x00010001;
        for (; i < n; i += 4) {
            const int32_t v = rn_load4(w + i);
            s = rn_smlad(rn_sxtb16(v), ones, s);
            s = rn_smlad(rn_sxtb16_ror8(v), ones, s);
        }
    }
    for (; i < n; ++i) {
        s += w[i];
    }
    return s;
}

typedef struct {
    int32_t a00, a01, a10, a11;   /* a[p][q]: pixel p, channel q */
} pw_acc_t;

/* The 2x2 block: a[p][q] = b_q + sum_i x_p[i] w_q[i] for pixels x0, x1 = x0 + step and channels
 * w0, w1 = w0 + step (consecutive pixels, consecutive channels: step = n), n terms. */
/* one packed step of the 2x2 block: four channels of both pixels and both weight rows */
#define PW_STEP_2X2(x, w, step)                                   \
    do {                                                          \
        const int32_t xa_ = rn_load4(x);                          \
        const int32_t xb_ = rn_load4((x) + (step));               \
        const int32_t xa0_ = rn_sxtb16(xa_), xa1_ = rn_sxtb16_ror8(xa_); \
        const int32_t xb0_ = rn_sxtb16(xb_), xb1_ = rn_sxtb16_ror8(xb_); \
        int32_t wv_ = rn_load4(w);                                \
        int32_t w0_ = rn_sxtb16(wv_), w1_ = rn_sxtb16_ror8(wv_);  \
        s00 = rn_smlad(xa0_, w0_, s00);                           \
        s00 = rn_smlad(xa1_, w1_, s00);                           \
        s10 = rn_smlad(xb0_, w0_, s10);                           \
        s10 = rn_smlad(xb1_, w1_, s10);                           \
        wv_ = rn_load4((w) + (step));                             \
        w0_ = rn_sxtb16(wv_);                                     \
        w1_ = rn_sxtb16_ror8(wv_);                                \
        s01 = rn_smlad(xa0_, w0_, s01);                           \
        s01 = rn_smlad(xa1_, w1_, s01);                           \
        s11 = rn_smlad(xb0_, w0_, s11);                           \
        s11 = rn_smlad(xb1_, w1_, s11);                           \
    } while (0)

/* The 2x2 block: a[p][q] = b_q + sum_i x_p[i] w_q[i] for pixels x0, x1 = x0 + step and channels
 * w0, w1 = w0 + step (consecutive pixels, consecutive channels: step = n), n terms. */
static inline pw_acc_t pw_dot_2x2(const int8_t *x, const int8_t *w, int step, int n, int packed, int32_t b0,
                                  int32_t b1)
{
    int32_t s00 = b0, s01 = b1, s10 = b0, s11 = b1;
    pw_acc_t r;
    if (packed) {
        const int8_t *const end = x + n;
        for (; x < end; x += 4, w += 4) {   /* (unrolling further makes gcc spill the accumulators) */
            PW_STEP_2X2(x, w, step);
        }
    } else {
        const int8_t *const end = x + n;
        for (; x < end; ++x, ++w) {
            const int32_t xa = x[0], xb = x[step], wa = w[0], wb = w[step];
            s00 += xa * wa;
            s01 += xa * wb;
            s10 += xb * wa;
            s11 += xb * wb;
        }
    }
    r.a00 = s00;
    r.a01 = s01;
    r.a10 = s10;
    r.a11 = s11;
    return r;
}

/* One pixel, channels w0 and w1 = w0 + wstep (wstep 0: one channel, computed twice). */
static inline pw_acc_t pw_dot_1x2(const int8_t *x, const int8_t *w, int wstep, int n, int packed, int32_t b0,
                                  int32_t b1)
{
    int32_t s0 = b0, s1 = b1;
    const int8_t *const end = x + n;
    pw_acc_t r;
    if (packed) {
        for (; x < end; x += 4, w += 4) {
            const int32_t xv = rn_load4(x);
            const int32_t x0 = rn_sxtb16(xv), x1 = rn_sxtb16_ror8(xv);
            int32_t wv = rn_load4(w);
            s0 = rn_smlad(x0, rn_sxtb16(wv), s0);
            s0 = rn_smlad(x1, rn_sxtb16_ror8(wv), s0);
            wv = rn_load4(w + wstep);
            s1 = rn_smlad(x0, rn_sxtb16(wv), s1);
            s1 = rn_smlad(x1, rn_sxtb16_ror8(wv), s1);
        }
    } else {
        for (; x < end; ++x, ++w) {
            s0 += x[0] * w[0];
            s1 += x[0] * w[wstep];
        }
    }
    r.a00 = s0;
    r.a01 = s1;
    r.a10 = r.a11 = 0;
    return r;
}

void rn_pointwise_conv2d(const int8_t *in, int in_h, int in_w, int in_c,
                         const int8_t *weight, const int32_t *bias, const int32_t *mult, const int8_t *shift,
                         int out_c, int stride,
                         int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out)
{
    const int out_h = (in_h - 1) / stride + 1;
    const int out_w = (in_w - 1) / stride + 1;
    /* runs of pixels px_step bytes apart: the whole map with stride 1, else one per output row */
    const int runs = stride == 1 ? 1 : out_h;
    const int run_len = stride == 1 ? in_h * in_w : out_w;
    const int px_step = stride * in_c;
    const int run_step = stride * in_w * in_c;
    const int packed = (in_c & 3) == 0 && rn_aligned4(in) && rn_aligned4(weight);
    const int full = act_min == -128 && act_max == 127;
    int o, r, p;

    for (o = 0; o < out_c; o += 2) {
        const int8_t *const w = weight + o * in_c;
        const int pair = o + 1 < out_c;
        const int wstep = pair ? in_c : 0;
        const int32_t b0 = bias[o] - in_zp * pw_wsum(w, in_c, packed);
        const int32_t b1 = bias[o + pair] - in_zp * pw_wsum(w + wstep, in_c, packed);
        const int32_t m0 = mult[o], s0 = shift[o], m1 = mult[o + pair], s1 = shift[o + pair];
        /* the usual case: both shifts > 32 and the full int8 range: rn_requant32_hi and SSAT */
        const int fast = full && s0 > 32 && s1 > 32;
        const int32_t sh0 = s0 - 32, sh1 = s1 - 32;
        const int32_t rnd0 = fast ? (int32_t)1 << (s0 - 33) : 0, rnd1 = fast ? (int32_t)1 << (s1 - 33) : 0;
        for (r = 0; r < runs; ++r) {
            const int8_t *x = in + r * run_step;
            int8_t *y = out + r * out_w * out_c + o;
            p = 0;
            if (stride == 1 && pair) {   /* 2 pixels x 2 channels */
                for (; p + 1 < run_len; p += 2, x += 2 * in_c, y += 2 * out_c) {
                    const pw_acc_t a = pw_dot_2x2(x, w, in_c, in_c, packed, b0, b1);
                    if (fast) {
                        const int32_t v00 = rn_requant32_hi(a.a00, m0, rnd0, sh0);
                        const int32_t v10 = rn_requant32_hi(a.a10, m0, rnd0, sh0);
                        const int32_t v01 = rn_requant32_hi(a.a01, m1, rnd1, sh1);
                        const int32_t v11 = rn_requant32_hi(a.a11, m1, rnd1, sh1);
                        y[0] = (int8_t)RN_SAT8(out_zp + v00);
                        y[out_c] = (int8_t)RN_SAT8(out_zp + v10);
                        y[1] = (int8_t)RN_SAT8(out_zp + v01);
                        y[out_c + 1] = (int8_t)RN_SAT8(out_zp + v11);
                    } else {
                        y[0] = RN_OUT8(full, a.a00, m0, s0, out_zp, act_min, act_max);
                        y[1] = RN_OUT8(full, a.a01, m1, s1, out_zp, act_min, act_max);
                        y[out_c] = RN_OUT8(full, a.a10, m0, s0, out_zp, act_min, act_max);
                        y[out_c + 1] = RN_OUT8(full, a.a11, m1, s1, out_zp, act_min, act_max);
                    }
                }
            }
            for (; p < run_len; ++p, x += px_step, y += out_c) {   /* 1 pixel x 2 (or 1) channels */
                const pw_acc_t a = pw_dot_1x2(x, w, wstep, in_c, packed, b0, b1);
                y[0] = RN_OUT8(full, a.a00, m0, s0, out_zp, act_min, act_max);
                if (pair) {
                    y[1] = RN_OUT8(full, a.a01, m1, s1, out_zp, act_min, act_max);
                }
            }
        }
    }
}
