# cython: language_level=3
# Recurrent cells through time, time-major (fastdl/ops/recurrent.py has the layout):
# each step is one GEMM, h[t] @ U into `inner` (B, G*H), then one pass over the gates
# that applies the nonlinearities, the cell update and the mask. The whole time loop
# runs here, without the GIL: a short sequence pays one Python call, not one a step.
#
# The backward walks the steps in reverse: one pass per step turns dh (and LSTM's dc)
# into the gates' gradients dxp[t] (and GRU's dinner[t]), then one GEMM adds
# dinner[t] @ U^T into dh. dU is the caller's single GEMM over all the steps.
#
# Recurrent dropout (rmask (B, G*H), or NULL) masks h differently for each gate, so
# the step's GEMM becomes one a gate, each reading its own masked copy of h (hm) and
# writing its columns of inner; the backward's GEMM is split so, its product scaled by
# the gate's mask before it is added into dh.
#
# Samples never meet in a recurrence, so each thread takes a block of them through
# every step on its own (BLAS single-threaded inside): no barrier between the steps.
from cython cimport floating
from cython.parallel cimport prange

from _blas cimport gemm

cdef extern from "recurrent_cell.h" nogil:
    void fastdl_step_f(int cell, const float *x, const float *b, const float *inner, const float *rb,
                       const float *hp, const float *cp, float *hn, float *cn, float *g, Py_ssize_t n, int keep,
                       int a, int ra)
    void fastdl_step_d(int cell, const double *x, const double *b, const double *inner, const double *rb,
                       const double *hp, const double *cp, double *hn, double *cn, double *g, Py_ssize_t n,
                       int keep, int a, int ra)
    void fastdl_step_backward_f(int cell, const float *dseq, const float *g, const float *hp, const float *cp,
                                const float *cn, float *dh, float *dc, float *dx, float *di, Py_ssize_t n,
                                int keep, int a, int ra)
    void fastdl_step_backward_d(int cell, const double *dseq, const double *g, const double *hp,
                                const double *cp, const double *cn, double *dh, double *dc, double *dx,
                                double *di, Py_ssize_t n, int keep, int a, int ra)


cdef inline void step_row(int cell, const floating *x, const floating *b, const floating *inner,
                          const floating *rb, const floating *hp, const floating *cp, floating *hn, floating *cn,
                          floating *g, Py_ssize_t n, bint keep, int a, int ra) noexcept nogil:
    if floating is float:
        fastdl_step_f(cell, x, b, inner, rb, hp, cp, hn, cn, g, n, keep, a, ra)
    else:
        fastdl_step_d(cell, x, b, inner, rb, hp, cp, hn, cn, g, n, keep, a, ra)


cdef inline void step_row_backward(int cell, const floating *dseq, const floating *g, const floating *hp,
                                   const floating *cp, const floating *cn, floating *dh, floating *dc,
                                   floating *dx, floating *di, Py_ssize_t n, bint keep, int a,
                                   int ra) noexcept nogil:
    if floating is float:
        fastdl_step_backward_f(cell, dseq, g, hp, cp, cn, dh, dc, dx, di, n, keep, a, ra)
    else:
        fastdl_step_backward_d(cell, dseq, g, hp, cp, cn, dh, dc, dx, di, n, keep, a, ra)


