/* Max pooling's window loops for float32 on AVX-512, 16 channels per vector.
 *
 * Same contract and results as fastdl_max_window_f / fastdl_max_window_backward_f in
 * pool_window.h (strict `>` so that a tie or a NaN keeps the earlier value, the first
 * maximum gets the gradient), written with intrinsics: the portable loops go through
 * stack arrays of FASTDL_CHUNK channels and cost ~300 cycles per 32-channel window on
 * this project's machine, these keep the running maximum and its position in
 * registers. Callers ask fastdl_avx512_enabled() (simd.h) first.
 */
#ifndef FASTDL_POOL_WINDOW_AVX512_H
#define FASTDL_POOL_WINDOW_AVX512_H
#include <stddef.h>
#include "simd.h"

#if defined(__GNUC__) && defined(__x86_64__)
#define FASTDL_POOL_INLINE static inline __attribute__((always_inline)) FASTDL_AVX512

/* out[ch] = max over the rows x cols window of x[., ., ch]; `row` is the distance
 * between input rows, `c` the number of channels */
FASTDL_POOL_INLINE void
fastdl_max_window_body(const float *x, float *out, ptrdiff_t rows, ptrdiff_t cols,
                       ptrdiff_t row, ptrdiff_t c) {
    for (ptrdiff_t c0 = 0; c0 < c; c0 += 16) {
        __mmask16 live = FASTDL_LANES(c, c0);
        __m512 best = _mm512_maskz_loadu_ps(live, x + c0);
        for (ptrdiff_t iy = 0; iy < rows; iy++)
            for (ptrdiff_t ix = iy == 0; ix < cols; ix++) {
                __m512 v = _mm512_maskz_loadu_ps(live, x + iy * row + ix * c + c0);
                best = _mm512_mask_mov_ps(best, _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ), v);
            }
        _mm512_mask_storeu_ps(out + c0, live, best);
    }
}

/* dx[., ., ch] (+)= dy[ch] at the window's first maximum, zero elsewhere; relu: nothing
 * where that maximum is <= 0; assign: set dx instead of adding to it */
FASTDL_AVX512 static void
fastdl_max_window_backward_f512(const float *x, const float *dy, float *dx, ptrdiff_t rows,
                                ptrdiff_t cols, ptrdiff_t row, ptrdiff_t c, int relu,
                                int assign) {
    for (ptrdiff_t c0 = 0; c0 < c; c0 += 16) {
        __mmask16 live = FASTDL_LANES(c, c0);
        __m512 best = _mm512_maskz_loadu_ps(live, x + c0);
        __m512i first = _mm512_setzero_si512();
        int k = 1;
        for (ptrdiff_t iy = 0; iy < rows; iy++)
            for (ptrdiff_t ix = iy == 0; ix < cols; ix++, k++) {
                __m512 v = _mm512_maskz_loadu_ps(live, x + iy * row + ix * c + c0);
                __mmask16 better = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
                best = _mm512_mask_mov_ps(best, better, v);
                first = _mm512_mask_mov_epi32(first, better, _mm512_set1_epi32(k));
            }
        __m512 grad = _mm512_maskz_loadu_ps(live, dy + c0);
        if (relu)
            grad = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(best, _mm512_setzero_ps(), _CMP_GT_OQ), grad);
        k = 0;
        for (ptrdiff_t iy = 0; iy < rows; iy++)
            for (ptrdiff_t ix = 0; ix < cols; ix++, k++) {
                float *dst = dx + iy * row + ix * c + c0;
                __m512 here = _mm512_maskz_mov_ps(
                    _mm512_cmpeq_epi32_mask(first, _mm512_set1_epi32(k)), grad);
                if (!assign) here = _mm512_add_ps(here, _mm512_maskz_loadu_ps(live, dst));
                _mm512_mask_storeu_ps(dst, live, here);
            }
    }
}
/* One window (called per pixel where padding clips windows) */
FASTDL_AVX512 static void
fastdl_max_window_f512(const float *x, float *out, ptrdiff_t rows, ptrdiff_t cols,
                       ptrdiff_t row, ptrdiff_t c) {
    fastdl_max_window_body(x, out, rows, cols, row, c);
}

/* `count` whole windows in a row, window p at x + p * step (and out + p * c): one call
 * per output row instead of one per pixel (10-25% faster forward) */
FASTDL_AVX512 static void
fastdl_max_row_f512(const float *x, float *out, ptrdiff_t count, ptrdiff_t rows, ptrdiff_t cols,
                    ptrdiff_t step, ptrdiff_t row, ptrdiff_t c) {
    for (ptrdiff_t p = 0; p < count; p++)
        fastdl_max_window_body(x + p * step, out + p * c, rows, cols, row, c);
}

#else /* not GCC/clang on x86-64: the portable loops only */
static void fastdl_max_window_f512(const float *x, float *out, ptrdiff_t rows, ptrdiff_t cols,
                                   ptrdiff_t row, ptrdiff_t c) {}
static void fastdl_max_window_backward_f512(const float *x, const float *dy, float *dx,
                                            ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t row,
                                            ptrdiff_t c, int relu, int assign) {}
static void fastdl_max_row_f512(const float *x, float *out, ptrdiff_t count, ptrdiff_t rows,
                                ptrdiff_t cols, ptrdiff_t step, ptrdiff_t row, ptrdiff_t c) {}
#endif
#endif
