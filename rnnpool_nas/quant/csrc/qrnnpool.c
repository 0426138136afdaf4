/* qrnnpool.c - the int8 reference's RNNPool (quant/reference.py: QRNNPool.run) for a batch of
 * images on the host, fast: a scoring helper built with the host's compiler (quant/native.py),
 * never shipped to a device (the Cortex-M4 runs export/runtime/rnnpool.c).
 *
 * Fixed-point rules: exactly the reference's, in int64 as numpy computes them (reference.py's
 * module docstring): every value, rounding and clamp below is the reference's expression.
 *   RNN1 projection of padded pixel (y, x): wx = requant(W (x - in_zp), mW, sW), a padding pixel
 *     holds in_zp; requant(a, m, s) = (a m + 2^(s-1)) >> s (int64, arithmetic shift).
 *   step: pre = wx + requant(U h, mU, sU); z = gate(pre + bias_gate), c = update(pre + bias_update);
 *     g = ((sz (ONE - z) + ONE/2) >> 24) + sn; h = (g c + z h + ONE/2) >> 24 (ONE = 2^24).
 *   gate/update: quantSigmoid clamp((v + ONE + 1) >> 1, 0, ONE); quantTanh clamp(v, -ONE, ONE);
 *     sigmoid/tanh u = clamp(v, -8 ONE, 8 ONE - 1) + 8 ONE, i = u >> 18,
 *     y = T[i] + ((dT[i] (u & (2^18 - 1)) + 2^17) >> 18), T and dT the reference's own tables.
 *   RNN2 projection: requant(W2 s, mW2, sW2) of an RNN1 summary s.
 *   output k: clamp(out_zp + out_bias[k] + requant(h, out_mult[k], out_shift[k]), -128, 127),
 *     replicate rows/columns copied from the last computed one.
 * The reference's overflow checks (an accumulator that must fit int32, a Q24 product sum below
 * 2^47) are made on the same values; a failed one makes qrnnpool_run return 1 and the caller runs
 * the reference (which raises its OverflowError).
 *
 * How it is fast (same values): the sequences of a sweep run in lockstep, QRN_LANES at a time,
 * state and pre-activations stored [unit][lane], and the loops over lanes are written with
 * GCC/Clang vector types of the host's width (qrn_v: QRN_VW int64 lanes), so they are vector code
 * whatever the compiler's inlining (the nonlinearities are a plain loop it vectorizes with
 * gathers); a row of a patch is the same sequence (same pixels from the same start) as a row of
 * the patch stride_h below when the patches overlap, so RNN1 sweeps each distinct padded row (and
 * column) segment once and every patch reads its summaries; U h is summed in double, two units at
 * a time (every product and partial sum is an integer below 2^53: exact); RNN1's projection sums
 * in int32 vectors (exact: the caller checks 255 sum|W| < 2^31); a table bin's value and slope are
 * one 64-bit entry (one gather); an image with fewer patches than lanes (a final pool has one)
 * shares the lanes with the next images (qrnnpool_group). Without AVX-512 the int64 lanes are emulated (bench_int8.py
 * --cflags=-mno-avx512f measures that build).
 * No allocation: the caller passes qrnnpool_work_words(...) int64 words of scratch.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define QRN_Q 24
#define QRN_ONE ((int64_t)1 << QRN_Q)
#define QRN_LUT_SHIFT 18
#ifndef QRN_LANES
#define QRN_LANES 16
#endif
/* lane vectors of the host's width (GCC/Clang vector extensions): QRN_NV of them hold QRN_LANES */
#if defined(__AVX512F__)
#define QRN_VW 8
#elif defined(__AVX__) || defined(__AVX2__)
#define QRN_VW 4
#else
#define QRN_VW 2
#endif
#define QRN_NV (QRN_LANES / QRN_VW)
typedef int64_t qrn_v __attribute__((vector_size(8 * QRN_VW)));
typedef uint64_t qrn_vu __attribute__((vector_size(8 * QRN_VW)));
typedef double qrn_vf __attribute__((vector_size(8 * QRN_VW)));
#ifndef QRN_UNITS
#define QRN_UNITS 4     /* units a sweep step sums U h for together */
#endif
#define QRN_PV (QRN_VW < 4 ? 4 : QRN_VW)   /* RNN1 units of a projection vector (divides QRN_PAD) */
#define QRN_PAD 8       /* RNN1's W (transposed), w_mult and w_shift are padded to a multiple of this */
#define QRN_PX 4        /* pixels projected together */
#define QRN_MAX_IN 256  /* input channels qrnnpool_run takes (native.py checks) */
typedef int32_t qrn_vi __attribute__((vector_size(4 * QRN_PV)));
typedef int64_t qrn_vq __attribute__((vector_size(8 * QRN_PV)));
#define QRN_SIGMOID 0
#define QRN_TANH 1
#define QRN_QUANT_SIGMOID 2
#define QRN_QUANT_TANH 3

