# Max and average pooling on NHWC activations, forward and backward.
#
# The loops over one window's channels are in pool_window.h (they vectorise there,
# see why in that file); this module walks the windows and splits the work. Window
# positions in the padding are skipped: max pooling never sees them, and average
# pooling divides by the number of real positions (Keras 'same'). Backward kernels
# parallelise over output rows when windows of different rows cannot overlap
# (stride >= pool height), and over images otherwise.
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset

from _geometry cimport Window, window_from_tuple

cdef extern from "pool_window.h" nogil:
    void fastdl_max_window_f(const float *x, float *out, unsigned char *arg, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t row, Py_ssize_t c, Py_ssize_t first, Py_ssize_t kw)
    void fastdl_max_window_d(const double *x, double *out, unsigned char *arg, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t row, Py_ssize_t c, Py_ssize_t first, Py_ssize_t kw)
    void fastdl_max_window_backward_f(const float *x, const float *dy, float *dx, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t row, Py_ssize_t c, int relu, int assign)
    void fastdl_max_window_backward_d(const double *x, const double *dy, double *dx, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t row, Py_ssize_t c, int relu, int assign)
    void fastdl_max_argmax_backward_f(const unsigned char *arg, const float *dy, float *dx, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t row, Py_ssize_t c, Py_ssize_t first, Py_ssize_t kw, int assign)
    void fastdl_max_argmax_backward_d(const unsigned char *arg, const double *dy, double *dx, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t row, Py_ssize_t c, Py_ssize_t first, Py_ssize_t kw, int assign)
    void fastdl_avg_window_f(const float *x, float *out, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t row, Py_ssize_t c)
    void fastdl_avg_window_d(const double *x, double *out, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t row, Py_ssize_t c)
    void fastdl_avg_window_backward_f(const float *dy, float *dx, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t row, Py_ssize_t c)
    void fastdl_avg_window_backward_d(const double *dy, double *dx, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t row, Py_ssize_t c)

cdef extern from "simd.h" nogil:
    int fastdl_avx512_enabled()

cdef extern from "pool_window_avx512.h" nogil:
    void fastdl_max_window_f512(const float *x, float *out, unsigned char *arg, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t row, Py_ssize_t c, Py_ssize_t first, Py_ssize_t kw)
    void fastdl_max_window_backward_f512(const float *x, const float *dy, float *dx, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t row, Py_ssize_t c, int relu, int assign, int stream)
    void fastdl_max_argmax_backward_f512(const unsigned char *arg, const float *dy, float *dx, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t row, Py_ssize_t c, Py_ssize_t first, Py_ssize_t kw, int assign, int stream)
    void fastdl_stream_fence()
    void fastdl_max_row_f512(const float *x, float *out, unsigned char *arg, Py_ssize_t count, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t step, Py_ssize_t row, Py_ssize_t c, int relu)


cdef struct Span:
    Py_ssize_t y0, y1, x0, x1  # the window's real rows [y0, y1) and columns [x0, x1)
    Py_ssize_t first  # the position ky * kw + kx of its element (y0, x0) in the window


cdef inline Span window_span(Window g, Py_ssize_t oy, Py_ssize_t ox) noexcept nogil:
    cdef Span s
    s.y0 = oy * g.sh - g.pt
    s.x0 = ox * g.sw - g.pl
    s.y1 = min(s.y0 + g.kh, g.h)
    s.x1 = min(s.x0 + g.kw, g.w)
    s.first = max(-s.y0, 0) * g.kw + max(-s.x0, 0)
    s.y0 = max(s.y0, 0)
    s.x0 = max(s.x0, 0)
    return s


cdef inline Py_ssize_t offset(Window g, Py_ssize_t i, Py_ssize_t iy, Py_ssize_t ix) noexcept nogil:
    return ((i * g.h + iy) * g.w + ix) * g.c


cdef inline void pool_pixel(const floating *x, floating *out, unsigned char *arg, Window g,
                            Py_ssize_t i, Span s, bint is_max) noexcept nogil:
    """One output pixel; arg (max pooling, may be NULL) receives its maxima's positions."""
    cdef const floating *origin = x + offset(g, i, s.y0, s.x0)
    cdef Py_ssize_t rows = s.y1 - s.y0, cols = s.x1 - s.x0, row = g.w * g.c
    if floating is float:
        if is_max and fastdl_avx512_enabled():
            fastdl_max_window_f512(origin, out, arg, rows, cols, row, g.c, s.first, g.kw)
        elif is_max:
            fastdl_max_window_f(origin, out, arg, rows, cols, row, g.c, s.first, g.kw)
        else:
            fastdl_avg_window_f(origin, out, rows, cols, row, g.c)
    else:
        if is_max:
            fastdl_max_window_d(origin, out, arg, rows, cols, row, g.c, s.first, g.kw)
        else:
            fastdl_avg_window_d(origin, out, rows, cols, row, g.c)


DEF AVERAGE = 0
DEF MAXIMUM = 1
DEF MAXIMUM_OF_RELU = 2  # max pooling of a ReLU's output, the gradient taken through both


