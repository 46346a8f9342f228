# Column sums widened to double, shared by the dense and convolution kernels.
from cython cimport floating

cdef extern from "sums.h" nogil:
    void fastdl_add_rows_f(double *acc, const float *x, Py_ssize_t rows, Py_ssize_t n)


cdef inline void add_rows(double *acc, const floating *x, Py_ssize_t rows, Py_ssize_t n) noexcept nogil:
    """acc (n,) += the column sums of x (rows, n), row-major, accumulated in double
    (float32 rows in runs of 16 first, see sums.h)."""
    cdef Py_ssize_t r, j
    if floating is float:
        fastdl_add_rows_f(acc, x, rows, n)
    else:
        for r in range(rows):
            for j in range(n):
                acc[j] += x[r * n + j]
