/* rnnpool.c - RNNPool over an int8 NHWC map, patch by patch (quant.py: QRNNPool).
 *
 * Fixed-point rules (bit-exact with rnnpool_nas/train/quant.py; the cell's are in fastgrnn.c):
 *   Patch (py, px) covers padded rows py*stride_h + [0, patch_h) and columns px*stride_w +
 *   [0, patch_w); padded pixel (r, c) is input pixel (r - pad_top, c - pad_left). A pixel in the
 *   zero padding holds in_zp, so its projection is requant(0) = 0.
 *   RNN1 (Q24, from h = 0) sweeps every row of the patch left to right and every column top to
 *   bottom; RNN2 sweeps the patch_h row summaries forward and backward, then the patch_w column
 *   summaries forward and backward. Output channel k (order rows fwd, rows bwd, cols fwd,
 *   cols bwd, h2 each) of the final state h:
 *     out[k] = clamp(out_zp + out_bias[k] + ((h * out_mult[k] + 2^(s-1)) >> s), -128, 127),
 *     s = out_shift[k], out_mult signed (the stage's batch norm folded in), int64 product.
 *   Outputs past the computed patches (the "reference" padding rule) repeat the last computed
 *   column, then the last computed row.
 *
 * The reference projects the padded map once per pixel; this kernel projects the pixels of one
 * patch at a time (the memory stays one patch): the columns a patch shares with its left
 * neighbour (patch_w - stride_w of them, when the stride is below the patch) are moved over
 * from that patch's projections, the others computed, and likewise RNN1's final states of those
 * columns (a column sweep depends on its column's pixels only); vertically overlapping patches
 * recompute their shared rows. Bit-identical either way. rn_rnnpool_row computes one row of
 * patches from input rows held in a ring of row slots (a streamed segment's ring, stream.c);
 * rn_rnnpool is that row function over the whole map (ring == in_h).
 * Scratch layout, in int32 words (h1, h2 = the hidden sizes):
 *   wx         patch_h * patch_w * h1       RNN1 projections of the patch, row-major
 *   summaries  (patch_h + patch_w) * h1     RNN1's final state of each row, then of each column
 *   proj       max(patch_h, patch_w) * h2   RNN2 projections of the row (then column) summaries
 *   state      2 * max(h1, h2)              RNN2's state and its ping-pong partner (words
 *                                           [0, h2) and [h2, 2*h2)); RNN1's partner ([0, h1))
 * = RN_RNNPOOL_SCRATCH_WORDS - 2 * max(h1, h2): the last 2 * max(h1, h2) words of that bound are
 * never touched (the bound stays as the memory planner knows it).
 * The scratch needs no initialisation.
 */
#include <string.h>

#include "rn_runtime.h"

/* RNN1 projections of columns j0 .. patch_w - 1 of the patch whose top-left padded pixel is input
 * pixel (y0, x0) (the columns before j0 are already in wx); input row y is read from
 * rows + (y % ring) * in_w * in_c. */
static void rn_project_patch(const rn_rnnpool_t *p, const int8_t *rows, int ring, int in_h, int in_w, int in_c,
                             int y0, int x0, int j0, int32_t *wx)
{
    const int h1 = p->rnn1.hidden;
    int i, j, k;
    for (i = 0; i < p->patch_h; ++i) {
        const int y = y0 + i;
        const int8_t *const row = y >= 0 && y < in_h ? rows + (y % ring) * in_w * in_c : 0;
        for (j = j0; j < p->patch_w; ++j) {
            int32_t *const o = wx + (i * p->patch_w + j) * h1;
            const int x = x0 + j;
            if (row && x >= 0 && x < in_w) {
                rn_fastgrnn_project_s8(&p->rnn1, row + x * in_c, p->in_zp, o);
            } else {
                for (k = 0; k < h1; ++k) {
                    o[k] = 0;
                }
            }
        }
    }
}

void rn_rnnpool_row(const rn_rnnpool_t *p, const int8_t *rows, int ring, int in_h, int in_w, int in_c, int py,
                    int8_t *out, int32_t *scratch)
{
    const int ph = p->patch_h;
    const int pw = p->patch_w;
    const int h1 = p->rnn1.hidden;
    const int h2 = p->rnn2.hidden;
    const int out_c = 4 * h2;
    int32_t *const wx = scratch;
    int32_t *const summaries = wx + ph * pw * h1;          /* rows, then columns */
    int32_t *const proj = summaries + (ph + pw) * h1;
    int32_t *const state = proj + (ph > pw ? ph : pw) * h2;
    int8_t *o = out;
    int px, i, j;

    for (px = 0; px < p->patches_w; ++px, o += out_c) {
        int j0 = 0;
        if (px > 0 && p->stride_w < pw) {   /* the columns shared with the previous patch: moved */
            const int keep = pw - p->stride_w;
            for (i = 0; i < ph; ++i) {
                memmove(wx + i * pw * h1, wx + (i * pw + p->stride_w) * h1, (size_t)keep * (size_t)h1 * sizeof *wx);
            }
            /* and so are their RNN1 column summaries (the same pixels swept the same way) */
            memmove(summaries + ph * h1, summaries + (ph + p->stride_w) * h1,
                    (size_t)keep * (size_t)h1 * sizeof *summaries);
            j0 = keep;
        }
        rn_project_patch(p, rows, ring, in_h, in_w, in_c, py * p->stride_h - p->pad_top,
                         px * p->stride_w - p->pad_left, j0, wx);
        /* RNN1: the ph rows (pw steps of h1 words), then the pw columns (ph steps of a row) but
         * the j0 moved over */
        for (i = 0; i < ph + pw; ++i) {
            if (i >= ph && i - ph < j0) {
                continue;
            }
            if (i < ph) {
                rn_fastgrnn_sweep(&p->rnn1, wx + i * pw * h1, pw, h1, summaries + i * h1, state);
            } else {
                rn_fastgrnn_sweep(&p->rnn1, wx + (i - ph) * h1, ph, pw * h1, summaries + i * h1, state);
            }
        }
        /* RNN2: rows forward, rows backward, columns forward, columns backward */
        for (i = 0; i < 4; ++i) {
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
                const int k = i * h2 + j;
                o[k] = rn_clamp_s8((int64_t)p->out_zp + p->out_bias[k]
                                   + rn_requant(state[j], p->out_mult[k], p->out_shift[k]), -128, 127);
            }
        }
    }
    for (i = 0; i < p->replicate_w; ++i, o += out_c) {   /* o: just past the last patch */
        memcpy(o, o - (i + 1) * out_c, (size_t)out_c);
    }
}

void rn_rnnpool(const rn_rnnpool_t *p, const int8_t *in, int in_h, int in_w, int in_c,
                int8_t *out, int32_t *scratch)
{
    const size_t row_bytes = (size_t)(p->patches_w + p->replicate_w) * (size_t)(4 * p->rnn2.hidden);
    int py, i;
    for (py = 0; py < p->patches_h; ++py) {
        rn_rnnpool_row(p, in, in_h, in_h, in_w, in_c, py, out + (size_t)py * row_bytes, scratch);
    }
    for (i = 0; i < p->replicate_h; ++i) {
        int8_t *const row = out + (size_t)(p->patches_h + i) * row_bytes;
        memcpy(row, row - (size_t)(i + 1) * row_bytes, row_bytes);
    }
}
