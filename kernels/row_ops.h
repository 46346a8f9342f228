/* Loops over one contiguous row that GCC vectorises (FASTDL_CLONES, restrict pointers):
 * multiply-adds for the depthwise convolution, and sums in eight independent double
 * lanes for layer normalization (one accumulator would chain every addition behind the
 * last: four cycles an element; without -ffast-math GCC never reassociates it). */
#ifndef FASTDL_ROW_OPS_H
#define FASTDL_ROW_OPS_H
#include <math.h>
#include <stddef.h>

#include "simd.h"

#define FASTDL_SUM_LANES 8

#define FASTDL_ROW_OPS(T, S)                                                            \
/* o[j] += a[j] * b[j] */                                                               \
FASTDL_CLONES static void fastdl_madd_##S(T *restrict o, const T *restrict a,           \
                                         const T *restrict b, ptrdiff_t n) {           \
    for (ptrdiff_t j = 0; j < n; j++) o[j] += a[j] * b[j];                              \
}                                                                                       \
/* acc[j] += (double) a[j] * b[j] */                                                    \
FASTDL_CLONES static void fastdl_madd_wide_##S(double *restrict acc, const T *restrict a, \
                                              const T *restrict b, ptrdiff_t n) {      \
    for (ptrdiff_t j = 0; j < n; j++) acc[j] += (double) a[j] * (double) b[j];          \
}                                                                                       \
/* acc[j] += (double) a[j] */                                                           \
FASTDL_CLONES static void fastdl_add_wide_##S(double *restrict acc, const T *restrict a, \
                                             ptrdiff_t n) {                            \
    for (ptrdiff_t j = 0; j < n; j++) acc[j] += (double) a[j];                          \
}                                                                                       \
/* the sum of x[j], and of (x[j] - shift)^2, in double over eight lanes */              \
FASTDL_CLONES static void fastdl_sums_##S(const T *restrict x, ptrdiff_t n, double shift, \
                                         double *sum, double *squares) {               \
    double s[FASTDL_SUM_LANES] = {0}, q[FASTDL_SUM_LANES] = {0};                                \
    ptrdiff_t j = 0;                                                                    \
    for (; j + FASTDL_SUM_LANES <= n; j += FASTDL_SUM_LANES)                                    \
        for (int l = 0; l < FASTDL_SUM_LANES; l++) {                                        \
            double d = (double) x[j + l] - shift;                                       \
            s[l] += (double) x[j + l];                                                  \
            q[l] += d * d;                                                              \
        }                                                                               \
    double ts = 0, tq = 0;                                                              \
    for (; j < n; j++) {                                                                \
        double d = (double) x[j] - shift;                                               \
        ts += (double) x[j];                                                            \
        tq += d * d;                                                                    \
    }                                                                                   \
    for (int l = 0; l < FASTDL_SUM_LANES; l++) {                                            \
        ts += s[l];                                                                     \
        tq += q[l];                                                                     \
    }                                                                                   \
    *sum = ts;                                                                          \
    *squares = tq;                                                                      \
}                                                                                       \
/* layer normalization of one row: mean, rstd, out = (x - mean) rstd gamma + beta */    \
FASTDL_CLONES static void fastdl_layer_norm_row_##S(                                    \
        const T *restrict x, const T *restrict gamma, const T *restrict beta, double eps, \
        T *restrict out, T *mean, T *rstd, ptrdiff_t n) {                               \
    double sum, squares;                                                                \
    fastdl_sums_##S(x, n, 0.0, &sum, &squares);                                         \
    double mu = sum / (double) n;                                                       \
    fastdl_sums_##S(x, n, mu, &sum, &squares); /* about the mean: no cancellation */    \
    double inv = 1.0 / sqrt(squares / (double) n + eps);                                \
    *mean = (T) mu;                                                                     \
    *rstd = (T) inv;                                                                    \
    for (ptrdiff_t j = 0; j < n; j++)                                                   \
        out[j] = (T) (((double) x[j] - mu) * inv * (double) gamma[j] + (double) beta[j]); \
}                                                                                       \
/* one row's dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dy gamma; dgamma and       \
 * dbeta's column sums added into pg, pb */                                             \
FASTDL_CLONES static void fastdl_layer_norm_row_backward_##S(                           \
        const T *restrict dy, const T *restrict x, double mu, double inv,               \
        const T *restrict gamma, T *restrict dx, double *restrict pg,                   \
        double *restrict pb, ptrdiff_t n) {                                             \
    double sg[FASTDL_SUM_LANES] = {0}, sgx[FASTDL_SUM_LANES] = {0};                             \
    ptrdiff_t j = 0;                                                                    \
    for (; j + FASTDL_SUM_LANES <= n; j += FASTDL_SUM_LANES)                                    \
        for (int l = 0; l < FASTDL_SUM_LANES; l++) {                                        \
            double g = (double) dy[j + l] * (double) gamma[j + l];                      \
            sg[l] += g;                                                                 \
            sgx[l] += g * ((double) x[j + l] - mu) * inv;                               \
        }                                                                               \
    double tg = 0, tgx = 0;                                                             \
    for (; j < n; j++) {                                                                \
        double g = (double) dy[j] * (double) gamma[j];                                  \
        tg += g;                                                                        \
        tgx += g * ((double) x[j] - mu) * inv;                                          \
    }                                                                                   \
    for (int l = 0; l < FASTDL_SUM_LANES; l++) {                                            \
        tg += sg[l];                                                                    \
        tgx += sgx[l];                                                                  \
    }                                                                                   \
    tg /= (double) n;                                                                   \
    tgx /= (double) n;                                                                  \
    for (j = 0; j < n; j++) {                                                           \
        double xhat = ((double) x[j] - mu) * inv;                                       \
        dx[j] = (T) (inv * ((double) dy[j] * (double) gamma[j] - tg - xhat * tgx));     \
        pg[j] += (double) dy[j] * xhat;                                                 \
        pb[j] += (double) dy[j];                                                        \
    }                                                                                   \
}

FASTDL_ROW_OPS(float, f)
FASTDL_ROW_OPS(double, d)

#endif
