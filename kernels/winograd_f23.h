/* Winograd F(2x2, 3x3) transforms for float32 3x3 convolutions with stride 1.
 *
 * A 2x2 block of outputs (a tile) of one filter needs 16 products of a transformed 4x4
 * input patch V = B^T d B with a transformed kernel U = G g G^T, then Y = A^T M A: 16
 * multiplications where the direct convolution does 36. Over C input channels and F
 * filters the 16 products become 16 GEMMs, (tiles, C) @ (C, F), one per position of the
 * 4x4 transform (conv.pyx runs them); these functions do the transforms, 16 channels
 * per AVX-512 vector (written with intrinsics: GCC's vectorisation of the plain loops
 * left them slower than the GEMMs). Used only where fastdl's AVX-512 GEMM is (see
 * gemm_avx512.h); elsewhere convolutions stay on im2col. With
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 -1],
 * and the correlation convention of deep learning (no kernel flip).
 */
#ifndef FASTDL_WINOGRAD_F23_H
#define FASTDL_WINOGRAD_F23_H
#include <stddef.h>


#include "simd.h"

#if defined(__GNUC__) && defined(__x86_64__)

/* u[(4p + q) * ustride + j] = (G g_j G^T)[p, q] for j < n, where g_j[ky][kx] =
 * k[(ky * 3 + kx) * kstride + j]: one 3x3 kernel per j, 16 per vector (this runs on
 * every call, and for small batches takes as long as the convolution itself). */
FASTDL_AVX512 static void
fastdl_wino_kernel(const float *k, ptrdiff_t kstride, float *u, ptrdiff_t ustride, ptrdiff_t n) {
    __m512 half = _mm512_set1_ps(0.5f);
    for (ptrdiff_t j0 = 0; j0 < n; j0 += 16) {
        __mmask16 live = FASTDL_LANES(n, j0);
        __m512 g[3][3], t[4][3];
        for (int a = 0; a < 3; a++)
            for (int b = 0; b < 3; b++) g[a][b] = _mm512_maskz_loadu_ps(live, k + (a * 3 + b) * kstride + j0);
        for (int b = 0; b < 3; b++) { /* t = G g */
            __m512 outer = _mm512_add_ps(g[0][b], g[2][b]);
            t[0][b] = g[0][b];
            t[1][b] = _mm512_mul_ps(half, _mm512_add_ps(outer, g[1][b]));
            t[2][b] = _mm512_mul_ps(half, _mm512_sub_ps(outer, g[1][b]));
            t[3][b] = g[2][b];
        }
        for (int p = 0; p < 4; p++) { /* u = t G^T */
            __m512 outer = _mm512_add_ps(t[p][0], t[p][2]);
            float *o = u + 4 * p * ustride + j0;
            _mm512_mask_storeu_ps(o, live, t[p][0]);
            _mm512_mask_storeu_ps(o + ustride, live, _mm512_mul_ps(half, _mm512_add_ps(outer, t[p][1])));
            _mm512_mask_storeu_ps(o + 2 * ustride, live, _mm512_mul_ps(half, _mm512_sub_ps(outer, t[p][1])));
            _mm512_mask_storeu_ps(o + 3 * ustride, live, t[p][2]);
        }
    }
}

/* dk[(ky * 3 + kx) * kstride + j] = (G^T dU_j G)[ky, kx] for j < n, where
 * dU_j[p][q] = du[(4p + q) * ustride + j]: the kernel gradient from the gradient of the
 * transformed kernel. */
