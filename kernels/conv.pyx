# im2col convolution on NHWC activations and HWIO kernels.
#
# Work is split into blocks that each OpenMP thread handles start to finish: it
# im2cols its block into its own slot of the workspace (sized by the caller to stay
# in cache) and runs a single-threaded GEMM on it. SciPy's BLAS therefore never
# starts threads of its own, which would spin against ours between calls. With an
# HWIO kernel viewed as (kh * kw * c, f), a columns matrix (rows, kh * kw * c) times
# the kernel gives NHWC output rows directly.
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.string cimport memcpy, memset

from _blas cimport gemm, fastdl_gemm_enabled, fastdl_sgemm_avx512_ep
from _sums cimport add_rows
from _geometry cimport Window, window_from_tuple

cdef extern from "elementwise.h" nogil:
    void fastdl_relu_f(const float *x, float *out, Py_ssize_t n)
    void fastdl_relu_d(const double *x, double *out, Py_ssize_t n)
    int fastdl_all_finite_f(const float *x, Py_ssize_t n)

cdef extern from "pool_window.h" nogil:
    void fastdl_max_pool_row_f(const float *x, float *out, unsigned char *arg, Py_ssize_t count, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t row, Py_ssize_t c, int relu)
    void fastdl_max_pool_row_d(const double *x, double *out, unsigned char *arg, Py_ssize_t count, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t row, Py_ssize_t c, int relu)

cdef extern from "pool_window_avx512.h" nogil:
    void fastdl_max_row_f512(const float *x, float *out, unsigned char *arg, Py_ssize_t count, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t step, Py_ssize_t row, Py_ssize_t c, int relu)

cdef extern from "simd.h" nogil:
    int fastdl_avx512_enabled()

cdef extern from "copy_runs.h" nogil:
    void fastdl_copy_short_runs_f(float *dst, Py_ssize_t dst_step, const float *src,
                                  Py_ssize_t src_step, Py_ssize_t count, Py_ssize_t n)

cdef extern from "winograd_f23.h" nogil:
    void fastdl_wino_kernel(const float *k, Py_ssize_t kstride, float *u, Py_ssize_t ustride,
                            Py_ssize_t n)
    void fastdl_wino_input(const float **rows, unsigned present, Py_ssize_t c, float *v,
                           Py_ssize_t vstride)
    void fastdl_wino_output(const float *m, Py_ssize_t mstride, float **out, int ny, int nx,
                            Py_ssize_t f, const float *bias, int relu)
    void fastdl_wino_grad_tile(const float **rows, unsigned present, Py_ssize_t f, float *w,
                               Py_ssize_t wstride)
    void fastdl_wino_kernel_grad(const float *du, Py_ssize_t ustride, float *dk,
                                 Py_ssize_t kstride, Py_ssize_t n)


cdef struct Winograd:
    # F(2x2, 3x3) state of one call (u NULL: im2col instead): the transformed kernel
    # u (16, C, F), and per thread a slot of v_slot floats for the transformed input
    # tiles (tiles, 16, C) and one of m_slot for their products (tiles, 16, F); tile
    # major, so that a tile's transform writes one contiguous run (the GEMM of position
    # xi reads rows 16 * C apart instead: 0.70 of the (16, tiles, C) layout's time)
    const float *u
    float *v
    float *m
    Py_ssize_t v_slot, m_slot


cdef struct WinogradGrad:
    # the kernel gradient by Winograd (du NULL: im2col instead): per thread a slot of
    # du_slot floats for its share of dU (16, C, F), of v_slot for its block's input
    # tiles (tiles, 16, C) and of w_slot for its output-gradient tiles (tiles, 16, F)
    float *du
    float *v
    float *w
    Py_ssize_t du_slot, v_slot, w_slot


cdef inline void max_pool_row(const floating *x, floating *out, unsigned char *arg,
                              Py_ssize_t count, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t row,
                              Py_ssize_t c, bint relu) noexcept nogil:
    """count rows x cols windows side by side; arg (may be NULL) receives the positions of
    their maxima, ARGMAX_NONE with relu where the maximum is not above 0."""
    if floating is float:
        if fastdl_avx512_enabled():
            fastdl_max_row_f512(x, out, arg, count, rows, cols, cols * c, row, c, relu)
        else:
            fastdl_max_pool_row_f(x, out, arg, count, rows, cols, row, c, relu)
    else:
        fastdl_max_pool_row_d(x, out, arg, count, rows, cols, row, c, relu)


