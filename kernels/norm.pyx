# cython: language_level=3
# Batch normalization over the rows of x (M, C) with one statistic per column: the NHWC
# activations of a BatchNormalization layer seen as (N*H*W, C). Each kernel reads x once
# per pass: the statistics in one pass (shifted sums in double), the normalisation in
# one, the backward in two (the channel sums, then dx).
#
# Threads take contiguous blocks of rows; each sums its block into its own row of
# `partial` (threads x C doubles, allocated by the caller), reduced afterwards in a
# fixed order, so the sums do not depend on scheduling.
from cython.parallel cimport prange
from libc.math cimport sqrt

ctypedef fused floating:
    float
    double


cdef inline Py_ssize_t block_start(Py_ssize_t t, Py_ssize_t m, Py_ssize_t blocks) noexcept nogil:
    return t * m // blocks


def stats(const floating[:, ::1] x, floating[::1] mean, floating[::1] var, double[:, :, ::1] partial):
    """mean, var (C,) of x's columns: sums of x - x[0] and its squares per block of rows
    (partial: (2, blocks, C)), the shift keeping the variance exact when the mean is large."""
    cdef Py_ssize_t m = x.shape[0], c = x.shape[1], blocks = partial.shape[1]
    cdef Py_ssize_t t, i, j, lo, hi
    cdef double d, s1, s2
    for t in prange(blocks, nogil=True, schedule="static", num_threads=blocks):
        lo = block_start(t, m, blocks)
        hi = block_start(t + 1, m, blocks)
        for j in range(c):
            partial[0, t, j] = 0
            partial[1, t, j] = 0
        for i in range(lo, hi):
            for j in range(c):
                d = <double> x[i, j] - <double> x[0, j]
                partial[0, t, j] += d
                partial[1, t, j] += d * d
    for j in range(c):
        s1 = 0
        s2 = 0
        for t in range(blocks):
            s1 = s1 + partial[0, t, j]
            s2 = s2 + partial[1, t, j]
        s1 = s1 / m
        mean[j] = <floating> (x[0, j] + s1)
        var[j] = <floating> max(s2 / m - s1 * s1, 0.0)


def normalize(const floating[:, ::1] x, const floating[::1] mean, const floating[::1] var,
              const floating[::1] gamma, const floating[::1] beta, double eps, floating[:, ::1] out,
              floating[:, ::1] coefficients, int num_threads):
    """out = (x - mean) * scale + beta, scale = gamma / sqrt(var + eps) (coefficients: (2,
    C), filled here): x - mean first, not x * scale + (beta - mean * scale), whose two
    large terms cancel where the variance is small next to the mean."""
    cdef Py_ssize_t m = x.shape[0], c = x.shape[1], i, j
    cdef double s
    for j in range(c):
        s = gamma[j] / sqrt(<double> var[j] + eps)
        coefficients[0, j] = <floating> s
        coefficients[1, j] = beta[j]
    for i in prange(m, nogil=True, schedule="static", num_threads=num_threads):
        for j in range(c):
            out[i, j] = (x[i, j] - mean[j]) * coefficients[0, j] + coefficients[1, j]


def backward(const floating[:, ::1] dy, const floating[:, ::1] x, const floating[::1] mean,
             const floating[::1] var, const floating[::1] gamma, double eps, floating[:, ::1] dx,
             floating[::1] dgamma, floating[::1] dbeta, double[:, :, ::1] partial,
             floating[:, ::1] coefficients, int num_threads):
    """dx of the training-mode normalisation (the batch's own statistics), dgamma, dbeta:
    first the channel sums of dy and dy * (x - mean) per block of rows (partial: (2,
    blocks, C)), then dx = a dy + b (x - mean) + k with per-channel a, b, k (coefficients:
    (3, C))."""
    cdef Py_ssize_t m = x.shape[0], c = x.shape[1], blocks = partial.shape[1]
    cdef Py_ssize_t t, i, j, lo, hi
    cdef double g, sdy, sdyx, inv, a, b
    for t in prange(blocks, nogil=True, schedule="static", num_threads=blocks):
        lo = block_start(t, m, blocks)
        hi = block_start(t + 1, m, blocks)
        for j in range(c):
            partial[0, t, j] = 0
            partial[1, t, j] = 0
        for i in range(lo, hi):
            for j in range(c):
                g = dy[i, j]
                partial[0, t, j] += g
                partial[1, t, j] += g * (<double> x[i, j] - <double> mean[j])
    for j in range(c):
        sdy = 0
        sdyx = 0
        for t in range(blocks):
            sdy = sdy + partial[0, t, j]
            sdyx = sdyx + partial[1, t, j]
        inv = 1.0 / sqrt(<double> var[j] + eps)
        dbeta[j] = <floating> sdy
        dgamma[j] = <floating> (sdyx * inv)
        # dx = gamma inv (dy - sdy / m - xhat sdyx inv / m), xhat = (x - mean) inv
        a = gamma[j] * inv
        b = -a * inv * inv * sdyx / m
        coefficients[0, j] = <floating> a
        coefficients[1, j] = <floating> b
        coefficients[2, j] = <floating> (-a * sdy / m)
    for i in prange(m, nogil=True, schedule="static", num_threads=num_threads):
        for j in range(c):
            dx[i, j] = (dy[i, j] * coefficients[0, j] + (x[i, j] - mean[j]) * coefficients[1, j]
                        + coefficients[2, j])


