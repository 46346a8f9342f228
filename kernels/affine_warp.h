/* The bilinear affine warp of one image, the kernel of augment.pyx's affine_batch.
 *
 * Output pixel (r, c) samples the source at
 *     (r_in, c_in) = (m0 r + m1 c + m2, m3 r + m4 c + m5)
 * and blends its four neighbours, times `scale`; sources outside the image follow the
 * fill mode. Along an output row both coordinates are linear in c, so the pixels whose
 * four neighbours all lie inside the image form one run of columns: found per row
 * (exactly, by the same arithmetic as the loop), that run takes a loop without fill
 * logic, its channel count a compile-time constant for 1 and 3 channels; the columns
 * before and after take the general path. Coordinates are in double (the maps of
 * 32x32 images need no more, but 4096-pixel ones keep their sub-pixel accuracy), the
 * blend in float.
 */
#ifndef FASTDL_AFFINE_WARP_H
#define FASTDL_AFFINE_WARP_H
#include <math.h>
#include <stddef.h>
#include "simd.h"

#define NEAREST 0
#define CONSTANT 1
#define REFLECT 2
#define WRAP 3
/* Source coordinates are clamped to +-2**31 before they become indices: far outside any
 * image (so 'nearest' and 'constant' do not change), and a double beyond int64's range
 * must never be converted (undefined in C). Every backend clamps the same way. */
#define COORD_LIMIT 2147483648.0

/* Map an index outside [0, n) into it (constant mode never gets here out of range). */
static inline ptrdiff_t fastdl_fold(ptrdiff_t i, ptrdiff_t n, int mode) {
    ptrdiff_t period;
    if (i >= 0 && i < n) return i;
    if (mode == REFLECT) { /* half-sample symmetric: d c b a | a b c d | d c b a */
        period = 2 * n;
        i %= period;
        if (i < 0) i += period;
        return i >= n ? period - 1 - i : i;
    }
    if (mode == WRAP) { /* periodic: a b c d | a b c d */
        i %= n;
        return i < 0 ? i + n : i;
    }
    return i < 0 ? 0 : n - 1; /* nearest (and the clamped neighbour in constant mode) */
}

/* Whether column c's four neighbours lie inside: 0 <= r_in < h - 1, 0 <= c_in < w - 1. */
static inline int fastdl_warp_inside(double rr, double m1, double rc, double m4, ptrdiff_t c,
                                     ptrdiff_t h, ptrdiff_t w) {
    double rin = rr + m1 * c, cin = rc + m4 * c;
    return rin >= 0 && rin < h - 1 && cin >= 0 && cin < w - 1;
}

/* The run [*start, *end) of inside columns of a row (none: both w). The
 * coordinates are monotonic in c, so the run is one interval: estimated by solving the
 * inequalities, then moved column by column until its ends test exactly. */
static inline void fastdl_warp_run(double rr, double m1, double rc, double m4, ptrdiff_t h, ptrdiff_t w,
                                   ptrdiff_t *start, ptrdiff_t *end) {
    double lo = 0, hi = (double) w; /* columns as reals, narrowed by each coordinate */
    const double a[2] = {rr, rc}, b[2] = {m1, m4}, top[2] = {(double) (h - 1), (double) (w - 1)};
    ptrdiff_t s, e;
    for (int k = 0; k < 2; k++) {
        if (b[k] == 0) {
            if (!(a[k] >= 0 && a[k] < top[k])) { *start = *end = w; return; }
        } else {
            double t0 = -a[k] / b[k], t1 = (top[k] - a[k]) / b[k];
            if (t0 > t1) { double t = t0; t0 = t1; t1 = t; }
            if (t0 > lo) lo = t0;
            if (t1 < hi) hi = t1;
        }
    }
    if (!(lo <= hi) || hi < 0 || lo > (double) w) { *start = *end = w; return; }
    s = (ptrdiff_t) ceil(lo);
    e = (ptrdiff_t) floor(hi);
    if (s < 0) s = 0;
    if (e > w - 1) e = w - 1;
    if (s > e) { *start = *end = w; return; }
    while (s <= e && !fastdl_warp_inside(rr, m1, rc, m4, s, h, w)) s++;
    while (e >= s && !fastdl_warp_inside(rr, m1, rc, m4, e, h, w)) e--;
    if (s > e) { *start = *end = w; return; }
    while (s > 0 && fastdl_warp_inside(rr, m1, rc, m4, s - 1, h, w)) s--;
    while (e < w - 1 && fastdl_warp_inside(rr, m1, rc, m4, e + 1, h, w)) e++;
    *start = s;
    *end = e + 1;
}

