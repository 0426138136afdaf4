/* stream.c - the row-streaming driver of rn_stream.h and the two row functions it needs beyond the
 * kernels' own (rn_conv2d_row, rn_rnnpool_row).
 *
 * Fixed-point rules: none of its own. Every output row is computed by the same integer operations
 * as the whole-map kernel (bit-exact with rnnpool_nas/train/quant.py):
 *   conv       rn_conv2d_row: conv.c's rules (acc = bias + sum over taps inside the input of
 *              w (x - in_zp), int32; out = clamp(out_zp + requant(acc, mult, shift), act_min,
 *              act_max), int64 product, halves round toward +inf), one output row at a time with
 *              the window's input rows read from a ring;
 *   depthwise  rn_depthwise_row (depthwise.c) on the ring;
 *   pointwise  rn_pointwise_conv2d (pointwise.c) on one row (stride s: rows 0, s, 2s, ...);
 *   MBConv     mbconv.c's row scheme: each input row expanded once into a ring of `kernel` rows,
 *              rn_depthwise_row, the projection on one row, rn_add on one row; or (groups > 1)
 *              the same per group of hidden channels, the expansion of a channel subset being the
 *              same pointwise sums (rn_pointwise_conv2d with the subset's weights and requant);
 *   RNNPool    rn_rnnpool_row: rnnpool.c's rules (RNN1 over the rows and columns of each patch,
 *              RNN2 over the summaries, Q24; out = clamp(out_zp + out_bias + requant(h, out_mult,
 *              out_shift), -128, 127)), one row of patches at a time; replicated rows and columns
 *              repeat the last computed ones;
 *   L2Norm, max-out: rn_l2norm / rn_maxout (head.c) on one row;
 *   global pool: pool.c's rules with the window sum (or max) accumulated row by row in int32
 *              (integer addition: the same total in any order).
 * rn_mbconv_inplace: mbconv.c's rules, its output written over its input (see rn_stream.h).
 * No dynamic memory; the recursion of the push is as deep as the segment's longest chain of nodes.
 */
#include <string.h>

#include "rn_stream.h"
#include "rn_dot.h"

/* ------------------------------------------------------------------ dense convolution, one row */