typedef struct {
    const int8_t *w;              /* (hidden, input) */
    const double *ud;             /* U (hidden, hidden) as doubles: the sweep sums U h in double */
    const int64_t *w_mult, *w_shift;   /* padded to a multiple of QRN_PAD units (m 0, s 1) */
    const int64_t *u_mult, *u_shift, *bias_gate, *bias_update;
    int64_t sz, sn;
    int32_t input, hidden, gate, update;
} qrn_cell_t;

typedef struct {
    qrn_cell_t rnn1, rnn2;
    int32_t patch_h, patch_w, stride_h, stride_w, pad_top, pad_left;
    int32_t patches_h, patches_w, replicate_h, replicate_w;
    int64_t in_zp, out_zp;
    const int64_t *out_mult, *out_shift, *out_bias;
    const int32_t *w1t;          /* RNN1's W transposed: (input, hidden padded to a multiple of QRN_PAD) */
    const int64_t *sigmoid_table, *tanh_table;   /* 1024 entries: T[k] | dT[k] << 32 */
} qrn_pool_t;

static int64_t qrn_max(int64_t a, int64_t b) { return a > b ? a : b; }

/* rows of the padded map the patches cover, and columns */
static int64_t qrn_rows(const qrn_pool_t *p) { return (int64_t)(p->patches_h - 1) * p->stride_h + p->patch_h; }
static int64_t qrn_cols(const qrn_pool_t *p) { return (int64_t)(p->patches_w - 1) * p->stride_w + p->patch_w; }

/* Scratch (int64 words) for one image: the projection map, the row and column summaries, and a
 * sweep's buffers (its inputs for every step, the state, the pre-activations, the products). */
/* Images a call takes together: as many as fill the lanes with their patches (a final pool's
 * single patch would leave all lanes but one idle), at least one. */
int qrnnpool_group(const qrn_pool_t *p)
{
    const int patches = p->patches_h * p->patches_w;
    return patches >= QRN_LANES ? 1 : QRN_LANES / patches;
}

int64_t qrnnpool_work_words(const qrn_pool_t *p)
{
    const int64_t h1 = p->rnn1.hidden, h2 = p->rnn2.hidden, hmax = qrn_max(h1, h2);
    const int64_t steps = qrn_max(p->patch_h, p->patch_w);
    return qrnnpool_group(p) * (qrn_rows(p) * qrn_cols(p) * h1  /* the projection maps */
                                + qrn_rows(p) * p->patches_w * h1   /* row summaries */
                                + qrn_cols(p) * p->patches_h * h1)  /* column summaries */
           + steps * h1 * QRN_LANES                             /* RNN2's summaries */
           + steps * hmax * QRN_LANES                           /* a sweep's inputs */
           + 4 * hmax * QRN_LANES                               /* its state, pre-activations, gates, h */
           + 4 * h2 * QRN_LANES                                 /* RNN2's final states */
           + 4 * h2 * QRN_LANES;                                /* the outputs of a lane group */
}

