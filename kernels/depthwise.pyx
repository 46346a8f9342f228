# cython: language_level=3
# Depthwise 2-D convolution on NHWC activations (Keras's DepthwiseConv2D): channel c of
# x meets its own M filters kernel[:, :, c, :], output channel c * M + m. Each output
# row is one thread's; dx gathers, for each input pixel, the outputs whose windows
# cover it (no two threads write one pixel); the kernel's and the bias's gradients are
# summed per block of rows into `partial` and added in block order afterwards. The
# channel loops are row_ops.h's multiply-adds (vectorised) when M is 1, MobileNet's case.
from cython cimport floating
from cython.parallel cimport prange

from _geometry cimport Window, window_from_tuple

cdef extern from "row_ops.h" nogil:
    void fastdl_madd_f(float *o, const float *a, const float *b, Py_ssize_t n)
    void fastdl_madd_d(double *o, const double *a, const double *b, Py_ssize_t n)
    void fastdl_madd_wide_f(double *acc, const float *a, const float *b, Py_ssize_t n)
    void fastdl_madd_wide_d(double *acc, const double *a, const double *b, Py_ssize_t n)
    void fastdl_add_wide_f(double *acc, const float *a, Py_ssize_t n)
    void fastdl_add_wide_d(double *acc, const double *a, Py_ssize_t n)


