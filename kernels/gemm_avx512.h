/* Row-major single-precision GEMM for AVX-512: C = alpha * op(A) @ op(B) + beta * C.
 *
 * Why not BLAS: on this project's AVX-512 machine OpenBLAS's sgemm reaches 23-84 GFLOP/s
 * per core on the convolutions' shapes (few columns, K of 27..288, or M of 27), while
 * this register-blocked kernel reaches 94-110 of the core's 117 peak (see bench/).
 *
 * A micro-kernel keeps up to 6 rows x 64 columns of C in 24 zmm registers while it
 * walks K in blocks of FASTDL_KC; B's rows are loaded straight as vectors (op(B) = B^T
 * is packed to rows first) and A's elements broadcast, so either layout of A works
 * without packing. Columns past a multiple of 16 are handled with masked loads and
 * stores. Compiled for AVX-512 through target attributes only: fastdl_gemm_enabled()
 * says whether this CPU may run it (FASTDL_GEMM=blas or FASTDL_AVX512=0 in the
 * environment turn it off); otherwise, or when packing cannot allocate, callers use BLAS.
 */
#ifndef FASTDL_GEMM_AVX512_H
#define FASTDL_GEMM_AVX512_H
#include <stddef.h>
#include "simd.h"

#if defined(__GNUC__) && (defined(__x86_64__))
#define FASTDL_KC 256

static int fastdl_gemm_blas; /* FASTDL_GEMM=blas: set once when the extension module loads */

__attribute__((constructor)) static void fastdl_gemm_init(void) {
    const char *choice = getenv("FASTDL_GEMM");
    fastdl_gemm_blas = choice != NULL && strcmp(choice, "blas") == 0;
}

static inline int fastdl_gemm_enabled(void) { return fastdl_avx512_enabled() && !fastdl_gemm_blas; }

/* C[r, 16v + j] = alpha * sum over kc of a(r, k) * b(k, 16v + j) + beta * C: mr rows,
 * nv vectors of 16 columns, the last one masked by `last`; a(r, k) = a[r * ars + k * aks].
 * Then, as the epilogue: + bias[16v + j] when bias is not NULL, max(0, .) when relu
 * (NaN stays NaN, as in fastdl_relu_f). Accumulators are separate variables (an array
 * of vectors gets spilled by GCC). */
#define FASTDL_ACC_DECL(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = c##r##0, \
    c##r##2 = c##r##0, c##r##3 = c##r##0;
#define FASTDL_ACC_FMA(r)                                                  \
    if (mr > r) {                                                          \
        __m512 av = _mm512_set1_ps(ap[r * ars]);                           \
        c##r##0 = _mm512_fmadd_ps(av, b0, c##r##0);                        \
        if (nv > 1) c##r##1 = _mm512_fmadd_ps(av, b1, c##r##1);            \
        if (nv > 2) c##r##2 = _mm512_fmadd_ps(av, b2, c##r##2);            \
        if (nv > 3) c##r##3 = _mm512_fmadd_ps(av, b3, c##r##3);            \
    }
