# Column sums widened to double, shared by the dense and convolution kernels.
from cython cimport floating


cdef inline void add_row(double *acc, const floating *row, Py_ssize_t n) noexcept nogil:
    """acc += row, widened to double; through plain pointers GCC vectorises it."""
    cdef Py_ssize_t j
    for j in range(n):
        acc[j] += row[j]