cdef inline void pool_pixel_backward(const floating *x, const floating *dy, floating *dx,
                                     const unsigned char *arg, Window g, Py_ssize_t i, Span s,
                                     int kind, bint assign, bint stream) noexcept nogil:
    """One output pixel's gradient; max pooling with arg (not NULL) reads the positions
    the forward pass saved instead of x. stream: see max_pool2d_backward."""
    cdef Py_ssize_t at = offset(g, i, s.y0, s.x0)
    cdef Py_ssize_t rows = s.y1 - s.y0, cols = s.x1 - s.x0, row = g.w * g.c
    cdef bint is_max = kind != AVERAGE
    if arg != NULL:
        if floating is float:
            if fastdl_avx512_enabled():
                fastdl_max_argmax_backward_f512(arg, dy, dx + at, rows, cols, row, g.c, s.first,
                                                g.kw, assign, stream)
            else:
                fastdl_max_argmax_backward_f(arg, dy, dx + at, rows, cols, row, g.c, s.first,
                                             g.kw, assign)
        else:
            fastdl_max_argmax_backward_d(arg, dy, dx + at, rows, cols, row, g.c, s.first, g.kw,
                                         assign)
        return
    if floating is float:
        if is_max and fastdl_avx512_enabled():
            fastdl_max_window_backward_f512(x + at, dy, dx + at, rows, cols, row, g.c,
                                            kind == MAXIMUM_OF_RELU, assign, stream)
        elif is_max:
            fastdl_max_window_backward_f(x + at, dy, dx + at, rows, cols, row, g.c,
                                         kind == MAXIMUM_OF_RELU, assign)
        else:
            fastdl_avg_window_backward_f(dy, dx + at, rows, cols, row, g.c)
    else:
        if is_max:
            fastdl_max_window_backward_d(x + at, dy, dx + at, rows, cols, row, g.c,
                                         kind == MAXIMUM_OF_RELU, assign)
        else:
            fastdl_avg_window_backward_d(dy, dx + at, rows, cols, row, g.c)