cdef inline bint is_pointwise(Window g) noexcept nogil:
    """A 1x1 kernel, stride 1, no padding: the input already is the columns matrix.
    Padding at the bottom or right shows only as an output larger than the input (the
    Window carries no pb/pr), so the output size is what rules it out."""
    return (g.kh == 1 and g.kw == 1 and g.sh == 1 and g.sw == 1 and g.pt == 0
            and g.pl == 0 and g.oh == g.h and g.ow == g.w)


cdef inline void add_run(floating *dst, const floating *src, Py_ssize_t n) noexcept nogil:
    """dst[:n] += src[:n]."""
    cdef Py_ssize_t j
    for j in range(n):
        dst[j] += src[j]


cdef inline void copy_short(floating *dst, const floating *src, Py_ssize_t n) noexcept nogil:
    """dst[:n] = src[:n]; a plain loop for the short runs of few-channel inputs (a
    memcpy call per 9 floats costs more than the copy), memcpy for long ones."""
    cdef Py_ssize_t j
    if n >= 64:
        memcpy(dst, src, n * sizeof(floating))
    else:
        for j in range(n):
            dst[j] = src[j]


cdef inline void copy_runs(floating *dst, Py_ssize_t dst_step, const floating *src,
                           Py_ssize_t src_step, Py_ssize_t count, Py_ssize_t n) noexcept nogil:
    """dst[p * dst_step:][:n] = src[p * src_step:][:n] for p < count."""
    cdef Py_ssize_t p
    if floating is float:
        if n <= 16 and fastdl_avx512_enabled():
            fastdl_copy_short_runs_f(dst, dst_step, src, src_step, count, n)
            return
    for p in range(count):
        copy_short(dst + p * dst_step, src + p * src_step, n)


