/* conv.c - dense and grouped KxK int8 convolution, NHWC (quant.py: QConv, kernel > 1 or groups > 1).
 *
 * Fixed-point rules (bit-exact with rnnpool_nas/train/quant.py):
 *   acc[o]  = bias[o] + sum over taps inside the input of w[o, ky, kx, i] * (x[iy, ix, g*cin_g + i] - in_zp)
 *             (int32; taps in the zero padding contribute 0: the reference pads x - in_zp with 0)
 *   out[o]  = clamp(out_zp + ((acc * mult[o] + 2^(shift[o]-1)) >> shift[o]), act_min, act_max)
 *             (int64 product, arithmetic shift: halves round toward +inf)
 * The zero point is hoisted out of the tap loop with a running weight sum (rn_dot.h). Only the
 * taps inside the input are visited, so the padding costs nothing and needs no buffer.
 * Output size: out_h = (in_h + 2*pad - kernel)/stride + 1, same for w.
 */
#include "rn_runtime.h"
#include "rn_dot.h"

void rn_conv2d(const int8_t *in, int in_h, int in_w, int in_c,
               const int8_t *weight, const int32_t *bias, const int32_t *mult, const int8_t *shift,
               int out_c, int kernel, int stride, int pad, int groups,
               int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out)
{
    const int out_h = (in_h + 2 * pad - kernel) / stride + 1;
    const int out_w = (in_w + 2 * pad - kernel) / stride + 1;
    const int cin_g = in_c / groups;
    const int cout_g = out_c / groups;
    const int w_per_out = kernel * kernel * cin_g;   /* weights of one output channel */
    const int row_stride = in_w * in_c;              /* input bytes per image row */
    int oy, ox, o, ky, kx;

    for (oy = 0; oy < out_h; ++oy) {
        const int iy0 = oy * stride - pad;
        const int ky0 = iy0 < 0 ? -iy0 : 0;
        const int ky1 = iy0 + kernel > in_h ? in_h - iy0 : kernel;
        for (ox = 0; ox < out_w; ++ox) {
            const int ix0 = ox * stride - pad;
            const int kx0 = ix0 < 0 ? -ix0 : 0;
            const int kx1 = ix0 + kernel > in_w ? in_w - ix0 : kernel;
            const int nkx = kx1 - kx0;
            /* dense: the valid taps of a window row are one contiguous run of nkx * in_c bytes
             * in both input and weights; grouped: nkx runs of cin_g */
            const int nseg = groups == 1 ? (nkx > 0) : nkx;
            const int seg = groups == 1 ? nkx * in_c : cin_g;
            /* the first valid tap of the window (not formed when no tap is valid) */
            const int8_t *const window = (ky1 > ky0 && nkx > 0)
                ? in + ((iy0 + ky0) * in_w + ix0 + kx0) * in_c : in;
            const int8_t *w_out = weight + (ky0 * kernel + kx0) * cin_g;
            for (o = 0; o < out_c; ++o, w_out += w_per_out) {
                const int8_t *x_row = window + (o / cout_g) * cin_g;
                const int8_t *w_row = w_out;
                int32_t acc = bias[o];
                for (ky = ky0; ky < ky1; ++ky) {
                    const int8_t *x = x_row;
                    const int8_t *w = w_row;
                    for (kx = 0; kx < nseg; ++kx, x += in_c, w += cin_g) {
                        acc += rn_dot_s8(x, w, seg, in_zp);
                    }
                    x_row += row_stride;
                    w_row += kernel * cin_g;
                }
                *out++ = rn_clamp_s8(out_zp + rn_requant(acc, mult[o], shift[o]), act_min, act_max);
            }
        }
    }
}
