/* rn_stream.h - row-streamed segments: a chain of kernel calls run row by row (stream.c).
 *
 * A segment is a small graph of nodes (one per kernel call of the memory plan) over maps. Every
 * map is held as a ring of `slots` rows: row y of an h x w x c map lives in slot y % slots
 * (w * c bytes each; slots == h is the whole map). The segment's first map is its input; the
 * driver delivers it one row at a time (from the caller's whole image, from an arena map, or from
 * a caller's row callback) and pushes each row to the nodes that read the map. A node computes
 * every output row its input rows allow, as soon as they allow it, writes it into its output
 * map's ring and pushes it on. Output row oy of a node reads input rows oy*stride - pad + [0,
 * kernel) (clipped to the map); because every node consumes eagerly, a ring of the largest
 * `kernel` among a map's readers never overwrites a row still needed (rnnpool_nas/lower/plan.py
 * sizes the rings and places them in the arena). No recomputation: each row is computed once.
 *
 * The nodes call the kernels' row functions (rn_conv2d_row, rn_depthwise_row, rn_rnnpool_row in
 * rn_runtime.h, which the whole-map kernels are loops of) or the kernels on one row, so a streamed
 * segment computes byte for byte what the whole-map kernels compute.
 */
#ifndef RN_STREAM_H
#define RN_STREAM_H

#include <stdint.h>

#include "rn_runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { RN_SPACE_ARENA = 0, RN_SPACE_INPUT = 1, RN_SPACE_OUTPUT = 2 };

enum {
    RN_NODE_CONV = 0,       /* rn_sconv_t: dense or grouped KxK (rn_conv2d_row) */
    RN_NODE_DEPTHWISE = 1,  /* rn_sconv_t: rn_depthwise_row */
    RN_NODE_POINTWISE = 2,  /* rn_sconv_t: rn_pointwise_conv2d on one row */
    RN_NODE_MBCONV = 3,     /* rn_mbconv_t, int8 scratch of RN_MBCONV_SCRATCH_BYTES */
    RN_NODE_RNNPOOL = 4,    /* rn_rnnpool_t, int32 scratch of RN_RNNPOOL_SCRATCH_WORDS */
    RN_NODE_L2NORM = 5,     /* rn_sl2norm_t: rn_l2norm on one row */
    RN_NODE_MAXOUT = 6,     /* no parameters: rn_maxout on one row */
    RN_NODE_GLOBAL_POOL = 7 /* rn_spool_t: global average / max pool, accumulated row by row in an
                               int32 scratch of `c` words; the one output row after the last input row */
};

/* A map: where its ring lives (space + byte offset), its shape and how many rows it holds. */
typedef struct {
    int32_t offset;
    int16_t h, w, c, slots;
    uint8_t space;          /* RN_SPACE_* */
} rn_map_t;

/* Parameters of a convolution node (the geometry is the node's kernel, stride, pad). */
typedef struct {
    const int8_t *weight; const int32_t *bias; const int32_t *mult; const int8_t *shift;
    int32_t in_zp, out_zp, act_min, act_max;
    int16_t out_c, groups;
} rn_sconv_t;

typedef struct {
    const int32_t *mult;
    int32_t in_zp, out_zp;
} rn_sl2norm_t;

/* A global pool: avg (is_max 0: out = clamp(out_zp + requant(sum x - h*w*in_zp, mult, shift)),
 * pool.c's rule) or max (is_max 1: the largest value). */
typedef struct {
    int32_t in_zp, mult, shift, out_zp;
    uint8_t is_max;
} rn_spool_t;

typedef struct {
    const void *params;     /* rn_sconv_t, rn_mbconv_t, rn_rnnpool_t, rn_sl2norm_t or rn_spool_t */
    int32_t scratch;        /* arena offset of the node's scratch (-1: none) */
    uint32_t marker;        /* model_mark while the node computes (rnnpool-nas measure) */
    uint8_t op, in, out;    /* RN_NODE_*, input and output map */
    int16_t kernel, stride, pad;   /* output row oy reads input rows oy*stride - pad + [0, kernel) */
    int16_t rows;           /* output rows computed; the map's further rows repeat the last one
                               (RNNPool's reference padding) */
    int16_t groups;         /* MBConv with an expansion: 1, or G > 1 channel groups (see below) */
} rn_node_t;

/* An MBConv node with groups == 1 expands each input row once, when it arrives, into a ring of
 * `kernel` rows (RN_MBCONV_SCRATCH_BYTES of scratch; it reads one input row at a time, kernel/2 + 1
 * with a residual). With groups == G > 1 it expands, for each output row and each group of
 * hidden/G channels, the window's input rows into a ring of `kernel` rows of hidden/G channels,
 * runs the depthwise on them, and projects the assembled row: the window's rows are expanded
 * again for every output row that reads them (kernel/stride times; used with stride 2), for a
 * scratch of RN_MBCONV_SPLIT_SCRATCH_BYTES, and it reads `kernel` input rows at once. The group's
 * depthwise row and the assembled row start on a word (the projection's packed path needs that). */
#define RN_ALIGN4(n) (((n) + 3) & ~3)
#define RN_MBCONV_SPLIT_SCRATCH_BYTES(groups, kernel, in_w, out_w, hidden) \
  (RN_ALIGN4((kernel) * (in_w) * ((hidden) / (groups))) + RN_ALIGN4((out_w) * ((hidden) / (groups))) \
   + (out_w) * (hidden))

typedef struct {
    const rn_map_t *maps;   /* maps[0] is the segment's input */
    const rn_node_t *nodes;
    int16_t n_maps, n_nodes;
} rn_stream_t;

/* Fills dst (w * c bytes) with input row `row` (rows come in order 0, 1, ...); 0 on success. */
typedef int (*rn_read_row_t)(void *ctx, int32_t row, int8_t *dst);

/* Runs a segment. arena: the model's arena; input: the caller's whole image (RN_SPACE_INPUT), or,
 * with read_row, a buffer of in_slots input rows that read_row fills row by row (then maps[0]
 * holds in_slots rows); output: the caller's output buffer. next: n_maps words of state.
 * mark (may be NULL) is set to each node's marker while it runs. Returns 0, or what a failing
 * read_row returned. */
int rn_stream_run(const rn_stream_t *s, int8_t *arena, const int8_t *input, int8_t *output, int32_t *next,
                  volatile uint32_t *mark, rn_read_row_t read_row, void *ctx, int in_slots);

#ifdef __cplusplus
}
#endif

#endif /* RN_STREAM_H */