/* the reference's checks, branch-free: nonzero lanes where v does not fit int32 / where
 * |v| >= 2^47; qrn_any: whether any lane of the OR-ed checks is nonzero */
static inline qrn_vu qrn_out32(qrn_v v)
{
    return ((qrn_vu)v + ((uint64_t)1 << 31)) >> 32;
}

static inline qrn_vu qrn_out47(qrn_v v)
{
    return ((qrn_vu)v + (((uint64_t)1 << 47) - 1)) >> 48;
}

static inline int qrn_any(qrn_vu bad)
{
    uint64_t lane[QRN_VW], any = 0;
    int i;
    memcpy(lane, &bad, sizeof lane);
    for (i = 0; i < QRN_VW; ++i) {
        any |= lane[i];
    }
    return any != 0;
}

/* the nonlinearity `code` of n values in place */
static void qrn_nonlinearity(const qrn_pool_t *p, int code, int64_t *restrict v, int n)
{
    int i;
    if (code == QRN_QUANT_SIGMOID) {
        for (i = 0; i < n; ++i) {
            const int64_t y = (v[i] + QRN_ONE + 1) >> 1;
            v[i] = y < 0 ? 0 : (y > QRN_ONE ? QRN_ONE : y);
        }
    } else if (code == QRN_QUANT_TANH) {
        for (i = 0; i < n; ++i) {
            v[i] = v[i] < -QRN_ONE ? -QRN_ONE : (v[i] > QRN_ONE ? QRN_ONE : v[i]);
        }
    } else {   /* entry k: T[k] in the low word, dT[k] = T[k+1] - T[k] in the high word (one gather) */
        const int64_t *const table = code == QRN_SIGMOID ? p->sigmoid_table : p->tanh_table;
        for (i = 0; i < n; ++i) {
            const int64_t c = v[i] < -8 * QRN_ONE ? -8 * QRN_ONE : (v[i] > 8 * QRN_ONE - 1 ? 8 * QRN_ONE - 1 : v[i]);
            const int64_t u = c + 8 * QRN_ONE;
            const int64_t e = table[u >> QRN_LUT_SHIFT];
            const int32_t f = (int32_t)(u & (((int64_t)1 << QRN_LUT_SHIFT) - 1));
            /* |dT| < 2^19, f < 2^18: a 32 x 32-bit product */
            v[i] = (int64_t)(int32_t)e + (((int64_t)(int32_t)(e >> 32) * f + ((int64_t)1 << (QRN_LUT_SHIFT - 1)))
                                          >> QRN_LUT_SHIFT);
        }
    }
}

/* Final states (h[unit][lane]) of `lanes` sequences of cell c over `steps` steps from h = 0;
 * wx[t][unit][lane] are the step inputs (lanes past `lanes` hold 0). work: 3 * hidden * QRN_LANES.
 * QRN_UNITS units at a time through U h and the pre-activations, every lane loop in host-width
 * vectors.
 * Returns 1 when one of the reference's checks fails. */
