/* qops.c - the int8 reference's convolutions, pooling, residual add and L2Norm
 * (quant/reference.py: QConv, QPool, QAdd, QL2Norm) for a batch of NHWC images on the host: a
 * scoring helper built with the host's compiler (quant/native.py), never shipped to a device.
 *
 * Fixed-point rules: exactly the reference's (its module docstring), in the same integers:
 *   conv:  acc = bias[o] + sum w (x - in_zp) over the k x k window (zero padding k / 2 of x - in_zp,
 *          stride s, groups g), out = clamp(out_zp + requant(acc, m[o], s[o]), act_min, act_max);
 *          requant(a, m, s) = (a m + 2^(s-1)) >> s in int64 (arithmetic shift).
 *          The accumulator is int32: the caller checks that 255 sum|w[o]| + |bias[o]| < 2^31 for
 *          every channel (then no partial sum overflows and the reference's check cannot fail),
 *          and runs the reference otherwise.
 *   avg pool: out = clamp(out_zp + requant(sum (x - in_zp), m, s), -128, 127); max pool: the max.
 *   add:   out = clamp(out_zp + requant(a - a_zp, ma, sa) + requant(b - b_zp, mb, sb), -128, 127).
 *   L2Norm: per pixel d = x - in_zp, ss = sum d^2, r = isqrt(ss << 32) (floor),
 *          q = div_round(d m[c], r) (half away from zero), or 0 when r = 0; out = clamp(out_zp + q).
 * A convolution runs in the form whose innermost loop is longest (a vector loop; qop_form):
 * output channels per pixel (weights arranged [g][ky][kx][ci][co] int32, depthwise [ky][kx][c]),
 * a row's pixels per output channel (few channels or taps), or a dot product over each window
 * row's consecutive input bytes (few channels, many inputs: detection heads, the linear layer;
 * weights as the reference holds them). The sums are the same integers in every form.
 * No allocation: the caller passes the scratch (qop_conv_work).
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const int32_t *w;          /* arranged as above */
    const int8_t *w8;          /* as the reference holds them: (out_c, k, k, in_c / groups) */
    const int32_t *bias;
    const int64_t *mult, *shift;
    int32_t kernel, stride, groups, in_c, out_c, depthwise;
    int32_t in_zp, out_zp, act_min, act_max;
} qop_conv_t;

/* see qop_form */
#ifndef QOP_FEW
#define QOP_FEW 16
#endif

static inline int64_t qop_requant(int64_t a, int64_t m, int64_t s)
{
    return (a * m + ((int64_t)1 << (s - 1))) >> s;
}

