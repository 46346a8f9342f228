/* Max pooling's window loops for float32 on AVX-512, 16 channels per vector.
 *
 * Same contract and results as the max-pooling functions of pool_window.h (strict `>`
 * so that a tie keeps the earlier value, a NaN beats any number and the first NaN
 * stays, the first maximum gets the gradient, positions saved as there), written with intrinsics: the portable loops go through
 * stack arrays of FASTDL_CHUNK channels and cost ~300 cycles per 32-channel window on
 * this project's machine, these keep the running maximum and its position in
 * registers. Callers ask fastdl_avx512_enabled() (simd.h) first.
 */
#ifndef FASTDL_POOL_WINDOW_AVX512_H
#define FASTDL_POOL_WINDOW_AVX512_H
#include <stddef.h>
#include "pool_window.h" /* FASTDL_ARGMAX_NONE */
#include "simd.h"

#if defined(__GNUC__) && defined(__x86_64__)
#define FASTDL_POOL_INLINE static inline __attribute__((always_inline)) FASTDL_AVX512

/* The window's position index first + iy * kw + ix, as 16 lanes */
#define FASTDL_POSITION(first, kw, iy, ix) _mm512_set1_epi32((int) ((first) + (iy) * (kw) + (ix)))

/* The first min(n, 16) bytes of v to dst (the masked form of vpmovdb to memory is
 * several times slower than converting in registers on this project's machine) */
FASTDL_POOL_INLINE void fastdl_store_bytes(unsigned char *dst, __m128i v, ptrdiff_t n) {
    if (n >= 16) {
        _mm_storeu_si128((__m128i *) dst, v);
    } else {
        unsigned char all[16];
        _mm_storeu_si128((__m128i *) all, v);
        memcpy(dst, all, (size_t) n);
    }
}

/* The maximum over the rows x cols window of the 16 channels at x (lanes `live`); `row`
 * is the distance between input rows, `c` between columns. With positions, `at` holds
 * each lane's first maximum's position, first + iy * kw + ix (first: the position of
 * the window's first real element, kw: the unclipped window's width) */
typedef struct { __m512 best; __m512i at; } fastdl_window_max;

FASTDL_POOL_INLINE fastdl_window_max
fastdl_max_vector(const float *x, __mmask16 live, ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t row,
                  ptrdiff_t c, ptrdiff_t first, ptrdiff_t kw, int positions) {
    fastdl_window_max m = {_mm512_maskz_loadu_ps(live, x), FASTDL_POSITION(first, kw, 0, 0)};
    for (ptrdiff_t iy = 0; iy < rows; iy++)
        for (ptrdiff_t ix = iy == 0; ix < cols; ix++) {
            __m512 v = _mm512_maskz_loadu_ps(live, x + iy * row + ix * c);
            /* where best is a number: v > best, or v is NaN (unordered); a NaN best stays */
            __mmask16 better = _mm512_mask_cmp_ps_mask(
                _mm512_cmp_ps_mask(m.best, m.best, _CMP_ORD_Q), v, m.best, _CMP_NLE_UQ);
            m.best = _mm512_mask_mov_ps(m.best, better, v);
            if (positions)
                m.at = _mm512_mask_mov_epi32(m.at, better, FASTDL_POSITION(first, kw, iy, ix));
        }
    return m;
}

/* Lanes whose maximum is not above 0 (a ReLU's output passes no gradient there) */
FASTDL_POOL_INLINE __mmask16 fastdl_not_positive(__m512 best) {
    return _mm512_knot(_mm512_cmp_ps_mask(best, _mm512_setzero_ps(), _CMP_GT_OQ));
}

/* out[ch] = max over the window of x[., ., ch]; arg (when not NULL) receives the
 * positions as fastdl_max_vector gives them, or FASTDL_ARGMAX_NONE with relu where the
 * maximum is not above 0 */
FASTDL_POOL_INLINE void
fastdl_max_window_body(const float *x, float *out, unsigned char *arg, ptrdiff_t rows,
                       ptrdiff_t cols, ptrdiff_t row, ptrdiff_t c, ptrdiff_t first,
                       ptrdiff_t kw, int relu) {
    for (ptrdiff_t c0 = 0; c0 < c; c0 += 16) {
        __mmask16 live = FASTDL_LANES(c, c0);
        /* two calls, each with its flag a constant: a flag known only at run time left
         * the loop 8% slower (measured) */
        const float *win = x + c0;
        fastdl_window_max m = arg ? fastdl_max_vector(win, live, rows, cols, row, c, first, kw, 1)
                                  : fastdl_max_vector(win, live, rows, cols, row, c, 0, 0, 0);
        _mm512_mask_storeu_ps(out + c0, live, m.best);
        if (arg) {
            if (relu)
                m.at = _mm512_mask_mov_epi32(m.at, fastdl_not_positive(m.best),
                                             _mm512_set1_epi32(FASTDL_ARGMAX_NONE));
            fastdl_store_bytes(arg + c0, _mm512_cvtepi32_epi8(m.at), c - c0);
        }
    }
}

/* dx[., ., ch] (+)= grad[ch] where the lane's position `at` is that of the element, zero
 * elsewhere (positions as above); assign: set dx instead of adding to it. stream (with
 * assign): whole aligned vectors bypass the caches (non-temporal stores: no read of
 * the lines before writing them, a third of the traffic when dx exceeds the caches);
 * the caller fences (fastdl_stream_fence) before another thread reads dx */