static int qrn_sweep(const qrn_pool_t *p, const qrn_cell_t *c, const int64_t *wx, int steps, int64_t *restrict h,
                     int64_t *restrict work)
{
    const int n = c->hidden;
    const int64_t one = QRN_ONE, half = QRN_ONE / 2, sz = c->sz, sn = c->sn;
    int64_t *restrict const pre = work;
    int64_t *restrict const z = pre + n * QRN_LANES;
    double *restrict const hd = (double *)(z + n * QRN_LANES);   /* h as doubles */
    qrn_vu bad = {0};
    int t, j, k, v, i;
    memset(h, 0, sizeof(int64_t) * (size_t)n * QRN_LANES);
    for (j = 0; j < n * QRN_LANES; ++j) {
        hd[j] = 0;
    }
    for (t = 0; t < steps; ++t) {
        const int64_t *restrict const x = wx + (ptrdiff_t)t * n * QRN_LANES;
        for (j = 0; j < n; j += QRN_UNITS) {
            /* v = wx + requant(U h), U h in double: every product (|u| < 2^7, |h| < 2^31) and
             * partial sum (< n 2^38) is an integer below 2^53, so the sum is exact in any order;
             * the gate's input v + bias_gate, the update's v + bias_update. QRN_UNITS units at a
             * time: independent multiply-adds (units past the last: the last again, not stored). */
            const double *u[QRN_UNITS];
            qrn_vf a[QRN_UNITS][QRN_NV];
            for (i = 0; i < QRN_UNITS; ++i) {
                u[i] = c->ud + (ptrdiff_t)(j + i < n ? j + i : n - 1) * n;
                for (v = 0; v < QRN_NV; ++v) {
                    a[i][v] = (qrn_vf){0};
                }
            }
            for (k = 0; k < n; ++k) {
                for (v = 0; v < QRN_NV; ++v) {
                    qrn_vf hv;
                    memcpy(&hv, hd + (ptrdiff_t)k * QRN_LANES + v * QRN_VW, sizeof hv);
                    for (i = 0; i < QRN_UNITS; ++i) {
                        a[i][v] += u[i][k] * hv;
                    }
                }
            }
            for (i = 0; i < QRN_UNITS && j + i < n; ++i) {
                const int jj = j + i;
                const int64_t m = c->u_mult[jj], sh = c->u_shift[jj], rnd = (int64_t)1 << (sh - 1);
                const int64_t bg = c->bias_gate[jj], bu = c->bias_update[jj];
                for (v = 0; v < QRN_NV; ++v) {
                    const ptrdiff_t at = (ptrdiff_t)jj * QRN_LANES + v * QRN_VW;
                    const qrn_v av = __builtin_convertvector(a[i][v], qrn_v);
                    qrn_v xv, pv, zv, uv;
                    memcpy(&xv, x + at, sizeof xv);
                    pv = xv + ((av * m + rnd) >> sh);
                    bad |= qrn_out47(av) | qrn_out32(pv);
                    zv = pv + bg;
                    uv = pv + bu;
                    memcpy(z + at, &zv, sizeof zv);
                    memcpy(pre + at, &uv, sizeof uv);
                }
            }
        }
        qrn_nonlinearity(p, c->gate, z, n * QRN_LANES);
        qrn_nonlinearity(p, c->update, pre, n * QRN_LANES);
        for (j = 0; j < n * QRN_LANES; j += QRN_VW) {   /* g = sz (1 - z) + sn, h = g c + z h (Q24, rounded) */
            qrn_v zv, cv, hv, g;
            qrn_vf hf;
            memcpy(&zv, z + j, sizeof zv);
            memcpy(&cv, pre + j, sizeof cv);
            memcpy(&hv, h + j, sizeof hv);
            g = ((sz * (one - zv) + half) >> QRN_Q) + sn;
            hv = (g * cv + zv * hv + half) >> QRN_Q;
            bad |= qrn_out32(hv);
            hf = __builtin_convertvector(hv, qrn_vf);
            memcpy(h + j, &hv, sizeof hv);
            memcpy(hd + j, &hf, sizeof hf);
        }
    }
    return qrn_any(bad);
}

/* out[t][j][lane] = src[off[lane] + t * step + j] (a sweep's inputs) */
static void qrn_gather(const int64_t *restrict src, const ptrdiff_t *restrict off, ptrdiff_t step, int steps, int n,
                       int64_t *restrict out)
{
    int t, j, s;
    for (t = 0; t < steps; ++t) {
        for (j = 0; j < n; ++j) {
            int64_t *restrict const o = out + ((ptrdiff_t)t * n + j) * QRN_LANES;
            const int64_t *restrict const from = src + t * step + j;
            for (s = 0; s < QRN_LANES; ++s) {
                o[s] = from[off[s]];
            }
        }
    }
}

