/* One sample's step of a recurrent cell (SimpleRNN, LSTM, GRU), forward and backward:
 * the gate nonlinearities, the cell update and the mask over a row of units, written as
 * plain loops over contiguous runs so that they vectorise (FASTDL_CLONES).
 *
 * float's sigmoid and tanh go through fastdl_expf, a branch-free exp (Cody-Waite
 * reduction and a degree-6 polynomial, Cephes's coefficients, within 2 ulp on its
 * clamped range), since libm's expf is a scalar call that took three quarters of an
 * LSTM step; double keeps libm. NaN propagates through both.
 *
 * Row layouts (n units): x, inner the step's input projection and h @ U (G*n), b the
 * input bias (G*n), rb GRU's recurrent bias (3n); g the
 * saved gates (SimpleRNN its output; LSTM i, f, c~, o; GRU z, r, h~, h @ U_h + b_h).
 */
#ifndef FASTDL_RECURRENT_CELL_H
#define FASTDL_RECURRENT_CELL_H
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "simd.h"

#define FASTDL_SIMPLE_RNN 0
#define FASTDL_LSTM 1
#define FASTDL_GRU 2
#define FASTDL_RELU 1
#define FASTDL_SIGMOID 2
#define FASTDL_TANH 3
/* inlined into each instruction set's clone of the step functions, so vectorised there */
#define FASTDL_INLINE static inline __attribute__((always_inline))

FASTDL_INLINE float fastdl_expf(float x) {
    /* comparisons that keep NaN; below -87.3 the result would leave the normal range */
    x = x > 88.3762626647949f ? 88.3762626647949f : x;
    x = x < -87.3365447505531f ? -87.3365447505531f : x;
    float t = x * 1.44269504088896341f + 12582912.0f; /* rounds x / ln 2 to an integer */
    float k = t - 12582912.0f;
    float r = x - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t bits;
    memcpy(&bits, &t, sizeof bits);
    uint32_t scale_bits = (bits - 0x4B400000u + 127u) << 23; /* 2^k, from t's low bits */
    float scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    return p * scale;
}

FASTDL_INLINE float fastdl_sigmoidf(float x) { return 1.0f / (1.0f + fastdl_expf(-x)); }

FASTDL_INLINE float fastdl_tanhf(float x) {
    /* small |x|: the odd polynomial (1 - 2 / (e^2x + 1) would cancel); else from exp */
    float a = x < 0 ? -x : x;
    float z = x * x;
    float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z
                    + 1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
    float big = 1.0f - 2.0f / (fastdl_expf(2.0f * a) + 1.0f);
    big = x < 0 ? -big : big;
    return a < 0.625f ? small : big;
}

FASTDL_INLINE double fastdl_sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

#define FASTDL_RECURRENT(T, S, SIGMOID_FN, TANH_FN)                                      \
/* v = act(v) over n values */                                                          \
FASTDL_INLINE void fastdl_act_##S(T *v, ptrdiff_t n, int code) {                          \
    if (code == FASTDL_SIGMOID) {                                                       \
        for (ptrdiff_t j = 0; j < n; j++) v[j] = SIGMOID_FN(v[j]);                      \
    } else if (code == FASTDL_TANH) {                                                   \
        for (ptrdiff_t j = 0; j < n; j++) v[j] = TANH_FN(v[j]);                         \
    } else if (code == FASTDL_RELU) {                                                   \
        for (ptrdiff_t j = 0; j < n; j++) v[j] = v[j] < 0 ? (T)0 : v[j];                \
    }                                                                                   \
}                                                                                       \
/* act(v): a constant code (the default activations' entry points) inlines to its formula */ \
FASTDL_INLINE T fastdl_act1_##S(T v, int code) {                                         \
    return code == FASTDL_SIGMOID ? SIGMOID_FN(v)                                       \
         : code == FASTDL_TANH ? TANH_FN(v)                                             \
         : code == FASTDL_RELU ? (v < 0 ? (T)0 : v) : v;                                \
}                                                                                       \
/* the activation's derivative at the point whose output is y */                        \
FASTDL_INLINE T fastdl_dact_##S(T y, int code) {                                        \
    return code == FASTDL_SIGMOID ? y * (1 - y)                                         \
         : code == FASTDL_TANH ? 1 - y * y                                              \
         : code == FASTDL_RELU ? (y > 0 ? (T)1 : (T)0) : (T)1;                          \
}                                                                                       \
/* each unit's gates and new states, a few vectorised passes over the row; a masked    \
 * row keeps its states and saves zeros for gates (its backward passes the gradients   \
 * straight on) */                                                                      \
