/* head.c - the S3FD detection-head kernels: L2Norm and the max-out background score
 * (quant.py: QL2Norm, QHead).
 *
 * Fixed-point rules (bit-exact with rnnpool_nas/train/quant.py):
 *   L2Norm, per pixel of c channels:
 *     d[k] = x[k] - in_zp,  ss = sum d[k]^2 (int32),  r = isqrt(ss << 32)  (floor, = sqrt(ss) * 2^16)
 *     out[k] = clamp(out_zp + div_round(d[k] * mult[k], r), -128, 127); ss == 0 gives out_zp
 *     mult[k] = round(weight[k] * 2^16 / out_scale); div_round rounds half away from zero
 *     (64-bit numerator; integer division of the magnitudes, then the sign).
 *   Max-out: out = (max(in[0], in[1], in[2]), in[3]) per pixel (max commutes with quantization).
 */
#include "rn_runtime.h"

/* floor(sqrt(v)), exact, by the bit-by-bit method (no floating point on the device) */
static uint64_t rn_isqrt64(uint64_t v)
{
    uint64_t r = 0, bit = (uint64_t)1 << 62;
    while (bit > v) bit >>= 2;
    while (bit) {
        if (v >= r + bit) {
            v -= r + bit;
            r = (r >> 1) + bit;
        } else {
            r >>= 1;
        }
        bit >>= 2;
    }
    return r;
}

void rn_l2norm(const int8_t *in, int pixels, int c, int32_t in_zp, const int32_t *mult, int32_t out_zp,
               int8_t *out)
{
    int p, k;
    for (p = 0; p < pixels; ++p, in += c, out += c) {
        int32_t ss = 0;
        int64_t r;
        for (k = 0; k < c; ++k) {
            const int32_t d = (int32_t)in[k] - in_zp;
            ss += d * d;
        }
        r = (int64_t)rn_isqrt64((uint64_t)ss << 32);
        for (k = 0; k < c; ++k) {
            int64_t q = 0;
            if (r > 0) {
                const int64_t num = (int64_t)((int32_t)in[k] - in_zp) * mult[k];
                const int64_t mag = ((num < 0 ? -num : num) + r / 2) / r;
                q = num < 0 ? -mag : mag;
            }
            out[k] = rn_clamp_s8(out_zp + q, -128, 127);
        }
    }
}

void rn_maxout(const int8_t *in, int pixels, int8_t *out)
{
    int p;
    for (p = 0; p < pixels; ++p, in += 4, out += 2) {
        int8_t m = in[0] > in[1] ? in[0] : in[1];
        out[0] = m > in[2] ? m : in[2];
        out[1] = in[3];
    }
}