/* RNN2's inputs: requant(W2 s) of the summaries x[t][k][lane] into out[t][j][lane]; the sums of
 * two units at a time (independent multiply-adds) */
static uint64_t qrn_project2(const qrn_cell_t *c, const int64_t *restrict x, int steps, int64_t *restrict out)
{
    const int n = c->hidden, n1 = c->input;
    qrn_vu bad = {0};
    int t, j, k, v, i;
    for (t = 0; t < steps; ++t) {
        const int64_t *restrict const xt = x + (ptrdiff_t)t * n1 * QRN_LANES;
        for (j = 0; j < n; j += 2) {
            const int j1 = j + 1 < n ? j + 1 : j;   /* an odd last unit: computed twice */
            const int8_t *const w0 = c->w + (ptrdiff_t)j * n1, *const w1 = c->w + (ptrdiff_t)j1 * n1;
            qrn_v a0[QRN_NV], a1[QRN_NV];
            for (v = 0; v < QRN_NV; ++v) {
                a0[v] = a1[v] = (qrn_v){0};
            }
            for (k = 0; k < n1; ++k) {
                const int64_t u0 = w0[k], u1 = w1[k];
                for (v = 0; v < QRN_NV; ++v) {
                    qrn_v xv;
                    memcpy(&xv, xt + (ptrdiff_t)k * QRN_LANES + v * QRN_VW, sizeof xv);
                    a0[v] += u0 * xv;
                    a1[v] += u1 * xv;
                }
            }
            for (i = 0; i < 2; ++i) {
                const int jj = i ? j1 : j;
                const int64_t m = c->w_mult[jj], sh = c->w_shift[jj], rnd = (int64_t)1 << (sh - 1);
                int64_t *restrict const o = out + ((ptrdiff_t)t * n + jj) * QRN_LANES;
                for (v = 0; v < QRN_NV; ++v) {
                    const qrn_v a = i ? a1[v] : a0[v], r = (a * m + rnd) >> sh;
                    bad |= qrn_out47(a);
                    memcpy(o + v * QRN_VW, &r, sizeof r);
                }
            }
        }
    }
    return (uint64_t)qrn_any(bad);
}

/* RNN1's projection of every pixel of the padded map (rows x cols, h1 words each), QRN_PV units
 * of QRN_PX pixels at a time in int32 vectors (GCC/Clang vector extensions): the caller has checked
 * 255 sum_k |W[j][k]| < 2^31 for every unit, so no sum of W (x - in_zp) leaves int32 (the
 * reference's check cannot fail). w1t: W transposed, (input, units padded to a multiple of QRN_PAD). */
