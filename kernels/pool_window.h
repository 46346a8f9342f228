/* The channel loops of pooling, one window of one output pixel at a time.
 *
 * The selects that max pooling needs only vectorise with blend instructions (SSE4.1
 * and later), which the portable x86-64 baseline lacks, so these functions are built
 * with target_clones: the loader picks the AVX-512, AVX2 or baseline copy for the CPU
 * at hand. (Cython's `a if c else b` becomes if/else statements that GCC refuses to
 * vectorise at all, hence C.) Pointers are at the window's first real position;
 * `row` is the distance between input rows, `c` the number of channels.
 */
#ifndef FASTDL_POOL_WINDOW_H
#define FASTDL_POOL_WINDOW_H
#include <stddef.h>

#include "simd.h"

#define FASTDL_CHUNK 64 /* channels kept in local arrays at once */

#define FASTDL_ARGMAX_NONE 255 /* a saved position that names no element: no gradient */

#define FASTDL_POOL_WINDOW(T, S)                                                         \
/* best[j], at[j] for the n (<= FASTDL_CHUNK) channels at x: the maximum over the window \
 * and the position of its first occurrence, first + iy * kw + ix (first: the position  \
 * of the window's first real element, kw: the unclipped window's width). `pixel` is    \
 * the distance between columns. Positions are kept in T so that the selects vectorise  \
 * with the compares. */                                                                 \
static inline __attribute__((always_inline)) void                                        \
fastdl_max_chunk_##S(const T *x, T *best, T *at, ptrdiff_t n, ptrdiff_t rows, ptrdiff_t cols, \
                     ptrdiff_t row, ptrdiff_t pixel, ptrdiff_t first, ptrdiff_t kw) {    \
    for (ptrdiff_t j = 0; j < n; j++) { best[j] = x[j]; at[j] = (T) first; }             \
    for (ptrdiff_t iy = 0; iy < rows; iy++)                                              \
        for (ptrdiff_t ix = 0; ix < cols; ix++) {                                        \
            const T *restrict src = x + iy * row + ix * pixel;                           \
            T k = (T) (first + iy * kw + ix);                                            \
            for (ptrdiff_t j = 0; j < n; j++) {                                          \
                /* strict: a tie keeps the first; a NaN wins over any number and the \
                 * first NaN stays (the maximum of a window with a NaN is NaN, as in    \
                 * NumPy and PyTorch) */                                                \
                int better = src[j] > best[j] || (src[j] != src[j] && best[j] == best[j]); \
                at[j] = better ? k : at[j];                                              \
                best[j] = better ? src[j] : best[j];                                     \
            }                                                                            \
        }                                                                                \
}                                                                                        \
/* dx[., ., j] (+)= grad[j] at the element whose position is at[j] (as above), zero     \
 * elsewhere in the window, for the n channels at dx; assign: set dx instead of adding */ \
static inline __attribute__((always_inline)) void                                        \
fastdl_scatter_chunk_##S(const T *at, const T *grad, T *dx, ptrdiff_t n, ptrdiff_t rows, \
                         ptrdiff_t cols, ptrdiff_t row, ptrdiff_t pixel, ptrdiff_t first, \
                         ptrdiff_t kw, int assign) {                                     \
    for (ptrdiff_t iy = 0; iy < rows; iy++)                                              \
        for (ptrdiff_t ix = 0; ix < cols; ix++) {                                        \
            T *restrict dst = dx + iy * row + ix * pixel;                                \
            T k = (T) (first + iy * kw + ix);                                            \
            if (assign)                                                                  \
                for (ptrdiff_t j = 0; j < n; j++) dst[j] = at[j] == k ? grad[j] : (T)0;  \
            else                                                                         \
                for (ptrdiff_t j = 0; j < n; j++) dst[j] += at[j] == k ? grad[j] : (T)0; \
        }                                                                                \
}                                                                                        \
/* out[ch] = max over the window of x[., ., ch]; arg (when not NULL) receives the       \
 * positions as fastdl_max_chunk gives them, or FASTDL_ARGMAX_NONE with relu where the  \
 * maximum is not above 0 */                                                             \
static inline __attribute__((always_inline)) void                                        \
fastdl_max_window_body_##S(const T *x, T *out, unsigned char *arg, ptrdiff_t rows,      \
                           ptrdiff_t cols, ptrdiff_t row, ptrdiff_t c, ptrdiff_t first,  \
                           ptrdiff_t kw, int relu) {                                     \
    for (ptrdiff_t c0 = 0; c0 < c; c0 += FASTDL_CHUNK) {                                 \
        ptrdiff_t n = c - c0 < FASTDL_CHUNK ? c - c0 : FASTDL_CHUNK;                     \
        T best[FASTDL_CHUNK], at[FASTDL_CHUNK];                                          \
        if (arg) {                                                                       \
            fastdl_max_chunk_##S(x + c0, best, at, n, rows, cols, row, c, first, kw);    \
            for (ptrdiff_t j = 0; j < n; j++)                                            \
                arg[c0 + j] = relu && !(best[j] > 0) ? FASTDL_ARGMAX_NONE : (unsigned char) at[j]; \
        } else { /* the maximum alone: no positions to carry */                          \
            for (ptrdiff_t j = 0; j < n; j++) best[j] = x[c0 + j];                       \
            for (ptrdiff_t iy = 0; iy < rows; iy++)                                      \
                for (ptrdiff_t ix = 0; ix < cols; ix++) {                                \
                    const T *restrict src = x + iy * row + ix * c + c0;                  \
                    for (ptrdiff_t j = 0; j < n; j++) /* a NaN sticks */                 \
                        best[j] = src[j] > best[j] || src[j] != src[j] ? src[j] : best[j]; \
                }                                                                        \
        }                                                                                \
        for (ptrdiff_t j = 0; j < n; j++) out[c0 + j] = best[j];                         \
    }                                                                                    \
}                                                                                        \
FASTDL_CLONES static void fastdl_max_window_##S(const T *x, T *out, unsigned char *arg,  \
                                                ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t row, \
                                                ptrdiff_t c, ptrdiff_t first, ptrdiff_t kw) { \
    fastdl_max_window_body_##S(x, out, arg, rows, cols, row, c, first, kw, 0);           \
}                                                                                        \
/* A row of windows without padding (the fused convolution + pooling): out[px, ch] (and \
 * arg) for the rows x cols window at column px * cols, for px < count */               \
