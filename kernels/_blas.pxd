# Row-major GEMM, for float and double: float on an AVX-512 CPU runs fastdl's own
# kernel (gemm_avx512.h, faster than OpenBLAS on the convolutions' shapes); everything
# else goes to SciPy's BLAS (scipy.linalg.cython_blas).
#
# C[m, n] = alpha * op(A) @ op(B) + beta * C, every matrix row-major with its own
# leading dimension. BLAS is column-major, so we compute C^T = op(B)^T @ op(A)^T,
# which is the same call with the operands swapped.
#
# Sizes are Py_ssize_t throughout. SciPy's BLAS takes C ints (LP64), so a product with
# any size or leading dimension above blas_int_max() goes to BLAS in pieces that fit:
# M, N and K split into runs of at most that many, the K pieces summed into C (beta
# applied by the first). A matrix whose leading dimension does not fit is walked one
# stored row at a time (so that BLAS never steps by it).
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm


cdef extern from "gemm_avx512.h" nogil:
    int fastdl_gemm_enabled()
    int fastdl_sgemm_avx512(int trans_a, int trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                            float alpha, const float *a, Py_ssize_t lda, const float *b,
                            Py_ssize_t ldb, float beta, float *c, Py_ssize_t ldc)
    int fastdl_sgemm_avx512_ep(int trans_a, int trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                               float alpha, const float *a, Py_ssize_t lda, const float *b,
                               Py_ssize_t ldb, float beta, float *c, Py_ssize_t ldc,
                               const float *bias, int relu)

cdef extern from *:
    """
    #include <limits.h>
    /* The largest size handed to BLAS in one call: INT_MAX, lowered by the tests
     * (blas_int_max_for_tests) so that the splitting runs on small arrays. */
    static Py_ssize_t fastdl_blas_int_max = INT_MAX;
    """
    Py_ssize_t fastdl_blas_int_max


cdef inline void blas_call(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                           const floating *a, int lda, const floating *b, int ldb, floating beta,
                           floating *c, int ldc) noexcept nogil:
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if m == 0 or n == 0:
        return
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float *> b, &ldb,
              <float *> a, &lda, &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double *> b, &ldb,
              <double *> a, &lda, &beta, c, &ldc)


cdef inline void blas_gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                           floating alpha, const floating *a, Py_ssize_t lda,
                           const floating *b, Py_ssize_t ldb, floating beta,
                           floating *c, Py_ssize_t ldc) noexcept nogil:
    """BLAS in pieces whose sizes and leading dimensions all fit a C int."""
    cdef Py_ssize_t limit = fastdl_blas_int_max
    cdef Py_ssize_t mb, nb, kb, i, j, p, mi, nj, kp
    cdef floating bt
    if m <= limit and n <= limit and k <= limit and lda <= limit and ldb <= limit and ldc <= limit:
        blas_call(trans_a, trans_b, <int> m, <int> n, <int> k, alpha, a, <int> lda, b, <int> ldb,
                  beta, c, <int> ldc)
        return
    # a leading dimension that does not fit: one stored row of that matrix per piece
    mb = 1 if ldc > limit or (lda > limit and not trans_a) else min(m, limit)
    kb = 1 if (lda > limit and trans_a) or (ldb > limit and not trans_b) else min(k, limit)
    nb = 1 if ldb > limit and trans_b else min(n, limit)
    if k == 0:  # C = beta * C: BLAS's own scaling, piece by piece
        kb = 1
    i = 0
    while i < m:
        mi = min(mb, m - i)
        j = 0
        while j < n:
            nj = min(nb, n - j)
            p = 0
            while p < k or (k == 0 and p == 0):
                kp = min(kb, k - p)
                bt = beta if p == 0 else <floating> 1
                # a leading dimension above the limit walks one stored row of its
                # matrix, which BLAS then never steps by: the limit stands in for it
                blas_call(trans_a, trans_b, <int> mi, <int> nj, <int> kp, alpha,
                          a + (p * lda + i if trans_a else i * lda + p), <int> min(lda, limit),
                          b + (j * ldb + p if trans_b else p * ldb + j), <int> min(ldb, limit),
                          bt, c + i * ldc + j, <int> min(ldc, limit))
                if k == 0:
                    break
                p += kp
            j += nj
        i += mi


cdef inline void gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                      floating alpha, const floating *a, Py_ssize_t lda,
                      const floating *b, Py_ssize_t ldb, floating beta,
                      floating *c, Py_ssize_t ldc) noexcept nogil:
    if floating is float:
        if fastdl_gemm_enabled() and fastdl_sgemm_avx512(trans_a, trans_b, m, n, k, alpha, a, lda,
                                                         b, ldb, beta, c, ldc) == 0:
            return
    blas_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