FASTDL_POOL_INLINE void
fastdl_scatter_window(__m512i at, __m512 grad, float *dx, __mmask16 live, ptrdiff_t rows,
                      ptrdiff_t cols, ptrdiff_t row, ptrdiff_t c, ptrdiff_t first, ptrdiff_t kw,
                      int assign, int stream) {
    for (ptrdiff_t iy = 0; iy < rows; iy++)
        for (ptrdiff_t ix = 0; ix < cols; ix++) {
            float *dst = dx + iy * row + ix * c;
            __m512 here = _mm512_maskz_mov_ps(
                _mm512_cmpeq_epi32_mask(at, FASTDL_POSITION(first, kw, iy, ix)), grad);
            if (!assign) here = _mm512_add_ps(here, _mm512_maskz_loadu_ps(live, dst));
            if (stream && assign && live == (__mmask16) 0xFFFF && ((size_t) dst & 63) == 0)
                _mm512_stream_ps(dst, here);
            else
                _mm512_mask_storeu_ps(dst, live, here);
        }
}

/* dx[., ., ch] (+)= dy[ch] at the window's first maximum, zero elsewhere; relu: nothing
 * where that maximum is <= 0; assign: set dx instead of adding to it */
FASTDL_AVX512 static void
fastdl_max_window_backward_f512(const float *x, const float *dy, float *dx, ptrdiff_t rows,
                                ptrdiff_t cols, ptrdiff_t row, ptrdiff_t c, int relu,
                                int assign, int stream) {
    for (ptrdiff_t c0 = 0; c0 < c; c0 += 16) {
        __mmask16 live = FASTDL_LANES(c, c0);
        fastdl_window_max m = fastdl_max_vector(x + c0, live, rows, cols, row, c, 0, cols, 1);
        __m512 grad = _mm512_maskz_loadu_ps(live, dy + c0);
        if (relu)
            grad = _mm512_mask_mov_ps(grad, fastdl_not_positive(m.best), _mm512_setzero_ps());
        fastdl_scatter_window(m.at, grad, dx + c0, live, rows, cols, row, c, 0, cols, assign,
                              stream);
    }
}

/* The same from the positions a forward pass saved (arg, as fastdl_max_window_body
 * writes them): x is not read; a position that names no element of the window passes
 * nothing */
FASTDL_AVX512 static void
fastdl_max_argmax_backward_f512(const unsigned char *arg, const float *dy, float *dx,
                                ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t row, ptrdiff_t c,
                                ptrdiff_t first, ptrdiff_t kw, int assign, int stream) {
    for (ptrdiff_t c0 = 0; c0 < c; c0 += 16) {
        __mmask16 live = FASTDL_LANES(c, c0);
        __m128i bytes;
        if (live == (__mmask16) 0xFFFF) {
            bytes = _mm_loadu_si128((const __m128i *) (arg + c0));
        } else { /* a masked byte load needs AVX512BW */
            unsigned char tail[16] = {0};
            memcpy(tail, arg + c0, (size_t) (c - c0));
            bytes = _mm_loadu_si128((const __m128i *) tail);
        }
        fastdl_scatter_window(_mm512_cvtepu8_epi32(bytes), _mm512_maskz_loadu_ps(live, dy + c0),
                              dx + c0, live, rows, cols, row, c, first, kw, assign, stream);
    }
}

/* Orders this thread's non-temporal stores before what follows (another thread's reads) */
FASTDL_AVX512 static void fastdl_stream_fence(void) { _mm_sfence(); }

/* One window (called per pixel where padding clips windows) */
FASTDL_AVX512 static void
fastdl_max_window_f512(const float *x, float *out, unsigned char *arg, ptrdiff_t rows,
                       ptrdiff_t cols, ptrdiff_t row, ptrdiff_t c, ptrdiff_t first,
                       ptrdiff_t kw) {
    fastdl_max_window_body(x, out, arg, rows, cols, row, c, first, kw, 0);
}

/* `count` whole windows in a row, window p at x + p * step (and out, arg + p * c): one
 * call per output row instead of one per pixel (10-25% faster forward) */
FASTDL_AVX512 static void
fastdl_max_row_f512(const float *x, float *out, unsigned char *arg, ptrdiff_t count,
                    ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t step, ptrdiff_t row, ptrdiff_t c,
                    int relu) {
    for (ptrdiff_t p = 0; p < count; p++)
        fastdl_max_window_body(x + p * step, out + p * c, arg ? arg + p * c : NULL, rows, cols,
                               row, c, 0, cols, relu);
}

#else /* not GCC/clang on x86-64: the portable loops only */
static void fastdl_max_window_f512(const float *x, float *out, unsigned char *arg,
                                   ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t row, ptrdiff_t c,
                                   ptrdiff_t first, ptrdiff_t kw) {}
static void fastdl_max_window_backward_f512(const float *x, const float *dy, float *dx,
                                            ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t row,
                                            ptrdiff_t c, int relu, int assign, int stream) {}
static void fastdl_max_argmax_backward_f512(const unsigned char *arg, const float *dy, float *dx,
                                            ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t row,
                                            ptrdiff_t c, ptrdiff_t first, ptrdiff_t kw,
                                            int assign, int stream) {}
static void fastdl_stream_fence(void) {}
static void fastdl_max_row_f512(const float *x, float *out, unsigned char *arg, ptrdiff_t count,
                                ptrdiff_t rows, ptrdiff_t cols, ptrdiff_t step, ptrdiff_t row,
                                ptrdiff_t c, int relu) {}
#endif
#endif
