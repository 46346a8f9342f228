# Elementwise activations, the bias + activation epilogue of dense layers, and softmax.
#
# Activation codes (fastdl.ops._checks.ACTIVATIONS): 0 linear, 1 relu, 2 sigmoid,
# 3 tanh, 4 softmax (over the last axis). Backward passes are written in terms of the
# forward output y, which every one of them determines the derivative from.
from cython cimport floating
from cython.parallel cimport prange

from _mathf cimport fexp, ftanh

cdef extern from "elementwise.h" nogil:
    void fastdl_relu_f(const float *x, float *out, Py_ssize_t n)
    void fastdl_relu_d(const double *x, double *out, Py_ssize_t n)
    void fastdl_relu_backward_f(const float *dy, const float *x, float *dx, Py_ssize_t n)
    void fastdl_relu_backward_d(const double *dy, const double *x, double *dx, Py_ssize_t n)
    void fastdl_bias_relu_f(float *z, const float *bias, Py_ssize_t n)
    void fastdl_bias_relu_d(double *z, const double *bias, Py_ssize_t n)

DEF BLOCK = 16384  # elements per parallel work item of elementwise kernels

DEF RELU = 1
DEF SIGMOID = 2
DEF TANH = 3
DEF SOFTMAX = 4


cdef inline void relu_block(const floating *x, floating *out, Py_ssize_t n) noexcept nogil:
    if floating is float:
        fastdl_relu_f(x, out, n)
    else:
        fastdl_relu_d(x, out, n)


cdef inline void relu_backward_block(const floating *dy, const floating *x, floating *dx,
                                     Py_ssize_t n) noexcept nogil:
    if floating is float:
        fastdl_relu_backward_f(dy, x, dx, n)
    else:
        fastdl_relu_backward_d(dy, x, dx, n)


def relu(const floating[::1] x, floating[::1] out, int num_threads):
    """out = max(x, 0) elementwise (NaN stays NaN); out may be x."""
    cdef Py_ssize_t b, n = x.shape[0], blocks = (n + BLOCK - 1) // BLOCK
    cdef const floating *xp = &x[0]
    cdef floating *op = &out[0]
    for b in prange(blocks, nogil=True, schedule="static", num_threads=num_threads):
        relu_block(xp + b * BLOCK, op + b * BLOCK, min(<Py_ssize_t> BLOCK, n - b * BLOCK))


def relu_backward(const floating[::1] dy, const floating[::1] x, floating[::1] dx,
                  int num_threads):
    """dx = dy where x > 0, else 0."""
    cdef Py_ssize_t b, n = x.shape[0], blocks = (n + BLOCK - 1) // BLOCK
    cdef const floating *dyp = &dy[0]
    cdef const floating *xp = &x[0]
    cdef floating *dxp = &dx[0]
    for b in prange(blocks, nogil=True, schedule="static", num_threads=num_threads):
        relu_backward_block(dyp + b * BLOCK, xp + b * BLOCK, dxp + b * BLOCK,
                            min(<Py_ssize_t> BLOCK, n - b * BLOCK))


cdef void softmax_row(floating *z, Py_ssize_t k) noexcept nogil:
    """In place: z = exp(z - max z) / sum."""
    cdef Py_ssize_t j
    cdef floating m = z[0], s = 0
    for j in range(1, k):
        if z[j] > m:
            m = z[j]
    for j in range(k):
        z[j] = fexp(z[j] - m)
        s = s + z[j]
    s = 1 / s
    for j in range(k):
        z[j] = z[j] * s


def softmax(const floating[:, ::1] x, floating[:, ::1] out, int num_threads):
    """out (M, K) = softmax of each row of x (M, K); out may be x."""
    cdef Py_ssize_t r, j, k = x.shape[1]
    for r in prange(x.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        if &out[r, 0] != &x[r, 0]:
            for j in range(k):
                out[r, j] = x[r, j]
        softmax_row(&out[r, 0], k)


def bias_activation(floating[:, ::1] z, const floating[::1] bias, int activation,
                    int num_threads):
    """In place on z (M, K): z = activation(z + bias); bias (K,) may be None."""
    cdef Py_ssize_t r, j, k = z.shape[1]
    cdef bint has_bias = bias is not None
    cdef floating v
    for r in prange(z.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        if activation == RELU and has_bias:
            if floating is float:
                fastdl_bias_relu_f(&z[r, 0], &bias[0], k)
            else:
                fastdl_bias_relu_d(&z[r, 0], &bias[0], k)
        elif activation == RELU:
            relu_block(&z[r, 0], &z[r, 0], k)
        else:
            for j in range(k):
                v = z[r, j]
                if has_bias:
                    v = v + bias[j]
                if activation == SIGMOID:
                    v = 1 / (1 + fexp(-v))
                elif activation == TANH:
                    v = ftanh(v)
                z[r, j] = v
            if activation == SOFTMAX:
                softmax_row(&z[r, 0], k)


def activation_backward(const floating[:, ::1] dy, const floating[:, ::1] y,
                        floating[:, ::1] dz, int activation, int num_threads):
    """dz (M, K) = dL/dz given dy = dL/dy and the forward output y = activation(z)."""
    cdef Py_ssize_t r, j, k = dy.shape[1]
    cdef floating dot
    for r in prange(dy.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        if activation == RELU:
            relu_backward_block(&dy[r, 0], &y[r, 0], &dz[r, 0], k)
        elif activation == SOFTMAX:
            dot = 0
            for j in range(k):
                dot = dot + dy[r, j] * y[r, j]
            for j in range(k):
                dz[r, j] = y[r, j] * (dy[r, j] - dot)
        else:
            for j in range(k):
                if activation == SIGMOID:
                    dz[r, j] = dy[r, j] * y[r, j] * (1 - y[r, j])
                elif activation == TANH:
                    dz[r, j] = dy[r, j] * (1 - y[r, j] * y[r, j])
                else:
                    dz[r, j] = dy[r, j]
