# cython: language_level=3
# Depthwise 2-D convolution on NHWC activations (Keras's DepthwiseConv2D): channel c of
# x meets its own M filters kernel[:, :, c, :], output channel c * M + m. Each output
# row is one thread's; dx gathers, for each input pixel, the outputs whose windows
# cover it (no two threads write one pixel); the kernel's and the bias's gradients are
# summed per block of rows into `partial` and added in block order afterwards.
from cython cimport floating
from cython.parallel cimport prange

from _geometry cimport Window, window_from_tuple


cdef inline Py_ssize_t block_start(Py_ssize_t t, Py_ssize_t rows, Py_ssize_t blocks) noexcept nogil:
    return t * rows // blocks


def forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] kernel, const floating[::1] bias,
            floating[:, :, :, ::1] out, tuple g, int num_threads):
    cdef Window win = window_from_tuple(g)
    cdef Py_ssize_t m = kernel.shape[3], r, i, oy, ox, ky, kx, iy, ix, ch, q
    cdef floating v
    cdef const floating *b = NULL if bias is None else &bias[0]
    for r in prange(win.n * win.oh, nogil=True, schedule="static", num_threads=num_threads):
        i = r // win.oh
        oy = r % win.oh
        for ox in range(win.ow):
            for q in range(win.c * m):
                out[i, oy, ox, q] = b[q] if b != NULL else 0
            for ky in range(win.kh):
                iy = oy * win.sh - win.pt + ky * win.dh
                if iy < 0 or iy >= win.h:
                    continue
                for kx in range(win.kw):
                    ix = ox * win.sw - win.pl + kx * win.dw
                    if ix < 0 or ix >= win.w:
                        continue
                    for ch in range(win.c):
                        v = x[i, iy, ix, ch]
                        for q in range(m):
                            out[i, oy, ox, ch * m + q] += v * kernel[ky, kx, ch, q]


def backward_input(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] kernel,
                   floating[:, :, :, ::1] dx, tuple g, int num_threads):
    """dx[i, iy, ix, c] = sum over the outputs (oy, ox) whose window reads (iy, ix)."""
    cdef Window win = window_from_tuple(g)
    cdef Py_ssize_t m = kernel.shape[3], r, i, iy, ix, ky, kx, ny, nx, oy, ox, ch, q
    cdef floating s
    for r in prange(win.n * win.h, nogil=True, schedule="static", num_threads=num_threads):
        i = r // win.h
        iy = r % win.h
        for ix in range(win.w):
            for ch in range(win.c):
                dx[i, iy, ix, ch] = 0
            for ky in range(win.kh):
                ny = iy + win.pt - ky * win.dh
                if ny < 0 or ny % win.sh != 0 or ny // win.sh >= win.oh:
                    continue
                oy = ny // win.sh
                for kx in range(win.kw):
                    nx = ix + win.pl - kx * win.dw
                    if nx < 0 or nx % win.sw != 0 or nx // win.sw >= win.ow:
                        continue
                    ox = nx // win.sw
                    for ch in range(win.c):
                        s = 0
                        for q in range(m):
                            s = s + dy[i, oy, ox, ch * m + q] * kernel[ky, kx, ch, q]
                        dx[i, iy, ix, ch] += s


def backward_kernel(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x, double[:, :, :, :, ::1] partial,
                    double[:, ::1] partial_bias, tuple g):
    """partial[t] (KH, KW, C, M) and partial_bias[t] (C * M): block t's sums."""
    cdef Window win = window_from_tuple(g)
    cdef Py_ssize_t m = partial.shape[4], blocks = partial.shape[0], rows = win.n * win.oh
    cdef Py_ssize_t t, r, i, oy, ox, ky, kx, iy, ix, ch, q, lo, hi
    cdef double v
    partial[...] = 0
    partial_bias[...] = 0
    for t in prange(blocks, nogil=True, schedule="static", num_threads=blocks):
        lo = block_start(t, rows, blocks)
        hi = block_start(t + 1, rows, blocks)
        for r in range(lo, hi):
            i = r // win.oh
            oy = r % win.oh
            for ox in range(win.ow):
                for q in range(win.c * m):
                    partial_bias[t, q] += dy[i, oy, ox, q]
                for ky in range(win.kh):
                    iy = oy * win.sh - win.pt + ky * win.dh
                    if iy < 0 or iy >= win.h:
                        continue
                    for kx in range(win.kw):
                        ix = ox * win.sw - win.pl + kx * win.dw
                        if ix < 0 or ix >= win.w:
                            continue
                        for ch in range(win.c):
                            v = x[i, iy, ix, ch]
                            for q in range(m):
                                partial[t, ky, kx, ch, q] += v * dy[i, oy, ox, ch * m + q]