cdef inline void whole_windows(Window g, Py_ssize_t oy, Py_ssize_t *lo, Py_ssize_t *hi) noexcept nogil:
    """Output columns [lo, hi) of row oy whose windows padding does not clip (none
    when it clips the row's windows vertically)."""
    cdef Span s = window_span(g, oy, 0)
    lo[0] = hi[0] = 0
    if s.y1 - s.y0 == g.kh and g.w + g.pl >= g.kw:
        lo[0] = min(g.ow, (g.pl + g.sw - 1) // g.sw)
        hi[0] = max(lo[0], min(g.ow, (g.w + g.pl - g.kw) // g.sw + 1))


cdef void forward_rows(const floating *x, floating *y, unsigned char *arg, Window g,
                       bint is_max, int num_threads) noexcept nogil:
    cdef Py_ssize_t r, i, oy, ox, lo, hi
    cdef bint rows_whole = floating is float and is_max and fastdl_avx512_enabled()
    for r in prange(g.n * g.oh, schedule="static", num_threads=num_threads):
        i = r // g.oh
        oy = r % g.oh
        lo = hi = 0
        if rows_whole:  # the whole windows of the row in one call
            whole_windows(g, oy, &lo, &hi)
            if hi > lo:
                if floating is float:
                    fastdl_max_row_f512(x + offset(g, i, window_span(g, oy, lo).y0, lo * g.sw - g.pl),
                                        y + (r * g.ow + lo) * g.c,
                                        arg + (r * g.ow + lo) * g.c if arg != NULL else NULL,
                                        hi - lo, g.kh, g.kw, g.sw * g.c, g.w * g.c, g.c, False)
        for ox in range(g.ow):
            if lo <= ox < hi:
                continue
            pool_pixel(x, y + (r * g.ow + ox) * g.c,
                       arg + (r * g.ow + ox) * g.c if arg != NULL else NULL, g, i,
                       window_span(g, oy, ox), is_max)


cdef void backward_row(const floating *x, const floating *dy, floating *dx,
                       const unsigned char *arg, Window g, int kind, Py_ssize_t i, Py_ssize_t oy,
                       bint assign, bint stream) noexcept nogil:
    # (a whole row per call, as forward_rows does, measured no faster here)
    cdef Py_ssize_t ox, pixel
    for ox in range(g.ow):
        pixel = ((i * g.oh + oy) * g.ow + ox) * g.c
        pool_pixel_backward(x, dy + pixel, dx, arg + pixel if arg != NULL else NULL, g, i,
                            window_span(g, oy, ox), kind, assign, stream)
    if stream:
        fastdl_stream_fence()


cdef void zero_band(floating *dx, Window g, Py_ssize_t i, Py_ssize_t oy,
                    bint only_uncovered) noexcept nogil:
    """Zero the band of input rows that output row oy owns when stride >= pool height:
    from its window's first row to the next window's first row (the first band starts
    at row 0, the last one ends at the bottom), so the bands cover every row once.
    only_uncovered: the windows will assign what they cover (they overlap in neither
    direction), so zero only the rest: rows outside the windows, gaps between them and
    the columns after the last one."""
    cdef Py_ssize_t y0 = 0 if oy == 0 else max(oy * g.sh - g.pt, 0)
    cdef Py_ssize_t y1 = g.h if oy + 1 == g.oh else min((oy + 1) * g.sh - g.pt, g.h)
    cdef Py_ssize_t yy, ox, done
    cdef Span rows = window_span(g, oy, 0), s
    cdef size_t pixel = g.c * sizeof(floating)
    if not only_uncovered:
        if y1 > y0:
            memset(dx + offset(g, i, y0, 0), 0, (y1 - y0) * g.w * pixel)
        return
    for yy in range(y0, y1):
        if yy < rows.y0 or yy >= rows.y1:
            memset(dx + offset(g, i, yy, 0), 0, g.w * pixel)
            continue
        done = 0  # columns [0, done) are covered or zeroed
        for ox in range(g.ow):
            s = window_span(g, oy, ox)
            if s.x0 > done:
                memset(dx + offset(g, i, yy, done), 0, (s.x0 - done) * pixel)
            done = max(done, s.x1)
        if g.w > done:
            memset(dx + offset(g, i, yy, done), 0, (g.w - done) * pixel)


cdef void backward(const floating *x, const floating *dy, floating *dx, const unsigned char *arg,
                   Window g, int kind, int num_threads, bint stream) noexcept nogil:
    cdef Py_ssize_t r, i, oy
    # max pooling whose windows overlap in neither direction writes each dx element once
    cdef bint assign = kind != AVERAGE and g.sh >= g.kh and g.sw >= g.kw
    cdef bint streaming = stream and assign and fastdl_avx512_enabled()  # (float32 only)
    if g.sh >= g.kh:
        for r in prange(g.n * g.oh, schedule="static", num_threads=num_threads):
            zero_band(dx, g, r // g.oh, r % g.oh, assign)
            backward_row(x, dy, dx, arg, g, kind, r // g.oh, r % g.oh, assign, streaming)
    else:
        for i in prange(g.n, schedule="static", num_threads=num_threads):
            memset(dx + offset(g, i, 0, 0), 0, g.h * g.w * g.c * sizeof(floating))
            for oy in range(g.oh):
                backward_row(x, dy, dx, arg, g, kind, i, oy, False, False)


def max_pool2d_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y,
                       tuple geometry, int num_threads, unsigned char[:, :, :, ::1] argmax=None):
    """y (N, OH, OW, C) = the maximum of each window of x (N, H, W, C); argmax (N, OH, OW,
    C), when given, receives each first maximum's position ky * KW + kx in its window."""
    cdef Window g = window_from_tuple(geometry)
    cdef unsigned char *arg = &argmax[0, 0, 0, 0] if argmax is not None else NULL
    with nogil:
        forward_rows(&x[0, 0, 0, 0], &y[0, 0, 0, 0], arg, g, True, num_threads)


def max_pool2d_backward(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x,
                        floating[:, :, :, ::1] dx, tuple geometry, int num_threads,
                        bint through_relu, const unsigned char[:, :, :, ::1] argmax=None,
                        bint stream=False):
    """dx (N, H, W, C): each window's gradient goes to its first maximum (row-major).
    through_relu: x is a ReLU's output and dx the gradient of that ReLU's input, so
    windows whose maximum is <= 0 pass nothing. argmax: the positions the forward pass
    saved (through_relu does not apply then, and x, which may be None, is not read).
    stream: write dx around the caches where windows do not overlap (float32 on AVX-512),
    for a dx larger than the caches that is not read again soon."""
    cdef Window g = window_from_tuple(geometry)
    cdef int kind = MAXIMUM_OF_RELU if through_relu else MAXIMUM
    cdef const unsigned char *arg = &argmax[0, 0, 0, 0] if argmax is not None else NULL
    cdef const floating *xp = &x[0, 0, 0, 0] if x is not None else NULL
    if arg == NULL and xp == NULL:
        raise ValueError("max pooling's backward needs x or argmax")
    with nogil:
        backward(xp, &dy[0, 0, 0, 0], &dx[0, 0, 0, 0], arg, g, kind, num_threads, stream)


def avg_pool2d_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y,
                       tuple geometry, int num_threads):
    """y (N, OH, OW, C) = the mean of each window's real (unpadded) positions."""
    cdef Window g = window_from_tuple(geometry)
    with nogil:
        forward_rows(&x[0, 0, 0, 0], &y[0, 0, 0, 0], NULL, g, False, num_threads)


def avg_pool2d_backward(const floating[:, :, :, ::1] dy, floating[:, :, :, ::1] dx,
                        tuple geometry, int num_threads):
    """dx (N, H, W, C): each window's gradient shared equally by its real positions."""
    cdef Window g = window_from_tuple(geometry)
    with nogil:
        backward(NULL, &dy[0, 0, 0, 0], &dx[0, 0, 0, 0], NULL, g, AVERAGE, num_threads, False)