static inline int64_t qop_clamp(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* acc (out_c words) -> out: requantized, offset, clamped */
static void qop_store(const qop_conv_t *p, const int32_t *restrict acc, int8_t *restrict out)
{
    int o;
    for (o = 0; o < p->out_c; ++o) {
        const int64_t v = qop_requant(acc[o], p->mult[o], p->shift[o]) + p->out_zp;
        out[o] = (int8_t)qop_clamp(v, p->act_min, p->act_max);
    }
}

/* A dense or grouped convolution with few output channels per group, one output row at a time
 * with the row's pixels as the vector: col[t][ox] holds tap t = (ky k + kx) cin_g + ci of group g
 * for every output pixel of the row (0 in the padding), acc[ox] one output channel. */
static void qop_conv_rows(const qop_conv_t *p, const int8_t *img, int h, int w, int oy, int out_w, int8_t *dst,
                          int32_t *restrict col, int32_t *restrict acc)
{
    const int k = p->kernel, st = p->stride, pad = k / 2, cin = p->in_c, cout = p->out_c;
    const int cin_g = cin / p->groups, cout_g = cout / p->groups, taps = k * k * cin_g;
    int g, ky, kx, ci, ox, o, t;
    for (g = 0; g < p->groups; ++g) {
        for (ky = 0; ky < k; ++ky) {
            const int iy = oy * st - pad + ky;
            for (kx = 0; kx < k; ++kx) {
                for (ci = 0; ci < cin_g; ++ci) {
                    int32_t *restrict const c = col + (ptrdiff_t)((ky * k + kx) * cin_g + ci) * out_w;
                    for (ox = 0; ox < out_w; ++ox) {
                        const int ix = ox * st - pad + kx;
                        c[ox] = iy >= 0 && iy < h && ix >= 0 && ix < w
                                ? (int32_t)img[((ptrdiff_t)iy * w + ix) * cin + g * cin_g + ci] - p->in_zp : 0;
                    }
                }
            }
        }
        for (o = 0; o < cout_g; ++o) {
            const int oc = g * cout_g + o;
            const int32_t *const wg = p->w + (ptrdiff_t)g * taps * cout_g + o;
            const int64_t m = p->mult[oc], s = p->shift[oc];
            for (ox = 0; ox < out_w; ++ox) {
                acc[ox] = p->bias[oc];
            }
            for (t = 0; t < taps; ++t) {
                const int32_t wt = wg[(ptrdiff_t)t * cout_g];
                const int32_t *restrict const c = col + (ptrdiff_t)t * out_w;
                for (ox = 0; ox < out_w; ++ox) {
                    acc[ox] += wt * c[ox];
                }
            }
            for (ox = 0; ox < out_w; ++ox) {
                const int64_t v = qop_requant(acc[ox], m, s) + p->out_zp;
                dst[(ptrdiff_t)ox * cout + oc] = (int8_t)qop_clamp(v, p->act_min, p->act_max);
            }
        }
    }
}

/* A dense convolution with few output channels and many inputs per window row (a detection
 * head): per output pixel and channel, one dot product per window row over its k * in_c
 * consecutive input bytes (and the channel's consecutive weights). */
static void qop_conv_dots(const qop_conv_t *p, const int8_t *img, int h, int w, int oy, int out_w, int8_t *dst,
                          int32_t *restrict acc)
{
    const int k = p->kernel, st = p->stride, pad = k / 2, cin = p->in_c, cout = p->out_c;
    int ox, o, ky, i;
    for (ox = 0; ox < out_w; ++ox) {
        const int ix0 = ox * st - pad;
        const int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = ix0 + k > w ? w - ix0 : k;   /* the window inside */
        const int len = (kx1 - kx0) * cin;
        for (o = 0; o < cout; ++o) {
            acc[o] = p->bias[o];
        }
        for (ky = 0; ky < k; ++ky) {
            const int iy = oy * st - pad + ky;
            const int8_t *restrict xs;
            if (iy < 0 || iy >= h) {
                continue;   /* zero padding of x - in_zp */
            }
            xs = img + ((ptrdiff_t)iy * w + ix0 + kx0) * cin;
            for (o = 0; o < cout; ++o) {
                const int8_t *restrict const ws = p->w8 + (((ptrdiff_t)o * k + ky) * k + kx0) * cin;
                int32_t a = 0;
                for (i = 0; i < len; ++i) {
                    a += (int32_t)ws[i] * ((int32_t)xs[i] - p->in_zp);
                }
                acc[o] += a;
            }
        }
        qop_store(p, acc, dst + (ptrdiff_t)ox * cout);
    }
}

/* how a convolution runs: 'd' depthwise, 'v' per pixel with the output channels as the vector,
 * 'r' row by row (qop_conv_rows: few output channels per group, or few taps per output: the
 * per-pixel form's overhead would dominate), 't' by window-row dot products (qop_conv_dots: few
 * output channels, many input bytes per window row) */
static int qop_form(const qop_conv_t *p)
{
    const int cout_g = p->out_c / p->groups, taps = p->kernel * p->kernel * (p->in_c / p->groups);
    if (p->depthwise) {
        return 'd';
    }
    if (p->groups == 1 && cout_g < QOP_FEW && p->kernel * p->in_c >= 2 * QOP_FEW) {
        return 't';
    }
    return cout_g < QOP_FEW || taps <= QOP_FEW ? 'r' : 'v';
}

/* the int32 scratch words qop_conv needs for outputs out_w pixels wide: a row's accumulators and
 * its taps, or one pixel's accumulators */
int64_t qop_conv_work(const qop_conv_t *p, int out_w)
{
    return qop_form(p) == 'r' ? (int64_t)out_w * (1 + p->kernel * p->kernel * (p->in_c / p->groups)) : p->out_c;
}

/* n images (h, w, in_c) -> (out_h, out_w, out_c); acc: qop_conv_work(p, out_w) int32 words. */
void qop_conv(const qop_conv_t *p, const int8_t *x, int n, int h, int w, int8_t *out, int32_t *restrict acc)
{
    const int k = p->kernel, st = p->stride, pad = k / 2, cin = p->in_c, cout = p->out_c;
    const int out_h = (h + 2 * pad - k) / st + 1, out_w = (w + 2 * pad - k) / st + 1;
    const int cin_g = cin / p->groups, cout_g = cout / p->groups;
    const int form = qop_form(p);
    int i, oy, ox, ky, kx, g, ci, o;
    for (i = 0; i < n; ++i) {
        const int8_t *const img = x + (ptrdiff_t)i * h * w * cin;
        if (form == 'r' || form == 't') {
            for (oy = 0; oy < out_h; ++oy) {
                int8_t *const dst = out + ((ptrdiff_t)i * out_h + oy) * out_w * cout;
                if (form == 'r') {
                    qop_conv_rows(p, img, h, w, oy, out_w, dst, acc + out_w, acc);
                } else {
                    qop_conv_dots(p, img, h, w, oy, out_w, dst, acc);
                }
            }
            continue;
        }
        for (oy = 0; oy < out_h; ++oy) {
            for (ox = 0; ox < out_w; ++ox) {
                int8_t *const dst = out + (((ptrdiff_t)i * out_h + oy) * out_w + ox) * cout;
                for (o = 0; o < cout; ++o) {
                    acc[o] = p->bias[o];
                }
                for (ky = 0; ky < k; ++ky) {
                    const int iy = oy * st - pad + ky;
                    if (iy < 0 || iy >= h) {
                        continue;   /* zero padding of x - in_zp */
                    }
                    for (kx = 0; kx < k; ++kx) {
                        const int ix = ox * st - pad + kx;
                        const int8_t *restrict px;
                        if (ix < 0 || ix >= w) {
                            continue;
                        }
                        px = img + ((ptrdiff_t)iy * w + ix) * cin;
                        if (p->depthwise) {   /* channel c of the input makes channel c */
                            const int32_t *restrict const wk = p->w + (ptrdiff_t)(ky * k + kx) * cin;
                            for (o = 0; o < cout; ++o) {
                                acc[o] += wk[o] * ((int32_t)px[o] - p->in_zp);
                            }
                            continue;
                        }
                        for (g = 0; g < p->groups; ++g) {
                            const int32_t *restrict const wg = p->w + ((ptrdiff_t)(g * k + ky) * k + kx) * cin_g * cout_g;
                            int32_t *restrict const ag = acc + g * cout_g;
                            for (ci = 0; ci < cin_g; ++ci) {
                                const int32_t v = (int32_t)px[g * cin_g + ci] - p->in_zp;
                                const int32_t *restrict const wr = wg + (ptrdiff_t)ci * cout_g;
                                for (o = 0; o < cout_g; ++o) {
                                    ag[o] += wr[o] * v;
                                }
                            }
                        }
                    }
                }
                qop_store(p, acc, dst);
            }
        }
    }
}

/* n images (h, w, c) pooled over kh x kw windows at stride (sh, sw), no padding; avg != 0:
 * average (sum, one requantization), else max. */
void qop_pool(const int8_t *x, int n, int h, int w, int c, int kh, int kw, int sh, int sw, int avg, int64_t in_zp,
              int64_t mult, int64_t shift, int64_t out_zp, int8_t *out)
{
    const int out_h = (h - kh) / sh + 1, out_w = (w - kw) / sw + 1;
    int i, oy, ox, ky, kx, ch;
    for (i = 0; i < n; ++i) {
        for (oy = 0; oy < out_h; ++oy) {
            for (ox = 0; ox < out_w; ++ox) {
                int8_t *const dst = out + (((ptrdiff_t)i * out_h + oy) * out_w + ox) * c;
                for (ch = 0; ch < c; ++ch) {
                    int64_t total = 0, best = -128;
                    for (ky = 0; ky < kh; ++ky) {
                        const int8_t *const row = x + (((ptrdiff_t)i * h + oy * sh + ky) * w + ox * sw) * c + ch;
                        for (kx = 0; kx < kw; ++kx) {
                            const int64_t v = row[(ptrdiff_t)kx * c];
                            total += v - in_zp;
                            best = v > best ? v : best;
                        }
                    }
                    dst[ch] = (int8_t)(avg ? qop_clamp(qop_requant(total, mult, shift) + out_zp, -128, 127) : best);
                }
            }
        }
    }
}

/* count values: out = clamp(out_zp + requant(a - a_zp, ma, sa) + requant(b - b_zp, mb, sb)) */
void qop_add(const int8_t *a, const int8_t *b, int64_t count, int64_t a_zp, int64_t ma, int64_t sa, int64_t b_zp,
             int64_t mb, int64_t sb, int64_t out_zp, int8_t *out)
{
    int64_t i;
    for (i = 0; i < count; ++i) {
        const int64_t v = out_zp + qop_requant((int64_t)a[i] - a_zp, ma, sa) + qop_requant((int64_t)b[i] - b_zp, mb, sb);
        out[i] = (int8_t)qop_clamp(v, -128, 127);
    }
}

/* floor(sqrt(v)) for 0 <= v < 2^63, as the reference's isqrt64 computes it */
static int64_t qop_isqrt(int64_t v)
{
    int64_t r = (int64_t)sqrt((double)v);
    r = r * r > v ? r - 1 : r;
    return (r + 1) * (r + 1) <= v ? r + 1 : r;
}

/* pixels x c values: L2Norm. Returns 1 when a sum of squares does not fit int32 (the reference's
 * check; the caller reruns the reference), else 0. */
int qop_l2norm(const int8_t *x, int64_t pixels, int c, const int64_t *mult, int64_t in_zp, int64_t out_zp, int8_t *out)
{
    int64_t i;
    int ch;
    for (i = 0; i < pixels; ++i) {
        const int8_t *const px = x + i * c;
        int64_t ss = 0, r, den;
        for (ch = 0; ch < c; ++ch) {
            const int64_t d = px[ch] - in_zp;
            ss += d * d;
        }
        if (ss > INT32_MAX) {
            return 1;
        }
        r = qop_isqrt(ss << 32);
        den = r > 1 ? r : 1;
        for (ch = 0; ch < c; ++ch) {
            const int64_t num = (px[ch] - in_zp) * mult[ch];
            const int64_t mag = ((num < 0 ? -num : num) + den / 2) / den;
            const int64_t q = r > 0 ? (num < 0 ? -mag : mag) : 0;
            out[i * c + ch] = (int8_t)qop_clamp(q + out_zp, -128, 127);
        }
    }
    return 0;
}
