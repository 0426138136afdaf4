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
 *
 * rn_depthwise_row computes one output row from rows held in a ring of row slots (rn_mbconv's
 * expanded rows); rn_depthwise_conv2d is that row function over the whole map (ring == in_h).
 * Speed: a 3x3 window whose columns are all inside the row (every output column but the edges)
 * runs channel by channel, four output columns at a time: each kernel row's three weights are
 * loaded once for the four windows, the zero-point correction (zp times the sum of the weights
 * of the window's rows) once per channel and row, and requantization uses the product's high
 * word (rn_requant32). Rows of at most DW3_SMALL_W output columns (the small maps of the last
 * stages, where few or no blocks of four fit) run channel by channel over every column, edges
 * included, with the channel's nine weights loaded once (dw3_small_row: a kernel row outside the
 * input is a zero weight, the zero-point correction of an edge window the weights of its taps
 * inside the input). The other edge columns and kernel sizes take the per-tap loop dw_taps.
 */
#include "rn_runtime.h"
#include "rn_dsp.h"

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

#if defined(__GNUC__)
#define RN_NOINLINE __attribute__((noinline))
#else
#define RN_NOINLINE
#endif

/* requantization of one channel */
typedef struct {
    int32_t bias, mult, shift, out_zp, act_min, act_max, full;   /* full: [act_min, act_max] = [-128, 127] */
} dw_rq_t;

static inline int8_t dw_out(int32_t acc, dw_rq_t q)
{
    return RN_OUT8(q.full, acc, q.mult, q.shift, q.out_zp, q.act_min, q.act_max);
}

/* acc[j] += w0 x[j s] + w1 x[j s + c] + w2 x[j s + 2c] for four stride-1 windows (s = c): six loads,
 * each used as soon as it is loaded */
#define DW3_ROW4_S1(p, w)                                                                       \
    do {                                                                                        \
        const int32_t w0_ = (w)[0], w1_ = (w)[1], w2_ = (w)[2];                                 \
        const int8_t *q_ = (p);                                                                 \
        int32_t v_ = q_[0];                                                                     \
        a0 += w0_ * v_;                                                                         \
        v_ = q_[c];                                                                             \
        a0 += w1_ * v_;                                                                         \
        a1 += w0_ * v_;                                                                         \
        v_ = q_[c2];                                                                            \
        a0 += w2_ * v_;                                                                         \
        a1 += w1_ * v_;                                                                         \
        a2 += w0_ * v_;                                                                         \
        q_ += c3;                                                                               \
        v_ = q_[0];                                                                             \
        a1 += w2_ * v_;                                                                         \
        a2 += w1_ * v_;                                                                         \
        a3 += w0_ * v_;                                                                         \
        v_ = q_[c];                                                                             \
        a2 += w2_ * v_;                                                                         \
        a3 += w1_ * v_;                                                                         \
        a3 += w2_ * q_[c2];                                                                     \
    } while (0)

/* The same for four stride-2 windows (s = 2c): nine loads for the twelve products */
#define DW3_ROW4_S2(p, w)                                                                       \
    do {                                                                                        \
        const int32_t w0_ = (w)[0], w1_ = (w)[1], w2_ = (w)[2];                                 \
        const int8_t *q_ = (p);                                                                 \
        int32_t v_ = q_[0];                                                                     \
        a0 += w0_ * v_;                                                                         \
        a0 += w1_ * q_[c];                                                                      \
        v_ = q_[c2];                                                                            \
        a0 += w2_ * v_;                                                                         \
        a1 += w0_ * v_;                                                                         \
        a1 += w1_ * q_[c3];                                                                     \
        q_ += 2 * c2;                                                                           \
        v_ = q_[0];                                                                             \
        a1 += w2_ * v_;                                                                         \
        a2 += w0_ * v_;                                                                         \
        a2 += w1_ * q_[c];                                                                      \
        v_ = q_[c2];                                                                            \
        a2 += w2_ * v_;                                                                         \
        a3 += w0_ * v_;                                                                         \
        a3 += w1_ * q_[c3];                                                                     \
        a3 += w2_ * q_[2 * c2];                                                                 \
    } while (0)

