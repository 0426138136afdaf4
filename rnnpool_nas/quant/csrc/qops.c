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
 * A convolution runs one output row at a time in one of four forms, chosen by the caller
 * (native.py: NativeConv), which arranges the weights for it:
 *   'g' a matrix product of the row's taps and the weights, QOP_PX pixels by QOP_V output channels
 *       at a time, taps in int16 pairs (weights [g][block][tap / 2][QOP_V][2] int16, zero past a
 *       group's last channel and last tap);
 *   'd' depthwise, QOP_V channels at a time (weights [ky][kx][c], zero past the last channel);
 *   't' few output channels per group and many taps (detection heads): a dot product of each
 *       pixel's taps per output channel (weights [g][o][tap] int16, zero past the last tap);
 *   'r' few output channels per group and few taps (a first convolution): a row's pixels per
 *       output channel (weights [g][ky][kx][ci][co]).
 * The sums are the same integers in every form.
 * No allocation: the caller passes the scratch (qop_conv_work).
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX2__) || defined(__AVX512BW__)
#include <immintrin.h>
#endif

/* GCC/Clang vector extensions, one vector of the host's width: QOP_V int32 lanes (16 with
 * AVX-512, 8 with AVX, else 4: wider vectors than the registers would go through memory), QOP_Q
 * int64 lanes; the library is built with -march=native. The caller reads QOP_V (qop_lanes) to
 * arrange weights. */
#if defined(__AVX512F__) && !defined(QOP_GENERIC)
#define QOP_V 16
#elif (defined(__AVX__) || defined(__AVX2__)) && !defined(QOP_GENERIC)
#define QOP_V 8
#else
#define QOP_V 4   /* 128-bit vector units (SSE, NEON) and the plain-C test build */
#endif
#define QOP_Q (QOP_V / 2)
typedef int32_t qop_vi __attribute__((vector_size(4 * QOP_V)));
typedef int32_t qop_vh __attribute__((vector_size(4 * QOP_Q)));   /* QOP_Q int32 lanes */
typedef int64_t qop_vq __attribute__((vector_size(8 * QOP_Q)));   /* QOP_Q int64 lanes */
typedef int8_t qop_vbq __attribute__((vector_size(QOP_Q)));

/* the int32 lanes of a vector: how the caller arranges weights, biases and requantizers */
int qop_lanes(void)
{
    return QOP_V;
}

/* output pixels a 'g' block computes together */
#define QOP_PX 4

typedef struct {
    const int32_t *w;          /* arranged for the form (see qop_conv); 'g' and 't': int16 */
    const int32_t *bias;       /* 'g' and 'd': padded to whole vectors, as the weights' outputs */
    const int64_t *mult, *shift;   /* likewise */
    int32_t kernel, stride, groups, in_c, out_c, form;
    int32_t in_zp, out_zp, act_min, act_max;
} qop_conv_t;

static inline int64_t qop_requant(int64_t a, int64_t m, int64_t s)
{
    return (a * m + ((int64_t)1 << (s - 1))) >> s;
}

static inline int64_t qop_clamp(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

static inline qop_vi qop_load(const int32_t *src)
{
    qop_vi v;
    memcpy(&v, src, sizeof v);
    return v;
}

/* acc + the pairwise products of w (QOP_V pairs of int16: lane o gets w[2o] x0 + w[2o + 1] x1)
 * and the int16 pair (x0, x1) packed in `pair` (x0 in the low half, as it lies in memory). Every
 * product and pair sum is exact in int32. AVX-512 (VNNI or BW) or AVX2 when the host has them
 * (vpmaddwd: one instruction per pair), else plain C. QOP_GENERIC forces the plain C (tests). */
#if !defined(QOP_GENERIC) && QOP_V == 16 && defined(__AVX512VNNI__)
static inline qop_vi qop_madd(qop_vi acc, const int16_t *w, int32_t pair)
{
    return (qop_vi)_mm512_dpwssd_epi32((__m512i)acc, _mm512_loadu_si512(w), _mm512_set1_epi32(pair));
}
#elif !defined(QOP_GENERIC) && QOP_V == 16 && defined(__AVX512BW__)
static inline qop_vi qop_madd(qop_vi acc, const int16_t *w, int32_t pair)
{
    return acc + (qop_vi)_mm512_madd_epi16(_mm512_loadu_si512(w), _mm512_set1_epi32(pair));
}
#elif !defined(QOP_GENERIC) && QOP_V == 8 && defined(__AVX2__)
static inline qop_vi qop_madd(qop_vi acc, const int16_t *w, int32_t pair)
{
    return acc + (qop_vi)_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)w), _mm256_set1_epi32(pair));
}
#else
static inline qop_vi qop_madd(qop_vi acc, const int16_t *w, int32_t pair)
{
    int16_t x[2];
    int32_t a[QOP_V];
    int o;
    memcpy(x, &pair, sizeof x);
    memcpy(a, &acc, sizeof a);
    for (o = 0; o < QOP_V; ++o) {
        a[o] += (int32_t)w[2 * o] * x[0] + (int32_t)w[2 * o + 1] * x[1];
    }
    memcpy(&acc, a, sizeof a);
    return acc;
}
#endif