static void qrn_project1(const qrn_pool_t *p, const int8_t *x, int in_h, int in_w, int in_c, int64_t *map)
{
    const qrn_cell_t *const c = &p->rnn1;
    const int n = c->hidden, n_up = (n + QRN_PAD - 1) / QRN_PAD * QRN_PAD;
    const int rows = (int)qrn_rows(p), cols = (int)qrn_cols(p);
    int y, x0, i, j, j0, k;
    for (y = 0; y < rows; ++y) {
        const int iy = y - p->pad_top;
        for (x0 = 0; x0 < cols; x0 += QRN_PX) {
            int32_t v[QRN_PX][QRN_MAX_IN];   /* x - in_zp of each pixel (padding: 0) */
            for (i = 0; i < QRN_PX; ++i) {
                const int ix = x0 + i - p->pad_left;
                const int inside = x0 + i < cols && iy >= 0 && iy < in_h && ix >= 0 && ix < in_w;
                const int8_t *const px = x + ((ptrdiff_t)iy * in_w + ix) * in_c;
                for (k = 0; k < in_c; ++k) {
                    v[i][k] = inside ? (int32_t)((int64_t)px[k] - p->in_zp) : 0;
                }
            }
            for (j0 = 0; j0 < n; j0 += QRN_PV) {
                qrn_vi a[QRN_PX] = {{0}};
                for (k = 0; k < in_c; ++k) {
                    qrn_vi wk;
                    memcpy(&wk, p->w1t + (ptrdiff_t)k * n_up + j0, sizeof wk);
                    for (i = 0; i < QRN_PX; ++i) {
                        a[i] += wk * v[i][k];
                    }
                }
                for (i = 0; i < QRN_PX && x0 + i < cols; ++i) {   /* requant in int64 (m, s padded too) */
                    int64_t *restrict const o = map + ((ptrdiff_t)y * cols + x0 + i) * n;
                    qrn_vq r, m, sh;
                    memcpy(&m, c->w_mult + j0, sizeof m);
                    memcpy(&sh, c->w_shift + j0, sizeof sh);
                    r = (__builtin_convertvector(a[i], qrn_vq) * m + (((qrn_vq){0} + 1) << (sh - 1))) >> sh;
                    if (j0 + QRN_PV <= n) {
                        memcpy(o + j0, &r, sizeof r);
                    } else {
                        int64_t rr[QRN_PV];
                        memcpy(rr, &r, sizeof rr);
                        for (j = 0; j < n - j0; ++j) {
                            o[j0 + j] = rr[j];
                        }
                    }
                }
            }
        }
    }
}

/* RNN1's final states of `count` segments of the projection maps into sums[q][h1]: segment q is
 * segment r = q % per_map of map q / per_map (map_words apart), which starts at cell
 * (r / per) * major + (r % per) * minor and takes `steps` steps of `step` cells. Lanes past the
 * last segment repeat the first (their results are not used). */
static uint64_t qrn_segments(const qrn_pool_t *p, const int64_t *map, int count, int per_map, ptrdiff_t map_words,
                             int per, ptrdiff_t major, ptrdiff_t minor, ptrdiff_t step, int steps, int64_t *sums,
                             int64_t *buf, int64_t *state, int64_t *sweep)
{
    const int h1 = p->rnn1.hidden;
    ptrdiff_t off[QRN_LANES];
    uint64_t bad = 0;
    int q, s, j, lanes;
    for (q = 0; q < count; q += QRN_LANES) {
        lanes = count - q < QRN_LANES ? count - q : QRN_LANES;
        for (s = 0; s < QRN_LANES; ++s) {
            const int qs = q + (s < lanes ? s : 0), r = qs % per_map;
            off[s] = (ptrdiff_t)(qs / per_map) * map_words + ((r / per) * major + (r % per) * minor) * h1;
        }
        qrn_gather(map, off, step * h1, steps, h1, buf);
        bad |= (uint64_t)qrn_sweep(p, &p->rnn1, buf, steps, state, sweep);
        for (s = 0; s < lanes; ++s) {
            for (j = 0; j < h1; ++j) {
                sums[(ptrdiff_t)(q + s) * h1 + j] = state[j * QRN_LANES + s];
            }
        }
    }
    return bad;
}

/* `group` images (at most qrnnpool_group(p)): x (in_h, in_w, in_c) int8 each -> out
 * (patches_h + replicate_h, patches_w + replicate_w, 4 * h2) int8 each, their patches side by side
 * in the lanes. Returns 0, or 1 when a check of the reference fails. */