cdef void masked_product(Py_ssize_t rows, Py_ssize_t width, Py_ssize_t n, const floating *hp,
                         const floating *rm, const floating *u, floating *hm, floating *inner) noexcept nogil:
    """inner (rows, width) = h (rows, n) @ U, gate g's columns from h * rm's gate g columns;
    hm (rows, width) scratch for the masked copies."""
    cdef Py_ssize_t b, j, g
    for b in range(rows):
        for j in range(width):
            hm[b * width + j] = hp[b * n + j % n] * rm[b * width + j]
    for g in range(width // n):
        gemm(False, False, rows, n, n, <floating> 1, hm + g * n, width, u + g * n, width, <floating> 0,
             inner + g * n, width)


cdef void forward_rows(int cell, Py_ssize_t steps, Py_ssize_t batch, Py_ssize_t width, Py_ssize_t n,
                       Py_ssize_t slots, Py_ssize_t lo, Py_ssize_t hi, const floating *x, const floating *u,
                       const floating *bias, const floating *rb, const unsigned char *m, const floating *rm,
                       floating *hs, floating *cs, floating *gs, floating *inner, floating *hm, int a,
                       int ra) noexcept nogil:
    """Samples lo..hi through every step; inner, hm: their (hi - lo, width) scratch rows."""
    cdef Py_ssize_t t, b, row
    for t in range(steps):
        if rm == NULL:
            gemm(False, False, hi - lo, width, n, <floating> 1, hs + (t * batch + lo) * n, n, u, width,
                 <floating> 0, inner, width)
        else:
            masked_product(hi - lo, width, n, hs + (t * batch + lo) * n, rm + lo * width, u, hm, inner)
        for b in range(lo, hi):
            row = t * batch + b
            step_row(cell, x + row * width, bias, inner + (b - lo) * width, rb, hs + row * n,
                     NULL if cs == NULL else cs + row * n, hs + (row + batch) * n,
                     NULL if cs == NULL else cs + (row + batch) * n, gs + row * slots, n,
                     m == NULL or m[row] != 0, a, ra)


def forward(int cell, const floating[:, :, ::1] xp, const floating[:, ::1] u, const floating[::1] bias,
            const floating[::1] rbias,
            const unsigned char[:, ::1] mask, const floating[:, ::1] rmask, int a, int ra, floating[:, :, ::1] h,
            floating[:, :, ::1] c, floating[:, :, ::1] gates, floating[:, ::1] inner, floating[:, ::1] masked,
            int num_threads):
    """Fill h[1:], c[1:] (LSTM) and gates from xp + bias, U and h[0], c[0]; inner (B, G*H) is
    scratch, masked too (None without rmask)."""
    cdef Py_ssize_t steps = xp.shape[0], batch = xp.shape[1], width = xp.shape[2], n = u.shape[0]
    cdef Py_ssize_t lo, hi
    cdef int k, parts = <int> max(1, min(<Py_ssize_t> num_threads, batch))
    cdef const floating *rb = NULL if rbias is None else &rbias[0]
    cdef const unsigned char *m = NULL if mask is None else &mask[0, 0]
    cdef floating *cs = NULL if c is None else &c[0, 0, 0]
    cdef const floating *rm = NULL if rmask is None else &rmask[0, 0]
    cdef floating *hm = NULL if masked is None else &masked[0, 0]
    for k in prange(parts, nogil=True, schedule="static", num_threads=parts):
        lo = k * batch // parts
        hi = (k + 1) * batch // parts
        forward_rows(cell, steps, batch, width, n, gates.shape[2], lo, hi, &xp[0, 0, 0], &u[0, 0], &bias[0], rb, m,
                     rm, &h[0, 0, 0], cs, &gates[0, 0, 0], &inner[lo, 0], NULL if hm == NULL else hm + lo * width,
                     a, ra)


cdef void backward_rows(int cell, Py_ssize_t steps, Py_ssize_t batch, Py_ssize_t width, Py_ssize_t n,
                        Py_ssize_t slots, Py_ssize_t lo, Py_ssize_t hi, const floating *dseq, const floating *ut,
                        const floating *hs, const floating *cs, const floating *gs, const unsigned char *m,
                        const floating *rm, floating *dh, floating *dc, floating *dx, floating *di, floating *part,
                        int a, int ra) noexcept nogil:
    """Samples lo..hi backward through every step, from the last; part: their (hi - lo, H)
    scratch rows (with rm only)."""
    cdef Py_ssize_t t, b, row, g, j
    cdef const floating *d
    for t in range(steps - 1, -1, -1):
        for b in range(lo, hi):
            row = t * batch + b
            step_row_backward(cell, NULL if dseq == NULL else dseq + row * n, gs + row * slots, hs + row * n,
                              NULL if cs == NULL else cs + row * n, NULL if cs == NULL else cs + (row + batch) * n,
                              dh + b * n, NULL if dc == NULL else dc + b * n, dx + row * width,
                              NULL if di == NULL else di + row * width, n, m == NULL or m[row] != 0, a, ra)
        d = (dx if di == NULL else di) + (t * batch + lo) * width
        if rm == NULL:
            gemm(False, False, hi - lo, n, width, <floating> 1, d, width, ut, n, <floating> 1, dh + lo * n, n)
            continue
        for g in range(width // n):
            gemm(False, False, hi - lo, n, n, <floating> 1, d + g * n, width, ut + g * n * n, n, <floating> 0,
                 part, n)
            for b in range(lo, hi):
                for j in range(n):
                    dh[b * n + j] += part[(b - lo) * n + j] * rm[b * width + g * n + j]


def backward(int cell, const floating[:, ::1] ut, const floating[:, :, ::1] h, const floating[:, :, ::1] dh_seq,
             const floating[:, :, ::1] c, const floating[:, :, ::1] gates, const unsigned char[:, ::1] mask,
             const floating[:, ::1] rmask, int a, int ra, floating[:, ::1] dh, floating[:, ::1] dc,
             floating[:, :, ::1] dxp, floating[:, :, ::1] dinner, floating[:, ::1] part, int num_threads):
    """Fill dxp (and GRU's dinner); dh, dc: the last states' gradients in, the initial states' out.
    part (B, H): scratch with rmask (None without).
    ut (G*H, H): U transposed, C-contiguous (a GEMM that transposed it would repack it every step).
    The first array arguments are never None: Cython picks the dtype from them."""
    cdef Py_ssize_t steps = dxp.shape[0], batch = dxp.shape[1], width = dxp.shape[2], n = ut.shape[1]
    cdef Py_ssize_t lo, hi
    cdef int k, parts = <int> max(1, min(<Py_ssize_t> num_threads, batch))
    cdef const floating *dseq = NULL if dh_seq is None else &dh_seq[0, 0, 0]
    cdef const unsigned char *m = NULL if mask is None else &mask[0, 0]
    cdef const floating *cs = NULL if c is None else &c[0, 0, 0]
    cdef floating *dcs = NULL if dc is None else &dc[0, 0]
    cdef floating *di = NULL if dinner is None else &dinner[0, 0, 0]
    cdef const floating *rm = NULL if rmask is None else &rmask[0, 0]
    cdef floating *ps = NULL if part is None else &part[0, 0]
    for k in prange(parts, nogil=True, schedule="static", num_threads=parts):
        lo = k * batch // parts
        hi = (k + 1) * batch // parts
        backward_rows(cell, steps, batch, width, n, gates.shape[2], lo, hi, dseq, &ut[0, 0], &h[0, 0, 0], cs,
                      &gates[0, 0, 0], m, rm, &dh[0, 0], dcs, &dxp[0, 0, 0], di,
                      NULL if ps == NULL else ps + lo * n, a, ra)


def embedding(const Py_ssize_t[::1] indices, const floating[:, ::1] table, floating[:, ::1] out, int num_threads):
    """out[i] = table[indices[i]] (indices validated by the caller)."""
    cdef Py_ssize_t i, j, d = table.shape[1]
    for i in prange(indices.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        for j in range(d):
            out[i, j] = table[indices[i], j]


def embedding_backward(const Py_ssize_t[::1] indices, const floating[:, ::1] dy, floating[:, ::1] dtable,
                       int num_threads):
    """dtable[indices[i]] += dy[i], in index order; the threads split the columns, so
    repeated indices never race and the sums do not depend on the schedule."""
    cdef Py_ssize_t i, j, k, d = dy.shape[1], chunks = min(<Py_ssize_t> num_threads, d), lo, hi
    for k in prange(chunks, nogil=True, schedule="static", num_threads=num_threads):
        lo = k * d // chunks
        hi = (k + 1) * d // chunks
        for i in range(indices.shape[0]):
            for j in range(lo, hi):
                dtable[indices[i], j] += dy[i, j]
