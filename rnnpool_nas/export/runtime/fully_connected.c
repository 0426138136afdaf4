/* fully_connected.c - dense layer on the NHWC-flattened int8 input (quant.py: QLinear).
 *
 * Fixed-point rules (bit-exact with rnnpool_nas/train/quant.py):
 *   acc[o] = bias[o] + sum_i w[o, i] * (x[i] - in_zp)                         (int32)
 *   out[o] = clamp(out_zp + ((acc * mult[o] + 2^(shift[o]-1)) >> shift[o]), act_min, act_max)
 *            (int64 product, arithmetic shift: halves round toward +inf)
 * weight (out_n, in_n), its columns already in NHWC order (the exporter reorders them from NCHW).
 * With whole words (in_n a multiple of 4, aligned) two outputs per pass in packed 16-bit pairs
 * (rn_dsp.h); otherwise the zero point is hoisted out of the loop with a running weight sum (rn_dot.h).
 */
#include "rn_runtime.h"
#include "rn_dot.h"
#include "rn_dsp.h"

void rn_fully_connected(const int8_t *in, int in_n, const int8_t *weight, const int32_t *bias,
                        const int32_t *mult, const int8_t *shift, int out_n,
                        int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out)
{
    const int8_t *w = weight;
    const int packed = (in_n & 3) == 0 && rn_aligned4(in) && rn_aligned4(weight);
    const int32_t nzp = (int32_t)(((uint32_t)(-in_zp) & 0xFFFFu) * 0x10001u);   /* (-zp, -zp) */
    int o, i;
    for (o = 0; o + 1 < out_n && packed; o += 2, w += 2 * in_n) {
        /* two outputs per pass: each input word, unpacked with the zero point subtracted (SXTAB16,
         * |x - zp| <= 255 fits 16 bits), feeds both rows' SMLADs */
        int32_t a0 = bias[o], a1 = bias[o + 1];
        for (i = 0; i < in_n; i += 4) {
            const int32_t xv = rn_load4(in + i);
            const int32_t xe = rn_sxtab16(nzp, xv), xo = rn_sxtab16_ror8(nzp, xv);
            int32_t wv = rn_load4(w + i);
            a0 = rn_smlad(xe, rn_sxtb16(wv), a0);
            a0 = rn_smlad(xo, rn_sxtb16_ror8(wv), a0);
            wv = rn_load4(w + in_n + i);
            a1 = rn_smlad(xe, rn_sxtb16(wv), a1);
            a1 = rn_smlad(xo, rn_sxtb16_ror8(wv), a1);
        }
        out[o] = rn_clamp32(out_zp + rn_requant32(a0, mult[o], shift[o]), act_min, act_max);
        out[o + 1] = rn_clamp32(out_zp + rn_requant32(a1, mult[o + 1], shift[o + 1]), act_min, act_max);
    }
    for (; o < out_n; ++o, w += in_n) {
        const int32_t acc = bias[o] + rn_dot_s8(in, w, in_n, in_zp);
        out[o] = rn_clamp32(out_zp + rn_requant32(acc, mult[o], shift[o]), act_min, act_max);
    }
}