#if defined(__GNUC__) && defined(__x86_64__)
/* The inner run for 3 channels with AVX2. The coordinates of 8 pixels at a time as
 * vectors (in double, as the scalar loop), their truncations, fractions and source
 * offsets kept in small arrays; then a pixel per step as one 128-bit vector: each
 * neighbour's three channels in one load, the blend as three lerps, one 4-lane store.
 * Loads and stores of 4 lanes read or write one element past the pixel: the next
 * pixel's first channel, which exists (inside the run a neighbour is never in the last
 * row and column, so only the bottom-right one is masked, as it could be the data's
 * last element) and is written after (the run's last pixel stores its three lanes
 * alone: masked stores are microcoded and slow on AMD). */
FASTDL_AVX2 static inline __m128 fastdl_load4_f(const float *p) { return _mm_loadu_ps(p); }
FASTDL_AVX2 static inline __m128 fastdl_load3_f(const float *p) {
    return _mm_maskload_ps(p, _mm_setr_epi32(-1, -1, -1, 0));
}
FASTDL_AVX2 static inline __m128 fastdl_load4_u8(const unsigned char *p) {
    return _mm_cvtepi32_ps(_mm_setr_epi32(p[0], p[1], p[2], 0));
}
#define fastdl_load3_u8 fastdl_load4_u8

