/* fully_connected.c - dense layer on the NHWC-flattened int8 input (quant.py: QLinear).
 *
 * Fixed-point rules (bit-exact with rnnpool_nas/train/quant.py):
 *   acc[o] = bias[o] + sum_i w[o, i] * (x[i] - in_zp)                         (int32)
 *   out[o] = clamp(out_zp + ((acc * mult[o] + 2^(shift[o]-1)) >> shift[o]), act_min, act_max)
 *            (int64 product, arithmetic shift: halves round toward +inf)
 * weight (out_n, in_n), its columns already in NHWC order (the exporter reorders them from NCHW).
 * The zero point is hoisted out of the loop with a running weight sum (rn_dot.h).
 */
#include "rn_runtime.h"
#include "rn_dot.h"

void rn_fully_connected(const int8_t *in, int in_n, const int8_t *weight, const int32_t *bias,
                        const int32_t *mult, const int8_t *shift, int out_n,
                        int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out)
{
    const int8_t *w = weight;
    int o;
    for (o = 0; o < out_n; ++o, w += in_n) {
        const int32_t acc = bias[o] + rn_dot_s8(in, w, in_n, in_zp);
        out[o] = rn_clamp_s8(out_zp + rn_requant(acc, mult[o], shift[o]), act_min, act_max);
    }
}