FASTDL_INLINE void fastdl_step_body_##S(                                               \
        int cell, const T *restrict x, const T *restrict b, const T *restrict inner,    \
        const T *restrict rb, const T *restrict hp, const T *restrict cp,               \
        T *restrict hn, T *restrict cn, T *restrict g, ptrdiff_t n, int keep, int a,    \
        int ra) {                                                                       \
    ptrdiff_t j;                                                                        \
    if (!keep) {                                                                        \
        int slots = cell == FASTDL_SIMPLE_RNN ? 1 : 4;                                  \
        memset(g, 0, (size_t) (slots * n) * sizeof(T));                                 \
        memcpy(hn, hp, (size_t) n * sizeof(T));                                         \
        if (cell == FASTDL_LSTM) memcpy(cn, cp, (size_t) n * sizeof(T));                \
        return;                                                                         \
    }                                                                                   \
    if (cell == FASTDL_SIMPLE_RNN) {                                                    \
        for (j = 0; j < n; j++) g[j] = x[j] + b[j] + inner[j];                          \
        fastdl_act_##S(g, n, a);                                                        \
        for (j = 0; j < n; j++) hn[j] = g[j];                                      \
    } else if (cell == FASTDL_LSTM) {                                                   \
        for (j = 0; j < 4 * n; j++) g[j] = x[j] + b[j] + inner[j];                      \
        fastdl_act_##S(g, 2 * n, ra);                                                   \
        fastdl_act_##S(g + 2 * n, n, a);                                                \
        fastdl_act_##S(g + 3 * n, n, ra);                                               \
        for (j = 0; j < n; j++) cn[j] = g[n + j] * cp[j] + g[j] * g[2 * n + j];         \
        memcpy(hn, cn, (size_t) n * sizeof(T));                                         \
        fastdl_act_##S(hn, n, a);                                                       \
        for (j = 0; j < n; j++) hn[j] *= g[3 * n + j];                                  \
    } else {                                                                            \
        for (j = 0; j < 2 * n; j++) g[j] = x[j] + b[j] + inner[j] + rb[j];              \
        fastdl_act_##S(g, 2 * n, ra);                                                   \
        for (j = 0; j < n; j++) {                                                       \
            g[3 * n + j] = inner[2 * n + j] + rb[2 * n + j];                            \
            g[2 * n + j] = x[2 * n + j] + b[2 * n + j] + g[n + j] * g[3 * n + j];       \
        }                                                                               \
        fastdl_act_##S(g + 2 * n, n, a);                                                \
        for (j = 0; j < n; j++)                                                         \
            hn[j] = g[j] * hp[j] + (1 - g[j]) * g[2 * n + j];                           \
    }                                                                                   \
}                                                                                       \
/* dh (+ dseq) and dc into the gates' gradients dx (GRU: and di, the gradient of h @ U  \
 * + b); dh becomes the part of dh_prev that bypasses U (GRU z * dh, else 0), dc dc_prev \
 * (masked: both pass through, the gradients are 0) */                                  \
