# Row-major GEMM, for float and double: float on an AVX-512 CPU runs fastdl's own
# kernel (gemm_avx512.h, faster than OpenBLAS on the convolutions' shapes); everything
# else goes to SciPy's BLAS (scipy.linalg.cython_blas).
#
# C[m, n] = alpha * op(A) @ op(B) + beta * C, every matrix row-major with its own
# leading dimension. BLAS is column-major, so we compute C^T = op(B)^T @ op(A)^T,
# which is the same call with the operands swapped.
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


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha, const floating *a, int lda,
                      const floating *b, int ldb, floating beta,
                      floating *c, int ldc) noexcept nogil:
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if floating is float:
        if fastdl_gemm_enabled() and fastdl_sgemm_avx512(trans_a, trans_b, m, n, k, alpha, a, lda,
                                                         b, ldb, beta, c, ldc) == 0:
            return
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float *> b, &ldb,
              <float *> a, &lda, &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double *> b, &ldb,
              <double *> a, &lda, &beta, c, &ldc)
