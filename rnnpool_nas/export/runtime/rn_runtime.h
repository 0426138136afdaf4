/* rn_runtime.h - the int8 inference runtime of rnnpool_nas exported networks (the one public header).
 *
 * Every kernel is bit-exact with the integer reference in rnnpool_nas/train/quant.py (QConv, QAdd,
 * QPool, QLinear, QRNNPool); see that module's docstring for the fixed-point rules, repeated at the
 * top of each kernel file. Conventions:
 *   - activations int8, NHWC (one image: H, W, C with C fastest), per-tensor zero points;
 *   - weights int8 per output channel, biases int32, per-channel requantization (mult, shift):
 *     y = clamp(out_zp + rn_requant(acc + bias, mult, shift), act_min, act_max);
 *   - no dynamic memory, no VLAs, a few scalars of stack per kernel; RNNPool works in a
 *     caller-provided int32 scratch of RN_RNNPOOL_SCRATCH_WORDS words.
 * Plain C99; assumes an arithmetic `>>` on negative values (checked at compile time in rn_requant.h).
 */
#ifndef RN_RUNTIME_H
#define RN_RUNTIME_H

#include <stdint.h>

#include "rn_requant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ convolutions (NHWC int8) */

/* conv.c: dense or grouped KxK convolution (groups == 1: dense).
 * out_h = (in_h + 2*pad - kernel)/stride + 1 (same for w). Taps outside the input contribute 0
 * (the reference pads x - in_zp with 0). weight layout (out_c, kernel, kernel, in_c/groups). */
void rn_conv2d(const int8_t *in, int in_h, int in_w, int in_c,
               const int8_t *weight, const int32_t *bias, const int32_t *mult, const int8_t *shift,
               int out_c, int kernel, int stride, int pad, int groups,
               int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out);

/* conv.c: output row of rn_conv2d whose window starts at input row iy0 = oy*stride - pad, with input
 * row iy (0 <= iy < in_h) read from rows + (iy % ring) * in_w * in_c: a ring of `ring` row slots (a
 * streamed segment's), or the whole map with ring == in_h (rn_conv2d is this over every row). */
void rn_conv2d_row(const int8_t *rows, int ring, int in_h, int in_w, int in_c, int iy0,
                   const int8_t *weight, const int32_t *bias, const int32_t *mult, const int8_t *shift,
                   int out_c, int kernel, int stride, int pad, int groups,
                   int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out);

/* depthwise.c: groups == in_c == out_c; weight layout (c, kernel, kernel), i.e. (c, k, k, 1). */
void rn_depthwise_conv2d(const int8_t *in, int in_h, int in_w, int c,
                         const int8_t *weight, const int32_t *bias, const int32_t *mult, const int8_t *shift,
                         int kernel, int stride, int pad,
                         int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out);

/* depthwise.c: output row (out_w * c bytes) of rn_depthwise_conv2d whose window starts at input row
 * iy0 = oy*stride - pad, with input row iy (0 <= iy < in_h) read from rows + (iy % ring) * in_w * c:
 * a ring of `ring` row slots (rn_mbconv's expanded rows), or the whole map with ring == in_h. */
void rn_depthwise_row(const int8_t *rows, int ring, int in_h, int in_w, int c, int iy0,
                      const int8_t *weight, const int32_t *bias, const int32_t *mult, const int8_t *shift,
                      int kernel, int stride, int pad,
                      int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out);

/* pointwise.c: 1x1, pad 0; stride s samples pixels (0, s, 2s, ...): out_h = (in_h-1)/s+1.
 * weight (out_c, in_c). */
void rn_pointwise_conv2d(const int8_t *in, int in_h, int in_w, int in_c,
                         const int8_t *weight, const int32_t *bias, const int32_t *mult, const int8_t *shift,
                         int out_c, int stride,
                         int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out);

/* mbconv.c: a whole MBConv (inverted residual) block, fused and streamed row by row, byte for byte
 * what rn_pointwise_conv2d (expand) + rn_depthwise_conv2d + rn_pointwise_conv2d (project) + rn_add
 * compute on whole maps, without holding the expanded maps: out_h = (in_h + 2*pad - kernel)/stride + 1
 * with pad = kernel / 2 (same for w). */
