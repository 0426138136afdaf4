/* add.c - the MBConv residual add of two int8 tensors into a third scale (quant.py: QAdd).
 *
 * Fixed-point rules (bit-exact with rnnpool_nas/train/quant.py):
 *   out = clamp(out_zp + requant(a - a_zp, a_mult, a_shift) + requant(b - b_zp, b_mult, b_shift), -128, 127)
 *   requant(v, m, s) = (v * m + 2^(s-1)) >> s   (int64 product, arithmetic shift: halves round up)
 * Element i is read before it is written, so out may alias a or b (in-place add).
 */
#include "rn_runtime.h"

void rn_add(const int8_t *a, const int8_t *b, int n,
            int32_t a_zp, int32_t a_mult, int32_t a_shift,
            int32_t b_zp, int32_t b_mult, int32_t b_shift, int32_t out_zp, int8_t *out)
{
    int i;
    for (i = 0; i < n; ++i) {
        const int64_t va = rn_requant((int32_t)a[i] - a_zp, a_mult, a_shift);
        const int64_t vb = rn_requant((int32_t)b[i] - b_zp, b_mult, b_shift);
        out[i] = rn_clamp_s8(out_zp + va + vb, -128, 127);
    }
}
