/* Elementwise selects (ReLU and its gradient) in C, built for several instruction sets.
 *
 * Like the pooling windows (pool_window.h), these selects vectorise only where the
 * CPU has blend instructions, and never when written as Cython conditional
 * expressions; as branches on random signs they mispredict half the time.
 */
#ifndef FASTDL_ELEMENTWISE_H
#define FASTDL_ELEMENTWISE_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "simd.h"

#define FASTDL_ELEMENTWISE(T, S)                                                        \
/* out = x < 0 ? 0 : x (NaN stays NaN); out may be x */                                 \
FASTDL_CLONES static void fastdl_relu_##S(const T *x, T *out, ptrdiff_t n) {            \
    for (ptrdiff_t i = 0; i < n; i++) out[i] = x[i] < 0 ? (T)0 : x[i];                  \
}                                                                                       \
/* dx = x > 0 ? dy : 0 */                                                               \
FASTDL_CLONES static void fastdl_relu_backward_##S(const T *dy, const T *x, T *dx,      \
                                                   ptrdiff_t n) {                       \
    for (ptrdiff_t i = 0; i < n; i++) dx[i] = x[i] > 0 ? dy[i] : (T)0;                  \
}                                                                                       \
/* z = relu(z + bias), one row of n */                                                  \
FASTDL_CLONES static void fastdl_bias_relu_##S(T *z, const T *bias, ptrdiff_t n) {      \
    for (ptrdiff_t i = 0; i < n; i++) {                                                 \
        T v = z[i] + bias[i];                                                           \
        z[i] = v < 0 ? (T)0 : v;                                                        \
    }                                                                                   \
}

FASTDL_ELEMENTWISE(float, f)
FASTDL_ELEMENTWISE(double, d)

/* 1 when no element of x is +-inf or NaN (all exponent bits set); the bits are tested as
 * integers, so that the reduction vectorises without reassociating float additions */
FASTDL_CLONES static int fastdl_all_finite_f(const float *x, ptrdiff_t n) {
    uint32_t bad = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, x + i, sizeof bits);
        bad |= (bits & 0x7f800000u) == 0x7f800000u;
    }
    return !bad;
}

#endif