static int qrn_images(const qrn_pool_t *p, const int8_t *x, int group, int in_h, int in_w, int in_c, int8_t *out,
                      int64_t *work)
{
    const int h1 = p->rnn1.hidden, h2 = p->rnn2.hidden, out_c = 4 * h2;
    const int rows = (int)qrn_rows(p), cols = (int)qrn_cols(p);
    const int ph = p->patch_h, pw = p->patch_w, sr = p->stride_h, sc = p->stride_w;
    const int py_n = p->patches_h, px_n = p->patches_w, out_w = px_n + p->replicate_w;
    const int steps_max = (int)qrn_max(ph, pw), hmax = (int)qrn_max(h1, h2);
    const int patches = py_n * px_n, groups_max = qrnnpool_group(p);
    const ptrdiff_t part = (ptrdiff_t)h2 * QRN_LANES, map_words = (ptrdiff_t)rows * cols * h1;
    const ptrdiff_t row_words = (ptrdiff_t)rows * px_n * h1, col_words = (ptrdiff_t)cols * py_n * h1;
    const ptrdiff_t in_size = (ptrdiff_t)in_h * in_w * in_c, out_size = (ptrdiff_t)(py_n + p->replicate_h) * out_w * out_c;
    int64_t *const map = work;                                          /* [image][y][x][h1] */
    int64_t *const row_sums = map + groups_max * map_words;             /* [image][y][px][h1] */
    int64_t *const col_sums = row_sums + groups_max * row_words;        /* [image][x][py][h1] */
    int64_t *const sums = col_sums + groups_max * col_words;            /* RNN2's summaries [t][k][lane] */
    int64_t *const buf = sums + (ptrdiff_t)steps_max * h1 * QRN_LANES; /* a sweep's inputs [t][j][lane] */
    int64_t *const state = buf + (ptrdiff_t)steps_max * hmax * QRN_LANES;
    int64_t *const sweep = state + (ptrdiff_t)hmax * QRN_LANES;       /* the sweep's own 3 * hmax lanes */
    int64_t *const finals = sweep + 3 * (ptrdiff_t)hmax * QRN_LANES;  /* [4][h2][lane] */
    int64_t *const outs = finals + 4 * (ptrdiff_t)h2 * QRN_LANES;     /* the outputs [4 h2][lane] */
    ptrdiff_t off[QRN_LANES];
    uint64_t bad = 0;
    int q, j, s, lanes, i, dir, k, v, g;
    for (g = 0; g < group; ++g) {
        qrn_project1(p, x + g * in_size, in_h, in_w, in_c, map + g * map_words);
    }

    /* RNN1 over each distinct row segment (row y from column px * sc: q = y * px_n + px), then
     * each distinct column segment (column x from row py * sr: q = x * py_n + py) */
    bad |= qrn_segments(p, map, group * rows * px_n, rows * px_n, map_words, px_n, cols, sc, 1, pw, row_sums, buf,
                        state, sweep);
    bad |= qrn_segments(p, map, group * cols * py_n, cols * py_n, map_words, py_n, 1, (ptrdiff_t)sr * cols, cols, ph,
                        col_sums, buf, state, sweep);
    /* RNN2 of the patches (q = image * patches + py * px_n + px): the rows' summaries forward and
     * backward, then the columns' */
    for (q = 0; q < group * patches; q += QRN_LANES) {
        lanes = group * patches - q < QRN_LANES ? group * patches - q : QRN_LANES;
        for (dir = 0; dir < 2; ++dir) {
            const int steps = dir == 0 ? ph : pw;
            int lo, hi;
            for (s = 0; s < QRN_LANES; ++s) {
                const int qs = q + (s < lanes ? s : 0), im = qs / patches, r = qs % patches, py = r / px_n, px = r % px_n;
                off[s] = dir == 0 ? im * row_words + ((ptrdiff_t)py * sr * px_n + px) * h1
                                  : im * col_words + ((ptrdiff_t)px * sc * py_n + py) * h1;
            }
            qrn_gather(dir == 0 ? row_sums : col_sums, off, dir == 0 ? (ptrdiff_t)px_n * h1 : (ptrdiff_t)py_n * h1,
                       steps, h1, sums);
            bad |= qrn_project2(&p->rnn2, sums, steps, buf);
            bad |= (uint64_t)qrn_sweep(p, &p->rnn2, buf, steps, finals + 2 * dir * part, sweep);
            for (lo = 0, hi = steps - 1; lo < hi; ++lo, --hi) {   /* the same inputs in reverse order */
                for (j = 0; j < h2 * QRN_LANES; ++j) {
                    const int64_t v = buf[(ptrdiff_t)lo * part + j];
                    buf[(ptrdiff_t)lo * part + j] = buf[(ptrdiff_t)hi * part + j];
                    buf[(ptrdiff_t)hi * part + j] = v;
                }
            }
            bad |= (uint64_t)qrn_sweep(p, &p->rnn2, buf, steps, finals + (2 * dir + 1) * part, sweep);
        }
        for (k = 0; k < out_c; ++k) {   /* output channel k = part * h2 + j of every lane, clamped */
            const int64_t *const hk = finals + (ptrdiff_t)(k / h2) * part + (ptrdiff_t)(k % h2) * QRN_LANES;
            const int64_t m = p->out_mult[k], sh = p->out_shift[k], b = p->out_zp + p->out_bias[k];
            for (v = 0; v < QRN_NV; ++v) {
                qrn_v hv, d;
                memcpy(&hv, hk + v * QRN_VW, sizeof hv);
                hv = b + ((hv * m + ((int64_t)1 << (sh - 1))) >> sh);
                d = hv - 127;
                hv = 127 + (d & (d >> 63));      /* min(v, 127) */
                d = hv + 128;
                hv = -128 + (d & ~(d >> 63));    /* max(v, -128) */
                memcpy(outs + (ptrdiff_t)k * QRN_LANES + v * QRN_VW, &hv, sizeof hv);
            }
        }
        for (s = 0; s < lanes; ++s) {   /* lane s's patch: its place in its image's output */
            const int im = (q + s) / patches, r = (q + s) % patches;
            int8_t *const o = out + im * out_size + ((ptrdiff_t)(r / px_n) * out_w + r % px_n) * out_c;
            for (k = 0; k < out_c; ++k) {
                o[k] = (int8_t)outs[(ptrdiff_t)k * QRN_LANES + s];
            }
        }
    }
    for (g = 0; g < group; ++g) {
        int8_t *const img = out + g * out_size;
        for (q = 0; q < py_n; ++q) {   /* columns past the last patch repeat it */
            for (i = 0; i < p->replicate_w; ++i) {
                int8_t *const o = img + ((ptrdiff_t)q * out_w + px_n + i) * out_c;
                memcpy(o, o - (ptrdiff_t)(i + 1) * out_c, (size_t)out_c);
            }
        }
        for (i = 0; i < p->replicate_h; ++i) {   /* then rows past the last patch row */
            const size_t row_bytes = (size_t)out_w * (size_t)out_c;
            int8_t *const r = img + (size_t)(py_n + i) * row_bytes;
            memcpy(r, r - row_bytes, row_bytes);
        }
    }
    return bad != 0;
}

/* n images of (in_h, in_w, in_c) int8 at x -> n outputs at out; work: qrnnpool_work_words(p).
 * Returns 0, or 1 when a check of the reference fails (the outputs are then incomplete). */
int qrnnpool_run(const qrn_pool_t *p, const int8_t *x, int n, int in_h, int in_w, int in_c, int8_t *out,
                 int64_t *work)
{
    const ptrdiff_t in_size = (ptrdiff_t)in_h * in_w * in_c;
    const ptrdiff_t out_size = (ptrdiff_t)(p->patches_h + p->replicate_h) * (p->patches_w + p->replicate_w)
                               * 4 * p->rnn2.hidden;
    const int group = qrnnpool_group(p);
    int i;
    for (i = 0; i < n; i += group) {
        if (qrn_images(p, x + i * in_size, n - i < group ? n - i : group, in_h, in_w, in_c, out + i * out_size, work)) {
            return 1;
        }
    }
    return 0;
}