FASTDL_INLINE void fastdl_step_backward_body_##S(                                      \
        int cell, const T *restrict dseq, const T *restrict g, const T *restrict hp,    \
        const T *restrict cp, const T *restrict cn, T *restrict dh, T *restrict dc,     \
        T *restrict dx, T *restrict di, ptrdiff_t n, int keep, int a, int ra) {         \
    ptrdiff_t j, gates = cell == FASTDL_LSTM ? 4 : cell == FASTDL_GRU ? 3 : 1;          \
    if (dseq != NULL)                                                                   \
        for (j = 0; j < n; j++) dh[j] += dseq[j];                                       \
    if (!keep) {                                                                        \
        memset(dx, 0, (size_t) (gates * n) * sizeof(T));                                \
        if (di != NULL) memset(di, 0, (size_t) (gates * n) * sizeof(T));                \
        return;                                                                         \
    }                                                                                   \
    if (cell == FASTDL_SIMPLE_RNN) {                                                    \
        for (j = 0; j < n; j++) {                                                       \
            dx[j] = dh[j] * fastdl_dact_##S(g[j], a);                                   \
            dh[j] = 0;                                                                  \
        }                                                                               \
    } else if (cell == FASTDL_LSTM) {                                                   \
        for (j = 0; j < n; j++) {                                                       \
            T i = g[j], f = g[n + j], cc = g[2 * n + j], o = g[3 * n + j];              \
            T t = fastdl_act1_##S(cn[j], a);                                             \
            T dcell = dc[j] + dh[j] * o * fastdl_dact_##S(t, a);                        \
            dx[j] = dcell * cc * fastdl_dact_##S(i, ra);                                \
            dx[n + j] = dcell * cp[j] * fastdl_dact_##S(f, ra);                         \
            dx[2 * n + j] = dcell * i * fastdl_dact_##S(cc, a);                         \
            dx[3 * n + j] = dh[j] * t * fastdl_dact_##S(o, ra);                         \
            dc[j] = dcell * f;                                                          \
            dh[j] = 0;                                                                  \
        }                                                                               \
    } else {                                                                            \
        for (j = 0; j < n; j++) {                                                       \
            T z = g[j], r = g[n + j], cc = g[2 * n + j];                                \
            T dcand = dh[j] * (1 - z) * fastdl_dact_##S(cc, a);                         \
            T dz = dh[j] * (hp[j] - cc) * fastdl_dact_##S(z, ra);                       \
            T dr = dcand * g[3 * n + j] * fastdl_dact_##S(r, ra);                       \
            dx[j] = dz;                                                                 \
            dx[n + j] = dr;                                                             \
            dx[2 * n + j] = dcand;                                                      \
            di[j] = dz;                                                                 \
            di[n + j] = dr;                                                             \
            di[2 * n + j] = dcand * r;                                                  \
            dh[j] = dh[j] * z;                                                          \
        }                                                                               \
    }                                                                                   \
}                                                                                       \
/* the rows' entry points: Keras's default activations (tanh, sigmoid) as constants, so  \
 * that their formulas inline into straight vector code; any other pair as arguments */ \
FASTDL_CLONES static void fastdl_step_##S(                                              \
        int cell, const T *x, const T *b, const T *inner, const T *rb, const T *hp,     \
        const T *cp, T *hn, T *cn, T *g, ptrdiff_t n, int keep, int a, int ra) {        \
    if (a == FASTDL_TANH && ra == FASTDL_SIGMOID)                                       \
        fastdl_step_body_##S(cell, x, b, inner, rb, hp, cp, hn, cn, g, n, keep,         \
                             FASTDL_TANH, FASTDL_SIGMOID);                              \
    else                                                                                \
        fastdl_step_body_##S(cell, x, b, inner, rb, hp, cp, hn, cn, g, n, keep, a, ra); \
}                                                                                       \
FASTDL_CLONES static void fastdl_step_backward_##S(                                     \
        int cell, const T *dseq, const T *g, const T *hp, const T *cp, const T *cn,     \
        T *dh, T *dc, T *dx, T *di, ptrdiff_t n, int keep, int a, int ra) {             \
    if (a == FASTDL_TANH && ra == FASTDL_SIGMOID)                                       \
        fastdl_step_backward_body_##S(cell, dseq, g, hp, cp, cn, dh, dc, dx, di, n,     \
                                      keep, FASTDL_TANH, FASTDL_SIGMOID);               \
    else                                                                                \
        fastdl_step_backward_body_##S(cell, dseq, g, hp, cp, cn, dh, dc, dx, di, n,     \
                                      keep, a, ra);                                     \
}

FASTDL_RECURRENT(float, f, fastdl_sigmoidf, fastdl_tanhf)
FASTDL_RECURRENT(double, d, fastdl_sigmoid, tanh)

#endif
