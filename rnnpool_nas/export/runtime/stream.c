/* stream.c - the row-streaming driver of rn_stream.h. Its nodes call the kernels' row functions
 * (rn_conv2d_row in conv.c, rn_depthwise_row, rn_rnnpool_row in rnnpool.c, ...), which the
 * whole-map kernels run too, so every computation is written once.
 *
 * Fixed-point rules: none of its own. Every output row is computed by the same integer operations
 * as the whole-map kernel (bit-exact with rnnpool_nas/train/quant.py):
 *   conv       rn_conv2d_row (conv.c) on the ring: acc = bias + sum over taps inside the input
 *              of w (x - in_zp), int32; out = clamp(out_zp + requant(acc, mult, shift), act_min,
 *              act_max), int64 product, halves round toward +inf;
 *   depthwise  rn_depthwise_row (depthwise.c) on the ring;
 *   pointwise  rn_pointwise_conv2d (pointwise.c) on one row (stride s: rows 0, s, 2s, ...);
 *   MBConv     mbconv.c's row scheme: each input row expanded once into a ring of `kernel` rows,
 *              rn_depthwise_row, the projection on one row, rn_add on one row; or (groups > 1)
 *              the same per group of hidden channels, the expansion of a channel subset being the
 *              same pointwise sums (rn_pointwise_conv2d with the subset's weights and requant);
 *   RNNPool    rn_rnnpool_row (rnnpool.c) on the ring (RNN1 over the rows and columns of each patch,
 *              RNN2 over the summaries, Q24; out = clamp(out_zp + out_bias + requant(h, out_mult,
 *              out_shift), -128, 127)), one row of patches at a time; replicated rows and columns
 *              repeat the last computed ones;
 *   L2Norm, max-out: rn_l2norm / rn_maxout (head.c) on one row;
 *   global pool: pool.c's rules with the window sum (or max) accumulated row by row in int32
 *              (integer addition: the same total in any order).
 * No dynamic memory; the recursion of the push is as deep as the segment's longest chain of nodes.
 */
#include <string.h>

#include "rn_stream.h"

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
            int8_t *const tmp = scratch + RN_ALIGN4(p->kernel * in->w * gs);   /* word-aligned (rn_stream.h) */
            const int lo = iy0 > 0 ? iy0 : 0;
            const int hi = iy0 + p->kernel < in->h ? iy0 + p->kernel : in->h;
            int g, iy, ox;
            dw_out = tmp + RN_ALIGN4(out_w * gs);
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