/* One channel of a 3x3 depthwise row, `blocks` blocks of four stride-1 windows: p0, p1, p2 are
 * the kernel rows' first taps (p1/p2 NULL: rows 1/2 outside the input; row 0 is always present
 * here), w the channel's nine weights, outputs c apart from y. */
static RN_NOINLINE void rn_dw3_run_s1(const int8_t *p0, const int8_t *p1, const int8_t *p2, const int8_t *w, int c,
                                   int blocks, dw_rq_t q, int8_t *y)
{
    const int c2 = 2 * c, c3 = 3 * c;
    for (; blocks > 0; --blocks, p0 += 4 * c, y += 4 * c) {
        int32_t a0 = q.bias, a1 = a0, a2 = a0, a3 = a0;
        DW3_ROW4_S1(p0, w);
        if (p1) {
            DW3_ROW4_S1(p1, w + 3);
            p1 += 4 * c;
        }
        if (p2) {
            DW3_ROW4_S1(p2, w + 6);
            p2 += 4 * c;
        }
        y[0] = dw_out(a0, q);
        y[c] = dw_out(a1, q);
        y[c2] = dw_out(a2, q);
        y[c3] = dw_out(a3, q);
    }
}

/* The same with stride 2 (windows 2c apart). A deliberate copy of rn_dw3_run_s1: the stride is a
 * compile-time constant in each, so the four windows' loads stay immediate offsets instead of
 * register-computed ones in the hottest loop of the runtime. */
static RN_NOINLINE void rn_dw3_run_s2(const int8_t *p0, const int8_t *p1, const int8_t *p2, const int8_t *w, int c,
                                   int blocks, dw_rq_t q, int8_t *y)
{
    const int c2 = 2 * c, c3 = 3 * c;
    for (; blocks > 0; --blocks, p0 += 8 * c, y += 4 * c) {
        int32_t a0 = q.bias, a1 = a0, a2 = a0, a3 = a0;
        DW3_ROW4_S2(p0, w);
        if (p1) {
            DW3_ROW4_S2(p1, w + 3);
            p1 += 8 * c;
        }
        if (p2) {
            DW3_ROW4_S2(p2, w + 6);
            p2 += 8 * c;
        }
        y[0] = dw_out(a0, q);
        y[c] = dw_out(a1, q);
        y[c2] = dw_out(a2, q);
        y[c3] = dw_out(a3, q);
    }
}

/* Columns [ox0, ox1) of a 3x3 depthwise output row, those whose window is inside the input row,
 * channel by channel: win[r] is window row r's input row (NULL for a row outside the input). With
 * stride 1 or 2, blocks of four windows share their input loads and each kernel row's weights
 * (rn_dw3_run_s1, rn_dw3_run_s2); the rest goes window by window. */
static void dw3_interior(const int8_t *const win[3], int c, int ox0, int ox1, int stride, int pad,
                    const int8_t *weight, const int32_t *bias, const int32_t *mult, const int8_t *shift,
                    int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out)
{
    /* the kernel rows inside the input, in order (their input rows and weights) */
    const int8_t *rp[3];
    const int8_t *wp[3];
    int nr = 0, r, ch, ox;
    const int blocks = stride <= 2 && ox1 > ox0 ? (ox1 - ox0) / 4 : 0;
    const int col0 = ox0 * stride - pad;   /* the first interior window's left column */
    dw_rq_t q;
    q.out_zp = out_zp;
    q.act_min = act_min;
    q.act_max = act_max;
    q.full = act_min == -128 && act_max == 127;
    for (r = 0; r < 3; ++r) {
        if (win[r]) {
            rp[nr] = win[r];
            wp[nr++] = weight + 3 * r;
        }
    }
    for (ch = 0; ch < c; ++ch) {
        const int wo = 9 * ch;
        int32_t wsum = 0;
        int8_t *y;
        for (r = 0; r < nr; ++r) {
            wsum += wp[r][wo] + wp[r][wo + 1] + wp[r][wo + 2];
        }
        q.bias = bias[ch] - in_zp * wsum;
        q.mult = mult[ch];
        q.shift = shift[ch];
        y = out + ox0 * c + ch;
        if (blocks > 0) {
            const int off = col0 * c + ch;
            (stride == 1 ? rn_dw3_run_s1 : rn_dw3_run_s2)(rp[0] + off, nr > 1 ? rp[1] + off : 0, nr > 2 ? rp[2] + off : 0,
                                                    wp[0] + wo, c, blocks, q, y);
        }
        for (ox = ox0 + 4 * blocks, y += 4 * blocks * c; ox < ox1; ++ox, y += c) {
            const int off = (ox * stride - pad) * c + ch;
            int32_t a = q.bias;
            for (r = 0; r < nr; ++r) {
                const int8_t *const p = rp[r] + off;
                const int8_t *const w = wp[r] + wo;
                a += w[0] * p[0] + w[1] * p[c] + w[2] * p[2 * c];
            }
            *y = dw_out(a, q);
        }
    }
}