FASTDL_AVX512 static void
fastdl_wino_kernel_grad(const float *du, ptrdiff_t ustride, float *dk, ptrdiff_t kstride,
                        ptrdiff_t n) {
    __m512 half = _mm512_set1_ps(0.5f);
    for (ptrdiff_t j0 = 0; j0 < n; j0 += 16) {
        __mmask16 live = FASTDL_LANES(n, j0);
        __m512 d[4][4], t[3][4];
        for (int p = 0; p < 4; p++)
            for (int q = 0; q < 4; q++) d[p][q] = _mm512_maskz_loadu_ps(live, du + (4 * p + q) * ustride + j0);
        for (int q = 0; q < 4; q++) { /* t = G^T dU */
            __m512 mid = _mm512_mul_ps(half, _mm512_add_ps(d[1][q], d[2][q]));
            t[0][q] = _mm512_add_ps(d[0][q], mid);
            t[1][q] = _mm512_mul_ps(half, _mm512_sub_ps(d[1][q], d[2][q]));
            t[2][q] = _mm512_add_ps(mid, d[3][q]);
        }
        for (int a = 0; a < 3; a++) { /* dk = t G */
            __m512 mid = _mm512_mul_ps(half, _mm512_add_ps(t[a][1], t[a][2]));
            float *o = dk + 3 * a * kstride + j0;
            _mm512_mask_storeu_ps(o, live, _mm512_add_ps(t[a][0], mid));
            _mm512_mask_storeu_ps(o + kstride, live, _mm512_mul_ps(half, _mm512_sub_ps(t[a][1], t[a][2])));
            _mm512_mask_storeu_ps(o + 2 * kstride, live, _mm512_add_ps(mid, t[a][3]));
        }
    }
}

/* Column s of row r of a patch whose rows are given as pointers (NULL: outside the
 * image) and whose present columns as bits, lanes j0.. of `live`, `step` floats per
 * column; zeros outside. */
static inline __attribute__((always_inline)) FASTDL_AVX512 __m512
fastdl_wino_load(const float *const *rows, unsigned present, int r, int s, ptrdiff_t step,
                 ptrdiff_t j0, __mmask16 live) {
    return rows[r] != NULL && ((present >> s) & 1u)
           ? _mm512_maskz_loadu_ps(live, rows[r] + s * step + j0) : _mm512_setzero_ps();
}

/* v[(4p + q) * vstride + j] = (B^T d_j B)[p, q] for the c channels j of one 4x4 patch,
 * 16 channels per vector: rows[r] points at the patch's row r (NULL: a row of zeros,
 * outside the image), and its column s is read only when (present >> s) & 1 (zeros
 * otherwise, outside too). */
FASTDL_AVX512 static void
fastdl_wino_input(const float *const *rows, unsigned present, ptrdiff_t c, float *v,
                  ptrdiff_t vstride) {
    for (ptrdiff_t c0 = 0; c0 < c; c0 += 16) {
        __mmask16 live = FASTDL_LANES(c, c0);
        __m512 d[4][4], t[4][4];
        for (int r = 0; r < 4; r++)
            for (int s = 0; s < 4; s++) d[r][s] = fastdl_wino_load(rows, present, r, s, c, c0, live);
        for (int s = 0; s < 4; s++) { /* t = B^T d */
            t[0][s] = _mm512_sub_ps(d[0][s], d[2][s]);
            t[1][s] = _mm512_add_ps(d[1][s], d[2][s]);
            t[2][s] = _mm512_sub_ps(d[2][s], d[1][s]);
            t[3][s] = _mm512_sub_ps(d[1][s], d[3][s]);
        }
        for (int p = 0; p < 4; p++) { /* v = t B */
            float *o = v + 4 * p * vstride + c0;
            _mm512_mask_storeu_ps(o, live, _mm512_sub_ps(t[p][0], t[p][2]));
            _mm512_mask_storeu_ps(o + vstride, live, _mm512_add_ps(t[p][1], t[p][2]));
            _mm512_mask_storeu_ps(o + 2 * vstride, live, _mm512_sub_ps(t[p][2], t[p][1]));
            _mm512_mask_storeu_ps(o + 3 * vstride, live, _mm512_sub_ps(t[p][1], t[p][3]));
        }
    }
}

/* out[y][x * f + j] = (A^T M_j A)[y, x] + bias[j] (bias NULL: none), then ReLU when
 * asked (x < 0 -> 0, NaN stays), for y < ny and x < nx: a tile at the output's edge
 * keeps only what exists (out[1] is not touched when ny == 1); m[(4p + q) * mstride + j]
 * holds M_j. */