# -- layer normalization: one statistic per row, over its C values (row_ops.h's loops) ---------

cdef extern from "row_ops.h" nogil:
    void fastdl_layer_norm_row_f(const float *x, const float *gamma, const float *beta, double eps, float *out,
                                 float *mean, float *rstd, Py_ssize_t n)
    void fastdl_layer_norm_row_d(const double *x, const double *gamma, const double *beta, double eps,
                                 double *out, double *mean, double *rstd, Py_ssize_t n)
    void fastdl_layer_norm_row_backward_f(const float *dy, const float *x, double mu, double inv, const float *gamma,
                                          float *dx, double *pg, double *pb, Py_ssize_t n)
    void fastdl_layer_norm_row_backward_d(const double *dy, const double *x, double mu, double inv,
                                          const double *gamma, double *dx, double *pg, double *pb, Py_ssize_t n)


def layer_norm(const floating[:, ::1] x, const floating[::1] gamma, const floating[::1] beta, double eps,
               floating[:, ::1] out, floating[::1] mean, floating[::1] rstd, int num_threads):
    """out = (x - mean) * rstd * gamma + beta per row, mean and rstd = 1 / sqrt(var + eps)
    of each row (two passes over the row in double: the mean, then the squares about it)."""
    cdef Py_ssize_t m = x.shape[0], c = x.shape[1], i
    for i in prange(m, nogil=True, schedule="static", num_threads=num_threads):
        if floating is float:
            fastdl_layer_norm_row_f(&x[i, 0], &gamma[0], &beta[0], eps, &out[i, 0], &mean[i], &rstd[i], c)
        else:
            fastdl_layer_norm_row_d(&x[i, 0], &gamma[0], &beta[0], eps, &out[i, 0], &mean[i], &rstd[i], c)


def layer_norm_backward(const floating[:, ::1] dy, const floating[:, ::1] x, const floating[::1] mean,
                        const floating[::1] rstd, const floating[::1] gamma, floating[:, ::1] dx,
                        floating[::1] dgamma, floating[::1] dbeta, double[:, :, ::1] partial):
    """dx = rstd (g - mean(g) - xhat mean(g xhat)) per row, g = dy gamma, xhat = (x -
    mean) rstd; dgamma, dbeta: column sums of dy xhat and dy, per block of rows into
    partial (2, blocks, C), then added in block order (no dependence on scheduling)."""
    cdef Py_ssize_t m = x.shape[0], c = x.shape[1], blocks = partial.shape[1], t, i, j, lo, hi
    cdef double sg, sb
    partial[...] = 0
    for t in prange(blocks, nogil=True, schedule="static", num_threads=blocks):
        lo = block_start(t, m, blocks)
        hi = block_start(t + 1, m, blocks)
        for i in range(lo, hi):
            if floating is float:
                fastdl_layer_norm_row_backward_f(&dy[i, 0], &x[i, 0], mean[i], rstd[i], &gamma[0], &dx[i, 0],
                                                 &partial[0, t, 0], &partial[1, t, 0], c)
            else:
                fastdl_layer_norm_row_backward_d(&dy[i, 0], &x[i, 0], mean[i], rstd[i], &gamma[0], &dx[i, 0],
                                                 &partial[0, t, 0], &partial[1, t, 0], c)
    for j in range(c):
        sg = 0
        sb = 0
        for t in range(blocks):
            sg = sg + partial[0, t, j]
            sb = sb + partial[1, t, j]
        dgamma[j] = <floating> sg
        dbeta[j] = <floating> sb
