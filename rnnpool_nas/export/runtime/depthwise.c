/* depthwise.c - depthwise KxK int8 convolution, NHWC (quant.py: QConv with groups == in_c == out_c).
 *
 * Fixed-point rules (bit-exact with rnnpool_nas/train/quant.py):
 *   acc[c] = bias[c] + sum over taps inside the input of w[c, ky, kx] * (x[iy, ix, c] - in_zp)
 *            (int32; taps in the zero padding contribute 0)
 *   out[c] = clamp(out_zp + ((acc * mult[c] + 2^(shift[c]-1)) >> shift[c]), act_min, act_max)
 *            (int64 product, arithmetic shift: halves round toward +inf)
 * The zero point is hoisted out of the tap loop: sum w (x - zp) = sum w x - zp sum w (exact on
 * integers; a 5x5 window cannot overflow int32). Only the taps inside the input are visited.
 * Output size: out_h = (in_h + 2*pad - kernel)/stride + 1, same for w.
 * rn_depthwise_row computes one output row with the same arithmetic from rows held in a ring of
 * row slots (rn_mbconv's expanded rows); both share the tap loop dw_taps.
 */
#include "rn_runtime.h"

/* acc += sum over `rows` rows of `cols` taps of w * x and wsum += sum of those w, for one channel:
 * x steps c along a row and row_stride down, w steps 1 along a kernel row and kernel down. */
static inline void dw_taps(const int8_t *x_row, const int8_t *w_row, int rows, int cols, int c, int row_stride,
                           int kernel, int32_t *acc, int32_t *wsum)
{
    int32_t a = *acc;
    int32_t s = *wsum;
    int ky, kx;
    for (ky = 0; ky < rows; ++ky, x_row += row_stride, w_row += kernel) {
        const int8_t *x = x_row;
        for (kx = 0; kx < cols; ++kx, x += c) {
            const int32_t wv = w_row[kx];
            a += wv * *x;
            s += wv;
        }
    }
    *acc = a;
    *wsum = s;
}

void rn_depthwise_conv2d(const int8_t *in, int in_h, int in_w, int c,
                         const int8_t *weight, const int32_t *bias, const int32_t *mult, const int8_t *shift,
                         int kernel, int stride, int pad,
                         int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out)
{
    const int out_h = (in_h + 2 * pad - kernel) / stride + 1;
    const int out_w = (in_w + 2 * pad - kernel) / stride + 1;
    const int row_stride = in_w * c;
    const int kk = kernel * kernel;
    int oy, ox, ch;

    for (oy = 0; oy < out_h; ++oy) {
        const int iy0 = oy * stride - pad;
        const int ky0 = iy0 < 0 ? -iy0 : 0;
        const int ky1 = iy0 + kernel > in_h ? in_h - iy0 : kernel;
        for (ox = 0; ox < out_w; ++ox) {
            const int ix0 = ox * stride - pad;
            const int kx0 = ix0 < 0 ? -ix0 : 0;
            const int kx1 = ix0 + kernel > in_w ? in_w - ix0 : kernel;
            const int nkx = kx1 - kx0;
            const int8_t *const window = (ky1 > ky0 && nkx > 0)
                ? in + ((iy0 + ky0) * in_w + ix0 + kx0) * c : in;
            const int8_t *w_ch = weight + ky0 * kernel + kx0;
            for (ch = 0; ch < c; ++ch, w_ch += kk) {
                int32_t acc = 0;
                int32_t wsum = 0;
                dw_taps(window + ch, w_ch, ky1 - ky0, nkx, c, row_stride, kernel, &acc, &wsum);
                acc += bias[ch] - in_zp * wsum;
                *out++ = rn_clamp_s8(out_zp + rn_requant(acc, mult[ch], shift[ch]), act_min, act_max);
            }
        }
    }
}

void rn_depthwise_row(const int8_t *rows, int ring, int in_h, int in_w, int c, int iy0,
                      const int8_t *weight, const int32_t *bias, const int32_t *mult, const int8_t *shift,
                      int kernel, int stride, int pad,
                      int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out)
{
    const int out_w = (in_w + 2 * pad - kernel) / stride + 1;
    const int row_stride = in_w * c;
    const int kk = kernel * kernel;
    const int ky0 = iy0 < 0 ? -iy0 : 0;
    const int ky1 = iy0 + kernel > in_h ? in_h - iy0 : kernel;
    const int nky = ky1 > ky0 ? ky1 - ky0 : 0;
    /* the window's rows sit in consecutive slots from slot0 to the ring's end (run_a of them), then
     * from slot 0 on (run_b) */
    const int slot0 = nky > 0 ? (iy0 + ky0) % ring : 0;
    const int run_a = ring - slot0 < nky ? ring - slot0 : nky;
    const int run_b = nky - run_a;
    const int8_t *const top = rows + slot0 * row_stride;
    int ox, ch;

    for (ox = 0; ox < out_w; ++ox) {
        const int ix0 = ox * stride - pad;
        const int kx0 = ix0 < 0 ? -ix0 : 0;
        const int kx1 = ix0 + kernel > in_w ? in_w - ix0 : kernel;
        const int nkx = kx1 > kx0 ? kx1 - kx0 : 0;
        const int col = nkx > 0 ? (ix0 + kx0) * c : 0;
        const int8_t *w_ch = weight + ky0 * kernel + kx0;
        for (ch = 0; ch < c; ++ch, w_ch += kk) {
            int32_t acc = 0;
            int32_t wsum = 0;
            dw_taps(top + col + ch, w_ch, run_a, nkx, c, row_stride, kernel, &acc, &wsum);
            if (run_b > 0) {
                dw_taps(rows + col + ch, w_ch + run_a * kernel, run_b, nkx, c, row_stride, kernel, &acc, &wsum);
            }
            acc += bias[ch] - in_zp * wsum;
            *out++ = rn_clamp_s8(out_zp + rn_requant(acc, mult[ch], shift[ch]), act_min, act_max);
        }
    }
}
