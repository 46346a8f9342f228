# Fused optimizer updates over flat arrays: OpenMP splits the arrays into blocks and
# each block runs the one-pass C loop of optim.h. Hyper-parameters arrive as doubles
# prepared on the Python side (fastdl.ops.optim); optional state arrays are None.
from cython cimport floating
from cython.parallel cimport prange

cdef extern from "optim.h" nogil:
    void fastdl_sgd_f(float *p, const float *g, float *buf, Py_ssize_t n, double lr, double momentum, double dampening, double l2, double decay, double sign, int nesterov, int init, int keras)
    void fastdl_sgd_d(double *p, const double *g, double *buf, Py_ssize_t n, double lr, double momentum, double dampening, double l2, double decay, double sign, int nesterov, int init, int keras)
    void fastdl_adagrad_f(float *p, const float *g, float *acc, Py_ssize_t n, double lr, double eps, double l2, double decay, int eps_inside)
    void fastdl_adagrad_d(double *p, const double *g, double *acc, Py_ssize_t n, double lr, double eps, double l2, double decay, int eps_inside)
    void fastdl_rmsprop_f(float *p, const float *g, float *sq, float *ga, float *buf, Py_ssize_t n, double lr, double rho, double eps, double momentum, double l2, double decay, int keras)
    void fastdl_rmsprop_d(double *p, const double *g, double *sq, double *ga, double *buf, Py_ssize_t n, double lr, double rho, double eps, double momentum, double l2, double decay, int keras)
    void fastdl_adam_f(float *p, const float *g, float *m, float *v, float *vmax, Py_ssize_t n, double step_size, double eps_hat, double beta1, double beta2, double l2, double decay, double sign)
    void fastdl_adam_d(double *p, const double *g, double *m, double *v, double *vmax, Py_ssize_t n, double step_size, double eps_hat, double beta1, double beta2, double l2, double decay, double sign)

from libc.stdint cimport uintptr_t

DEF BLOCK = 32768  # elements per parallel work item
DEF ALIGN = 64  # bytes: a cache line


cdef inline floating *opt(floating[::1] a) noexcept nogil:
    return NULL if a is None else &a[0]


cdef inline Py_ssize_t head_of(const floating *p, Py_ssize_t n) noexcept nogil:
    """The elements before p reaches a cache-line boundary (at most n). Work item 0 is
    those alone, the others are whole BLOCKs from there: with arrays that share p's
    offset within a line (large NumPy arrays all start 16 bytes into one), no vector
    access straddles two lines (a third faster on one thread here)."""
    cdef Py_ssize_t off = <Py_ssize_t> (<uintptr_t> p % ALIGN)
    if off % sizeof(floating):
        return 0
    return min(n, (ALIGN - off) % ALIGN // <Py_ssize_t> sizeof(floating))


cdef inline Py_ssize_t items(Py_ssize_t n, Py_ssize_t head) noexcept nogil:
    return 1 + (n - head + BLOCK - 1) // BLOCK


cdef inline Py_ssize_t item_start(Py_ssize_t b, Py_ssize_t n, Py_ssize_t head) noexcept nogil:
    return 0 if b == 0 else min(n, head + (b - 1) * BLOCK)


def sgd(floating[::1] p, const floating[::1] g, floating[::1] buf, double lr, double momentum,
        double dampening, double l2, double decay, double sign, bint nesterov, bint init,
        bint keras, int num_threads):
    cdef Py_ssize_t b, lo, size, n = p.shape[0], head = head_of(&p[0], n), blocks = items(n, head)
    cdef floating *bp = opt(buf)
    for b in prange(blocks, nogil=True, schedule="static", num_threads=num_threads):
        lo = item_start(b, n, head)
        size = item_start(b + 1, n, head) - lo
        if floating is float:
            fastdl_sgd_f(&p[lo], &g[lo], NULL if bp == NULL else bp + lo, size,
                         lr, momentum, dampening, l2, decay, sign, nesterov, init, keras)
        else:
            fastdl_sgd_d(&p[lo], &g[lo], NULL if bp == NULL else bp + lo, size,
                         lr, momentum, dampening, l2, decay, sign, nesterov, init, keras)


def adagrad(floating[::1] p, const floating[::1] g, floating[::1] acc, double lr, double eps,
            double l2, double decay, bint eps_inside, int num_threads):
    cdef Py_ssize_t b, lo, size, n = p.shape[0], head = head_of(&p[0], n), blocks = items(n, head)
    for b in prange(blocks, nogil=True, schedule="static", num_threads=num_threads):
        lo = item_start(b, n, head)
        size = item_start(b + 1, n, head) - lo
        if floating is float:
            fastdl_adagrad_f(&p[lo], &g[lo], &acc[lo], size,
                             lr, eps, l2, decay, eps_inside)
        else:
            fastdl_adagrad_d(&p[lo], &g[lo], &acc[lo], size,
                             lr, eps, l2, decay, eps_inside)


def rmsprop(floating[::1] p, const floating[::1] g, floating[::1] sq, floating[::1] ga,
            floating[::1] buf, double lr, double rho, double eps, double momentum, double l2,
            double decay, bint keras, int num_threads):
    cdef Py_ssize_t b, lo, size, n = p.shape[0], head = head_of(&p[0], n), blocks = items(n, head)
    cdef floating *gap = opt(ga)
    cdef floating *bp = opt(buf)
    for b in prange(blocks, nogil=True, schedule="static", num_threads=num_threads):
        lo = item_start(b, n, head)
        size = item_start(b + 1, n, head) - lo
        if floating is float:
            fastdl_rmsprop_f(&p[lo], &g[lo], &sq[lo], NULL if gap == NULL else gap + lo,
                             NULL if bp == NULL else bp + lo, size,
                             lr, rho, eps, momentum, l2, decay, keras)
        else:
            fastdl_rmsprop_d(&p[lo], &g[lo], &sq[lo], NULL if gap == NULL else gap + lo,
                             NULL if bp == NULL else bp + lo, size,
                             lr, rho, eps, momentum, l2, decay, keras)


def adam(floating[::1] p, const floating[::1] g, floating[::1] m, floating[::1] v,
         floating[::1] vmax, double step_size, double eps_hat, double beta1, double beta2,
         double l2, double decay, double sign, int num_threads):
    cdef Py_ssize_t b, lo, size, n = p.shape[0], head = head_of(&p[0], n), blocks = items(n, head)
    cdef floating *vp = opt(vmax)
    for b in prange(blocks, nogil=True, schedule="static", num_threads=num_threads):
        lo = item_start(b, n, head)
        size = item_start(b + 1, n, head) - lo
        if floating is float:
            fastdl_adam_f(&p[lo], &g[lo], &m[lo], &v[lo], NULL if vp == NULL else vp + lo,
                          size, step_size, eps_hat, beta1, beta2,
                          l2, decay, sign)
        else:
            fastdl_adam_d(&p[lo], &g[lo], &m[lo], &v[lo], NULL if vp == NULL else vp + lo,
                          size, step_size, eps_hat, beta1, beta2,
                          l2, decay, sign)