/* acc[j] += sum of `seg` taps of w_j[e] (x[e] - zp) for four output channels w_j = w + j * wpo */
static inline void srow_taps4(const int8_t *x, const int8_t *w, int seg, int wpo, int32_t zp, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    const int wpo3 = 3 * wpo;
    int e;
    for (e = 0; e < seg; ++e) {
        const int32_t v = x[e] - zp;
        a0 += w[e] * v;
        a1 += w[e + wpo] * v;
        a2 += w[e + 2 * wpo] * v;
        a3 += w[e + wpo3] * v;
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

void rn_conv2d_row(const int8_t *rows, int ring, int in_h, int in_w, int in_c, int iy0,
                   const int8_t *weight, const int32_t *bias, const int32_t *mult, const int8_t *shift,
                   int out_c, int kernel, int stride, int pad, int groups,
                   int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out)
{
    const int out_w = (in_w + 2 * pad - kernel) / stride + 1;
    const int cin_g = in_c / groups;
    const int cout_g = out_c / groups;
    const int w_per_out = kernel * kernel * cin_g;
    const int row_bytes = in_w * in_c;
    const int ky0 = iy0 < 0 ? -iy0 : 0;
    const int ky1 = iy0 + kernel > in_h ? in_h - iy0 : kernel;
    int ox, o, ky, kx;

    for (ox = 0; ox < out_w; ++ox) {
        const int ix0 = ox * stride - pad;
        const int kx0 = ix0 < 0 ? -ix0 : 0;
        const int kx1 = ix0 + kernel > in_w ? in_w - ix0 : kernel;
        const int nkx = kx1 - kx0;
        const int any = ky1 > ky0 && nkx > 0;   /* a tap inside the input */
        const int nseg = groups == 1 ? 1 : nkx;
        const int seg = groups == 1 ? nkx * in_c : cin_g;
        const int col = any ? (ix0 + kx0) * in_c : 0;
        const int8_t *w_out = weight + (ky0 * kernel + kx0) * cin_g;
        o = 0;
        if (groups == 1 && any) {   /* dense: four output channels per pass */
            for (; o + 3 < out_c; o += 4, w_out += 4 * w_per_out) {
                int32_t acc[4];
                int j;
                acc[0] = bias[o];
                acc[1] = bias[o + 1];
                acc[2] = bias[o + 2];
                acc[3] = bias[o + 3];
                for (ky = ky0; ky < ky1; ++ky) {
                    srow_taps4(rows + ((iy0 + ky) % ring) * row_bytes + col, w_out + (ky - ky0) * kernel * in_c, seg,
                               w_per_out, in_zp, acc);
                }
                for (j = 0; j < 4; ++j) {
                    *out++ = rn_clamp32(out_zp + rn_requant32(acc[j], mult[o + j], shift[o + j]), act_min, act_max);
                }
            }
        }
        for (; o < out_c; ++o, w_out += w_per_out) {
            int32_t acc = bias[o];
            if (any) {
                for (ky = ky0; ky < ky1; ++ky) {
                    const int8_t *x = rows + ((iy0 + ky) % ring) * row_bytes + col + (o / cout_g) * cin_g;
                    const int8_t *w = w_out + (ky - ky0) * kernel * cin_g;
                    for (kx = 0; kx < nseg; ++kx, x += in_c, w += cin_g) {
                        acc += rn_dot_s8(x, w, seg, in_zp);
                    }
                }
            }
            *out++ = rn_clamp32(out_zp + rn_requant32(acc, mult[o], shift[o]), act_min, act_max);
        }
    }
}

/* ------------------------------------------------------------------ RNNPool, one row of patches */

void rn_rnnpool_row(const rn_rnnpool_t *p, const int8_t *rows, int ring, int in_h, int in_w, int in_c, int py,
                    int8_t *out, int32_t *scratch)
{
    const int ph = p->patch_h;
    const int pw = p->patch_w;
    const int h1 = p->rnn1.hidden;
    const int h2 = p->rnn2.hidden;
    const int out_c = 4 * h2;
    const int row_bytes = in_w * in_c;
    const int y0 = py * p->stride_h - p->pad_top;
    int32_t *const wx = scratch;
    int32_t *const summaries = wx + ph * pw * h1;
    int32_t *const proj = summaries + (ph + pw) * h1;
    int32_t *const state = proj + (ph > pw ? ph : pw) * h2;
    int8_t *o = out;
    int px, i, j, k;

    for (px = 0; px < p->patches_w; ++px, o += out_c) {
        const int x0 = px * p->stride_w - p->pad_left;
        int32_t *v = wx;
        for (i = 0; i < ph; ++i) {   /* RNN1 projections of the patch (zero outside the input) */
            const int y = y0 + i;
            const int8_t *const row = y >= 0 && y < in_h ? rows + (y % ring) * row_bytes : 0;
            for (j = 0; j < pw; ++j, v += h1) {
                const int x = x0 + j;
                if (row && x >= 0 && x < in_w) {
                    rn_fastgrnn_project_s8(&p->rnn1, row + x * in_c, p->in_zp, v);
                } else {
                    for (k = 0; k < h1; ++k) {
                        v[k] = 0;
                    }
                }
            }
        }
        for (i = 0; i < ph + pw; ++i) {   /* RNN1: the rows, then the columns */
            if (i < ph) {
                rn_fastgrnn_sweep(&p->rnn1, wx + i * pw * h1, pw, h1, summaries + i * h1, state);
            } else {
                rn_fastgrnn_sweep(&p->rnn1, wx + (i - ph) * h1, ph, pw * h1, summaries + i * h1, state);
            }
        }
        for (i = 0; i < 4; ++i) {   /* RNN2: rows forward, backward, columns forward, backward */
            const int n = i < 2 ? ph : pw;
            if ((i & 1) == 0) {
                const int32_t *const s = summaries + (i == 0 ? 0 : ph * h1);
                for (j = 0; j < n; ++j) {
                    rn_fastgrnn_project_q24(&p->rnn2, s + j * h1, proj + j * h2);
                }
                rn_fastgrnn_sweep(&p->rnn2, proj, n, h2, state, state + h2);
            } else {
                rn_fastgrnn_sweep(&p->rnn2, proj + (n - 1) * h2, n, -h2, state, state + h2);
            }
            for (j = 0; j < h2; ++j) {
                k = i * h2 + j;
                o[k] = rn_clamp_s8((int64_t)p->out_zp + p->out_bias[k]
                                   + rn_requant(state[j], p->out_mult[k], p->out_shift[k]), -128, 127);
            }
        }
    }
    for (i = 0; i < p->replicate_w; ++i, o += out_c) {   /* o: just past the last patch */
        memcpy(o, o - (i + 1) * out_c, (size_t)out_c);
    }
}

/* ------------------------------------------------------------------ the driver */

typedef struct {
    const rn_stream_t *s;
    int8_t *base[3];
    int32_t *next;
    volatile uint32_t *mark;
    int in_slots;
} rn_run_t;

static int map_slots(const rn_run_t *r, int m)
{
    return m == 0 && r->in_slots > 0 ? r->in_slots : r->s->maps[m].slots;
}

static int8_t *map_rows(const rn_run_t *r, int m)
{
    const rn_map_t *map = &r->s->maps[m];
    return r->base[map->space] + map->offset;
}

static int8_t *map_row(const rn_run_t *r, int m, int y)
{
    const rn_map_t *map = &r->s->maps[m];
    return map_rows(r, m) + (y % map_slots(r, m)) * (map->w * map->c);
}

/* Output row oy of node n (its input rows are in their ring). */
static void node_row(const rn_run_t *r, const rn_node_t *n, int oy, int8_t *dst)
{
    const rn_map_t *in = &r->s->maps[n->in];
    const int8_t *const rows = map_rows(r, n->in);
    const int ring = map_slots(r, n->in);
    const int iy0 = oy * n->stride - n->pad;
    int8_t *const scratch = n->scratch >= 0 ? r->base[RN_SPACE_ARENA] + n->scratch : 0;
    if (r->mark) {
        *r->mark = n->marker;
    }
    switch (n->op) {
    case RN_NODE_CONV: {
        const rn_sconv_t *c = (const rn_sconv_t *)n->params;
        rn_conv2d_row(rows, ring, in->h, in->w, in->c, iy0, c->weight, c->bias, c->mult, c->shift, c->out_c,
                      n->kernel, n->stride, n->pad, c->groups, c->in_zp, c->out_zp, c->act_min, c->act_max, dst);
        break;
    }
    case RN_NODE_DEPTHWISE: {
        const rn_sconv_t *c = (const rn_sconv_t *)n->params;
        rn_depthwise_row(rows, ring, in->h, in->w, in->c, iy0, c->weight, c->bias, c->mult, c->shift, n->kernel,
                         n->stride, n->pad, c->in_zp, c->out_zp, c->act_min, c->act_max, dst);
        break;
    }
    case RN_NODE_POINTWISE: {
        const rn_sconv_t *c = (const rn_sconv_t *)n->params;
        rn_pointwise_conv2d(map_row(r, n->in, iy0), 1, in->w, in->c, c->weight, c->bias, c->mult, c->shift, c->out_c,
                            n->stride, c->in_zp, c->out_zp, c->act_min, c->act_max, dst);
        break;
    }
    case RN_NODE_MBCONV: {
        const rn_mbconv_t *p = (const rn_mbconv_t *)n->params;
        const int expand = p->exp_w != 0;
        const int out_w = r->s->maps[n->out].w;
        int8_t *dw_out;
        if (n->groups > 1) {   /* channel groups: expand the window's rows per group, then the depthwise */
            const int gs = p->hidden / n->groups;
            const int kk = p->kernel * p->kernel;
            int8_t *const tmp = scratch + p->kernel * in->w * gs;
            const int lo = iy0 > 0 ? iy0 : 0;
            const int hi = iy0 + p->kernel < in->h ? iy0 + p->kernel : in->h;
            int g, iy, ox;
            dw_out = tmp + out_w * gs;
            for (g = 0; g < n->groups; ++g) {
                const int c0 = g * gs;
                for (iy = lo; iy < hi; ++iy) {
                    rn_pointwise_conv2d(map_row(r, n->in, iy), 1, in->w, p->in_c, p->exp_w + c0 * p->in_c,
                                        p->exp_bias + c0, p->exp_mult + c0, p->exp_shift + c0, gs, 1, p->in_zp,
                                        p->exp_out_zp, p->exp_act_min, p->exp_act_max,
                                        scratch + (iy % p->kernel) * in->w * gs);
                }
                rn_depthwise_row(scratch, p->kernel, in->h, in->w, gs, iy0, p->dw_w + c0 * kk, p->dw_bias + c0,
                                 p->dw_mult + c0, p->dw_shift + c0, p->kernel, p->stride, n->pad, p->dw_in_zp,
                                 p->dw_out_zp, p->dw_act_min, p->dw_act_max, tmp);
                for (ox = 0; ox < out_w; ++ox) {
                    memcpy(dw_out + ox * p->hidden + c0, tmp + ox * gs, (size_t)gs);
                }
            }
        } else {
            dw_out = expand ? scratch + p->kernel * in->w * p->hidden : scratch;
            rn_depthwise_row(expand ? scratch : rows, expand ? p->kernel : ring, in->h, in->w, p->hidden, iy0, p->dw_w,
                             p->dw_bias, p->dw_mult, p->dw_shift, p->kernel, p->stride, n->pad, p->dw_in_zp,
                             p->dw_out_zp, p->dw_act_min, p->dw_act_max, dw_out);
        }
        rn_pointwise_conv2d(dw_out, 1, out_w, p->hidden, p->proj_w, p->proj_bias, p->proj_mult, p->proj_shift,
                            p->out_c, 1, p->dw_out_zp, p->proj_out_zp, p->proj_act_min, p->proj_act_max, dst);
        if (p->has_residual) {   /* stride 1: output row oy is over input row oy */
            rn_add(map_row(r, n->in, oy), dst, out_w * p->out_c, p->add_a_zp, p->add_a_mult, p->add_a_shift,
                   p->add_b_zp, p->add_b_mult, p->add_b_shift, p->add_out_zp, dst);
        }
        break;
    }
    case RN_NODE_RNNPOOL:
        rn_rnnpool_row((const rn_rnnpool_t *)n->params, rows, ring, in->h, in->w, in->c, oy, dst,
                       (int32_t *)(void *)scratch);
        break;
    case RN_NODE_L2NORM: {
        const rn_sl2norm_t *c = (const rn_sl2norm_t *)n->params;
        rn_l2norm(map_row(r, n->in, oy), in->w, in->c, c->in_zp, c->mult, c->out_zp, dst);
        break;
    }
    case RN_NODE_GLOBAL_POOL: {   /* the input rows are summed (or maxed) as they arrive: see push */
        const rn_spool_t *q = (const rn_spool_t *)n->params;
        const int32_t *const acc = (const int32_t *)(const void *)scratch;
        const int32_t zp_total = in->h * in->w * q->in_zp;
        int ch;
        for (ch = 0; ch < in->c; ++ch) {
            dst[ch] = q->is_max ? (int8_t)acc[ch]
                                : rn_clamp_s8(q->out_zp + rn_requant(acc[ch] - zp_total, q->mult, q->shift), -128, 127);
        }
        break;
    }
    default:   /* RN_NODE_MAXOUT */
        rn_maxout(map_row(r, n->in, oy), in->w, dst);
        break;
    }
}

/* Row next[m] - 1 of map m has just been written: every reader computes what it now can. */
static void push(const rn_run_t *r, int m)
{
    const rn_stream_t *s = r->s;
    const int arrived = r->next[m];
    int k;
    for (k = 0; k < s->n_nodes; ++k) {
        const rn_node_t *n = &s->nodes[k];
        const rn_map_t *out = &s->maps[n->out];
        const int in_h = s->maps[m].h;
        const int row_bytes = out->w * out->c;
        if (n->in != m) {
            continue;
        }
        if (n->op == RN_NODE_MBCONV) {   /* expand the arrived row into the ring of `kernel` rows */
            const rn_mbconv_t *p = (const rn_mbconv_t *)n->params;
            if (p->exp_w && n->groups <= 1) {
                const int y = arrived - 1;
                const int in_w = s->maps[m].w;
                if (r->mark) {
                    *r->mark = n->marker;
                }
                rn_pointwise_conv2d(map_row(r, m, y), 1, in_w, p->in_c, p->exp_w, p->exp_bias, p->exp_mult,
                                    p->exp_shift, p->hidden, 1, p->in_zp, p->exp_out_zp, p->exp_act_min,
                                    p->exp_act_max, r->base[RN_SPACE_ARENA] + n->scratch
                                        + (y % p->kernel) * in_w * p->hidden);
            }
        }
        if (n->op == RN_NODE_GLOBAL_POOL) {   /* add the arrived row into the accumulators */
            const rn_spool_t *q = (const rn_spool_t *)n->params;
            int32_t *const acc = (int32_t *)(void *)(r->base[RN_SPACE_ARENA] + n->scratch);
            const int8_t *x = map_row(r, m, arrived - 1);
            const int c = s->maps[m].c;
            int ch, ox;
            if (r->mark) {
                *r->mark = n->marker;
            }
            if (arrived == 1) {
                for (ch = 0; ch < c; ++ch) {
                    acc[ch] = q->is_max ? -128 : 0;
                }
            }
            for (ox = 0; ox < s->maps[m].w; ++ox, x += c) {
                for (ch = 0; ch < c; ++ch) {
                    if (q->is_max) {
                        acc[ch] = x[ch] > acc[ch] ? x[ch] : acc[ch];
                    } else {
                        acc[ch] += x[ch];
                    }
                }
            }
        }
        while (r->next[n->out] < out->h) {
            const int oy = r->next[n->out];
            int8_t *const dst = map_row(r, n->out, oy);
            if (oy < n->rows) {
                int need = oy * n->stride - n->pad + n->kernel;   /* one past the last input row read */
                if (need > in_h) {
                    need = in_h;
                }
                if (arrived < need) {
                    break;
                }
                node_row(r, n, oy, dst);
            } else {   /* a replicated row: the previous one again */
                const int8_t *const src = map_row(r, n->out, oy - 1);
                if (src != dst) {
                    memcpy(dst, src, (size_t)row_bytes);
                }
            }
            r->next[n->out] = oy + 1;
            push(r, n->out);
        }
    }
}

int rn_stream_run(const rn_stream_t *s, int8_t *arena, const int8_t *input, int8_t *output, int32_t *next,
                  volatile uint32_t *mark, rn_read_row_t read_row, void *ctx, int in_slots)
{
    rn_run_t r;
    const rn_map_t *in = &s->maps[0];
    int k, y;
    r.s = s;
    r.base[RN_SPACE_ARENA] = arena;
    r.base[RN_SPACE_INPUT] = (int8_t *)(uintptr_t)input;   /* read only */
    r.base[RN_SPACE_OUTPUT] = output;
    r.next = next;
    r.mark = mark;
    r.in_slots = read_row ? in_slots : 0;
    for (k = 0; k < s->n_maps; ++k) {
        next[k] = 0;
    }
    for (y = 0; y < in->h; ++y) {
        if (read_row) {
            const int rc = read_row(ctx, y, map_row(&r, 0, y));
            if (rc != 0) {
                return rc;
            }
        }
        next[0] = y + 1;
        push(&r, 0);
    }
    return 0;
}

/* ------------------------------------------------------------------ MBConv in place */

void rn_mbconv_inplace(const rn_mbconv_t *p, int8_t *inout, int h, int w, int8_t *scratch)
{
    const int kernel = p->kernel, pad = p->kernel / 2;
    const int hidden = p->hidden, c = p->in_c;
    const int row = w * c;
    int8_t *const dw_out = scratch + kernel * w * hidden;
    int8_t *const proj = dw_out + w * hidden;
    int next = 0;   /* rows below `next` are expanded */
    int oy, iy;
    for (oy = 0; oy < h; ++oy) {   /* stride 1: out_h == h, out_w == w */
        const int iy0 = oy - pad;
        const int last = iy0 + kernel < h ? iy0 + kernel : h;
        for (iy = iy0 > next ? iy0 : next; iy < last; ++iy) {
            rn_pointwise_conv2d(inout + iy * row, 1, w, c, p->exp_w, p->exp_bias, p->exp_mult, p->exp_shift, hidden,
                                1, p->in_zp, p->exp_out_zp, p->exp_act_min, p->exp_act_max,
                                scratch + (iy % kernel) * w * hidden);
        }
        if (last > next) {
            next = last;
        }
        rn_depthwise_row(scratch, kernel, h, w, hidden, iy0, p->dw_w, p->dw_bias, p->dw_mult, p->dw_shift, kernel, 1,
                         pad, p->dw_in_zp, p->dw_out_zp, p->dw_act_min, p->dw_act_max, dw_out);
        rn_pointwise_conv2d(dw_out, 1, w, hidden, p->proj_w, p->proj_bias, p->proj_mult, p->proj_shift, p->out_c, 1,
                            p->dw_out_zp, p->proj_out_zp, p->proj_act_min, p->proj_act_max, proj);
        rn_add(inout + oy * row, proj, row, p->add_a_zp, p->add_a_mult, p->add_a_shift, p->add_b_zp, p->add_b_mult,
               p->add_b_shift, p->add_out_zp, inout + oy * row);
    }
}