typedef struct {
    /* expand: 1x1, in_c -> hidden; absent (exp_w == NULL) when t == 1 (then hidden == in_c and the
       depthwise reads the input directly). weight (hidden, in_c) */
    const int8_t *exp_w; const int32_t *exp_bias; const int32_t *exp_mult; const int8_t *exp_shift;
    int32_t exp_out_zp, exp_act_min, exp_act_max;
    /* depthwise kernel x kernel, stride, pad = kernel / 2, hidden channels; weight (hidden, kernel, kernel) */
    const int8_t *dw_w; const int32_t *dw_bias; const int32_t *dw_mult; const int8_t *dw_shift;
    int32_t dw_in_zp, dw_out_zp, dw_act_min, dw_act_max;
    /* project: 1x1, hidden -> out_c (activation range as given, usually -128..127); weight (out_c, hidden) */
    const int8_t *proj_w; const int32_t *proj_bias; const int32_t *proj_mult; const int8_t *proj_shift;
    int32_t proj_out_zp, proj_act_min, proj_act_max;
    /* residual add (has_residual; needs stride 1, odd kernel, in_c == out_c): out = add(block input,
       projection) with rn_add's parameters (a: the block input, b: the projection) */
    int32_t add_a_zp, add_a_mult, add_a_shift, add_b_zp, add_b_mult, add_b_shift, add_out_zp;
    int32_t in_zp;            /* the block input's zero point (the expand's input zp) */
    int16_t in_c, hidden, out_c, kernel, stride;
    uint8_t has_residual;
} rn_mbconv_t;
/* Scratch bytes: kernel rows of the expanded input (in_w * hidden each; none when t == 1) and one
 * depthwise output row (out_w * hidden); no alignment needed. out must not overlap in or scratch. */
#define RN_MBCONV_SCRATCH_BYTES(expand, kernel, in_w, out_w, hidden) \
  ((expand) ? (kernel) * (in_w) * (hidden) + (out_w) * (hidden) : (out_w) * (hidden))
void rn_mbconv(const rn_mbconv_t *p, const int8_t *in, int in_h, int in_w, int8_t *out, int8_t *scratch);
/* mbconv.c: rn_mbconv in place, for a block with an expansion and a residual (stride 1, in_c ==
 * out_c): output row oy overwrites input row oy once no later row needs it (the expansion of every
 * row an output row reads happens first; the residual reads row oy itself, added through a
 * projected row in scratch). Scratch: RN_MBCONV_INPLACE_SCRATCH_BYTES. */
#define RN_MBCONV_INPLACE_SCRATCH_BYTES(kernel, w, hidden, out_c) \
  ((kernel) * (w) * (hidden) + (w) * (hidden) + (w) * (out_c))
void rn_mbconv_inplace(const rn_mbconv_t *p, int8_t *inout, int h, int w, int8_t *scratch);

/* ------------------------------------------------------------------ elementwise, pooling, dense */

/* add.c (the MBConv residual add): n elements; out may alias a or b (in place is allowed). */
void rn_add(const int8_t *a, const int8_t *b, int n,
            int32_t a_zp, int32_t a_mult, int32_t a_shift,
            int32_t b_zp, int32_t b_mult, int32_t b_shift, int32_t out_zp, int8_t *out);

/* pool.c: no padding; out_h = (in_h - kh)/sh + 1 (same for w). */
void rn_avgpool(const int8_t *in, int in_h, int in_w, int c, int kh, int kw, int sh, int sw,
                int32_t in_zp, int32_t mult, int32_t shift, int32_t out_zp, int8_t *out);
void rn_maxpool(const int8_t *in, int in_h, int in_w, int c, int kh, int kw, int sh, int sw, int8_t *out);

/* fully_connected.c: weight (out_n, in_n), input flattened NHWC. */
void rn_fully_connected(const int8_t *in, int in_n, const int8_t *weight, const int32_t *bias,
                        const int32_t *mult, const int8_t *shift, int out_n,
                        int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max, int8_t *out);

/* ------------------------------------------------------------------ FastGRNN and RNNPool (Q24) */

#define RN_Q 24
#define RN_ONE ((int32_t)1 << RN_Q)     /* 1.0 in Q24 */
#define RN_LUT_SIZE 1025                /* 1024 bins of 1/64 over [-8, 8] */
#define RN_LUT_SHIFT (RN_Q - 6)

enum { RN_SIGMOID = 0, RN_TANH = 1, RN_QUANT_SIGMOID = 2, RN_QUANT_TANH = 3 };

typedef struct {
    const int8_t *w;          /* (hidden, input) */
    const int8_t *u;          /* (hidden, hidden) */
    const int32_t *w_mult; const int8_t *w_shift;  /* per row: 31-bit mult for int8 input (RNN1), 15-bit for Q24 input (RNN2) */
    const int32_t *u_mult; const int8_t *u_shift;  /* per row, 15-bit */
    const int32_t *bias_gate; const int32_t *bias_update;  /* Q24 */
    int32_t sz, sn;           /* Q24 sigmoid(zeta), sigmoid(nu) */
    int16_t input, hidden;
    uint8_t gate, update;     /* RN_* nonlinearity codes */
    uint8_t state_input;      /* 1 for RNN2 (its input is RNN1's Q24 states) */
} rn_fastgrnn_t;

typedef struct {
    rn_fastgrnn_t rnn1, rnn2;
    int16_t patch_h, patch_w, stride_h, stride_w;
    int16_t pad_top, pad_left;          /* axis_geometry(...).pad_before per axis */
    int16_t patches_h, patches_w;       /* computed patch positions per axis */
    int16_t replicate_h, replicate_w;   /* output rows/cols copied from the last computed one */
    int32_t in_zp, out_zp;
    const int32_t *out_mult; const int8_t *out_shift; const int32_t *out_bias;  /* (4*h2), mult signed */
} rn_rnnpool_t;

