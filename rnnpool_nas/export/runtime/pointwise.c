/* pointwise.c - 1x1 int8 convolution, NHWC (quant.py: QConv with kernel 1, groups 1).
 *
 * Fixed-point rules (bit-exact with rnnpool_nas/train/quant.py):
 *   acc[o] = bias[o] + sum_i w[o, i] * (x[i] - in_zp)                         (int32)
 *   out[o] = clamp(out_zp + ((acc * mult[o] + 2^(shift[o]-1)) >> shift[o]), act_min, act_max)
 *            (int64 product, arithmetic shift: halves round toward +inf)
 * No padding; stride s samples the pixels (0, s, 2s, ...): out_h = (in_h - 1)/s + 1, same for w.
 * The zero point is hoisted out of the channel loop with a running weight sum (rn_dot.h).
 */
#include "rn_runtime.h"
#include "rn_dot.h"

void rn_pointwise_conv2d(const int8_t *in, int in_h, int in_w, int in_c,
                         const int8_t *weight, const int32_t *bias, const int32_t *mult, const int8_t *shift,
                         int out_c, int stride,
                         int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out)
{
    const int out_h = (in_h - 1) / stride + 1;
    const int out_w = (in_w - 1) / stride + 1;
    const int row_step = stride * in_w * in_c;   /* from one sampled row to the next */
    const int px_step = stride * in_c;           /* from one sampled pixel to the next */
    const int8_t *row = in;
    int oy, ox, o;

    for (oy = 0; oy < out_h; ++oy, row += row_step) {
        const int8_t *x = row;
        for (ox = 0; ox < out_w; ++ox, x += px_step) {
            const int8_t *w = weight;
            for (o = 0; o < out_c; ++o, w += in_c) {
                const int32_t acc = bias[o] + rn_dot_s8(x, w, in_c, in_zp);
                *out++ = rn_clamp_s8(out_zp + rn_requant(acc, mult[o], shift[o]), act_min, act_max);
            }
        }
    }
}
