/* mbconv.c - a fused, row-streamed MBConv (inverted residual) block: [1x1 expand], KxK depthwise,
 * 1x1 project, [residual add] (quant.py: QBlock with ops [expand], depthwise, project and its QAdd).
 *
 * Fixed-point rules (bit-exact with rnnpool_nas/train/quant.py, and byte for byte with the unfused
 * rn_pointwise_conv2d + rn_depthwise_conv2d + rn_pointwise_conv2d + rn_add on whole maps):
 *   requant(v, m, s) = (v * m + 2^(s-1)) >> s      (int64 product, arithmetic shift: halves round up)
 *   expand:    e[c] = clamp(exp_out_zp + requant(exp_bias[c] + sum_i exp_w[c, i] (x[i] - in_zp)),
 *                           exp_act_min, exp_act_max)                       (absent when t == 1: e = x)
 *   depthwise: d[c] = clamp(dw_out_zp + requant(dw_bias[c] + sum over taps inside the input of
 *                           dw_w[c, ky, kx] (e[iy, ix, c] - dw_in_zp)), dw_act_min, dw_act_max)
 *              pad = kernel / 2, stride `stride`; taps in the zero padding contribute 0
 *   project:   y[o] = clamp(proj_out_zp + requant(proj_bias[o] + sum_c proj_w[o, c] (d[c] - dw_out_zp)),
 *                           proj_act_min, proj_act_max)
 *   residual:  out = clamp(add_out_zp + requant(x - add_a_zp, add_a_mult, add_a_shift)
 *                                     + requant(y - add_b_zp, add_b_mult, add_b_shift), -128, 127)
 * with per-channel (mult, shift) for the three convolutions. Every value is a function of its own
 * inputs only, so computing the block row by row with the same integer operations (the expand and
 * project rows ARE rn_pointwise_conv2d calls on one row, the residual IS rn_add on one row, and
 * rn_depthwise_row shares rn_depthwise_conv2d's tap loop and requantization) gives exactly the
 * bytes of the unfused kernels.
 *
 * Streaming: output row oy needs input rows iy = oy*stride - pad + ky, ky = 0..kernel-1 (those
 * outside the input are skipped). With an expand, each needed row is expanded once, on first need,
 * into slot iy % kernel of a ring of `kernel` rows (in_w * hidden bytes each): rows are needed in
 * increasing order and a window spans `kernel` consecutive rows, so a slot is only overwritten once
 * its previous row has left the window. Rows no window reaches (stride > kernel) are never expanded.
 * Without an expand (t == 1) the depthwise reads the input itself. The depthwise output row
 * (out_w * hidden bytes) is then projected pixel by pixel straight into `out`, and the residual is
 * added in place. RAM: RN_MBCONV_SCRATCH_BYTES instead of the whole expanded maps.
 * rn_mbconv_inplace (a block with an expansion and a residual) writes output row oy over input
 * row oy through one projected row of scratch (RN_MBCONV_INPLACE_SCRATCH_BYTES): the same rows,
 * the same operations.
 */
#include "rn_runtime.h"

/* The block row by row; inplace: out == in, each projected row goes through scratch (after the
 * expanded ring and the depthwise row) and is added over input row oy, which no later output row
 * reads again: its expansion happened first (see rn_mbconv_inplace in rn_runtime.h). */
static void mbconv_rows(const rn_mbconv_t *p, const int8_t *in, int in_h, int in_w, int8_t *out, int8_t *scratch,
                        int inplace)
{
    const int kernel = p->kernel, stride = p->stride, pad = p->kernel / 2;
    const int in_c = p->in_c, hidden = p->hidden, out_c = p->out_c;
    const int out_h = (in_h + 2 * pad - kernel) / stride + 1;
    const int out_w = (in_w + 2 * pad - kernel) / stride + 1;
    const int in_row = in_w * in_c;
    const int out_row = out_w * out_c;
    const int expand = p->exp_w != 0;
    const int8_t *const rows = expand ? scratch : in;   /* what the depthwise reads */
    const int ring = expand ? kernel : in_h;
    int8_t *const dw_out = expand ? scratch + kernel * in_w * hidden : scratch;
    int8_t *const projected = dw_out + out_w * hidden;   /* inplace only */
    int next = 0;   /* rows below `next` are expanded (or never needed) */
    int oy, iy;

    for (oy = 0; oy < out_h; ++oy, out += out_row) {
        const int iy0 = oy * stride - pad;
        int8_t *const y = inplace ? projected : out;
        if (expand) {
            const int last = iy0 + kernel < in_h ? iy0 + kernel : in_h;   /* one past the window */
            for (iy = iy0 > next ? iy0 : next; iy < last; ++iy) {
                rn_pointwise_conv2d(in + iy * in_row, 1, in_w, in_c, p->exp_w, p->exp_bias, p->exp_mult,
                                    p->exp_shift, hidden, 1, p->in_zp, p->exp_out_zp, p->exp_act_min,
                                    p->exp_act_max, scratch + (iy % kernel) * in_w * hidden);
            }
            if (last > next) {
                next = last;
            }
        }
        rn_depthwise_row(rows, ring, in_h, in_w, hidden, iy0, p->dw_w, p->dw_bias, p->dw_mult, p->dw_shift, kernel,
                         stride, pad, p->dw_in_zp, p->dw_out_zp, p->dw_act_min, p->dw_act_max, dw_out);
        rn_pointwise_conv2d(dw_out, 1, out_w, hidden, p->proj_w, p->proj_bias, p->proj_mult, p->proj_shift, out_c,
                            1, p->dw_out_zp, p->proj_out_zp, p->proj_act_min, p->proj_act_max, y);
        if (p->has_residual) {   /* stride 1, in_c == out_c: output row oy is over input row oy */
            rn_add(in + oy * in_row, y, out_row, p->add_a_zp, p->add_a_mult, p->add_a_shift, p->add_b_zp,
                   p->add_b_mult, p->add_b_shift, p->add_out_zp, out);
        }
    }
}

void rn_mbconv(const rn_mbconv_t *p, const int8_t *in, int in_h, int in_w, int8_t *out, int8_t *scratch)
{
    mbconv_rows(p, in, in_h, in_w, out, scratch, 0);
}

void rn_mbconv_inplace(const rn_mbconv_t *p, int8_t *inout, int h, int w, int8_t *scratch)
{
    mbconv_rows(p, inout, h, w, inout, scratch, 1);
}
