/* pool.c - average and max pooling over kh x kw windows, strides (sh, sw), no padding, NHWC
 * (quant.py: QPool).
 *
 * Fixed-point rules (bit-exact with rnnpool_nas/train/quant.py):
 *   avg: total = sum over the window of (x - in_zp)                          (int32)
 *        out   = clamp(out_zp + ((total * mult + 2^(shift-1)) >> shift), -128, 127)
 *        (int64 product, arithmetic shift; mult / 2^shift = in_scale / (out_scale * kh * kw))
 *   max: out = max over the window of x (same scale and zero point as the input)
 * The zero point leaves the window loop: sum (x - zp) = sum x - kh*kw*zp.
 * Output size: out_h = (in_h - kh)/sh + 1, out_w = (in_w - kw)/sw + 1.
 */
#include "rn_runtime.h"

void rn_avgpool(const int8_t *in, int in_h, int in_w, int c, int kh, int kw, int sh, int sw,
                int32_t in_zp, int32_t mult, int32_t shift, int32_t out_zp, int8_t *out)
{
    const int out_h = (in_h - kh) / sh + 1;
    const int out_w = (in_w - kw) / sw + 1;
    const int row_stride = in_w * c;
    const int32_t zp_total = kh * kw * in_zp;
    int oy, ox, ch, ky, kx;

    for (oy = 0; oy < out_h; ++oy) {
        for (ox = 0; ox < out_w; ++ox) {
            const int8_t *const window = in + (oy * sh * in_w + ox * sw) * c;
            for (ch = 0; ch < c; ++ch) {
                const int8_t *x_row = window + ch;
                int32_t sum = 0;
                for (ky = 0; ky < kh; ++ky, x_row += row_stride) {
                    const int8_t *x = x_row;
                    for (kx = 0; kx < kw; ++kx, x += c) {
                        sum += *x;
                    }
                }
                *out++ = rn_clamp_s8(out_zp + rn_requant(sum - zp_total, mult, shift), -128, 127);
            }
        }
    }
}

/* The window walk of rn_avgpool again, on purpose: max keeps int8 and needs no requantization,
 * and a shared walk with a per-element callback would cost a call per input byte on the M4. */
void rn_maxpool(const int8_t *in, int in_h, int in_w, int c, int kh, int kw, int sh, int sw, int8_t *out)
{
    const int out_h = (in_h - kh) / sh + 1;
    const int out_w = (in_w - kw) / sw + 1;
    const int row_stride = in_w * c;
    int oy, ox, ch, ky, kx;

    for (oy = 0; oy < out_h; ++oy) {
        for (ox = 0; ox < out_w; ++ox) {
            const int8_t *const window = in + (oy * sh * in_w + ox * sw) * c;
            for (ch = 0; ch < c; ++ch) {
                const int8_t *x_row = window + ch;
                int8_t best = -128;
                for (ky = 0; ky < kh; ++ky, x_row += row_stride) {
                    const int8_t *x = x_row;
                    for (kx = 0; kx < kw; ++kx, x += c) {
                        if (*x > best) {
                            best = *x;
                        }
                    }
                }
                *out++ = best;
            }
        }
    }
}
