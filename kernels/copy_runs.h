/* im2col's copies of one kernel row for a run of output pixels:
 * dst[p * dst_step + j] = src[p * src_step + j] for p < count, j < len.
 *
 * With few channels the rows are short (the first layer's 3x3 kernel over 3 channels
 * copies 9 floats per pixel and kernel row), and a scalar loop per copy cost as much as
 * that layer's GEMM; on AVX-512 a run of up to 16 floats is one masked load and store.
 * Callers ask fastdl_avx512_enabled() (simd.h) first.
 */
#ifndef FASTDL_COPY_RUNS_H
#define FASTDL_COPY_RUNS_H
#include <stddef.h>
#include "simd.h"

#if defined(__GNUC__) && defined(__x86_64__)
/* len <= 16 */
FASTDL_AVX512 static void
fastdl_copy_short_runs_f(float *dst, ptrdiff_t dst_step, const float *src, ptrdiff_t src_step,
                         ptrdiff_t count, ptrdiff_t len) {
    __mmask16 lanes = FASTDL_LANES(len, 0);
    for (ptrdiff_t p = 0; p < count; p++)
        _mm512_mask_storeu_ps(dst + p * dst_step, lanes,
                              _mm512_maskz_loadu_ps(lanes, src + p * src_step));
}
#else
static void fastdl_copy_short_runs_f(float *dst, ptrdiff_t dst_step, const float *src,
                                     ptrdiff_t src_step, ptrdiff_t count, ptrdiff_t len) {}
#endif
#endif
