/* conv.c - dense and grouped KxK int8 convolution, NHWC (quant.py: QConv, kernel > 1 or groups > 1).
 *
 * Fixed-point rules (bit-exact with rnnpool_nas/train/quant.py):
 *   acc[o]  = bias[o] + sum over taps inside the input of w[o, ky, kx, i] * (x[iy, ix, g*cin_g + i] - in_zp)
 *             (int32; taps in the zero padding contribute 0: the reference pads x - in_zp with 0)
 *   out[o]  = clamp(out_zp + ((acc * mult[o] + 2^(shift[o]-1)) >> shift[o]), act_min, act_max)
 *             (int64 product, arithmetic shift: halves round toward +inf)
 * Only the taps inside the input are visited, so the padding costs nothing and needs no buffer.
 * rn_conv2d_row computes one output row from input rows held in a ring of row slots (a streamed
 * segment's ring, stream.c); rn_conv2d is that row function over the whole map (ring == in_h), so
 * both compute every output with the same operations. A window's rows sit in consecutive slots up
 * to the ring's end, then from slot 0 on: at most two runs of rows a fixed stride apart.
 * Dense convolutions (the stems: few input channels, short window rows) compute four output
 * channels per pass, so each input byte (minus the zero point) is loaded once for four weights;
 * the rest hoists the zero point out of the tap loop with a running weight sum (rn_dot.h).
 * With whole words of input channels (in_c a multiple of 4, input and weights 4-aligned: the
 * detection heads' 3x3 convolutions over 32-64 channels) the window rows are read a word at a
 * time, unpacked with the zero point subtracted (SXTAB16: |x - zp| <= 255 fits 16 bits), and each
 * unpacked word feeds SMLADs of four (conv_taps4_packed) or one (conv_taps1_packed) output channels.
 * Output size: out_h = (in_h + 2*pad - kernel)/stride + 1, same for w.
 */
#include <string.h>

#include "rn_runtime.h"
#include "rn_dot.h"
#include "rn_dsp.h"

/* acc[j] += sum over `rows` window rows of `seg` taps of w_j[e] (x[e] - zp), for the four output
 * channels w_j = w + j * wpo: each input byte is loaded once for four channels. */