#define FASTDL_WARP3_AVX2(T, S)                                                                     \
FASTDL_AVX2 static void fastdl_warp_inner3_avx2_##S(const T *src, ptrdiff_t w, double rr, double m1, \
                                                    double rc, double m4, float *row, ptrdiff_t c0,  \
                                                    ptrdiff_t c1, float scale) {                    \
    const __m256d lanes = _mm256_setr_pd(0, 1, 2, 3), m1v = _mm256_set1_pd(m1);                   \
    const __m256d m4v = _mm256_set1_pd(m4);                                                        \
    const __m128 s = _mm_set1_ps(scale);                                                           \
    double frs[4], fcs[4];                                                                         \
    int rows[4], cols[4];                                                                          \
    for (ptrdiff_t c = c0; c < c1; c += 4) {                                                       \
        __m256d rin = _mm256_fmadd_pd(m1v, lanes, _mm256_set1_pd(rr + m1 * c));                    \
        __m256d cin = _mm256_fmadd_pd(m4v, lanes, _mm256_set1_pd(rc + m4 * c));                    \
        __m128i r0 = _mm256_cvttpd_epi32(rin), k0 = _mm256_cvttpd_epi32(cin); /* >= 0: floor */   \
        _mm256_storeu_pd(frs, _mm256_sub_pd(rin, _mm256_cvtepi32_pd(r0)));                         \
        _mm256_storeu_pd(fcs, _mm256_sub_pd(cin, _mm256_cvtepi32_pd(k0)));                         \
        _mm_storeu_si128((__m128i *) rows, r0);                                                    \
        _mm_storeu_si128((__m128i *) cols, k0);                                                    \
        ptrdiff_t n = c1 - c < 4 ? c1 - c : 4;                                                     \
        for (ptrdiff_t j = 0; j < n; j++) {                                                        \
            const T *p = src + ((ptrdiff_t) rows[j] * w + cols[j]) * 3, *q = p + w * 3;            \
            __m128 fr = _mm_set1_ps((float) frs[j]), fc = _mm_set1_ps((float) fcs[j]);             \
            __m128 a = fastdl_load4_##S(p), b = fastdl_load4_##S(p + 3);                           \
            __m128 d = fastdl_load4_##S(q), e = fastdl_load3_##S(q + 3);                           \
            __m128 top = _mm_fmadd_ps(fc, _mm_sub_ps(b, a), a);                                    \
            __m128 bottom = _mm_fmadd_ps(fc, _mm_sub_ps(e, d), d);                                 \
            __m128 v = _mm_mul_ps(_mm_fmadd_ps(fr, _mm_sub_ps(bottom, top), top), s);              \
            float *o = row + (c + j) * 3;                                                          \
            if (c + j + 1 < c1) {                                                                  \
                _mm_storeu_ps(o, v);                                                               \
            } else {                                                                               \
                _mm_store_ss(o, v);                                                                \
                _mm_store_ss(o + 1, _mm_shuffle_ps(v, v, 1));                                      \
                _mm_store_ss(o + 2, _mm_shuffle_ps(v, v, 2));                                      \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
}
FASTDL_WARP3_AVX2(float, f)
FASTDL_WARP3_AVX2(unsigned char, u8)
#define FASTDL_WARP3(S, ...) \
    if (fastdl_avx2_enabled()) { fastdl_warp_inner3_avx2_##S(__VA_ARGS__); } else
#else
#define FASTDL_WARP3(S, ...)
#endif

#define FASTDL_WARP(T, S, INNER3)                                                                   \
/* Columns [c0, c1) of row r, all four neighbours inside; ch a constant when inlined. */          \
static inline __attribute__((always_inline)) void fastdl_warp_inner_##S(                           \
        const T *src, ptrdiff_t w, const ptrdiff_t ch, double rr, double m1, double rc, double m4, \
        float *row, ptrdiff_t c0, ptrdiff_t c1, float scale) {                                     \
    for (ptrdiff_t c = c0; c < c1; c++) {                                                          \
        double rin = rr + m1 * c, cin = rc + m4 * c;                                               \
        ptrdiff_t r0 = (ptrdiff_t) rin, k0 = (ptrdiff_t) cin; /* >= 0: truncation is floor */     \
        float fr = (float) (rin - r0), fc = (float) (cin - k0);                                    \
        float w00 = (1 - fr) * (1 - fc) * scale, w01 = (1 - fr) * fc * scale;                      \
        float w10 = fr * (1 - fc) * scale, w11 = fr * fc * scale;                                  \
        const T *p = src + (r0 * w + k0) * ch, *q = p + w * ch;                                    \
        float *o = row + c * ch;                                                                   \
        for (ptrdiff_t k = 0; k < ch; k++)                                                         \
            o[k] = w00 * (float) p[k] + w01 * (float) p[k + ch] + w10 * (float) q[k]               \
                   + w11 * (float) q[k + ch];                                                      \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* Columns [c0, c1) of row r by the general path: fill modes, clamped coordinates (inlined, */  \
/* so each clone of fastdl_warp has its instruction set's floor). */                           \
static inline __attribute__((always_inline)) void fastdl_warp_edge_##S(const T *src, ptrdiff_t h, ptrdiff_t w, ptrdiff_t ch, double rr,  \
                                 double m1, double rc, double m4, float *row, ptrdiff_t c0,        \
                                 ptrdiff_t c1, int mode, float fill, double scale) {               \
    for (ptrdiff_t c = c0; c < c1; c++) {                                                          \
        double rin = rr + m1 * c, cin = rc + m4 * c, fr, fc, w00, w01, w10, w11;                   \
        ptrdiff_t r0, k0, r1, k1;                                                                  \
        float *o = row + c * ch;                                                                   \
        /* SciPy's 'constant': no interpolation beyond the edges */                               \
        if (mode == CONSTANT && (rin < -1e-9 || rin > h - 1 + 1e-9 || cin < -1e-9                  \
                                 || cin > w - 1 + 1e-9)) {                                         \
            for (ptrdiff_t k = 0; k < ch; k++) o[k] = fill;                                        \
            continue;                                                                              \
        }                                                                                          \
        /* finite (the matrices are checked): compares, not libm's NaN-aware fmin/fmax */         \
        rin = rin < -COORD_LIMIT ? -COORD_LIMIT : rin > COORD_LIMIT ? COORD_LIMIT : rin;           \
        cin = cin < -COORD_LIMIT ? -COORD_LIMIT : cin > COORD_LIMIT ? COORD_LIMIT : cin;           \
        r0 = (ptrdiff_t) floor(rin);                                                               \
        k0 = (ptrdiff_t) floor(cin);                                                               \
        fr = rin - r0;                                                                             \
        fc = cin - k0;                                                                             \
        r1 = fastdl_fold(r0 + 1, h, mode);                                                         \
        k1 = fastdl_fold(k0 + 1, w, mode);                                                         \
        r0 = fastdl_fold(r0, h, mode);                                                             \
        k0 = fastdl_fold(k0, w, mode);                                                             \
        w00 = (1 - fr) * (1 - fc) * scale;                                                         \
        w01 = (1 - fr) * fc * scale;                                                               \
        w10 = fr * (1 - fc) * scale;                                                               \
        w11 = fr * fc * scale;                                                                     \
        for (ptrdiff_t k = 0; k < ch; k++)                                                         \
            o[k] = (float) (w00 * src[(r0 * w + k0) * ch + k] + w01 * src[(r0 * w + k1) * ch + k]  \
                            + w10 * src[(r1 * w + k0) * ch + k] + w11 * src[(r1 * w + k1) * ch + k]); \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* out (h, w, ch) = image src (h, w, ch) warped through m (6 doubles), times scale. */           \
FASTDL_CLONES static void fastdl_warp_##S(const T *src, ptrdiff_t h, ptrdiff_t w, ptrdiff_t ch,     \
                                          const double *m, float *out, int mode, float fill,       \
                                          double scale) {                                          \
    for (ptrdiff_t r = 0; r < h; r++) {                                                            \
        double rr = m[0] * r + m[2], rc = m[3] * r + m[5];                                         \
        float *row = out + r * w * ch;                                                             \
        ptrdiff_t start, end;                                                                      \
        fastdl_warp_run(rr, m[1], rc, m[4], h, w, &start, &end);                                   \
        fastdl_warp_edge_##S(src, h, w, ch, rr, m[1], rc, m[4], row, 0, start, mode, fill, scale); \
        if (ch == 3) {                                                                             \
            INNER3(src, w, rr, m[1], rc, m[4], row, start, end, (float) scale)                     \
            fastdl_warp_inner_##S(src, w, 3, rr, m[1], rc, m[4], row, start, end, (float) scale);  \
        }                                                                                          \
        else if (ch == 1)                                                                          \
            fastdl_warp_inner_##S(src, w, 1, rr, m[1], rc, m[4], row, start, end, (float) scale);  \
        else                                                                                       \
            fastdl_warp_inner_##S(src, w, ch, rr, m[1], rc, m[4], row, start, end, (float) scale); \
        fastdl_warp_edge_##S(src, h, w, ch, rr, m[1], rc, m[4], row, end, w, mode, fill, scale);   \
    }                                                                                              \
}

#define FASTDL_INNER3_u8(...) FASTDL_WARP3(u8, __VA_ARGS__)
#define FASTDL_INNER3_f(...) FASTDL_WARP3(f, __VA_ARGS__)
#define FASTDL_INNER3_d(...)
FASTDL_WARP(unsigned char, u8, FASTDL_INNER3_u8)
FASTDL_WARP(float, f, FASTDL_INNER3_f)
FASTDL_WARP(double, d, FASTDL_INNER3_d)
#endif