/* the first `count` lanes of acc requantized with the lanes' (m, s), offset, clamped, to dst:
 * in two halves of QOP_Q int64 lanes, clamped by arithmetic (v - hi) & ((v - hi) >> 63) (no vector
 * comparisons, which some compilers scalarize) */
static inline void qop_store_v(const qop_conv_t *p, qop_vi acc, const int64_t *restrict m, const int64_t *restrict s,
                               int8_t *restrict dst, int count)
{
    int8_t b[QOP_V];
    int half;
    for (half = 0; half < 2; ++half) {
        qop_vh a32;
        qop_vq a, mv, sv, v, d;
        qop_vbq out;
        memcpy(&a32, (const int32_t *)&acc + QOP_Q * half, sizeof a32);
        memcpy(&mv, m + QOP_Q * half, sizeof mv);
        memcpy(&sv, s + QOP_Q * half, sizeof sv);
        a = __builtin_convertvector(a32, qop_vq);
        v = ((a * mv + (((qop_vq){0} + 1) << (sv - 1))) >> sv) + p->out_zp;
        d = v - p->act_max;
        v = p->act_max + (d & (d >> 63));   /* min(v, act_max) */
        d = v - p->act_min;
        v = p->act_min + (d & ~(d >> 63));  /* max(v, act_min) */
        out = __builtin_convertvector(v, qop_vbq);
        memcpy(b + QOP_Q * half, &out, sizeof out);
    }
    if (count == QOP_V) {
        memcpy(dst, b, QOP_V);
    } else {
        int i;
        for (i = 0; i < count; ++i) {
            dst[i] = b[i];
        }
    }
}

/* col[t][ox]: tap t = (ky k + kx) cin_g + ci of group g for every output pixel of row oy,
 * x - in_zp (0 in the padding) */
static void qop_im2col(const qop_conv_t *p, const int8_t *img, int h, int w, int oy, int out_w, int g,
                       int32_t *restrict col)
{
    const int k = p->kernel, st = p->stride, pad = k / 2, cin = p->in_c, cin_g = cin / p->groups;
    int ky, kx, ci, ox;
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
}

/* col[ox][t] as int16 (|x - in_zp| <= 255), t < taps rounded up to even (the last one 0): the row's
 * taps of group g in pairs, as qop_madd takes them */