static inline void conv_taps4(const int8_t *x, const int8_t *w, int rows, int seg, int row_stride, int w_row,
                              int wpo, int32_t zp, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    const int wpo3 = 3 * wpo;
    int r, e;
    for (r = 0; r < rows; ++r, x += row_stride, w += w_row) {
        for (e = 0; e < seg; ++e) {
            const int32_t v = x[e] - zp;
            a0 += w[e] * v;
            a1 += w[e + wpo] * v;
            a2 += w[e + 2 * wpo] * v;
            a3 += w[e + wpo3] * v;
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* conv_taps4 for whole words: seg, row_stride, w_row and wpo multiples of 4, x and w 4-aligned;
 * nzp = (-zp, -zp) as a 16-bit pair */
static inline void conv_taps4_packed(const int8_t *x, const int8_t *w, int rows, int seg, int row_stride, int w_row,
                                     int wpo, int32_t nzp, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    int r, e;
    for (r = 0; r < rows; ++r, x += row_stride, w += w_row) {
        for (e = 0; e < seg; e += 4) {
            const int32_t xv = rn_load4(x + e);
            const int32_t xe = rn_sxtab16(nzp, xv), xo = rn_sxtab16_ror8(nzp, xv);
            int32_t wv = rn_load4(w + e);
            a0 = rn_smlad(xe, rn_sxtb16(wv), a0);
            a0 = rn_smlad(xo, rn_sxtb16_ror8(wv), a0);
            wv = rn_load4(w + e + wpo);
            a1 = rn_smlad(xe, rn_sxtb16(wv), a1);
            a1 = rn_smlad(xo, rn_sxtb16_ror8(wv), a1);
            wv = rn_load4(w + e + 2 * wpo);
            a2 = rn_smlad(xe, rn_sxtb16(wv), a2);
            a2 = rn_smlad(xo, rn_sxtb16_ror8(wv), a2);
            wv = rn_load4(w + e + 3 * wpo);
            a3 = rn_smlad(xe, rn_sxtb16(wv), a3);
            a3 = rn_smlad(xo, rn_sxtb16_ror8(wv), a3);
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* the same for one output channel */
static inline int32_t conv_taps1_packed(const int8_t *x, const int8_t *w, int rows, int seg, int row_stride,
                                        int w_row, int32_t nzp, int32_t a)
{
    int r, e;
    for (r = 0; r < rows; ++r, x += row_stride, w += w_row) {
        for (e = 0; e < seg; e += 4) {
            const int32_t xv = rn_load4(x + e);
            const int32_t wv = rn_load4(w + e);
            a = rn_smlad(rn_sxtab16(nzp, xv), rn_sxtb16(wv), a);
            a = rn_smlad(rn_sxtab16_ror8(nzp, xv), rn_sxtb16_ror8(wv), a);
        }
    }
    return a;
}

/* One output channel the plain way: a + sum over `rows` window rows of nseg runs of seg taps
 * (x steps in_c, w steps cin_g between runs), the zero point hoisted (rn_dot_s8). */
static inline int32_t conv_dots(const int8_t *x, const int8_t *w, int rows, int nseg, int seg, int row_stride,
                                int w_row, int in_c, int cin_g, int32_t zp, int32_t a)
{
    int r, s;
    for (r = 0; r < rows; ++r, x += row_stride, w += w_row) {
        const int8_t *xs = x;
        const int8_t *ws = w;
        for (s = 0; s < nseg; ++s, xs += in_c, ws += cin_g) {
            a += rn_dot_s8(xs, ws, seg, zp);
        }
    }
    return a;
}

/* Requantizes four accumulators into out; returns out + 4. */
static inline int8_t *conv_out4(const int32_t *acc, const int32_t *mult, const int8_t *shift, int32_t out_zp,
                                int32_t act_min, int32_t act_max, int8_t *out)
{
    int j;
    for (j = 0; j < 4; ++j) {
        out[j] = rn_clamp32(out_zp + rn_requant32(acc[j], mult[j], shift[j]), act_min, act_max);
    }
    return out + 4;
}

/* The window rows of one output row: run_a rows from top, then run_b rows from the ring's slot 0
 * (bottom), row_stride apart; the first is kernel row ky0. */
typedef struct {
    const int8_t *top, *bottom;
    int run_a, run_b, ky0, row_stride;
} conv_rows_t;

/* Dense, in_c a multiple of 4, rows and weights 4-aligned (see the top of the file): one output
 * row with the packed tap loops, out of line so that the byte path keeps its own registers. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void conv_row_packed(const conv_rows_t *win, int in_w, int in_c,
                            const int8_t *weight, const int32_t *bias, const int32_t *mult, const int8_t *shift,
                            int out_c, int kernel, int stride, int pad,
                            int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out)
{
    const int out_w = (in_w + 2 * pad - kernel) / stride + 1;
    const int w_per_out = kernel * kernel * in_c;
    const int w_row = kernel * in_c;
    const int row_stride = win->row_stride;
    const int run_a = win->run_a, run_b = win->run_b;
    const int32_t nzp = (int32_t)(((uint32_t)(-in_zp) & 0xFFFFu) * 0x10001u);   /* (-zp, -zp) */
    int ox, o;

    for (ox = 0; ox < out_w; ++ox) {
        const int ix0 = ox * stride - pad;
        const int kx0 = ix0 < 0 ? -ix0 : 0;
        const int kx1 = ix0 + kernel > in_w ? in_w - ix0 : kernel;
        const int nkx = kx1 - kx0;
        const int seg = nkx * in_c;
        const int col = (ix0 + kx0) * in_c;
        const int8_t *w_out;
        if (nkx <= 0 || run_a <= 0) {   /* no tap inside the input: the bias alone */
            for (o = 0; o < out_c; ++o) {
                *out++ = rn_clamp32(out_zp + rn_requant32(bias[o], mult[o], shift[o]), act_min, act_max);
            }
            continue;
        }
        w_out = weight + (win->ky0 * kernel + kx0) * in_c;
        for (o = 0; o < out_c; w_out += w_per_out) {   /* four, then one output channel per pass */
            if (o + 3 < out_c) {
                int32_t acc[4];
                memcpy(acc, bias + o, sizeof acc);
                conv_taps4_packed(win->top + col, w_out, run_a, seg, row_stride, w_row, w_per_out, nzp, acc);
                if (run_b > 0) {
                    conv_taps4_packed(win->bottom + col, w_out + run_a * w_row, run_b, seg, row_stride, w_row,
                                      w_per_out, nzp, acc);
                }
                out = conv_out4(acc, mult + o, shift + o, out_zp, act_min, act_max, out);
                o += 4;
                w_out += 3 * w_per_out;
            } else {
                int32_t acc = conv_taps1_packed(win->top + col, w_out, run_a, seg, row_stride, w_row, nzp, bias[o]);
                if (run_b > 0) {
                    acc = conv_taps1_packed(win->bottom + col, w_out + run_a * w_row, run_b, seg, row_stride, w_row,
                                            nzp, acc);
                }
                *out++ = rn_clamp32(out_zp + rn_requant32(acc, mult[o], shift[o]), act_min, act_max);
                ++o;
            }
        }
    }
}

void rn_conv2d_row(const int8_t *rows, int ring, int in_h, int in_w, int in_c, int iy0,
                   const int8_t *weight, const int32_t *bias, const int32_t *mult, const int8_t *shift,
                   int out_c, int kernel, int stride, int pad, int groups,
                   int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out)
{
    const int out_w = (in_w + 2 * pad - kernel) / stride + 1;
    const int cin_g = in_c / groups;
    const int cout_g = out_c / groups;
    const int w_per_out = kernel * kernel * cin_g;   /* weights of one output channel */
    const int w_row = kernel * cin_g;                /* weights of one kernel row */
    const int ky0 = iy0 < 0 ? -iy0 : 0;
    const int ky1 = iy0 + kernel > in_h ? in_h - iy0 : kernel;
    const int nky = ky1 > ky0 ? ky1 - ky0 : 0;
    conv_rows_t win;
    int ox, o;

    win.row_stride = in_w * in_c;
    win.ky0 = ky0;
    {
        const int slot0 = nky > 0 ? (iy0 + ky0) % ring : 0;
        win.run_a = ring - slot0 < nky ? ring - slot0 : nky;
        win.run_b = nky - win.run_a;
        win.top = rows + slot0 * win.row_stride;
        win.bottom = rows;
    }
    if (groups == 1 && (in_c & 3) == 0 && rn_aligned4(rows) && rn_aligned4(weight)) {
        conv_row_packed(&win, in_w, in_c, weight, bias, mult, shift, out_c, kernel, stride, pad, in_zp, out_zp,
                        act_min, act_max, out);
        return;
    }
    for (ox = 0; ox < out_w; ++ox) {
        const int ix0 = ox * stride - pad;
        const int kx0 = ix0 < 0 ? -ix0 : 0;
        const int kx1 = ix0 + kernel > in_w ? in_w - ix0 : kernel;
        const int nkx = kx1 - kx0;
        const int any = nky > 0 && nkx > 0;   /* a tap inside the input */
        /* dense: the valid taps of a window row are one contiguous run of nkx * in_c bytes in both
         * input and weights; grouped: nkx runs of cin_g */
        const int nseg = !any ? 0 : groups == 1 ? 1 : nkx;
        const int seg = groups == 1 ? nkx * in_c : cin_g;
        const int col = any ? (ix0 + kx0) * in_c : 0;
        const int8_t *w_out = weight + (ky0 * kernel + kx0) * cin_g;
        o = 0;
        if (groups == 1 && any) {   /* dense: four output channels per pass */
            for (; o + 3 < out_c; o += 4, w_out += 4 * w_per_out) {
                int32_t acc[4];
                memcpy(acc, bias + o, sizeof acc);
                conv_taps4(win.top + col, w_out, win.run_a, seg, win.row_stride, w_row, w_per_out, in_zp, acc);
                if (win.run_b > 0) {
                    conv_taps4(win.bottom + col, w_out + win.run_a * w_row, win.run_b, seg, win.row_stride, w_row,
                               w_per_out, in_zp, acc);
                }
                out = conv_out4(acc, mult + o, shift + o, out_zp, act_min, act_max, out);
            }
        }
        for (; o < out_c; ++o, w_out += w_per_out) {
            const int group = (o / cout_g) * cin_g;
            int32_t acc = conv_dots(win.top + col + group, w_out, win.run_a, nseg, seg, win.row_stride, w_row, in_c,
                                    cin_g, in_zp, bias[o]);
            if (win.run_b > 0) {
                acc = conv_dots(win.bottom + col + group, w_out + win.run_a * w_row, win.run_b, nseg, seg,
                                win.row_stride, w_row, in_c, cin_g, in_zp, acc);
            }
            *out++ = rn_clamp32(out_zp + rn_requant32(acc, mult[o], shift[o]), act_min, act_max);
        }
    }
}

/* The whole-map call is a loop of row calls (rn_depthwise_conv2d in depthwise.c has the same six
 * lines over its own row kernel: each kernel file keeps its own whole-map entry point). */
void rn_conv2d(const int8_t *in, int in_h, int in_w, int in_c,
               const int8_t *weight, const int32_t *bias, const int32_t *mult, const int8_t *shift,
               int out_c, int kernel, int stride, int pad, int groups,
               int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out)
{
    const int out_h = (in_h + 2 * pad - kernel) / stride + 1;
    const int out_w = (in_w + 2 * pad - kernel) / stride + 1;
    int oy;
    for (oy = 0; oy < out_h; ++oy) {
        rn_conv2d_row(in, in_h, in_h, in_w, in_c, oy * stride - pad, weight, bias, mult, shift, out_c, kernel, stride,
                      pad, groups, in_zp, out_zp, act_min, act_max, out + oy * out_w * out_c);
    }
}
