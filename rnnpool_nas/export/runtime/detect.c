/* detect.c - detection post-processing: decode an S3FD detector's int8 head outputs into face
 * boxes and suppress overlaps, computing exactly what rnnpool_nas/detect/nms.py computes.
 *
 * Arithmetic (the order of operations is numpy's, so results agree to the last bit up to the
 * C library's exp):
 *   dequantization in float, as quant.QParams.dequantize: (float)(q - zp) * scale;
 *   everything after in double:
 *   score = 1 / (1 + exp(bg - face)), the face share of the softmax;
 *   anchors with score > score_threshold are candidates; the top_k best (ties: lower anchor
 *   first) go through greedy NMS, each decoded on the fly (SSD, variances 0.1 and 0.2):
 *     cx = acx + (dx 0.1) a, cy = acy + (dy 0.1) a, w = a exp(dw 0.2), h = a exp(dh 0.2),
 *     corners cx -+ w / 2, cy -+ h / 2; anchor centre ((j + 0.5) stride_x, (i + 0.5) stride_y),
 *     side a, in input pixels;
 *   a box is kept unless its IoU with a kept box is > nms_iou (areas of inverted boxes are 0).
 * No allocation: the caller gives `work` (top_k candidates, 16 bytes each) and `boxes`.
 */
#include <math.h>

#include "rn_runtime.h"

static double rn_deq(int8_t q, int32_t zp, float scale) { return (double)((float)((int32_t)q - zp) * scale); }

static void rn_decode(const int8_t *raw, const rn_head_t *hd, int32_t p, rn_box_t *b)
{
    const int8_t *l = raw + hd->loc_offset + 4 * p;
    const double a = hd->anchor;
    const double acx = ((double)(p % hd->cols) + 0.5) * hd->stride_x;
    const double acy = ((double)(p / hd->cols) + 0.5) * hd->stride_y;
    const double cx = acx + rn_deq(l[0], hd->loc_zero_point, hd->loc_scale) * 0.1 * a;
    const double cy = acy + rn_deq(l[1], hd->loc_zero_point, hd->loc_scale) * 0.1 * a;
    const double w = a * exp(rn_deq(l[2], hd->loc_zero_point, hd->loc_scale) * 0.2);
    const double h = a * exp(rn_deq(l[3], hd->loc_zero_point, hd->loc_scale) * 0.2);
    b->x1 = cx - w / 2;
    b->y1 = cy - h / 2;
    b->x2 = cx + w / 2;
    b->y2 = cy + h / 2;
}

static double rn_area(const rn_box_t *b)
{
    const double w = b->x2 - b->x1, h = b->y2 - b->y1;
    return (w > 0 ? w : 0) * (h > 0 ? h : 0);
}

int rn_detect(const int8_t *raw, const rn_head_t *heads, int n_heads, double score_threshold, double nms_iou,
              int top_k, rn_candidate_t *work, rn_box_t *boxes, int max_boxes)
{
    int h, n = 0, i, j, kept = 0;
    for (h = 0; h < n_heads; ++h) {
        const rn_head_t *hd = &heads[h];
        int32_t p, count = hd->rows * hd->cols;
        for (p = 0; p < count; ++p) {
            const int8_t *c = raw + hd->conf_offset + 2 * p;
            const double bg = rn_deq(c[0], hd->conf_zero_point, hd->conf_scale);
            const double face = rn_deq(c[1], hd->conf_zero_point, hd->conf_scale);
            const double score = 1.0 / (1.0 + exp(bg - face));
            int at;
            if (!(score > score_threshold)) continue;
            if (n == top_k && !(score > work[n - 1].score)) continue; /* ties keep the earlier anchor */
            at = n < top_k ? n : n - 1;
            while (at > 0 && work[at - 1].score < score) { /* stable: after equal scores */
                work[at] = work[at - 1];
                --at;
            }
            work[at].score = score;
            work[at].head = h;
            work[at].position = p;
            if (n < top_k) ++n;
        }
    }
    for (i = 0; i < n && kept < max_boxes; ++i) {
        rn_box_t b;
        double area;
        int suppressed = 0;
        rn_decode(raw, &heads[work[i].head], work[i].position, &b);
        b.score = work[i].score;
        area = rn_area(&b);
        for (j = 0; j < kept && !suppressed; ++j) {
            const rn_box_t *k = &boxes[j];
            const double iw = (b.x2 < k->x2 ? b.x2 : k->x2) - (b.x1 > k->x1 ? b.x1 : k->x1);
            const double ih = (b.y2 < k->y2 ? b.y2 : k->y2) - (b.y1 > k->y1 ? b.y1 : k->y1);
            const double inter = (iw > 0 ? iw : 0) * (ih > 0 ? ih : 0);
            const double uni = rn_area(k) + area - inter;
            suppressed = inter / (uni > 1e-12 ? uni : 1e-12) > nms_iou;
        }
        if (!suppressed) boxes[kept++] = b;
    }
    return kept;
}
