/* What every C kernel header shares about instruction sets.
 *
 * FASTDL_CLONES: plain loops built for AVX-512, AVX2 and baseline x86-64, the loader
 * picking the copy for the CPU at hand (portable wheels, AVX-512 speed where it exists).
 * On GCC/x86-64 also FASTDL_AVX512, the target attribute of hand-written intrinsics;
 * fastdl_avx512_enabled(), whether this CPU may run them (FASTDL_AVX512=0 in the
 * environment says no, so that tests can run the portable code on any machine);
 * FASTDL_AVX2 and fastdl_avx2_enabled() the same for AVX2 with FMA; and
 * FASTDL_LANES(n, j0), the mask of the lanes of the 16-float vector at j0 that are < n.
 */
#ifndef FASTDL_SIMD_H
#define FASTDL_SIMD_H
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define FASTDL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define FASTDL_CLONES_BUILT 1
#else
#define FASTDL_CLONES
#endif

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>

#define FASTDL_AVX512 __attribute__((target("avx512f")))
#define FASTDL_LANES(n, j0) \
    ((n) - (j0) >= 16 ? (__mmask16) 0xFFFF : (__mmask16) ((1u << ((n) - (j0))) - 1u))

#define FASTDL_AVX2 __attribute__((target("avx2,fma")))

static int fastdl_avx512_state; /* set once when the extension module loads */
static int fastdl_avx2_state;

__attribute__((constructor)) static void fastdl_avx512_init(void) {
    const char *choice = getenv("FASTDL_AVX512");
    __builtin_cpu_init();
    fastdl_avx512_state = __builtin_cpu_supports("avx512f")
                          && !(choice != NULL && strcmp(choice, "0") == 0);
    fastdl_avx2_state = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static inline int fastdl_avx512_enabled(void) { return fastdl_avx512_state; }
/* AVX2 with FMA (every x86-64 CPU since 2013-2015): the 128-bit masked loads of the warp */
static inline int fastdl_avx2_enabled(void) { return fastdl_avx2_state; }
#else
static inline int fastdl_avx512_enabled(void) { return 0; }
static inline int fastdl_avx2_enabled(void) { return 0; }
#endif
#endif