#define FASTDL_ACC_STORE_ONE(r, v)                                         \
    if (nv > v) {                                                          \
        __mmask16 mk = v == nv - 1 ? last : (__mmask16) 0xFFFF;            \
        float *cp = c + r * ldc + 16 * v;                                  \
        __m512 out = _mm512_mul_ps(al, c##r##v);                           \
        if (beta != 0.0f) out = _mm512_fmadd_ps(be, _mm512_maskz_loadu_ps(mk, cp), out); \
        if (bias != NULL) out = _mm512_add_ps(out, _mm512_maskz_loadu_ps(mk, bias + 16 * v)); \
        if (relu) out = _mm512_max_ps(_mm512_setzero_ps(), out);           \
        _mm512_mask_storeu_ps(cp, mk, out);                                \
    }
#define FASTDL_ACC_STORE(r)                                                \
    if (mr > r) {                                                          \
        FASTDL_ACC_STORE_ONE(r, 0) FASTDL_ACC_STORE_ONE(r, 1)              \
        FASTDL_ACC_STORE_ONE(r, 2) FASTDL_ACC_STORE_ONE(r, 3)              \
    }

static inline __attribute__((always_inline)) FASTDL_AVX512 void
fastdl_micro(int mr, int nv, ptrdiff_t kc, const float *a, ptrdiff_t ars, ptrdiff_t aks,
             const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc, __mmask16 last,
             float alpha, float beta, const float *bias, int relu) {
    FASTDL_ACC_DECL(0) FASTDL_ACC_DECL(1) FASTDL_ACC_DECL(2)
    FASTDL_ACC_DECL(3) FASTDL_ACC_DECL(4) FASTDL_ACC_DECL(5)
    for (ptrdiff_t k = 0; k < kc; k++) {
        const float *bp = b + k * ldb, *ap = a + k * aks;
        __m512 b0 = nv == 1 ? _mm512_maskz_loadu_ps(last, bp) : _mm512_loadu_ps(bp);
        __m512 b1 = _mm512_setzero_ps(), b2 = b1, b3 = b1;
        if (nv > 1) b1 = nv == 2 ? _mm512_maskz_loadu_ps(last, bp + 16) : _mm512_loadu_ps(bp + 16);
        if (nv > 2) b2 = nv == 3 ? _mm512_maskz_loadu_ps(last, bp + 32) : _mm512_loadu_ps(bp + 32);
        if (nv > 3) b3 = _mm512_maskz_loadu_ps(last, bp + 48);
        FASTDL_ACC_FMA(0) FASTDL_ACC_FMA(1) FASTDL_ACC_FMA(2)
        FASTDL_ACC_FMA(3) FASTDL_ACC_FMA(4) FASTDL_ACC_FMA(5)
    }
    __m512 al = _mm512_set1_ps(alpha), be = _mm512_set1_ps(beta);
    FASTDL_ACC_STORE(0) FASTDL_ACC_STORE(1) FASTDL_ACC_STORE(2)
    FASTDL_ACC_STORE(3) FASTDL_ACC_STORE(4) FASTDL_ACC_STORE(5)
}

#define FASTDL_MICRO_ROWS(NV)                                                           \
    switch (mr) {                                                                       \
    case 6: fastdl_micro(6, NV, kc, a, ars, aks, b, ldb, c, ldc, last, alpha, beta, bias, relu); break; \
    case 5: fastdl_micro(5, NV, kc, a, ars, aks, b, ldb, c, ldc, last, alpha, beta, bias, relu); break; \
    case 4: fastdl_micro(4, NV, kc, a, ars, aks, b, ldb, c, ldc, last, alpha, beta, bias, relu); break; \
    case 3: fastdl_micro(3, NV, kc, a, ars, aks, b, ldb, c, ldc, last, alpha, beta, bias, relu); break; \
    case 2: fastdl_micro(2, NV, kc, a, ars, aks, b, ldb, c, ldc, last, alpha, beta, bias, relu); break; \
    default: fastdl_micro(1, NV, kc, a, ars, aks, b, ldb, c, ldc, last, alpha, beta, bias, relu); break; \
    }

static FASTDL_AVX512 void
fastdl_micro_any(int mr, int nv, ptrdiff_t kc, const float *a, ptrdiff_t ars, ptrdiff_t aks,
                 const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc, __mmask16 last,
                 float alpha, float beta, const float *bias, int relu) {
    switch (nv) {
    case 4: FASTDL_MICRO_ROWS(4) break;
    case 3: FASTDL_MICRO_ROWS(3) break;
    case 2: FASTDL_MICRO_ROWS(2) break;
    default: FASTDL_MICRO_ROWS(1) break;
    }
}

/* Below this many rows of C, packing B^T (n x k) costs more than the product gains;
 * with few columns too, B^T is small and is packed anyway. */
#define FASTDL_PACK_MIN_ROWS 256

static FASTDL_AVX512 int
fastdl_sgemm_avx512_ep(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                       float alpha, const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb,
                       float beta, float *c, ptrdiff_t ldc, const float *bias, int relu);

/* C = alpha * op(A) @ B^T + beta * C for C with few rows and many columns (a dense
 * layer's input gradient, dy @ W^T): computed transposed, C^T = B @ op(A)^T, where B
 * (n, k) serves as it is and only the small op(A)^T needs packing, then transposed
 * into C in 16 x 16 tiles. */
static FASTDL_AVX512 int
fastdl_sgemm_few_rows_bt(int trans_a, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha,
                         const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb,
                         float beta, float *c, ptrdiff_t ldc) {
    float *t = (float *) malloc((size_t) n * (size_t) (m > 0 ? m : 1) * sizeof(float));
    if (t == NULL) return -1;
    if (fastdl_sgemm_avx512_ep(0, !trans_a, n, m, k, 1.0f, b, ldb, a, lda, 0.0f, t, m, NULL, 0) != 0) {
        free(t);
        return -1;
    }
    for (ptrdiff_t i0 = 0; i0 < m; i0 += 16)
        for (ptrdiff_t j0 = 0; j0 < n; j0 += 16) {
            ptrdiff_t i1 = i0 + 16 < m ? i0 + 16 : m, j1 = j0 + 16 < n ? j0 + 16 : n;
            for (ptrdiff_t i = i0; i < i1; i++)
                for (ptrdiff_t j = j0; j < j1; j++)
                    c[i * ldc + j] = alpha * t[j * m + i] + (beta != 0.0f ? beta * c[i * ldc + j] : 0.0f);
        }
    free(t);
    return 0;
}

/* C = relu?(alpha * op(A) @ op(B) + beta * C + bias): bias (n,) or NULL, added with the
 * first block of K (so the sums round as if C had held the bias), relu applied as each
 * tile of C is stored the last time, so a convolution's bias and ReLU cost no passes
 * of their own. Returns 0 on success, -1 when the caller should use BLAS instead: no
 * memory to pack or transpose through. */
static FASTDL_AVX512 int
fastdl_sgemm_avx512_ep(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                       float alpha, const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb,
                       float beta, float *c, ptrdiff_t ldc, const float *bias, int relu) {
    float *packed = NULL;
    if (trans_b && m < FASTDL_PACK_MIN_ROWS && n >= FASTDL_PACK_MIN_ROWS && bias == NULL && !relu)
        return fastdl_sgemm_few_rows_bt(trans_a, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    if (trans_b) { /* B is (n, k): pack B^T as (k, n) so its rows load as vectors */
        packed = (float *) malloc((size_t) k * (size_t) n * sizeof(float));
        if (packed == NULL) return -1;
        /* in 16 x 16 tiles, so that both sides stay within a few cache lines */
        for (ptrdiff_t j0 = 0; j0 < n; j0 += 16)
            for (ptrdiff_t k0 = 0; k0 < k; k0 += 16) {
                ptrdiff_t j1 = j0 + 16 < n ? j0 + 16 : n, k1 = k0 + 16 < k ? k0 + 16 : k;
                for (ptrdiff_t kk = k0; kk < k1; kk++)
                    for (ptrdiff_t j = j0; j < j1; j++)
                        packed[kk * n + j] = b[j * ldb + kk];
            }
        b = packed;
        ldb = n;
    }
    ptrdiff_t ars = trans_a ? 1 : lda, aks = trans_a ? lda : 1;
    for (ptrdiff_t k0 = 0; k0 < k || k0 == 0; k0 += FASTDL_KC) {
        ptrdiff_t kc = k - k0 < FASTDL_KC ? k - k0 : FASTDL_KC;
        float bt = k0 == 0 ? beta : 1.0f; /* later K blocks add to what the first wrote */
        const float *bias_k = k0 == 0 ? bias : NULL;
        int relu_k = relu && k0 + kc >= k;
        for (ptrdiff_t j0 = 0; j0 < n; j0 += 64) {
            ptrdiff_t nc = n - j0 < 64 ? n - j0 : 64;
            int nv = (int) ((nc + 15) / 16);
            int tail = (int) (nc - 16 * (nv - 1));
            __mmask16 last = (__mmask16) (tail == 16 ? 0xFFFF : (1u << tail) - 1u);
            for (ptrdiff_t i0 = 0; i0 < m; i0 += 6) {
                int mr = (int) (m - i0 < 6 ? m - i0 : 6);
                fastdl_micro_any(mr, nv, kc, a + i0 * ars + k0 * aks, ars, aks,
                                 b + k0 * ldb + j0, ldb, c + i0 * ldc + j0, ldc, last, alpha, bt,
                                 bias_k != NULL ? bias_k + j0 : NULL, relu_k);
            }
        }
        if (k == 0) break;
    }
    free(packed);
    return 0;
}

static FASTDL_AVX512 int
fastdl_sgemm_avx512(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                    float alpha, const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb,
                    float beta, float *c, ptrdiff_t ldc) {
    return fastdl_sgemm_avx512_ep(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc,
                                  NULL, 0);
}
#else /* not GCC/clang on x86-64: BLAS only */
static int fastdl_gemm_enabled(void) { return 0; }
static int fastdl_sgemm_avx512_ep(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                                  float alpha, const float *a, ptrdiff_t lda, const float *b,
                                  ptrdiff_t ldb, float beta, float *c, ptrdiff_t ldc,
                                  const float *bias, int relu) {
    return -1;
}
static int fastdl_sgemm_avx512(int trans_a, int trans_b, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k,
                               float alpha, const float *a, ptrdiff_t lda, const float *b,
                               ptrdiff_t ldb, float beta, float *c, ptrdiff_t ldc) {
    return -1;
}
#endif
#endif
