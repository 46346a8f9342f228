# Max and average pooling on NHWC activations, forward and backward.
#
# Window positions in the padding are skipped: max pooling never sees them and
# average pooling divides by the number of real positions (Keras 'same').
# Backward kernels parallelise over output rows when windows of different rows
# cannot overlap (stride >= pool height), and over images otherwise.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport INFINITY
from libc.string cimport memset

from _geometry cimport Window, window_from_tuple


cdef inline Py_ssize_t clamp_lo(Py_ssize_t v) noexcept nogil:
    return v if v > 0 else 0


def max_pool2d_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y,
                       tuple geometry, int num_threads):
    """y (N, OH, OW, C) = the maximum of each window of x (N, H, W, C)."""
    cdef Window g = window_from_tuple(geometry)
    cdef Py_ssize_t r, i, oy, ox, iy, ix, iy0, iy1, ix0, ix1, ch
    cdef floating *out
    cdef const floating *src
    with nogil:
        for r in prange(g.n * g.oh, schedule="static", num_threads=num_threads):
            i = r // g.oh
            oy = r % g.oh
            iy0 = oy * g.sh - g.pt
            iy1 = min(iy0 + g.kh, g.h)
            iy0 = clamp_lo(iy0)
            for ox in range(g.ow):
                ix0 = ox * g.sw - g.pl
                ix1 = min(ix0 + g.kw, g.w)
                ix0 = clamp_lo(ix0)
                out = &y[i, oy, ox, 0]
                for ch in range(g.c):
                    out[ch] = -INFINITY
                for iy in range(iy0, iy1):
                    for ix in range(ix0, ix1):
                        src = &x[i, iy, ix, 0]
                        for ch in range(g.c):
                            if src[ch] > out[ch]:
                                out[ch] = src[ch]


cdef void max_pool_backward_row(const floating[:, :, :, ::1] dy,
                                const floating[:, :, :, ::1] x,
                                floating[:, :, :, ::1] dx, Window g,
                                Py_ssize_t i, Py_ssize_t oy) noexcept nogil:
    """Route each dy of output row (i, oy) to the first maximum of its window."""
    cdef Py_ssize_t ox, iy, ix, iy0, iy1, ix0, ix1, ch, best_y, best_x
    cdef floating best, v
    iy0 = oy * g.sh - g.pt
    iy1 = min(iy0 + g.kh, g.h)
    iy0 = clamp_lo(iy0)
    for ox in range(g.ow):
        ix0 = ox * g.sw - g.pl
        ix1 = min(ix0 + g.kw, g.w)
        ix0 = clamp_lo(ix0)
        for ch in range(g.c):
            best = -INFINITY
            best_y = iy0
            best_x = ix0
            for iy in range(iy0, iy1):
                for ix in range(ix0, ix1):
                    v = x[i, iy, ix, ch]
                    if v > best:
                        best = v
                        best_y = iy
                        best_x = ix
            dx[i, best_y, best_x, ch] += dy[i, oy, ox, ch]


def max_pool2d_backward(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x,
                        floating[:, :, :, ::1] dx, tuple geometry, int num_threads):
    """dx (N, H, W, C): each window's gradient goes to its first maximum (row-major)."""
    cdef Window g = window_from_tuple(geometry)
    cdef Py_ssize_t r, i, oy
    with nogil:
        if g.sh >= g.kh:
            for r in prange(g.n * g.oh, schedule="static", num_threads=num_threads):
                i = r // g.oh
                oy = r % g.oh
                zero_rows_of(dx, g, i, oy)
                max_pool_backward_row(dy, x, dx, g, i, oy)
        else:
            for i in prange(g.n, schedule="static", num_threads=num_threads):
                memset(&dx[i, 0, 0, 0], 0, g.h * g.w * g.c * sizeof(floating))
                for oy in range(g.oh):
                    max_pool_backward_row(dy, x, dx, g, i, oy)