FASTDL_AVX512 static void
fastdl_wino_output(const float *m, ptrdiff_t mstride, float *const *out, int ny, int nx,
                   ptrdiff_t f, const float *bias, int relu) {
    __m512 zero = _mm512_setzero_ps();
    for (ptrdiff_t j0 = 0; j0 < f; j0 += 16) {
        __mmask16 live = FASTDL_LANES(f, j0);
        __m512 s[2][4], y[2][2];
        for (int q = 0; q < 4; q++) { /* s = A^T M */
            __m512 m0 = _mm512_maskz_loadu_ps(live, m + q * mstride + j0);
            __m512 m1 = _mm512_maskz_loadu_ps(live, m + (4 + q) * mstride + j0);
            __m512 m2 = _mm512_maskz_loadu_ps(live, m + (8 + q) * mstride + j0);
            __m512 m3 = _mm512_maskz_loadu_ps(live, m + (12 + q) * mstride + j0);
            s[0][q] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
            s[1][q] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
        }
        __m512 b = bias != NULL ? _mm512_maskz_loadu_ps(live, bias + j0) : zero;
        for (int p = 0; p < ny; p++) { /* y = s A */
            y[p][0] = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s[p][0], s[p][1]), s[p][2]), b);
            y[p][1] = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(s[p][1], s[p][2]), s[p][3]), b);
            for (int q = 0; q < nx; q++) {
                __m512 o = y[p][q];
                if (relu) o = _mm512_mask_mov_ps(o, _mm512_cmp_ps_mask(o, zero, _CMP_LT_OQ), zero);
                _mm512_mask_storeu_ps(out[p] + q * f + j0, live, o);
            }
        }
    }
}
/* The kernel gradient through the same algorithm: with M = U (.) V summed over tiles
 * and Y = A^T M A, dU = sum over tiles of (A dY A^T) (.) V and dg = G^T dU G. This is
 * w[(4p + q) * wstride + j] = (A dY_j A^T)[p, q] for the f channels j of one 2x2 block of
 * the output gradient: rows[r] points at its row r (NULL: outside the output, zeros),
 * column s read only when (present >> s) & 1. */
FASTDL_AVX512 static void
fastdl_wino_grad_tile(const float *const *rows, unsigned present, ptrdiff_t f, float *w,
                      ptrdiff_t wstride) {
    __m512 zero = _mm512_setzero_ps();
    for (ptrdiff_t j0 = 0; j0 < f; j0 += 16) {
        __mmask16 live = FASTDL_LANES(f, j0);
        __m512 d[2][2], t[4][2];
        for (int r = 0; r < 2; r++)
            for (int s = 0; s < 2; s++) d[r][s] = fastdl_wino_load(rows, present, r, s, f, j0, live);
        for (int s = 0; s < 2; s++) { /* t = A dY, A = [1 0; 1 1; 1 -1; 0 -1] */
            t[0][s] = d[0][s];
            t[1][s] = _mm512_add_ps(d[0][s], d[1][s]);
            t[2][s] = _mm512_sub_ps(d[0][s], d[1][s]);
            t[3][s] = _mm512_sub_ps(zero, d[1][s]);
        }
        for (int p = 0; p < 4; p++) { /* w = t A^T */
            float *o = w + 4 * p * wstride + j0;
            _mm512_mask_storeu_ps(o, live, t[p][0]);
            _mm512_mask_storeu_ps(o + wstride, live, _mm512_add_ps(t[p][0], t[p][1]));
            _mm512_mask_storeu_ps(o + 2 * wstride, live, _mm512_sub_ps(t[p][0], t[p][1]));
            _mm512_mask_storeu_ps(o + 3 * wstride, live, _mm512_sub_ps(zero, t[p][1]));
        }
    }
}
#else /* not GCC/clang on x86-64: Winograd is not used (winograd_available() is False) */
static void fastdl_wino_kernel(const float *k, ptrdiff_t kstride, float *u, ptrdiff_t ustride,
                               ptrdiff_t n) {}
static void fastdl_wino_kernel_grad(const float *du, ptrdiff_t ustride, float *dk,
                                    ptrdiff_t kstride, ptrdiff_t n) {}
static void fastdl_wino_grad_tile(const float *const *rows, unsigned present, ptrdiff_t f,
                                  float *w, ptrdiff_t wstride) {}
static void fastdl_wino_input(const float *const *rows, unsigned present, ptrdiff_t c, float *v,
                              ptrdiff_t vstride) {}
static void fastdl_wino_output(const float *m, ptrdiff_t mstride, float *const *out, int ny,
                               int nx, ptrdiff_t f, const float *bias, int relu) {}
#endif
#endif
