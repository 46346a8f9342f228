# im2col convolution on NHWC activations and HWIO kernels.
#
# The batch is processed in chunks of images so that the im2col workspace stays
# bounded (the caller sizes it and reuses it between calls). Each chunk's columns
# matrix is (images * oh * ow, kh * kw * c); with an HWIO kernel viewed as
# (kh * kw * c, f) one GEMM gives the NHWC output rows directly.
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memcpy, memset

from _blas cimport gemm
from _geometry cimport Window, window_from_tuple


cdef inline bint is_pointwise(Window g) noexcept nogil:
    """A 1x1 kernel, stride 1, no padding: the input already is the columns matrix."""
    return g.kh == 1 and g.kw == 1 and g.sh == 1 and g.sw == 1 and g.pt == 0 and g.pl == 0


cdef void im2col(const floating *x, floating *cols, Window g, Py_ssize_t n0,
                 Py_ssize_t nb, int num_threads) noexcept nogil:
    """cols[(i, oy, ox), (ky, kx, c)] = padded x[n0 + i, oy*sh + ky*dh, ox*sw + kx*dw, c]."""
    cdef Py_ssize_t kk = g.kh * g.kw * g.c
    cdef Py_ssize_t row_len = g.kw * g.c
    cdef Py_ssize_t r, i, oy, ox, ky, kx, iy, ix, ix0
    cdef floating *dst
    cdef const floating *src
    for r in prange(nb * g.oh, schedule="static", num_threads=num_threads):
        i = n0 + r // g.oh
        oy = r % g.oh
        for ox in range(g.ow):
            dst = cols + (r * g.ow + ox) * kk
            ix0 = ox * g.sw - g.pl
            for ky in range(g.kh):
                iy = oy * g.sh - g.pt + ky * g.dh
                if iy < 0 or iy >= g.h:
                    memset(dst + ky * row_len, 0, row_len * sizeof(floating))
                elif g.dw == 1 and ix0 >= 0 and ix0 + g.kw <= g.w:
                    # the whole kernel row is inside: one contiguous copy
                    src = x + ((i * g.h + iy) * g.w + ix0) * g.c
                    memcpy(dst + ky * row_len, src, row_len * sizeof(floating))
                else:
                    for kx in range(g.kw):
                        ix = ix0 + kx * g.dw
                        if ix < 0 or ix >= g.w:
                            memset(dst + ky * row_len + kx * g.c, 0, g.c * sizeof(floating))
                        else:
                            src = x + ((i * g.h + iy) * g.w + ix) * g.c
                            memcpy(dst + ky * row_len + kx * g.c, src, g.c * sizeof(floating))


cdef void col2im(const floating *dcols, floating *dx, Window g, Py_ssize_t n0,
                 Py_ssize_t nb, int num_threads) noexcept nogil:
    """dx[n0 + i] = sum of dcols scattered back to where im2col read them (dx zeroed here).

    Parallel over images: an image's windows overlap, different images never do.
    """
    cdef Py_ssize_t kk = g.kh * g.kw * g.c
    cdef Py_ssize_t i, oy, ox, ky, kx, iy, ix, ch
    cdef const floating *src
    cdef floating *dst
    for i in prange(nb, schedule="static", num_threads=num_threads):
        memset(dx + (n0 + i) * g.h * g.w * g.c, 0, g.h * g.w * g.c * sizeof(floating))
        for oy in range(g.oh):
            for ox in range(g.ow):
                src = dcols + ((i * g.oh + oy) * g.ow + ox) * kk
                for ky in range(g.kh):
                    iy = oy * g.sh - g.pt + ky * g.dh
                    if iy < 0 or iy >= g.h:
                        continue
                    for kx in range(g.kw):
                        ix = ox * g.sw - g.pl + kx * g.dw
                        if ix < 0 or ix >= g.w:
                            continue
                        dst = dx + (((n0 + i) * g.h + iy) * g.w + ix) * g.c
                        for ch in range(g.c):
                            dst[ch] += src[(ky * g.kw + kx) * g.c + ch]


