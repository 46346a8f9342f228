# Sparse categorical cross-entropy, from logits or from probabilities (Keras semantics:
# probabilities are renormalised over the last axis and clipped to [eps, 1 - eps]), and
# the per-sample losses of ops.loss (regression, binary, hinge and divergence losses).
from cython cimport floating
from cython.parallel cimport prange

from libc.math cimport exp, fabs, log, log1p, tanh

from _mathf cimport fexp, flog

cdef double LOG2 = 0.6931471805599453


def sparse_ce_from_logits(const floating[:, ::1] logits, const Py_ssize_t[::1] labels,
                          floating[::1] loss, int num_threads):
    """loss (N,) = logsumexp(logits[i]) - logits[i, labels[i]]."""
    cdef Py_ssize_t r, j, k = logits.shape[1]
    cdef floating m, s
    for r in prange(logits.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        m = logits[r, 0]
        for j in range(1, k):
            if logits[r, j] > m:
                m = logits[r, j]
        s = 0
        for j in range(k):
            s = s + fexp(logits[r, j] - m)
        loss[r] = m + flog(s) - logits[r, labels[r]]


def sparse_ce_from_logits_backward(const floating[:, ::1] logits, const Py_ssize_t[::1] labels,
                                   const floating[::1] dloss, floating[:, ::1] grad,
                                   int num_threads):
    """grad (N, K) = (softmax(logits[i]) - onehot(labels[i])) * dloss[i]."""
    cdef Py_ssize_t r, j, k = logits.shape[1]
    cdef floating m, s
    for r in prange(logits.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        m = logits[r, 0]
        for j in range(1, k):
            if logits[r, j] > m:
                m = logits[r, j]
        s = 0
        for j in range(k):
            grad[r, j] = fexp(logits[r, j] - m)
            s = s + grad[r, j]
        s = dloss[r] / s
        for j in range(k):
            grad[r, j] = grad[r, j] * s
        grad[r, labels[r]] -= dloss[r]


def sparse_ce_from_probs(const floating[:, ::1] probs, const Py_ssize_t[::1] labels,
                         floating[::1] loss, double eps, int num_threads):
    """loss (N,) = -log(clip(p[label] / sum(p), eps, 1 - eps))."""
    cdef Py_ssize_t r, j, k = probs.shape[1]
    cdef floating s, p
    cdef floating lo = <floating> eps, hi = 1 - <floating> eps
    for r in prange(probs.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        s = 0
        for j in range(k):
            s = s + probs[r, j]
        p = probs[r, labels[r]] / s
        p = lo if p < lo else (hi if p > hi else p)
        loss[r] = -flog(p)


def sparse_ce_from_probs_backward(const floating[:, ::1] probs, const Py_ssize_t[::1] labels,
                                  const floating[::1] dloss, floating[:, ::1] grad,
                                  double eps, int num_threads):
    """grad (N, K) of the loss above; zero where the clip is active."""
    cdef Py_ssize_t r, j, k = probs.shape[1]
    cdef floating s, p, g
    cdef floating lo = <floating> eps, hi = 1 - <floating> eps
    for r in prange(probs.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        s = 0
        for j in range(k):
            s = s + probs[r, j]
        p = probs[r, labels[r]] / s
        if p < lo or p > hi:
            for j in range(k):
                grad[r, j] = 0
        else:
            # d(-log(p_y))/d probs_j = -(delta_jy - p_y) / (p_y * s)
            g = dloss[r] / (p * s)
            for j in range(k):
                grad[r, j] = p * g
            grad[r, labels[r]] -= g


# -- the losses of ops.loss (codes: fastdl/backends/_spec.py LOSSES) --------------------------
# Terms are computed and summed in double, whatever the dtype: a sample's mean over many
# elements keeps float32's precision that way, and the cost is nothing beside a layer.

DEF MSE = 0
DEF MAE = 1
DEF MAPE = 2
DEF MSLE = 3
DEF HUBER = 4
DEF LOG_COSH = 5
DEF BCE = 6
DEF BCE_LOGITS = 7
DEF POISSON = 8
DEF HINGE = 9
DEF SQUARED_HINGE = 10
DEF KLD = 11
DEF CATEGORICAL_HINGE = 12


# The terms are written without data-dependent branches (min/max and selects of ready
# values): on random data a branch per element mispredicts about every third time.

# min and max as one instruction each (fmin/fmax's NaN rules cost a call or a sequence),
# keeping `a` unless `b` is beyond it: a NaN in `a`, the data, stays NaN, as NumPy's clip
# keeps it (fmax(NaN, eps) would return eps, a finite loss for a NaN prediction).

cdef inline double dmin(double a, double b) noexcept nogil:
    return b if b < a else a


cdef inline double dmax(double a, double b) noexcept nogil:
    return b if b > a else a


cdef inline double sign(double v) noexcept nogil:
    return <double> (v > 0) - <double> (v < 0)


cdef inline double term(int kind, double y, double p, double delta, double eps) noexcept nogil:
    """One element's loss (every kind but the categorical hinge)."""
    cdef double e = p - y, q
    if kind == MSE:
        return e * e
    if kind == MAE:
        return fabs(e)
    if kind == MAPE:
        return 100.0 * fabs(e) / dmax(fabs(y), eps)
    if kind == MSLE:
        q = log(dmax(p, eps) + 1.0) - log(dmax(y, eps) + 1.0)
        return q * q
    if kind == HUBER:  # a = min(|e|, delta): e^2 / 2 inside, delta |e| - delta^2 / 2 beyond
        q = dmin(fabs(e), delta)
        return q * (fabs(e) - 0.5 * q)
    if kind == LOG_COSH:  # log(cosh(e)) = |e| + log1p(exp(-2|e|)) - log 2, stable for any e
        return fabs(e) + log1p(exp(-2.0 * fabs(e))) - LOG2
    if kind == BCE:
        q = dmin(dmax(p, eps), 1.0 - eps)
        return -(y * log(q) + (1.0 - y) * log(1.0 - q))
    if kind == BCE_LOGITS:
        return dmax(p, 0.0) - p * y + log1p(exp(-fabs(p)))
    if kind == POISSON:
        return p - y * log(p + eps)
    if kind == HINGE:
        return dmax(1.0 - y * p, 0.0)
    if kind == SQUARED_HINGE:
        q = dmax(1.0 - y * p, 0.0)
        return q * q
    if kind == KLD:  # summed over the row
        q = dmin(dmax(y, eps), 1.0)
        return q * log(q / dmin(dmax(p, eps), 1.0))
    return 0.0


cdef inline double term_grad(int kind, double y, double p, double delta, double eps) noexcept nogil:
    """d term / dp; zero where a clip is active, as the clip's own gradient is."""
    cdef double e = p - y, q
    if kind == MSE:
        return 2.0 * e
    if kind == MAE:
        return sign(e)
    if kind == MAPE:
        return 100.0 * sign(e) / dmax(fabs(y), eps)
    if kind == MSLE:
        if p < eps:
            return 0.0
        return 2.0 * (log(p + 1.0) - log(dmax(y, eps) + 1.0)) / (p + 1.0)
    if kind == HUBER:
        return dmin(dmax(e, -delta), delta)
    if kind == LOG_COSH:
        return tanh(e)
    if kind == BCE:
        if p < eps or p > 1.0 - eps:
            return 0.0
        return e / (p * (1.0 - p))
    if kind == BCE_LOGITS:  # sigmoid(p) from exp(-|p|), which cannot overflow
        q = exp(-fabs(p))
        return (1.0 if p >= 0 else q) / (1.0 + q) - y
    if kind == POISSON:
        return 1.0 - y / (p + eps)
    if kind == HINGE:
        return -y * <double> (1.0 - y * p > 0)
    if kind == SQUARED_HINGE:
        return -2.0 * y * dmax(1.0 - y * p, 0.0)
    if kind == KLD:
        if p < eps or p > 1.0:
            return 0.0
        return -dmin(dmax(y, eps), 1.0) / p
    return 0.0


cdef inline Py_ssize_t negative_argmax(const floating *y, const floating *p, Py_ssize_t k) noexcept nogil:
    """Where (1 - y) p is largest in one row (its first maximum)."""
    cdef double neg = (1.0 - y[0]) * p[0], v
    cdef Py_ssize_t j, at = 0
    for j in range(1, k):
        v = (1.0 - y[j]) * p[j]
        if v > neg:
            neg = v
            at = j
    return at


cdef inline double categorical_hinge(const floating *y, const floating *p, Py_ssize_t k,
                                     Py_ssize_t at) noexcept nogil:
    """max(neg - pos + 1, 0) of one row, pos = sum(y p), neg = (1 - y) p at `at`
    (negative_argmax). The position is returned, not written through a pointer: in a
    prange body a variable only written through its address stays shared between the
    threads (Cython makes private only what the body assigns), a race that the sanitizer
    build's -O1 exposed as wrong gradients."""
    cdef double pos = 0
    cdef Py_ssize_t j
    for j in range(k):
        pos += <double> y[j] * p[j]
    return dmax((1.0 - y[at]) * p[at] - pos + 1.0, 0.0)


cdef inline double sum_loop(int kind, const floating *y, const floating *p, Py_ssize_t m, double delta,
                            double eps) noexcept nogil:
    """The sum of m elements' terms, in four running sums (one would make every addition
    wait for the previous one)."""
    cdef double s0 = 0, s1 = 0, s2 = 0, s3 = 0
    cdef Py_ssize_t j, full = m - m % 4
    for j in range(0, full, 4):
        s0 += term(kind, y[j], p[j], delta, eps)
        s1 += term(kind, y[j + 1], p[j + 1], delta, eps)
        s2 += term(kind, y[j + 2], p[j + 2], delta, eps)
        s3 += term(kind, y[j + 3], p[j + 3], delta, eps)
    for j in range(full, m):
        s0 += term(kind, y[j], p[j], delta, eps)
    return (s0 + s1) + (s2 + s3)


cdef inline void grad_loop(int kind, const floating *y, const floating *p, floating *g, Py_ssize_t m,
                           double scale, double delta, double eps) noexcept nogil:
    """g = scale * d term / dp over m elements."""
    cdef Py_ssize_t j
    for j in range(m):
        g[j] = <floating> (scale * term_grad(kind, y[j], p[j], delta, eps))


# Each kind calls the loops with a constant kind: inlined, the compiler keeps only that
# kind's formula, so the loop tests nothing per element and the backward vectorizes.

cdef double sum_terms(int kind, const floating *y, const floating *p, Py_ssize_t m, double delta,
                      double eps) noexcept nogil:
    if kind == MSE:
        return sum_loop(MSE, y, p, m, delta, eps)
    elif kind == MAE:
        return sum_loop(MAE, y, p, m, delta, eps)
    elif kind == MAPE:
        return sum_loop(MAPE, y, p, m, delta, eps)
    elif kind == MSLE:
        return sum_loop(MSLE, y, p, m, delta, eps)
    elif kind == HUBER:
        return sum_loop(HUBER, y, p, m, delta, eps)
    elif kind == LOG_COSH:
        return sum_loop(LOG_COSH, y, p, m, delta, eps)
    elif kind == BCE:
        return sum_loop(BCE, y, p, m, delta, eps)
    elif kind == BCE_LOGITS:
        return sum_loop(BCE_LOGITS, y, p, m, delta, eps)
    elif kind == POISSON:
        return sum_loop(POISSON, y, p, m, delta, eps)
    elif kind == HINGE:
        return sum_loop(HINGE, y, p, m, delta, eps)
    elif kind == SQUARED_HINGE:
        return sum_loop(SQUARED_HINGE, y, p, m, delta, eps)
    elif kind == KLD:
        return sum_loop(KLD, y, p, m, delta, eps)
    return 0


cdef void grad_terms(int kind, const floating *y, const floating *p, floating *g, Py_ssize_t m,
                     double scale, double delta, double eps) noexcept nogil:
    if kind == MSE:
        grad_loop(MSE, y, p, g, m, scale, delta, eps)
    elif kind == MAE:
        grad_loop(MAE, y, p, g, m, scale, delta, eps)
    elif kind == MAPE:
        grad_loop(MAPE, y, p, g, m, scale, delta, eps)
    elif kind == MSLE:
        grad_loop(MSLE, y, p, g, m, scale, delta, eps)
    elif kind == HUBER:
        grad_loop(HUBER, y, p, g, m, scale, delta, eps)
    elif kind == LOG_COSH:
        grad_loop(LOG_COSH, y, p, g, m, scale, delta, eps)
    elif kind == BCE:
        grad_loop(BCE, y, p, g, m, scale, delta, eps)
    elif kind == BCE_LOGITS:
        grad_loop(BCE_LOGITS, y, p, g, m, scale, delta, eps)
    elif kind == POISSON:
        grad_loop(POISSON, y, p, g, m, scale, delta, eps)
    elif kind == HINGE:
        grad_loop(HINGE, y, p, g, m, scale, delta, eps)
    elif kind == SQUARED_HINGE:
        grad_loop(SQUARED_HINGE, y, p, g, m, scale, delta, eps)
    elif kind == KLD:
        grad_loop(KLD, y, p, g, m, scale, delta, eps)


def loss(int kind, const floating[:, :, ::1] y_true, const floating[:, :, ::1] y_pred,
         double delta, double eps, floating[::1] out, int num_threads):
    """out (N,): each sample's loss, its terms averaged over the sample's R*K elements
    (the row losses: each row's value averaged over the R rows)."""
    cdef Py_ssize_t n = y_pred.shape[0], rows = y_pred.shape[1], k = y_pred.shape[2]
    cdef Py_ssize_t i, r, at
    cdef double total
    cdef bint by_row = kind == KLD or kind == CATEGORICAL_HINGE
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        if kind == CATEGORICAL_HINGE:
            total = 0
            for r in range(rows):
                at = negative_argmax(&y_true[i, r, 0], &y_pred[i, r, 0], k)
                total = total + categorical_hinge(&y_true[i, r, 0], &y_pred[i, r, 0], k, at)
        else:  # a sample's elements are contiguous: one run of rows * k
            total = sum_terms(kind, &y_true[i, 0, 0], &y_pred[i, 0, 0], rows * k, delta, eps)
        out[i] = <floating> (total / (rows if by_row else rows * k))


def loss_backward(int kind, const floating[:, :, ::1] y_true, const floating[:, :, ::1] y_pred,
                  double delta, double eps, const floating[::1] dloss, floating[:, :, ::1] grad,
                  int num_threads):
    """grad (N, R, K) = dloss[i] / count * d term / dp, count as in loss()."""
    cdef Py_ssize_t n = y_pred.shape[0], rows = y_pred.shape[1], k = y_pred.shape[2]
    cdef Py_ssize_t i, r, j, at
    cdef double scale, value
    cdef bint by_row = kind == KLD or kind == CATEGORICAL_HINGE
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        scale = dloss[i] / <double> (rows if by_row else rows * k)
        if kind == CATEGORICAL_HINGE:
            for r in range(rows):
                at = negative_argmax(&y_true[i, r, 0], &y_pred[i, r, 0], k)
                value = categorical_hinge(&y_true[i, r, 0], &y_pred[i, r, 0], k, at)
                for j in range(k):
                    grad[i, r, j] = <floating> (scale * (-y_true[i, r, j] + (1.0 - y_true[i, r, j])
                                                         * (j == at)) if value > 0 else 0)
        else:
            grad_terms(kind, &y_true[i, 0, 0], &y_pred[i, 0, 0], &grad[i, 0, 0], rows * k, scale, delta, eps)
