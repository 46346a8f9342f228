/* im2col's copies of one kernel row for a run of output pixels:
 * dst[p * dst_step + j] = src[p * src_step + j] for p < count, j < len.
 *
 * With few channels the rows are short (the first layer's 3x3 kernel over 3 channels
 * copies 9 floats per pixel and kernel row), and a scalar loop per copy cost as much as
 * that layer's GEMM; on AVX-512 a run of up to 16 floats is one masked load and store.
 * fastdl_copy_runs_avx512_enabled() says whether this CPU may run it (FASTDL_AVX512=0
 * turns it off, as it does the other hand-written AVX-512 kernels).
 */
#ifndef FASTDL_COPY_RUNS_H
#define FASTDL_COPY_RUNS_H
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

static int fastdl_copy_runs_state; /* set once when the extension module loads */

__attribute__((constructor)) static void fastdl_copy_runs_init(void) {
    const char *choice = getenv("FASTDL_AVX512");
    __builtin_cpu_init();
    fastdl_copy_runs_state = __builtin_cpu_supports("avx512f")
                             && !(choice != NULL && strcmp(choice, "0") == 0);
}

static inline int fastdl_copy_runs_avx512_enabled(void) { return fastdl_copy_runs_state; }

/* len <= 16 */
__attribute__((target("avx512f"))) static void
fastdl_copy_short_runs_f(float *dst, ptrdiff_t dst_step, const float *src, ptrdiff_t src_step,
                         ptrdiff_t count, ptrdiff_t len) {
    __mmask16 lanes = len >= 16 ? (__mmask16) 0xFFFF : (__mmask16) ((1u << len) - 1u);
    for (ptrdiff_t p = 0; p < count; p++)
        _mm512_mask_storeu_ps(dst + p * dst_step, lanes,
                              _mm512_maskz_loadu_ps(lanes, src + p * src_step));
}
#else
static inline int fastdl_copy_runs_avx512_enabled(void) { return 0; }
static void fastdl_copy_short_runs_f(float *dst, ptrdiff_t dst_step, const float *src,
                                     ptrdiff_t src_step, ptrdiff_t count, ptrdiff_t len) {}
#endif
#endif