static void qop_pairs(const qop_conv_t *p, const int8_t *img, int h, int w, int oy, int out_w, int g,
                      int16_t *restrict col)
{
    const int k = p->kernel, st = p->stride, pad = k / 2, cin = p->in_c, cin_g = cin / p->groups;
    const int taps = k * k * cin_g, tp = (taps + 1) & ~1;
    int ky, kx, ci, ox;
    if (cin_g < 4) {   /* few channels: tap by tap across the row */
        for (ky = 0; ky < k; ++ky) {
            const int iy = oy * st - pad + ky;
            for (kx = 0; kx < k; ++kx) {
                for (ci = 0; ci < cin_g; ++ci) {
                    int16_t *restrict const c = col + (ky * k + kx) * cin_g + ci;
                    for (ox = 0; ox < out_w; ++ox) {
                        const int ix = ox * st - pad + kx;
                        c[(ptrdiff_t)ox * tp] = (int16_t)(iy >= 0 && iy < h && ix >= 0 && ix < w
                                                          ? img[((ptrdiff_t)iy * w + ix) * cin + g * cin_g + ci] - p->in_zp : 0);
                    }
                }
            }
        }
        for (ox = 0; tp > taps && ox < out_w; ++ox) {
            col[(ptrdiff_t)ox * tp + taps] = 0;
        }
        return;
    }
    for (ox = 0; ox < out_w; ++ox) {
        int16_t *restrict c = col + (ptrdiff_t)ox * tp;
        for (ky = 0; ky < k; ++ky) {
            const int iy = oy * st - pad + ky;
            for (kx = 0; kx < k; ++kx, c += cin_g) {
                const int ix = ox * st - pad + kx;
                const int8_t *restrict const px = img + ((ptrdiff_t)iy * w + ix) * cin + g * cin_g;
                const int inside = iy >= 0 && iy < h && ix >= 0 && ix < w;
                for (ci = 0; ci < cin_g; ++ci) {
                    c[ci] = (int16_t)(inside ? px[ci] - p->in_zp : 0);
                }
            }
        }
        if (tp > taps) {
            *c = 0;
        }
    }
}

/* 'r': few output channels per group: one output row at a time with the row's pixels as the
 * vector, acc[ox] one output channel (weights [g][ky][kx][ci][co]) */