cdef inline void zero_rows_of(floating[:, :, :, ::1] dx, Window g, Py_ssize_t i,
                              Py_ssize_t oy) noexcept nogil:
    """Zero the band of input rows that output row oy owns when stride >= pool height:
    from its window's first row to the next window's first row (the first band starts
    at row 0, the last one ends at the bottom), so the bands cover every row once."""
    cdef Py_ssize_t iy0 = clamp_lo(oy * g.sh - g.pt)
    cdef Py_ssize_t iy1 = min((oy + 1) * g.sh - g.pt, g.h) if oy + 1 < g.oh else g.h
    if oy == 0:
        iy0 = 0
    if iy1 > iy0:
        memset(&dx[i, iy0, 0, 0], 0, (iy1 - iy0) * g.w * g.c * sizeof(floating))


def avg_pool2d_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y,
                       tuple geometry, int num_threads):
    """y (N, OH, OW, C) = the mean of each window's real (unpadded) positions."""
    cdef Window g = window_from_tuple(geometry)
    cdef Py_ssize_t r, i, oy, ox, iy, ix, iy0, iy1, ix0, ix1, ch
    cdef floating scale
    cdef floating *out
    cdef const floating *src
    with nogil:
        for r in prange(g.n * g.oh, schedule="static", num_threads=num_threads):
            i = r // g.oh
            oy = r % g.oh
            iy0 = oy * g.sh - g.pt
            iy1 = min(iy0 + g.kh, g.h)
            iy0 = clamp_lo(iy0)
            for ox in range(g.ow):
                ix0 = ox * g.sw - g.pl
                ix1 = min(ix0 + g.kw, g.w)
                ix0 = clamp_lo(ix0)
                out = &y[i, oy, ox, 0]
                for ch in range(g.c):
                    out[ch] = 0
                for iy in range(iy0, iy1):
                    for ix in range(ix0, ix1):
                        src = &x[i, iy, ix, 0]
                        for ch in range(g.c):
                            out[ch] += src[ch]
                scale = (<floating> 1) / ((iy1 - iy0) * (ix1 - ix0))
                for ch in range(g.c):
                    out[ch] *= scale


cdef void avg_pool_backward_row(const floating[:, :, :, ::1] dy, floating[:, :, :, ::1] dx,
                                Window g, Py_ssize_t i, Py_ssize_t oy) noexcept nogil:
    cdef Py_ssize_t ox, iy, ix, iy0, iy1, ix0, ix1, ch
    cdef floating scale
    cdef floating *dst
    cdef const floating *src
    iy0 = oy * g.sh - g.pt
    iy1 = min(iy0 + g.kh, g.h)
    iy0 = clamp_lo(iy0)
    for ox in range(g.ow):
        ix0 = ox * g.sw - g.pl
        ix1 = min(ix0 + g.kw, g.w)
        ix0 = clamp_lo(ix0)
        scale = (<floating> 1) / ((iy1 - iy0) * (ix1 - ix0))
        src = &dy[i, oy, ox, 0]
        for iy in range(iy0, iy1):
            for ix in range(ix0, ix1):
                dst = &dx[i, iy, ix, 0]
                for ch in range(g.c):
                    dst[ch] += src[ch] * scale


def avg_pool2d_backward(const floating[:, :, :, ::1] dy, floating[:, :, :, ::1] dx,
                        tuple geometry, int num_threads):
    """dx (N, H, W, C): each window's gradient shared equally by its real positions."""
    cdef Window g = window_from_tuple(geometry)
    cdef Py_ssize_t r, i, oy
    with nogil:
        if g.sh >= g.kh:
            for r in prange(g.n * g.oh, schedule="static", num_threads=num_threads):
                i = r // g.oh
                oy = r % g.oh
                zero_rows_of(dx, g, i, oy)
                avg_pool_backward_row(dy, dx, g, i, oy)
        else:
            for i in prange(g.n, schedule="static", num_threads=num_threads):
                memset(&dx[i, 0, 0, 0], 0, g.h * g.w * g.c * sizeof(floating))
                for oy in range(g.oh):
                    avg_pool_backward_row(dy, dx, g, i, oy)
