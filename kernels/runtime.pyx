# What the compiled kernels were built with and run on: OpenMP and its threads, the CPU
# features they use, and the digest of the sources they were compiled from.
cimport openmp

cdef extern from *:
    """
    #ifndef FASTDL_SOURCE_DIGEST
    #define FASTDL_SOURCE_DIGEST ""
    #endif
    static int fastdl_openmp_version(void) {
    #ifdef _OPENMP
        return _OPENMP;
    #else
        return 0;
    #endif
    }
    """
    int fastdl_openmp_version() nogil
    const char *FASTDL_SOURCE_DIGEST


def openmp_max_threads():
    """The OpenMP runtime's default team size for this thread."""
    return openmp.omp_get_max_threads()


def openmp_version():
    """The _OPENMP date (yyyymm) of the OpenMP the kernels were compiled with, 0 if none."""
    return fastdl_openmp_version()


cdef extern from "gemm_avx512.h":
    """
    static int fastdl_cpu_has(int feature) {
    #if defined(__GNUC__) && defined(__x86_64__)
        __builtin_cpu_init();
        switch (feature) {
        case 0: return __builtin_cpu_supports("avx512f");
        case 1: return __builtin_cpu_supports("avx2");
        case 2: return __builtin_cpu_supports("fma");
        }
    #endif
    #ifdef FASTDL_CLONES_BUILT
        if (feature == 3) return 1;
    #endif
        return 0;
    }
    """
    int fastdl_cpu_has(int feature) nogil
    int fastdl_avx512_enabled() nogil
    int fastdl_gemm_enabled() nogil


def cpu_features():
    """What the kernels use on this CPU: the instruction sets it has, which copies of the
    loops run (GCC's target clones pick AVX-512, AVX2 or baseline x86-64 at load time),
    whether the hand-written AVX-512 kernels (fastdl's sgemm, Winograd, pooling windows)
    are on, and which float32 GEMM the convolutions and dense layers call."""
    has = {name: bool(fastdl_cpu_has(code)) for code, name in enumerate(("avx512f", "avx2", "fma"))}
    if not fastdl_cpu_has(3):
        clones = "one portable copy (no target clones on this compiler or CPU family)"
    else:
        clones = "avx512f" if has["avx512f"] else ("avx2" if has["avx2"] else "baseline x86-64")
    return {
        **has,
        "loop clones": clones,
        "avx512 kernels": bool(fastdl_avx512_enabled()),
        "float32 gemm": "fastdl AVX-512 sgemm" if fastdl_gemm_enabled() else "BLAS (SciPy's)",
        "float64 gemm": "BLAS (SciPy's)",
    }


def source_digest():
    """fastdl._kernels._digest's digest of the kernel sources this build compiled."""
    return FASTDL_SOURCE_DIGEST.decode()
