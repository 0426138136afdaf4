/* rn_dot.h - the int8 dot product with the input zero point hoisted out of the loop (internal).
 *
 *   sum_i w[i] * (x[i] - x_zp)  ==  sum_i w[i] * x[i]  -  x_zp * sum_i w[i]
 *
 * is an identity on integers, so computing the right-hand side is bit-exact with the int8
 * reference (quant.py subtracts the zero point first) as long as no int32 sum overflows:
 * |w * x| <= 127 * 128 and |x_zp * w| <= 128 * 127, so any n below 2^31 / 16256 = 132104 terms
 * is safe, far beyond any layer this runtime serves. This is CMSIS-NN's scheme (the weight sum
 * is what SXTAB16 accumulates next to SMLAD in an optimised version).
 */
#ifndef RN_DOT_H
#define RN_DOT_H

#include <stdint.h>

static inline int32_t rn_dot_s8(const int8_t *x, const int8_t *w, int n, int32_t x_zp)
{
    int32_t acc = 0;
    int32_t wsum = 0;
    int i;
    for (i = 0; i < n; ++i) {
        const int32_t wv = w[i];
        acc += wv * x[i];
        wsum += wv;
    }
    return acc - x_zp * wsum;
}

#endif /* RN_DOT_H */