static void qop_conv_rows(const qop_conv_t *p, const int8_t *img, int h, int w, int oy, int out_w, int8_t *dst,
                          int32_t *restrict col, int32_t *restrict acc)
{
    const int k = p->kernel, cin = p->in_c, cout = p->out_c;
    const int cin_g = cin / p->groups, cout_g = cout / p->groups, taps = k * k * cin_g;
    int g, ox, o, t;
    for (g = 0; g < p->groups; ++g) {
        qop_im2col(p, img, h, w, oy, out_w, g, col);
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

/* 'g': a dense or grouped convolution as a matrix product of the row's taps (col[ox][t], int16
 * pairs) and the weights ([g][block][t / 2][QOP_V][2] int16: QOP_V output channels of a group, zero
 * past the last channel and the last tap), QOP_PX pixels by QOP_V channels at a time (their sums
 * stay in registers) */
static void qop_conv_gemm(const qop_conv_t *p, const int8_t *img, int h, int w, int oy, int out_w, int8_t *dst,
                          int16_t *restrict col)
{
    const int k = p->kernel, cout = p->out_c, cin_g = p->in_c / p->groups, cout_g = cout / p->groups;
    const int taps = k * k * cin_g, tp = (taps + 1) & ~1, blocks = (cout_g + QOP_V - 1) / QOP_V;
    const int16_t *const w16 = (const int16_t *)p->w;
    int g, b, ox, t, i;
    for (g = 0; g < p->groups; ++g) {
        qop_pairs(p, img, h, w, oy, out_w, g, col);
        for (b = 0; b < blocks; ++b) {
            const int q = g * blocks + b, o0 = g * cout_g + b * QOP_V;
            const int count = cout_g - b * QOP_V < QOP_V ? cout_g - b * QOP_V : QOP_V;
            const int16_t *const wb = w16 + (ptrdiff_t)q * tp * QOP_V;
            const qop_vi bias = qop_load(p->bias + (ptrdiff_t)q * QOP_V);
            const int64_t *const m = p->mult + (ptrdiff_t)q * QOP_V, *const s = p->shift + (ptrdiff_t)q * QOP_V;
            for (ox = 0; ox < out_w; ox += QOP_PX) {
                const int16_t *c[QOP_PX];
                qop_vi a[QOP_PX];
                for (i = 0; i < QOP_PX; ++i) {   /* past the row's end: its last pixel again (not stored) */
                    c[i] = col + (ptrdiff_t)(ox + i < out_w ? ox + i : out_w - 1) * tp;
                    a[i] = bias;
                }
                for (t = 0; t < tp; t += 2) {
                    const int16_t *const wt = wb + (ptrdiff_t)t * QOP_V;
                    for (i = 0; i < QOP_PX; ++i) {
                        int32_t pair;
                        memcpy(&pair, c[i] + t, sizeof pair);
                        a[i] = qop_madd(a[i], wt, pair);
                    }
                }
                for (i = 0; i < QOP_PX && ox + i < out_w; ++i) {
                    qop_store_v(p, a[i], m, s, dst + (ptrdiff_t)(ox + i) * cout + o0, count);
                }
            }
        }
    }
}

/* 't': few output channels per group and many taps (detection heads): per output pixel and
 * channel, one dot product of the pixel's taps (col[ox][t], int16 pairs as 'g' takes them) and
 * the channel's weights ([g][o][t] int16, zero past the last tap), a plain loop the compiler turns
 * into its vector dot product (vpmaddwd where the host has it) */
static void qop_conv_dots(const qop_conv_t *p, const int8_t *img, int h, int w, int oy, int out_w, int8_t *dst,
                          int16_t *restrict col)
{
    const int k = p->kernel, cout = p->out_c, cin_g = p->in_c / p->groups, cout_g = cout / p->groups;
    const int taps = k * k * cin_g, tp = (taps + 1) & ~1;
    const int16_t *const w16 = (const int16_t *)p->w;
    int g, ox, o, t;
    for (g = 0; g < p->groups; ++g) {
        qop_pairs(p, img, h, w, oy, out_w, g, col);
        for (ox = 0; ox < out_w; ++ox) {
            const int16_t *restrict const c = col + (ptrdiff_t)ox * tp;
            for (o = 0; o < cout_g; ++o) {
                const int oc = g * cout_g + o;
                const int16_t *restrict const wo = w16 + (ptrdiff_t)oc * tp;
                int32_t a = 0;
                int64_t v;
                for (t = 0; t < tp; ++t) {
                    a += (int32_t)c[t] * wo[t];
                }
                v = qop_requant((int64_t)a + p->bias[oc], p->mult[oc], p->shift[oc]) + p->out_zp;
                dst[(ptrdiff_t)ox * cout + oc] = (int8_t)qop_clamp(v, p->act_min, p->act_max);
            }
        }
    }
}

/* 'd': depthwise, QOP_V channels of one output pixel at a time over the window (weights
 * [ky][kx][c], c padded to whole vectors with zeros). rows: the window's k input rows as int32
 * x - in_zp, padded (columns and channels past the input: 0), so every load is a whole vector. */
static void qop_conv_depthwise(const qop_conv_t *p, const int8_t *img, int h, int w, int oy, int out_w, int8_t *dst,
                               int32_t *restrict rows)
{
    const int k = p->kernel, st = p->stride, pad = k / 2, c = p->in_c;
    const int c_up = (c + QOP_V - 1) / QOP_V * QOP_V, row_w = w + 2 * pad;
    const ptrdiff_t row_words = (ptrdiff_t)row_w * c_up;
    int ox, c0, ky, kx, x, ch;
    for (ky = 0; ky < k; ++ky) {
        const int iy = oy * st - pad + ky;
        int32_t *restrict const r = rows + ky * row_words;
        if (iy < 0 || iy >= h) {
            memset(r, 0, sizeof(int32_t) * (size_t)row_words);
            continue;
        }
        memset(r, 0, sizeof(int32_t) * (size_t)pad * c_up);
        memset(r + (ptrdiff_t)(pad + w) * c_up, 0, sizeof(int32_t) * (size_t)pad * c_up);
        if (c == c_up) {   /* whole vectors of channels: the row is one run */
            const int8_t *restrict const px = img + (ptrdiff_t)iy * w * c;
            int32_t *restrict const o = r + (ptrdiff_t)pad * c_up;
            for (x = 0; x < w * c; ++x) {
                o[x] = (int32_t)px[x] - p->in_zp;
            }
            continue;
        }
        for (x = 0; x < w; ++x) {
            const int8_t *restrict const px = img + ((ptrdiff_t)iy * w + x) * c;
            int32_t *restrict const o = r + (ptrdiff_t)(x + pad) * c_up;
            for (ch = 0; ch < c; ++ch) {
                o[ch] = (int32_t)px[ch] - p->in_zp;
            }
            for (; ch < c_up; ++ch) {
                o[ch] = 0;
            }
        }
    }
    for (ox = 0; ox < out_w; ++ox) {
        for (c0 = 0; c0 < c; c0 += QOP_V) {
            qop_vi a = qop_load(p->bias + c0);
            for (ky = 0; ky < k; ++ky) {
                const int32_t *const r = rows + ky * row_words + (ptrdiff_t)ox * st * c_up + c0;
                const int32_t *const wk = p->w + (ptrdiff_t)ky * k * c_up + c0;
                for (kx = 0; kx < k; ++kx) {
                    a += qop_load(wk + (ptrdiff_t)kx * c_up) * qop_load(r + (ptrdiff_t)kx * c_up);
                }
            }
            qop_store_v(p, a, p->mult + c0, p->shift + c0, dst + (ptrdiff_t)ox * c + c0, c - c0 < QOP_V ? c - c0 : QOP_V);
        }
    }
}

/* the int32 scratch words qop_conv needs for inputs in_w pixels wide (outputs out_w wide) */
int64_t qop_conv_work(const qop_conv_t *p, int in_w, int out_w)
{
    const int64_t taps = (int64_t)p->kernel * p->kernel * (p->in_c / p->groups);
    switch (p->form) {
    case 'r':
        return (int64_t)out_w * (1 + taps);   /* a row's accumulators and its taps */
    case 'g':
    case 't':
        return (int64_t)out_w * (taps + 1) / 2 + 1;   /* a row's taps, int16 */
    case 'd':                                 /* the window's rows, padded */
        return (int64_t)p->kernel * (in_w + p->kernel / 2 * 2) * ((p->in_c + QOP_V - 1) / QOP_V * QOP_V);
    default:
        return 1;
    }
}

/* n images (h, w, in_c) -> (out_h, out_w, out_c), one output row at a time in the form the caller
 * chose (and arranged the weights for): 'g' matrix product, 'd' depthwise, 't' dots, 'r' rows;
 * scratch: qop_conv_work(p, w, out_w) int32 words. */
void qop_conv(const qop_conv_t *p, const int8_t *x, int n, int h, int w, int8_t *out, int32_t *restrict work)
{
    const int k = p->kernel, st = p->stride, pad = k / 2, cin = p->in_c, cout = p->out_c;
    const int out_h = (h + 2 * pad - k) / st + 1, out_w = (w + 2 * pad - k) / st + 1;
    int i, oy;
    for (i = 0; i < n; ++i) {
        const int8_t *const img = x + (ptrdiff_t)i * h * w * cin;
        for (oy = 0; oy < out_h; ++oy) {
            int8_t *const dst = out + ((ptrdiff_t)i * out_h + oy) * out_w * cout;
            switch (p->form) {
            case 'g':
                qop_conv_gemm(p, img, h, w, oy, out_w, dst, (int16_t *)work);
                break;
            case 'd':
                qop_conv_depthwise(p, img, h, w, oy, out_w, dst, work);
                break;
            case 't':
                qop_conv_dots(p, img, h, w, oy, out_w, dst, (int16_t *)work);
                break;
            default:
                qop_conv_rows(p, img, h, w, oy, out_w, dst, work + out_w, work);
                break;
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
 * check; the caller reruns the reference), else 0. small != 0: the caller has checked
 * 255 max|mult| + 2^32 < 2^52, so top = |num| + den / 2 is exact in double and top / den
 * truncated is the integer quotient (top + den < 2^53); a correction step guards it (vector code,
 * no idiv). */
int qop_l2norm(const int8_t *x, int64_t pixels, int c, const int64_t *mult, int64_t in_zp, int64_t out_zp, int small,
               int8_t *out)
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
        if (small) {
            const double dd = (double)den;
            for (ch = 0; ch < c; ++ch) {
                const int64_t num = (px[ch] - in_zp) * mult[ch];
                const int64_t top = (num < 0 ? -num : num) + den / 2;
                int64_t mag = (int64_t)((double)top / dd);
                mag -= mag * den > top;
                mag += (mag + 1) * den <= top;
                out[i * c + ch] = (int8_t)qop_clamp((r > 0 ? (num < 0 ? -mag : mag) : 0) + out_zp, -128, 127);
            }
            continue;
        }
        for (ch = 0; ch < c; ++ch) {
            const int64_t num = (px[ch] - in_zp) * mult[ch];
            const int64_t mag = ((num < 0 ? -num : num) + den / 2) / den;
            const int64_t q = r > 0 ? (num < 0 ? -mag : mag) : 0;
            out[i * c + ch] = (int8_t)qop_clamp(q + out_zp, -128, 127);
        }
    }
    return 0;
}
