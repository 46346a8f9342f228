# Matrix products and reductions that the dense and convolution ops share.
from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport malloc, free

from _blas cimport gemm, fastdl_blas_int_max
from _sums cimport add_rows


def matmul(const floating[:, :] a, const floating[:, :] b, floating[:, ::1] out,
           bint trans_a, bint trans_b, int num_threads):
    """out (M, N) = op(a) @ op(b); a and b are C-contiguous (read-only is fine), op
    transposes when asked.

    A transposed operand is the C-contiguous view of an F-contiguous array, so
    F-ordered inputs reach BLAS without a copy. BLAS runs single-threaded inside our
    threads: each takes a band of out's rows (or columns, when out is wide). Every size
    is a Py_ssize_t (see _blas.pxd for BLAS's 32-bit ints).
    """
    cdef Py_ssize_t m = out.shape[0], n = out.shape[1]
    cdef Py_ssize_t k = a.shape[0] if trans_a else a.shape[1]
    cdef Py_ssize_t lda = a.strides[0] // sizeof(floating)
    cdef Py_ssize_t ldb = b.strides[0] // sizeof(floating)
    cdef const floating *ap = &a[0, 0]
    cdef const floating *bp = &b[0, 0]
    cdef floating *cp = &out[0, 0]
    cdef bint by_rows = m >= n
    cdef int parts = <int> max(1, min(<Py_ssize_t> num_threads, m if by_rows else n))
    cdef int t
    cdef Py_ssize_t lo, hi
    if <double> m * n * k < 65536:
        parts = 1  # too small to be worth a parallel region
    for t in prange(parts, nogil=True, schedule="static", num_threads=parts):
        if by_rows:
            lo = t * m // parts
            hi = (t + 1) * m // parts
            if hi > lo:
                gemm(trans_a, trans_b, hi - lo, n, k, <floating> 1,
                     ap + (lo if trans_a else lo * lda), lda, bp, ldb,
                     <floating> 0, cp + lo * n, n)
        else:
            lo = t * n // parts
            hi = (t + 1) * n // parts
            if hi > lo:
                gemm(trans_a, trans_b, m, hi - lo, k, <floating> 1, ap, lda,
                     bp + (lo * ldb if trans_b else lo), ldb,
                     <floating> 0, cp + lo, n)


def blas_int_max_for_tests(Py_ssize_t limit):
    """Hand BLAS pieces of at most `limit` (rows, columns, depth, leading dimension)
    from this module's products, instead of C's INT_MAX; returns the previous limit.
    Only for the tests of the splitting on small arrays."""
    global fastdl_blas_int_max
    previous = fastdl_blas_int_max
    fastdl_blas_int_max = limit
    return previous


def column_sums(const floating[:, ::1] x, floating[::1] out, int num_threads):
    """out (N,) = x (M, N) summed over rows, accumulated in double.

    Each thread sums a contiguous block of rows (row-major friendly), then the
    partial sums are added in a fixed order, so the result is deterministic for a
    given thread count.
    """
    cdef Py_ssize_t m = x.shape[0], n = x.shape[1]
    cdef Py_ssize_t t, i, j, r0, r1
    cdef int parts = max(1, min(num_threads, m))
    cdef double *partial = <double *> malloc(parts * n * sizeof(double))
    cdef double *acc
    cdef double total
    if partial == NULL:
        raise MemoryError()
    try:
        with nogil:
            for t in prange(parts, schedule="static", num_threads=parts):
                acc = partial + t * n
                for j in range(n):
                    acc[j] = 0
                r0 = t * m // parts
                r1 = (t + 1) * m // parts
                if r1 > r0:
                    add_rows(acc, &x[r0, 0], r1 - r0, n)
            # add the partial sums in a fixed order, rounding once at the end
            for j in range(n):
                total = 0
                for t in range(parts):
                    total = total + partial[t * n + j]
                out[j] = <floating> total
    finally:
        free(partial)