cdef void im2col(const floating *x, floating *cols, Window g, Py_ssize_t u0,
                 Py_ssize_t nu) noexcept nogil:
    """cols[(u, ox), (ky, kx, c)] = padded x[i, oy*sh + ky*dh, ox*sw + kx*dw, c] for the
    output rows u = u0 .. u0 + nu - 1 of the batch, where u = i * oh + oy."""
    cdef Py_ssize_t kk = g.kh * g.kw * g.c
    cdef Py_ssize_t row_len = g.kw * g.c
    cdef Py_ssize_t u, i, oy, ox, ky, kx, iy, ix, ix0, lo = 0, hi = 0
    cdef floating *dst
    cdef const floating *src
    if g.dw == 1:  # output columns [lo, hi) read whole kernel rows inside the image
        lo = min(g.ow, (g.pl + g.sw - 1) // g.sw)
        hi = max(lo, min(g.ow, (g.w + g.pl - g.kw) // g.sw + 1)) if g.w + g.pl >= g.kw else lo
    for u in range(nu):
        i = (u0 + u) // g.oh
        oy = (u0 + u) % g.oh
        for ky in range(g.kh):
            iy = oy * g.sh - g.pt + ky * g.dh
            dst = cols + u * g.ow * kk + ky * row_len
            if iy < 0 or iy >= g.h:
                for ox in range(g.ow):
                    memset(dst + ox * kk, 0, row_len * sizeof(floating))
                continue
            # the inside columns: each kernel row one contiguous copy, all in one call
            copy_runs(dst + lo * kk, kk, x + ((i * g.h + iy) * g.w + lo * g.sw - g.pl) * g.c,
                      g.sw * g.c, hi - lo, row_len)
            for ox in range(g.ow):
                if lo <= ox < hi:
                    continue
                ix0 = ox * g.sw - g.pl
                for kx in range(g.kw):
                    ix = ix0 + kx * g.dw
                    if ix < 0 or ix >= g.w:
                        memset(dst + ox * kk + kx * g.c, 0, g.c * sizeof(floating))
                    else:
                        src = x + ((i * g.h + iy) * g.w + ix) * g.c
                        copy_short(dst + ox * kk + kx * g.c, src, g.c)


cdef void col2im(const floating *dcols, floating *dx, Window g, Py_ssize_t i0,
                 Py_ssize_t ni) noexcept nogil:
    """dx[i0 .. i0 + ni - 1] = dcols scattered back to where im2col read them (zeroed first)."""
    cdef Py_ssize_t kk = g.kh * g.kw * g.c
    cdef Py_ssize_t row_len = g.kw * g.c
    cdef Py_ssize_t i, oy, ox, ky, kx, iy, ix, ix0
    cdef const floating *src
    cdef floating *dst
    memset(dx + i0 * g.h * g.w * g.c, 0, ni * g.h * g.w * g.c * sizeof(floating))
    for i in range(ni):
        for oy in range(g.oh):
            for ox in range(g.ow):
                src = dcols + ((i * g.oh + oy) * g.ow + ox) * kk
                ix0 = ox * g.sw - g.pl
                for ky in range(g.kh):
                    iy = oy * g.sh - g.pt + ky * g.dh
                    if iy < 0 or iy >= g.h:
                        continue
                    dst = dx + (((i0 + i) * g.h + iy) * g.w) * g.c
                    if g.dw == 1 and ix0 >= 0 and ix0 + g.kw <= g.w:
                        # the whole kernel row is inside: one contiguous run (as in im2col)
                        add_run(dst + ix0 * g.c, src + ky * row_len, row_len)
                    else:
                        for kx in range(g.kw):
                            ix = ix0 + kx * g.dw
                            if 0 <= ix < g.w:
                                add_run(dst + ix * g.c, src + ky * row_len + kx * g.c, g.c)


cdef Winograd winograd_setup(const float *kernel, float[::1] u, float[::1] v, float[::1] m,
                             Py_ssize_t c, Py_ssize_t f, int num_threads, bint flipped):
    """The call's Winograd state (u None: none, im2col is used). kernel is the
    (3, 3, c, f) kernel, or with flipped its transpose (f, 3, 3, c), which the gradient
    of the input needs rotated by 180 degrees: u is then (16, f, c)."""
    cdef Winograd w
    cdef Py_ssize_t j
    w.u = NULL
    if u is None:
        return w
    if flipped:  # g'[a][b] = kernel[2 - a][2 - b] of output channel j, per filter
        for j in range(f):
            fastdl_wino_kernel(kernel + j * 9 * c + 8 * c, -c, &u[j * c], f * c, c)
    else:
        fastdl_wino_kernel(kernel, c * f, &u[0], c * f, c * f)
    w.u, w.v, w.m = &u[0], &v[0], &m[0]
    w.v_slot, w.m_slot = v.shape[0] // num_threads, m.shape[0] // num_threads
    return w


def all_finite(const float[::1] x):
    """Whether x holds no +-inf or NaN (Winograd's transforms turn an inf into NaN)."""
    cdef int ok
    with nogil:
        ok = fastdl_all_finite_f(&x[0], x.shape[0])
    return bool(ok)


def winograd_available():
    """Whether float32 3x3 convolutions with stride 1 may run as Winograd: its
    transforms and its small GEMMs are fast only with fastdl's AVX-512 kernels."""
    return bool(fastdl_gemm_enabled())


cdef inline bint winograd_applies(Window g) noexcept nogil:
    return g.kh == 3 and g.kw == 3 and g.sh == 1 and g.sw == 1 and g.dh == 1 and g.dw == 1


cdef void winograd_patch(const float *x, float *v, Py_ssize_t vstride, Window g, Py_ssize_t i,
                         Py_ssize_t iy0, Py_ssize_t ix0) noexcept nogil:
    """v = the transform of the 4x4 patch of image i at (iy0, ix0); zeros outside."""
    cdef const float *rows[4]
    cdef unsigned present = 0
    cdef Py_ssize_t r, s
    for s in range(4):
        if 0 <= ix0 + s < g.w:
            present |= 1u << s
    for r in range(4):
        rows[r] = NULL
        if 0 <= iy0 + r < g.h:
            rows[r] = x + ((i * g.h + iy0 + r) * g.w + ix0) * g.c
    # rows[r][s * c] is only read where column s is present, inside the image
    fastdl_wino_input(rows, present, g.c, v, vstride)


cdef void winograd_rows(const float *x, Winograd w, const float *bias, float *out, Window g,
                        Py_ssize_t f, Py_ssize_t u0, Py_ssize_t nu, bint relu,
                        int thread) noexcept nogil:
    """What conv_rows computes, for 3x3 kernels with stride 1, by Winograd F(2x2, 3x3):
    the 2x2 output tiles of the block (per image its rows fall in) are transformed into
    the thread's v slot, multiplied by 16 GEMMs (tiles, C) @ (C, F) into its m slot (all
    the block's tiles in one GEMM each, however few an image has), and transformed back
    into out (bias and ReLU applied on the way)."""
    cdef float *v = w.v + thread * w.v_slot
    cdef float *m = w.m + thread * w.m_slot
    cdef float *dst[2]
    cdef Py_ssize_t tc = (g.ow + 1) // 2, done, i, oy0, count, a, b, xi, t
    cdef int step
    for step in range(2):  # 0: transform every tile in; 1: after the GEMMs, out
        if step == 1:
            for xi in range(16):
                gemm(False, False, t, f, g.c, <float> 1, v + xi * g.c,
                     (16 * g.c), w.u + xi * g.c * f, f, <float> 0, m + xi * f,
                     (16 * f))
        done = t = 0
        while done < nu:
            i = (u0 + done) // g.oh
            oy0 = (u0 + done) % g.oh
            count = min(g.oh - oy0, nu - done)  # rows of this image in the block
            for a in range((count + 1) // 2):
                dst[0] = out + (done + 2 * a) * g.ow * f
                dst[1] = dst[0] + g.ow * f
                for b in range(tc):
                    if step == 0:
                        winograd_patch(x, v + t * 16 * g.c, g.c, g, i,
                                       oy0 + 2 * a - g.pt, 2 * b - g.pl)
                    else:
                        fastdl_wino_output(m + t * 16 * f, f, dst, <int> min(2, count - 2 * a),
                                           <int> min(2, g.ow - 2 * b), f, bias, relu)
                        dst[0] += 2 * f
                        dst[1] += 2 * f
                    t += 1
            done += count


cdef void winograd_kernel_grad(const float *x, const float *dy, WinogradGrad wg, Window g,
                               Py_ssize_t f, Py_ssize_t i0, Py_ssize_t ni, int thread) noexcept nogil:
    """The thread's dU (16, C, F) += the Winograd gradient of images i0 .. i0 + ni - 1:
    every 2x2 block of dy with the 4x4 input patch under it, both transformed, then 16
    GEMMs V^T @ W over all the block's tiles (dk = G^T dU G is taken once, at the end)."""
    cdef float *v = wg.v + thread * wg.v_slot
    cdef float *w = wg.w + thread * wg.w_slot
    cdef float *du = wg.du + thread * wg.du_slot
    cdef Py_ssize_t tr = (g.oh + 1) // 2, tc = (g.ow + 1) // 2
    cdef Py_ssize_t tiles = ni * tr * tc, i, a, b, t, xi
    cdef const float *rows[2]
    cdef unsigned present
    for i in range(ni):
        for a in range(tr):
            for b in range(tc):
                t = (i * tr + a) * tc + b
                winograd_patch(x, v + t * 16 * g.c, g.c, g, i0 + i, 2 * a - g.pt, 2 * b - g.pl)
                rows[0] = dy + (((i0 + i) * g.oh + 2 * a) * g.ow + 2 * b) * f
                rows[1] = rows[0] + g.ow * f if 2 * a + 1 < g.oh else NULL
                present = 3u if 2 * b + 1 < g.ow else 1u
                fastdl_wino_grad_tile(rows, present, f, w + t * 16 * f, f)
    for xi in range(16):
        gemm(True, False, g.c, f, tiles, <float> 1, v + xi * g.c,
             (16 * g.c), w + xi * f, (16 * f), <float> 1, du + xi * g.c * f, f)


cdef void conv_rows(const floating *x, const floating *kernel, const floating *bias, floating *out,
                    floating *work, Window g, Py_ssize_t f, Py_ssize_t u0, Py_ssize_t nu,
                    bint relu, Winograd w, int thread) noexcept nogil:
    """out = conv rows u0 .. u0 + nu - 1 of the batch (u = image * OH + output row), of
    OW pixels and f filters each: im2col into work (the input itself for pointwise
    kernels), bias, GEMM, then ReLU when asked while the block is still in cache; or
    Winograd when the call set it up (float32 3x3 stride 1)."""
    cdef Py_ssize_t kk = g.kh * g.kw * g.c, r, j
    cdef const floating *cols
    if floating is float:
        if w.u != NULL:
            winograd_rows(x, w, bias, out, g, f, u0, nu, relu, thread)
            return
    if is_pointwise(g):
        cols = x + u0 * g.ow * kk
    else:
        im2col(x, work, g, u0, nu)
        cols = work
    if floating is float:  # bias and ReLU in the GEMM's epilogue: no passes of their own
        if fastdl_gemm_enabled() and fastdl_sgemm_avx512_ep(
                False, False, nu * g.ow, f, kk, 1, cols, kk, kernel, f, 0, out, f, bias, relu) == 0:
            return
    if bias != NULL:
        for r in range(nu * g.ow):
            for j in range(f):
                out[r * f + j] = bias[j]
    gemm(False, False, (nu * g.ow), f, kk, <floating> 1, cols, kk,
         kernel, f, <floating> (1 if bias != NULL else 0), out, f)
    if relu:
        if floating is float:
            fastdl_relu_f(out, out, nu * g.ow * f)
        else:
            fastdl_relu_d(out, out, nu * g.ow * f)


def conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, ::1] kernel,
                   const floating[::1] bias, floating[:, :, :, ::1] y,
                   floating[::1] work, tuple geometry, Py_ssize_t rows_per_block,
                   int num_threads, bint relu, float[::1] wino_u=None, float[::1] wino_v=None,
                   float[::1] wino_m=None):
    """y (N, OH, OW, F) = conv(x (N, H, W, C), kernel (KH*KW*C, F)) + bias (F,) or None,
    then max(y, 0) when relu, on each block right after its GEMM (still in cache).

    A block is rows_per_block output rows (of OW pixels each); work holds
    num_threads * rows_per_block * OW * KH*KW*C elements (unused for pointwise kernels).
    wino_u/v/m (float32, 3x3, stride 1 only): Winograd instead of im2col, u of 16*C*F
    floats, v and m num_threads slots of 16 * tiles * C and 16 * tiles * F for the most
    2x2 tiles one image's share of a block has.
    """
    cdef Window g = window_from_tuple(geometry)
    cdef Py_ssize_t f = kernel.shape[1], kk = kernel.shape[0]
    cdef Py_ssize_t units = g.n * g.oh, slot = rows_per_block * g.ow * kk
    cdef Py_ssize_t blocks = (units + rows_per_block - 1) // rows_per_block
    cdef Py_ssize_t b, u0
    cdef const floating *xp = &x[0, 0, 0, 0]
    cdef const floating *bp = &bias[0] if bias is not None else NULL
    cdef floating *yp = &y[0, 0, 0, 0]
    cdef floating *wp = &work[0] if not is_pointwise(g) and work is not None else NULL
    cdef Winograd w
    w.u = NULL
    if floating is float:
        if winograd_applies(g):
            w = winograd_setup(&kernel[0, 0], wino_u, wino_v, wino_m, g.c, f, num_threads, False)
    for b in prange(blocks, nogil=True, schedule="static", num_threads=num_threads):
        u0 = b * rows_per_block
        conv_rows(xp, &kernel[0, 0], bp, yp + u0 * g.ow * f,
                  wp + threadid() * slot if wp != NULL else NULL, g, f, u0,
                  min(rows_per_block, units - u0), relu, w, threadid())


def conv2d_max_pool_forward(const floating[:, :, :, ::1] x, const floating[:, ::1] kernel,
                            const floating[::1] bias, floating[:, :, :, ::1] conv_out,
                            floating[:, :, :, ::1] pooled, floating[::1] work,
                            floating[::1] work_rows, tuple geometry, int ph, int pw,
                            Py_ssize_t pooled_rows_per_block, int num_threads, bint relu,
                            unsigned char[:, :, :, ::1] argmax=None, float[::1] wino_u=None, float[::1] wino_v=None,
                            float[::1] wino_m=None):
    """pooled (N, OH // ph, OW // pw, F) = max pooling (strides = pool size, no padding)
    of the convolution, each block pooled while it is in cache.

    A block is pooled_rows_per_block pooled rows of one image (ph conv rows each; an
    image's last block also takes the conv rows no window uses, so conv_out, when not
    None, receives the whole convolution). Without conv_out each thread writes its
    block's conv rows into its slot of work_rows. Slots hold the most conv rows a block
    can have: pooled_rows_per_block * ph + OH % ph. wino_u/v/m: as in conv2d_forward.
    argmax (like pooled, when given) receives each maximum's position in its window, or
    ARGMAX_NONE (255) with relu where the ReLU passes no gradient (the maximum is 0).
    """
    cdef Window g = window_from_tuple(geometry)
    cdef Py_ssize_t f = kernel.shape[1], kk = kernel.shape[0]
    cdef Py_ssize_t poh = g.oh // ph, pw_out = g.ow // pw
    cdef Py_ssize_t per_image = (poh + pooled_rows_per_block - 1) // pooled_rows_per_block
    cdef Py_ssize_t most_rows = pooled_rows_per_block * ph + g.oh % ph
    cdef Py_ssize_t slot = most_rows * g.ow * kk, rows_slot = most_rows * g.ow * f
    cdef Py_ssize_t b, i, py0, py1, oy0, oy1, py
    cdef bint keep = conv_out is not None
    cdef const floating *xp = &x[0, 0, 0, 0]
    cdef const floating *bp = &bias[0] if bias is not None else NULL
    cdef floating *cp = &conv_out[0, 0, 0, 0] if keep else NULL
    cdef floating *pp = &pooled[0, 0, 0, 0]
    cdef unsigned char *ap = &argmax[0, 0, 0, 0] if argmax is not None else NULL
    cdef floating *wp = &work[0] if not is_pointwise(g) and work is not None else NULL
    cdef floating *rp = &work_rows[0] if not keep else NULL
    cdef floating *out
    cdef Winograd w
    w.u = NULL
    if floating is float:
        if winograd_applies(g):
            w = winograd_setup(&kernel[0, 0], wino_u, wino_v, wino_m, g.c, f, num_threads, False)
    for b in prange(g.n * per_image, nogil=True, schedule="static", num_threads=num_threads):
        i = b // per_image
        py0 = (b % per_image) * pooled_rows_per_block
        py1 = min(py0 + pooled_rows_per_block, poh)
        oy0 = py0 * ph
        oy1 = py1 * ph if py1 < poh else g.oh
        out = cp + (i * g.oh + oy0) * g.ow * f if keep else rp + threadid() * rows_slot
        conv_rows(xp, &kernel[0, 0], bp, out, wp + threadid() * slot if wp != NULL else NULL,
                  g, f, i * g.oh + oy0, oy1 - oy0, relu, w, threadid())
        for py in range(py0, py1):
            max_pool_row(out + (py * ph - oy0) * g.ow * f, pp + (i * poh + py) * pw_out * f,
                         ap + (i * poh + py) * pw_out * f if ap != NULL else NULL,
                         pw_out, ph, pw, g.ow * f, f, relu)


cdef void kernel_grad_block(const floating *x, const floating *dy, floating *dk, floating *cols,
                            Window g, Py_ssize_t f, Py_ssize_t i0, Py_ssize_t ni,
                            bint pointwise) noexcept nogil:
    """dk (KH*KW*C, F) += cols^T @ dy over images i0 .. i0 + ni - 1, with cols the im2col
    columns written into the thread's slot (a pointwise convolution's columns are x)."""
    cdef Py_ssize_t kk = g.kh * g.kw * g.c, rows = ni * g.oh * g.ow
    cdef const floating *c = x + i0 * g.h * g.w * g.c
    if not pointwise:
        im2col(x, cols, g, i0 * g.oh, ni * g.oh)
        c = cols
    gemm(True, False, kk, f, rows, <floating> 1, c, kk, dy + i0 * g.oh * g.ow * f, f,
         <floating> 1, dk, f)


cdef void input_grad_block(const floating *dy, const floating *kernel_t, floating *dx,
                           floating *dcols, Window g, Py_ssize_t f, Py_ssize_t i0,
                           Py_ssize_t ni, bint pointwise) noexcept nogil:
    """dx of images i0 .. i0 + ni - 1: dcols = dy @ kernel^T in the thread's slot, then
    scatter-added back by col2im (a pointwise convolution's dcols are dx itself)."""
    cdef Py_ssize_t kk = g.kh * g.kw * g.c, rows = ni * g.oh * g.ow
    cdef const floating *dy_block = dy + i0 * g.oh * g.ow * f
    if pointwise:
        gemm(False, False, rows, kk, f, <floating> 1, dy_block, f, kernel_t, kk,
             <floating> 0, dx + i0 * g.h * g.w * g.c, kk)
    else:
        gemm(False, False, rows, kk, f, <floating> 1, dy_block, f, kernel_t, kk,
             <floating> 0, dcols, kk)
        col2im(dcols, dx, g, i0, ni)


def conv2d_transpose(const floating[:, :, :, ::1] x, const floating[:, ::1] kernel_t, floating[:, :, :, ::1] out,
                     floating[::1] work_dcols, tuple geometry, Py_ssize_t images_per_block, int num_threads):
    """out (N, H, W, C): conv2d's input gradient of x (N, OH, OW, F) for `geometry`, whole
    images a block (col2im never crosses threads); kernel_t (F, KH*KW*C) as in
    conv2d_backward, work_dcols num_threads slots of images_per_block * OH * OW * KH*KW*C."""
    cdef Window g = window_from_tuple(geometry)
    cdef Py_ssize_t f = kernel_t.shape[0], kk = kernel_t.shape[1]
    cdef Py_ssize_t slot = images_per_block * g.oh * g.ow * kk
    cdef Py_ssize_t blocks = (g.n + images_per_block - 1) // images_per_block
    cdef Py_ssize_t b, i0, ni
    cdef bint pointwise = is_pointwise(g)
    cdef floating *wd = NULL if pointwise or work_dcols is None else &work_dcols[0]
    for b in prange(blocks, nogil=True, schedule="static", num_threads=num_threads):
        i0 = b * images_per_block
        ni = min(images_per_block, g.n - i0)
        input_grad_block(&x[0, 0, 0, 0], &kernel_t[0, 0], &out[0, 0, 0, 0],
                         wd + threadid() * slot if wd != NULL else NULL, g, f, i0, ni, pointwise)


cdef void sum_partials(floating *dkernel, const floating *dk_partial, floating *dbias,
                       const double *db_partial, WinogradGrad wg, Py_ssize_t parts,
                       Py_ssize_t kk, Py_ssize_t f, Py_ssize_t c, int num_threads) noexcept nogil:
    """The threads' partial gradients added in thread order (so results do not depend on
    timing): dkernel from the im2col partials, or from the Winograd dU as G^T dU G."""
    cdef Py_ssize_t t, j
    cdef double total
    if wg.du != NULL:
        for t in range(1, num_threads):
            for j in range(wg.du_slot):
                wg.du[j] += wg.du[t * wg.du_slot + j]
        if floating is float:
            fastdl_wino_kernel_grad(wg.du, c * f, dkernel, c * f, c * f)
    else:
        for j in range(kk * f):
            dkernel[j] = dk_partial[j]
        for t in range(1, parts):
            for j in range(kk * f):
                dkernel[j] += dk_partial[t * kk * f + j]
    for j in range(f):
        total = 0
        for t in range(parts):
            total = total + db_partial[t * f + j]
        dbias[j] = <floating> total


def conv2d_backward(const floating[:, :, :, ::1] dy, const floating[:, :, :, ::1] x,
                    const floating[:, ::1] kernel_t, floating[:, :, :, ::1] dx,
                    floating[:, ::1] dkernel, floating[:, :, ::1] dkernel_partial,
                    floating[::1] dbias, double[:, ::1] dbias_partial,
                    floating[::1] work_cols, floating[::1] work_dcols, tuple geometry,
                    Py_ssize_t images_per_block, int num_threads, float[::1] wino_u=None,
                    float[::1] wino_v=None, float[::1] wino_m=None, float[::1] wgrad_du=None,
                    float[::1] wgrad_v=None, float[::1] wgrad_w=None):
    """dkernel (KH*KW*C, F) and, when dx is not None, dx (N, H, W, C) of a convolution;
    kernel_t is the kernel transposed, (F, KH*KW*C), so dy @ kernel_t is a plain product.

    Blocks are whole images, so the scatter-add of col2im never crosses threads. Each
    thread sums its kernel gradient into dkernel_partial[thread] (num_threads, KH*KW*C, F)
    and its share of the bias gradient (dy's column sums, in double) into
    dbias_partial[thread] (num_threads, F) while its block of dy is still in cache; both
    are added in thread order at the end, so results do not depend on timing.

    wino_u/v/m (float32, 3x3, stride 1 only): dx by Winograd, as the forward convolution
    of dy with the kernel rotated by 180 degrees (no columns, no col2im); sized as in
    conv2d_forward for that convolution (F input channels, C filters, whole images).
    wgrad_du/v/w (the same cases): dkernel by Winograd too, num_threads slots of 16*C*F,
    16 * tiles * C and 16 * tiles * F floats, tiles = images_per_block * ceil(OH / 2) *
    ceil(OW / 2).
    """
    cdef Window g = window_from_tuple(geometry)
    cdef Py_ssize_t f = kernel_t.shape[0], kk = kernel_t.shape[1]
    cdef Py_ssize_t slot = images_per_block * g.oh * g.ow * kk
    cdef Py_ssize_t blocks = (g.n + images_per_block - 1) // images_per_block
    cdef Py_ssize_t b, i0, ni, parts = dkernel_partial.shape[0]
    cdef bint pointwise = is_pointwise(g)
    cdef bint want_dx = dx is not None
    cdef const floating *xp = &x[0, 0, 0, 0]
    cdef const floating *dyp = &dy[0, 0, 0, 0]
    cdef floating *dxp = &dx[0, 0, 0, 0] if want_dx else NULL
    cdef floating *wc = &work_cols[0] if not pointwise and work_cols is not None else NULL
    cdef floating *wd = &work_dcols[0] if want_dx and not pointwise and work_dcols is not None else NULL
    cdef floating *dkp = &dkernel_partial[0, 0, 0]
    cdef floating *dkout = &dkernel[0, 0]
    cdef double *dbp = &dbias_partial[0, 0]
    cdef Winograd w
    cdef Window gt = g  # dx as a convolution of dy: rows of dx are its output rows
    gt.h, gt.w, gt.c, gt.pt, gt.pl, gt.oh, gt.ow = g.oh, g.ow, f, 2 - g.pt, 2 - g.pl, g.h, g.w
    cdef WinogradGrad wg
    w.u = NULL
    wg.du = NULL
    if floating is float:
        if want_dx and winograd_applies(g):
            w = winograd_setup(&kernel_t[0, 0], wino_u, wino_v, wino_m, g.c, f, num_threads, True)
        if wgrad_du is not None and winograd_applies(g):
            wg.du, wg.v, wg.w = &wgrad_du[0], &wgrad_v[0], &wgrad_w[0]
            wg.du_slot, wg.v_slot = 16 * g.c * f, wgrad_v.shape[0] // num_threads
            wg.w_slot = wgrad_w.shape[0] // num_threads
            with nogil:
                memset(wg.du, 0, num_threads * wg.du_slot * sizeof(float))
    with nogil:
        if wg.du == NULL:  # the im2col partials (Winograd sums into dU instead)
            memset(dkp, 0, parts * kk * f * sizeof(floating))
        memset(dbp, 0, parts * f * sizeof(double))
    for b in prange(blocks, nogil=True, schedule="static", num_threads=num_threads):
        # one block's kernel, bias and input gradients while its dy is in cache
        i0 = b * images_per_block
        ni = min(images_per_block, g.n - i0)
        if floating is float:
            if wg.du != NULL:
                winograd_kernel_grad(xp, dyp, wg, g, f, i0, ni, threadid())
        if wg.du == NULL:
            kernel_grad_block(xp, dyp, dkp + threadid() * kk * f, wc + threadid() * slot
                              if wc != NULL else NULL, g, f, i0, ni, pointwise)
        add_rows(dbp + threadid() * f, dyp + i0 * g.oh * g.ow * f, ni * g.oh * g.ow, f)
        if floating is float:
            if w.u != NULL:
                winograd_rows(dyp, w, NULL, dxp + i0 * g.h * g.w * g.c, gt, g.c, i0 * g.h,
                              ni * g.h, False, threadid())
        if want_dx and w.u == NULL:
            input_grad_block(dyp, &kernel_t[0, 0], dxp, wd + threadid() * slot
                             if wd != NULL else NULL, g, f, i0, ni, pointwise)
    with nogil:
        sum_partials(dkout, dkp, &dbias[0], dbp, wg, parts, kk, f, g.c, num_threads)