/* 3x3, pad 1, in_w >= 2: rows of at most this many output columns take dw3_small_row */
#define DW3_SMALL_W 8

/* Every column of a 3x3 (pad 1, in_w >= 2) depthwise output row, one channel at a time (see the
 * top of the file): win[r] is kernel row r's input row, NULL outside the input. */
static inline void dw3_small_row(const int8_t *const win[3], int in_w, int c, int out_w, int stride,
                                 const int8_t *weight, const int32_t *bias, const int32_t *mult, const int8_t *shift,
                                 int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out)
{
    const int8_t *const any = win[1] ? win[1] : (win[0] ? win[0] : win[2]);
    const int8_t *const r0 = win[0] ? win[0] : any;   /* a missing row reads a present one, times 0 */
    const int8_t *const r1 = win[1] ? win[1] : any;
    const int8_t *const r2 = win[2] ? win[2] : any;
    const int m0 = win[0] != 0, m1 = win[1] != 0, m2 = win[2] != 0;
    const int last = (out_w - 1) * stride - 1;   /* the last window's left column */
    const int right_edge = out_w > 1 && last + 2 >= in_w;   /* its right column is in the padding */
    const int c2 = 2 * c;
    dw_rq_t q;
    int ch, ox;
    q.out_zp = out_zp;
    q.act_min = act_min;
    q.act_max = act_max;
    q.full = act_min == -128 && act_max == 127;
    for (ch = 0; ch < c; ++ch) {
        const int8_t *const w = weight + 9 * ch;
        const int32_t a0 = m0 ? w[0] : 0, a1 = m0 ? w[1] : 0, a2 = m0 ? w[2] : 0;
        const int32_t b0 = m1 ? w[3] : 0, b1 = m1 ? w[4] : 0, b2 = m1 ? w[5] : 0;
        const int32_t d0 = m2 ? w[6] : 0, d1 = m2 ? w[7] : 0, d2 = m2 ? w[8] : 0;
        const int32_t s0 = a0 + b0 + d0, s1 = a1 + b1 + d1, s2 = a2 + b2 + d2;   /* per kernel column */
        const int32_t base = bias[ch];
        const int8_t *const p0 = r0 + ch, *const p1 = r1 + ch, *const p2 = r2 + ch;
        int8_t *y = out + ch;
        q.mult = mult[ch];
        q.shift = shift[ch];
        /* column 0: window columns -1 (padding), 0, 1 */
        *y = dw_out(base - in_zp * (s1 + s2) + a1 * p0[0] + a2 * p0[c] + b1 * p1[0] + b2 * p1[c] + d1 * p2[0]
                    + d2 * p2[c], q);
        y += c;
        for (ox = 1; ox < out_w - right_edge; ++ox, y += c) {
            const int o = (ox * stride - 1) * c;
            *y = dw_out(base - in_zp * (s0 + s1 + s2) + a0 * p0[o] + a1 * p0[o + c] + a2 * p0[o + c2]
                        + b0 * p1[o] + b1 * p1[o + c] + b2 * p1[o + c2] + d0 * p2[o] + d1 * p2[o + c]
                        + d2 * p2[o + c2], q);
        }
        if (right_edge) {   /* window columns last, last + 1 (= in_w - 1), padding */
            const int o = last * c;
            *y = dw_out(base - in_zp * (s0 + s1) + a0 * p0[o] + a1 * p0[o + c] + b0 * p1[o] + b1 * p1[o + c]
                        + d0 * p2[o] + d1 * p2[o + c], q);
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
    /* output columns whose window is inside the row: [ox_lo, ox_hi) */
    const int ox_lo = (pad + stride - 1) / stride;
    const int last = in_w + pad - kernel;   /* the last window start (padded coordinates) inside the row */
    int ox_hi = last >= 0 ? last / stride + 1 : 0;
    int ox, ch;

    if (ox_hi > out_w) {
        ox_hi = out_w;
    }
    if (kernel == 3 && pad == 1 && in_w >= 2 && out_w <= DW3_SMALL_W && nky > 0) {
        const int8_t *win[3];
        int r;
        for (r = 0; r < 3; ++r) {
            const int iy = iy0 + r;
            win[r] = iy < 0 || iy >= in_h ? 0 : rows + (iy % ring) * row_stride;
        }
        dw3_small_row(win, in_w, c, out_w, stride, weight, bias, mult, shift, in_zp, out_zp, act_min, act_max, out);
        return;
    }
    if (kernel == 3 && ox_hi > ox_lo) {
        const int8_t *win[3];
        int r;
        for (r = 0; r < 3; ++r) {
            const int iy = iy0 + r;
            win[r] = iy < 0 || iy >= in_h ? 0 : rows + (iy % ring) * row_stride;
        }
        dw3_interior(win, c, ox_lo, ox_hi, stride, pad, weight, bias, mult, shift, in_zp, out_zp, act_min, act_max,
                     out);
    } else {
        ox_hi = ox_lo;   /* no interior fast path: every column below */
    }
    for (ox = 0; ox < out_w; ++ox) {
        const int ix0 = ox * stride - pad;
        const int kx0 = ix0 < 0 ? -ix0 : 0;
        const int kx1 = ix0 + kernel > in_w ? in_w - ix0 : kernel;
        const int nkx = kx1 > kx0 ? kx1 - kx0 : 0;
        const int col = nkx > 0 ? (ix0 + kx0) * c : 0;
        const int8_t *w_ch = weight + ky0 * kernel + kx0;
        int8_t *y = out + ox * c;
        if (ox == ox_lo && ox_hi > ox_lo) {   /* done by dw3_interior */
            ox = ox_hi - 1;
            continue;
        }
        for (ch = 0; ch < c; ++ch, w_ch += kk) {
            int32_t acc = 0;
            int32_t wsum = 0;
            dw_taps(top + col + ch, w_ch, run_a, nkx, c, row_stride, kernel, &acc, &wsum);
            if (run_b > 0) {
                dw_taps(rows + col + ch, w_ch + run_a * kernel, run_b, nkx, c, row_stride, kernel, &acc, &wsum);
            }
            acc += bias[ch] - in_zp * wsum;
            *y++ = rn_clamp32(out_zp + rn_requant32(acc, mult[ch], shift[ch]), act_min, act_max);
        }
    }
}

/* A loop of row calls, as rn_conv2d in conv.c (one whole-map entry point per kernel file). */
void rn_depthwise_conv2d(const int8_t *in, int in_h, int in_w, int c,
                         const int8_t *weight, const int32_t *bias, const int32_t *mult, const int8_t *shift,
                         int kernel, int stride, int pad,
                         int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out)
{
    const int out_h = (in_h + 2 * pad - kernel) / stride + 1;
    const int out_w = (in_w + 2 * pad - kernel) / stride + 1;
    int oy;
    for (oy = 0; oy < out_h; ++oy) {
        rn_depthwise_row(in, in_h, in_h, in_w, c, oy * stride - pad, weight, bias, mult, shift, kernel, stride, pad,
                         in_zp, out_zp, act_min, act_max, out + oy * out_w * c);
    }
}