cdef void fill_rows(floating *y, const floating *bias, Py_ssize_t rows, Py_ssize_t f,
                    int num_threads) noexcept nogil:
    cdef Py_ssize_t r, j
    for r in prange(rows, schedule="static", num_threads=num_threads):
        for j in range(f):
            y[r * f + j] = bias[j]


def conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, ::1] kernel,
                   const floating[::1] bias, floating[:, :, :, ::1] y,
                   floating[::1] work, tuple geometry, Py_ssize_t chunk, int num_threads):
    """y (N, OH, OW, F) = conv(x (N, H, W, C), kernel (KH*KW*C, F)) + bias (F,) or None.

    work holds at least chunk * OH * OW * KH*KW*C elements (unused for pointwise kernels).
    """
    cdef Window g = window_from_tuple(geometry)
    cdef Py_ssize_t f = kernel.shape[1], kk = kernel.shape[0]
    cdef Py_ssize_t n0, nb, rows
    cdef bint pointwise = is_pointwise(g)
    cdef bint has_bias = bias is not None
    cdef const floating *cols
    cdef const floating *bias_ptr = &bias[0] if has_bias else NULL
    with nogil:
        n0 = 0
        while n0 < g.n:
            nb = min(chunk, g.n - n0)
            rows = nb * g.oh * g.ow
            if pointwise:
                cols = &x[n0, 0, 0, 0]
            else:
                im2col(&x[0, 0, 0, 0], &work[0], g, n0, nb, num_threads)
                cols = &work[0]
            if has_bias:
                fill_rows(&y[n0, 0, 0, 0], bias_ptr, rows, f, num_threads)
            gemm(False, False, <int> rows, <int> f, <int> kk, <floating> 1, cols, <int> kk,
                 &kernel[0, 0], <int> f, <floating> (1 if has_bias else 0),
                 &y[n0, 0, 0, 0], <int> f)
            n0 += nb


def conv2d_backward(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x,
                    const floating[:, ::1] kernel, floating[:, :, :, ::1] dx,
                    floating[:, ::1] dkernel, floating[::1] work_cols,
                    floating[::1] work_dcols, tuple geometry, Py_ssize_t chunk,
                    int num_threads):
    """dkernel (KH*KW*C, F) and, when dx is not None, dx (N, H, W, C) of a convolution.

    The bias gradient is a column sum of dy, left to the caller.
    """
    cdef Window g = window_from_tuple(geometry)
    cdef Py_ssize_t f = kernel.shape[1], kk = kernel.shape[0]
    cdef Py_ssize_t n0, nb, rows
    cdef bint pointwise = is_pointwise(g)
    cdef bint want_dx = dx is not None
    cdef const floating *cols
    cdef const floating *dy_chunk
    with nogil:
        n0 = 0
        while n0 < g.n:
            nb = min(chunk, g.n - n0)
            rows = nb * g.oh * g.ow
            dy_chunk = &dy[n0, 0, 0, 0]
            if pointwise:
                cols = &x[n0, 0, 0, 0]
            else:
                im2col(&x[0, 0, 0, 0], &work_cols[0], g, n0, nb, num_threads)
                cols = &work_cols[0]
            # dkernel += cols^T @ dy  (the first chunk overwrites)
            gemm(True, False, <int> kk, <int> f, <int> rows, <floating> 1, cols, <int> kk,
                 dy_chunk, <int> f, <floating> (0 if n0 == 0 else 1), &dkernel[0, 0], <int> f)
            if not want_dx:
                pass
            elif pointwise:
                gemm(False, True, <int> rows, <int> kk, <int> f, <floating> 1, dy_chunk, <int> f,
                     &kernel[0, 0], <int> f, <floating> 0, &dx[n0, 0, 0, 0], <int> kk)
            else:
                # dcols = dy @ kernel^T, then scatter-add back into dx
                gemm(False, True, <int> rows, <int> kk, <int> f, <floating> 1, dy_chunk, <int> f,
                     &kernel[0, 0], <int> f, <floating> 0, &work_dcols[0], <int> kk)
                col2im(&work_dcols[0], &dx[0, 0, 0, 0], g, n0, nb, num_threads)
            n0 += nb