FASTDL_CLONES static void fastdl_max_pool_row_##S(const T *x, T *out, unsigned char *arg, \
                                                 ptrdiff_t count, ptrdiff_t rows,        \
                                                 ptrdiff_t cols, ptrdiff_t row, ptrdiff_t c, \
                                                 int relu) {                             \
    for (ptrdiff_t px = 0; px < count; px++)                                             \
        fastdl_max_window_body_##S(x + px * cols * c, out + px * c, arg ? arg + px * c : NULL, \
                                   rows, cols, row, c, 0, cols, relu);                   \
}                                                                                        \
/* dx[., ., ch] (+)= dy[ch] at the position a forward pass saved in arg (x is not read), \
 * zero elsewhere in the window; a position that names no element of the window passes  \
 * nothing; assign: set dx instead of adding to it */                                   \
FASTDL_CLONES static void fastdl_max_argmax_backward_##S(const unsigned char *arg, const T *dy, \
                                                T *dx, ptrdiff_t rows, ptrdiff_t cols,   \
                                                ptrdiff_t row, ptrdiff_t c, ptrdiff_t first, \
                                                ptrdiff_t kw, int assign) {              \
    for (ptrdiff_t c0 = 0; c0 < c; c0 += FASTDL_CHUNK) {                                 \
        ptrdiff_t n = c - c0 < FASTDL_CHUNK ? c - c0 : FASTDL_CHUNK;                     \
        T at[FASTDL_CHUNK];                                                              \
        for (ptrdiff_t j = 0; j < n; j++) at[j] = (T) arg[c0 + j];                       \
        fastdl_scatter_chunk_##S(at, dy + c0, dx + c0, n, rows, cols, row, c, first, kw, assign); \
    }                                                                                    \
}                                                                                        \
/* dx[., ., ch] (+)= dy[ch] at the first (row-major) maximum of the window; with relu (x  \
 * is a ReLU's output, dx the gradient of its input) nothing where that maximum is <= 0. \
 * assign: no other window overlaps this one, so dx is set (zeros besides the maximum) \
 * and needs no zeroing beforehand */                                                    \
FASTDL_CLONES static void fastdl_max_window_backward_##S(const T *x, const T *dy, T *dx, \
                                                ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t row, \
                                                ptrdiff_t c, int relu, int assign) {     \
    for (ptrdiff_t c0 = 0; c0 < c; c0 += FASTDL_CHUNK) {                                 \
        ptrdiff_t n = c - c0 < FASTDL_CHUNK ? c - c0 : FASTDL_CHUNK;                     \
        T best[FASTDL_CHUNK], at[FASTDL_CHUNK], grad[FASTDL_CHUNK];                      \
        fastdl_max_chunk_##S(x + c0, best, at, n, rows, cols, row, c, 0, cols);          \
        for (ptrdiff_t j = 0; j < n; j++)                                                \
            grad[j] = relu && !(best[j] > 0) ? (T)0 : dy[c0 + j];                        \
        fastdl_scatter_chunk_##S(at, grad, dx + c0, n, rows, cols, row, c, 0, cols, assign); \
    }                                                                                    \
}                                                                                        \
/* out[ch] = mean over the window of x[., ., ch] */                                      \
FASTDL_CLONES static void fastdl_avg_window_##S(const T *x, T *out, ptrdiff_t rows,      \
                                                ptrdiff_t cols, ptrdiff_t row, ptrdiff_t c) { \
    T scale = (T)1 / (T)(rows * cols);                                                   \
    for (ptrdiff_t j = 0; j < c; j++) out[j] = 0;                                        \
    for (ptrdiff_t iy = 0; iy < rows; iy++)                                              \
        for (ptrdiff_t ix = 0; ix < cols; ix++) {                                        \
            const T *restrict src = x + iy * row + ix * c;                               \
            for (ptrdiff_t j = 0; j < c; j++) out[j] += src[j];                          \
        }                                                                                \
    for (ptrdiff_t j = 0; j < c; j++) out[j] *= scale;                                   \
}                                                                                        \
/* dx[., ., ch] += dy[ch] / window size, over the window */                              \
FASTDL_CLONES static void fastdl_avg_window_backward_##S(const T *dy, T *dx, ptrdiff_t rows, \
                                                ptrdiff_t cols, ptrdiff_t row, ptrdiff_t c) { \
    T scale = (T)1 / (T)(rows * cols);                                                   \
    for (ptrdiff_t iy = 0; iy < rows; iy++)                                              \
        for (ptrdiff_t ix = 0; ix < cols; ix++) {                                        \
            T *restrict dst = dx + iy * row + ix * c;                                    \
            for (ptrdiff_t j = 0; j < c; j++) dst[j] += dy[j] * scale;                   \
        }                                                                                \
}

FASTDL_POOL_WINDOW(float, f)
FASTDL_POOL_WINDOW(double, d)

#endif