cdef inline void madd(floating *o, const floating *a, const floating *b, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fastdl_madd_f(o, a, b, n)
    else:
        fastdl_madd_d(o, a, b, n)


cdef inline void madd_wide(double *acc, const floating *a, const floating *b, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fastdl_madd_wide_f(acc, a, b, n)
    else:
        fastdl_madd_wide_d(acc, a, b, n)


cdef inline void add_wide(double *acc, const floating *a, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fastdl_add_wide_f(acc, a, n)
    else:
        fastdl_add_wide_d(acc, a, n)


cdef inline Py_ssize_t block_start(Py_ssize_t t, Py_ssize_t rows, Py_ssize_t blocks) noexcept nogil:
    return t * rows // blocks


def forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] kernel, const floating[::1] bias,
            floating[:, :, :, ::1] out, tuple g, int num_threads):
    cdef Window win = window_from_tuple(g)
    cdef Py_ssize_t m = kernel.shape[3], cm = win.c * m, r, i, oy, ox, ky, kx, iy, ix, ch, q
    cdef const floating *b = NULL if bias is None else &bias[0]
    cdef const floating *xr
    cdef const floating *kr
    cdef floating *o
    for r in prange(win.n * win.oh, nogil=True, schedule="static", num_threads=num_threads):
        i = r // win.oh
        oy = r % win.oh
        for ox in range(win.ow):
            o = &out[i, oy, ox, 0]
            for q in range(cm):
                o[q] = b[q] if b != NULL else 0
            for ky in range(win.kh):
                iy = oy * win.sh - win.pt + ky * win.dh
                if iy < 0 or iy >= win.h:
                    continue
                for kx in range(win.kw):
                    ix = ox * win.sw - win.pl + kx * win.dw
                    if ix < 0 or ix >= win.w:
                        continue
                    xr = &x[i, iy, ix, 0]
                    kr = &kernel[ky, kx, 0, 0]
                    if m == 1:
                        madd(o, xr, kr, win.c)
                    else:
                        for ch in range(win.c):
                            for q in range(m):
                                o[ch * m + q] += xr[ch] * kr[ch * m + q]


def backward_input(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] kernel,
                   floating[:, :, :, ::1] dx, tuple g, int num_threads):
    """dx[i, iy, ix, c] = the sum over the outputs (oy, ox) whose window reads (iy, ix)."""
    cdef Window win = window_from_tuple(g)
    cdef Py_ssize_t m = kernel.shape[3], r, i, iy, ix, ky, kx, ny, nx, ch, q
    cdef const floating *dyr
    cdef const floating *kr
    cdef floating *d
    cdef floating s
    for r in prange(win.n * win.h, nogil=True, schedule="static", num_threads=num_threads):
        i = r // win.h
        iy = r % win.h
        for ix in range(win.w):
            d = &dx[i, iy, ix, 0]
            for ch in range(win.c):
                d[ch] = 0
            for ky in range(win.kh):
                ny = iy + win.pt - ky * win.dh
                if ny < 0 or ny % win.sh != 0 or ny // win.sh >= win.oh:
                    continue
                for kx in range(win.kw):
                    nx = ix + win.pl - kx * win.dw
                    if nx < 0 or nx % win.sw != 0 or nx // win.sw >= win.ow:
                        continue
                    dyr = &dy[i, ny // win.sh, nx // win.sw, 0]
                    kr = &kernel[ky, kx, 0, 0]
                    if m == 1:
                        madd(d, dyr, kr, win.c)
                    else:
                        for ch in range(win.c):
                            s = 0
                            for q in range(m):
                                s = s + dyr[ch * m + q] * kr[ch * m + q]
                            d[ch] += s


def backward_kernel(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x, double[:, :, :, :, ::1] partial,
                    double[:, ::1] partial_bias, tuple g):
    """partial[t] (KH, KW, C, M) and partial_bias[t] (C * M): block t's sums."""
    cdef Window win = window_from_tuple(g)
    cdef Py_ssize_t m = partial.shape[4], blocks = partial.shape[0], rows = win.n * win.oh
    cdef Py_ssize_t t, r, i, oy, ox, ky, kx, iy, ix, ch, q, lo, hi
    cdef const floating *dyr
    cdef const floating *xr
    cdef double *acc
    partial[...] = 0
    partial_bias[...] = 0
    for t in prange(blocks, nogil=True, schedule="static", num_threads=blocks):
        lo = block_start(t, rows, blocks)
        hi = block_start(t + 1, rows, blocks)
        for r in range(lo, hi):
            i = r // win.oh
            oy = r % win.oh
            for ox in range(win.ow):
                dyr = &dy[i, oy, ox, 0]
                add_wide(&partial_bias[t, 0], dyr, win.c * m)
                for ky in range(win.kh):
                    iy = oy * win.sh - win.pt + ky * win.dh
                    if iy < 0 or iy >= win.h:
                        continue
                    for kx in range(win.kw):
                        ix = ox * win.sw - win.pl + kx * win.dw
                        if ix < 0 or ix >= win.w:
                            continue
                        xr = &x[i, iy, ix, 0]
                        acc = &partial[t, ky, kx, 0, 0]
                        if m == 1:
                            madd_wide(acc, xr, dyr, win.c)
                        else:
                            for ch in range(win.c):
                                for q in range(m):
                                    acc[ch * m + q] += <double> xr[ch] * dyr[ch * m + q]


# -- stride 1, one filter a channel (MobileNet's case): whole rows at a time --------------------
# With stride 1 an output row's window offset (ky, kx) reads one contiguous run of an input
# row, so each offset is a single long multiply-add over (pixels x channels) against the
# kernel's values tiled along the row (ktile[ky * KW + kx, j] = kernel[ky, kx, j % C, 0]):
# one call a row and offset instead of one a pixel.

def forward_rows(const floating[:, :, :, ::1] x, const floating[:, ::1] ktile, const floating[::1] btile,
                 floating[:, :, :, ::1] out, tuple g, int num_threads):
    cdef Window win = window_from_tuple(g)
    cdef Py_ssize_t c = win.c, r, i, oy, ky, kx, iy, lo, hi, j
    cdef floating *o
    for r in prange(win.n * win.oh, nogil=True, schedule="static", num_threads=num_threads):
        i = r // win.oh
        oy = r % win.oh
        o = &out[i, oy, 0, 0]
        for j in range(win.ow * c):
            o[j] = btile[j]
        for ky in range(win.kh):
            iy = oy - win.pt + ky * win.dh
            if iy < 0 or iy >= win.h:
                continue
            for kx in range(win.kw):
                lo = max(0, win.pl - kx * win.dw)
                hi = min(win.ow, win.w + win.pl - kx * win.dw)
                if hi > lo:
                    madd(o + lo * c, &x[i, iy, lo - win.pl + kx * win.dw, 0], &ktile[ky * win.kw + kx, lo * c],
                         (hi - lo) * c)


def backward_input_rows(const floating[:, :, :, ::1] dy, const floating[:, ::1] ktile, floating[:, :, :, ::1] dx,
                        tuple g, int num_threads):
    cdef Window win = window_from_tuple(g)
    cdef Py_ssize_t c = win.c, r, i, iy, ky, kx, oy, lo, hi, j
    cdef floating *d
    for r in prange(win.n * win.h, nogil=True, schedule="static", num_threads=num_threads):
        i = r // win.h
        iy = r % win.h
        d = &dx[i, iy, 0, 0]
        for j in range(win.w * c):
            d[j] = 0
        for ky in range(win.kh):
            oy = iy + win.pt - ky * win.dh
            if oy < 0 or oy >= win.oh:
                continue
            for kx in range(win.kw):
                lo = max(0, kx * win.dw - win.pl)
                hi = min(win.w, win.ow + kx * win.dw - win.pl)
                if hi > lo:
                    madd(d + lo * c, &dy[i, oy, lo + win.pl - kx * win.dw, 0], &ktile[ky * win.kw + kx, lo * c],
                         (hi - lo) * c)


def backward_kernel_rows(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x,
                         double[:, :, ::1] acc, double[:, ::1] acc_bias, tuple g):
    """acc[t, ky * KW + kx, j] and acc_bias[t, j] (j over a row's OW x C values): block
    t's sums, folded to channels by the caller."""
    cdef Window win = window_from_tuple(g)
    cdef Py_ssize_t c = win.c, blocks = acc.shape[0], rows = win.n * win.oh, t, r, i, oy, ky, kx, iy, lo, hi
    acc[...] = 0
    acc_bias[...] = 0
    for t in prange(blocks, nogil=True, schedule="static", num_threads=blocks):
        for r in range(block_start(t, rows, blocks), block_start(t + 1, rows, blocks)):
            i = r // win.oh
            oy = r % win.oh
            add_wide(&acc_bias[t, 0], &dy[i, oy, 0, 0], win.ow * c)
            for ky in range(win.kh):
                iy = oy - win.pt + ky * win.dh
                if iy < 0 or iy >= win.h:
                    continue
                for kx in range(win.kw):
                    lo = max(0, win.pl - kx * win.dw)
                    hi = min(win.ow, win.w + win.pl - kx * win.dw)
                    if hi > lo:
                        madd_wide(&acc[t, ky * win.kw + kx, lo * c], &x[i, iy, lo - win.pl + kx * win.dw, 0],
                                  &dy[i, oy, lo, 0], (hi - lo) * c)