/* fastgrnn_lut.c: sigmoid and tanh in Q24 at the 1025 edges -8, -8 + 1/64, ..., 8 (quant.lut). */
extern const int32_t rn_sigmoid_lut[RN_LUT_SIZE];
extern const int32_t rn_tanh_lut[RN_LUT_SIZE];

/* fastgrnn.c: the cell. All states, projections and pre-activations are Q24 int32. */
/* The nonlinearity `code` (RN_*) of a Q24 pre-activation v (int64: pre + bias may pass int32). */
int32_t rn_fastgrnn_nonlinearity(int code, int64_t v);
/* wx[j] = requant(W[j] . (x - x_zp), w_mult[j], w_shift[j]): RNN1's projection of one int8 pixel. */
void rn_fastgrnn_project_s8(const rn_fastgrnn_t *cell, const int8_t *x, int32_t x_zp, int32_t *wx);
/* wx[j] = requant15(W[j] . x, w_mult[j], w_shift[j]): RNN2's projection of one Q24 state. */
void rn_fastgrnn_project_q24(const rn_fastgrnn_t *cell, const int32_t *x, int32_t *wx);
/* One step: h_new from the projection wx and the previous state h (h_new must not alias h). */
void rn_fastgrnn_step(const rn_fastgrnn_t *cell, const int32_t *wx, const int32_t *h, int32_t *h_new);
/* Final state of `steps` >= 1 steps from h = 0 over the projections wx, wx + step_words, ...
 * (step_words may be negative: a backward sweep). Result in h; tmp: `hidden` words of scratch. */
void rn_fastgrnn_sweep(const rn_fastgrnn_t *cell, const int32_t *wx, int steps, int step_words,
                       int32_t *h, int32_t *tmp);

/* rnnpool.c: RNNPool over an in_h x in_w x in_c int8 map, patch by patch.
 * Output (patches_h+replicate_h, patches_w+replicate_w, 4*h2), channel order rows fwd, rows bwd,
 * cols fwd, cols bwd. scratch: int32 words, RN_RNNPOOL_SCRATCH_WORDS of them (see rnnpool.c for
 * the layout; its last 2*max(h1, h2) words are not touched). */
#define RN_RNNPOOL_SCRATCH_WORDS(ph, pw, h1, h2) \
  ((ph)*(pw)*(h1) + ((ph)+(pw))*(h1) + ((ph)>(pw)?(ph):(pw))*(h2) + 4*((h1)>(h2)?(h1):(h2)))
void rn_rnnpool(const rn_rnnpool_t *p, const int8_t *in, int in_h, int in_w, int in_c,
                int8_t *out, int32_t *scratch);
/* rnnpool.c: output row py of rn_rnnpool (its patches_w computed patches, then replicate_w
 * copies), input row y read from rows + (y % ring) * in_w * in_c (as rn_conv2d_row); rn_rnnpool
 * is this over every row of patches, then the replicate_h copied rows. */
void rn_rnnpool_row(const rn_rnnpool_t *p, const int8_t *rows, int ring, int in_h, int in_w, int in_c, int py,
                    int8_t *out, int32_t *scratch);

/* ------------------------------------------------------------------ detection heads (S3FD) */

/* head.c: L2Norm over the c channels of each of `pixels` pixels; mult[k] = round(w[k] 2^16 / out_scale). */
void rn_l2norm(const int8_t *in, int pixels, int c, int32_t in_zp, const int32_t *mult, int32_t out_zp,
               int8_t *out);
/* head.c: (pixels, 4) scores -> (pixels, 2): the max of the three background scores, then the face score. */
void rn_maxout(const int8_t *in, int pixels, int8_t *out);

/* detect.c: a detector's outputs -> face boxes (double after dequantization; see the file). */
typedef struct {
    int32_t loc_offset, conf_offset, rows, cols;  /* in the raw output; the head's prediction map */
    double stride_y, stride_x, anchor;            /* anchor (i, j): centre ((j + 0.5) sx, (i + 0.5) sy) */
    float loc_scale, conf_scale;
    int32_t loc_zero_point, conf_zero_point;
} rn_head_t;
typedef struct { double x1, y1, x2, y2, score; } rn_box_t;  /* input pixels; score: face probability */
typedef struct { double score; int32_t head, position; } rn_candidate_t;
/* Returns the number of boxes written (best first, at most max_boxes); work: top_k entries. */
int rn_detect(const int8_t *raw, const rn_head_t *heads, int n_heads, double score_threshold, double nms_iou,
              int top_k, rn_candidate_t *work, rn_box_t *boxes, int max_boxes);

#ifdef __cplusplus
}
#endif

#endif /* RN_RUNTIME_H */
