/* Column sums of float32 rows into double accumulators (bias gradients).
 *
 * Widening every element to double costs a conversion per element, and the portable
 * build converts two at a time: the first layer's bias gradient (28,800 rows of 32 at
 * batch 32) took longer than its GEMM. Here each run of FASTDL_SUM_ROWS rows is summed
 * in float first (vectorised for the CPU at hand through target_clones) and widened
 * once: the same fixed order on every call, a rounding error of a few float ulps per
 * run, far below the float32 tolerance the gradients are tested to.
 */
#ifndef FASTDL_SUMS_H
#define FASTDL_SUMS_H
#include <stddef.h>

#include "simd.h"

#define FASTDL_SUM_ROWS 16  /* rows summed in float before widening */
#define FASTDL_SUM_COLS 256 /* columns per pass, so the float partial sums stay on the stack */

/* acc[j] += sum over r < rows of x[r * n + j], for j < n */
FASTDL_CLONES static void fastdl_add_rows_f(double *restrict acc, const float *restrict x,
                                                ptrdiff_t rows, ptrdiff_t n) {
    float part[FASTDL_SUM_COLS];
    for (ptrdiff_t j0 = 0; j0 < n; j0 += FASTDL_SUM_COLS) {
        ptrdiff_t nj = n - j0 < FASTDL_SUM_COLS ? n - j0 : FASTDL_SUM_COLS;
        for (ptrdiff_t r0 = 0; r0 < rows; r0 += FASTDL_SUM_ROWS) {
            ptrdiff_t r1 = rows - r0 < FASTDL_SUM_ROWS ? rows : r0 + FASTDL_SUM_ROWS;
            const float *row = x + r0 * n + j0;
            for (ptrdiff_t j = 0; j < nj; j++) part[j] = row[j];
            for (ptrdiff_t r = r0 + 1; r < r1; r++) {
                row = x + r * n + j0;
                for (ptrdiff_t j = 0; j < nj; j++) part[j] += row[j];
            }
            for (ptrdiff_t j = 0; j < nj; j++) acc[j0 + j] += part[j];
        }
    }
}
#endif
