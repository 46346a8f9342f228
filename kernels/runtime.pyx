# What the compiled kernels were built with: OpenMP and its thread count.
cimport openmp

cdef extern from *:
    """
    static int fastdl_openmp_version(void) {
    #ifdef _OPENMP
        return _OPENMP;
    #else
        return 0;
    #endif
    }
    """
    int fastdl_openmp_version() nogil


def openmp_max_threads():
    """The OpenMP runtime's default team size for this thread."""
    return openmp.omp_get_max_threads()


def openmp_version():
    """The _OPENMP date (yyyymm) of the OpenMP the kernels were compiled with, 0 if none."""
    return fastdl_openmp_version()
