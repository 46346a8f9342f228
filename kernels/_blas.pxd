# Row-major GEMM over SciPy's BLAS (scipy.linalg.cython_blas), for float and double.
#
# C[m, n] = alpha * op(A) @ op(B) + beta * C, every matrix row-major with its own
# leading dimension. BLAS is column-major, so we compute C^T = op(B)^T @ op(A)^T,
# which is the same call with the operands swapped.
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha, const floating *a, int lda,
                      const floating *b, int ldb, floating beta,
                      floating *c, int ldc) noexcept nogil:
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float *> b, &ldb,
              <float *> a, &lda, &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double *> b, &ldb,
              <double *> a, &lda, &beta, c, &ldc)
