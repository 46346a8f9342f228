# Sparse categorical cross-entropy, from logits or from probabilities (Keras semantics:
# probabilities are renormalised over the last axis and clipped to [eps, 1 - eps]), and
# the per-sample losses of ops.loss (regression, binary, hinge and divergence losses).
from cython cimport floating
from cython.parallel cimport prange

from libc.math cimport exp, fabs, fmax, fmin, log, log1p, tanh

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


cdef inline double sign(double v) noexcept nogil:
    return 1.0 if v > 0 else (-1.0 if v < 0 else 0.0)


cdef inline double term(int kind, double y, double p, double delta, double eps) noexcept nogil:
    """One element's loss (every kind but the categorical hinge)."""
    cdef double e = p - y, q
    if kind == MSE:
        return e * e
    if kind == MAE:
        return fabs(e)
    if kind == MAPE:
        return 100.0 * fabs(e) / fmax(fabs(y), eps)
    if kind == MSLE:
        q = log(fmax(p, eps) + 1.0) - log(fmax(y, eps) + 1.0)
        return q * q
    if kind == HUBER:
        return 0.5 * e * e if fabs(e) <= delta else delta * fabs(e) - 0.5 * delta * delta
    if kind == LOG_COSH:  # log(cosh(e)) = |e| + log1p(exp(-2|e|)) - log 2, stable for any e
        return fabs(e) + log1p(exp(-2.0 * fabs(e))) - LOG2
    if kind == BCE:
        q = fmin(fmax(p, eps), 1.0 - eps)
        return -(y * log(q) + (1.0 - y) * log(1.0 - q))
    if kind == BCE_LOGITS:
        return fmax(p, 0.0) - p * y + log1p(exp(-fabs(p)))
    if kind == POISSON:
        return p - y * log(p + eps)
    if kind == HINGE:
        return fmax(1.0 - y * p, 0.0)
    if kind == SQUARED_HINGE:
        q = fmax(1.0 - y * p, 0.0)
        return q * q
    if kind == KLD:  # summed over the row
        q = fmin(fmax(y, eps), 1.0)
        return q * log(q / fmin(fmax(p, eps), 1.0))
    return 0.0


cdef inline double term_grad(int kind, double y, double p, double delta, double eps) noexcept nogil:
    """d term / dp; zero where a clip is active, as the clip's own gradient is."""
    cdef double e = p - y
    if kind == MSE:
        return 2.0 * e
    if kind == MAE:
        return sign(e)
    if kind == MAPE:
        return 100.0 * sign(e) / fmax(fabs(y), eps)
    if kind == MSLE:
        if p < eps:
            return 0.0
        return 2.0 * (log(p + 1.0) - log(fmax(y, eps) + 1.0)) / (p + 1.0)
    if kind == HUBER:
        return e if fabs(e) <= delta else delta * sign(e)
    if kind == LOG_COSH:
        return tanh(e)
    if kind == BCE:
        if p < eps or p > 1.0 - eps:
            return 0.0
        return e / (p * (1.0 - p))
    if kind == BCE_LOGITS:
        return (1.0 / (1.0 + exp(-p)) if p >= 0 else exp(p) / (1.0 + exp(p))) - y
    if kind == POISSON:
        return 1.0 - y / (p + eps)
    if kind == HINGE:
        return -y if 1.0 - y * p > 0 else 0.0
    if kind == SQUARED_HINGE:
        return -2.0 * y * fmax(1.0 - y * p, 0.0)
    if kind == KLD:
        if p < eps or p > 1.0:
            return 0.0
        return -fmin(fmax(y, eps), 1.0) / p
    return 0.0


cdef inline double categorical_hinge(const floating *y, const floating *p, Py_ssize_t k,
                                     Py_ssize_t *at) noexcept nogil:
    """max(neg - pos + 1, 0) of one row, pos = sum(y p), neg = max((1 - y) p) at *at."""
    cdef double pos = 0, neg = (1.0 - y[0]) * p[0], v
    cdef Py_ssize_t j
    at[0] = 0
    for j in range(k):
        pos += <double> y[j] * p[j]
        v = (1.0 - y[j]) * p[j]
        if v > neg:
            neg = v
            at[0] = j
    return fmax(neg - pos + 1.0, 0.0)


def loss(int kind, const floating[:, :, ::1] y_true, const floating[:, :, ::1] y_pred,
         double delta, double eps, floating[::1] out, int num_threads):
    """out (N,): each sample's loss, its terms averaged over the sample's R*K elements
    (the row losses: each row's value averaged over the R rows)."""
    cdef Py_ssize_t n = y_pred.shape[0], rows = y_pred.shape[1], k = y_pred.shape[2]
    cdef Py_ssize_t i, r, j, at
    cdef double total
    cdef bint by_row = kind == KLD or kind == CATEGORICAL_HINGE
    for i in prange(n, nogil=True, schedule="static", num_threads=num_threads):
        total = 0
        for r in range(rows):
            if kind == CATEGORICAL_HINGE:
                total = total + categorical_hinge(&y_true[i, r, 0], &y_pred[i, r, 0], k, &at)
            else:
                for j in range(k):
                    total = total + term(kind, y_true[i, r, j], y_pred[i, r, j], delta, eps)
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
        for r in range(rows):
            if kind == CATEGORICAL_HINGE:
                value = categorical_hinge(&y_true[i, r, 0], &y_pred[i, r, 0], k, &at)
                for j in range(k):
                    grad[i, r, j] = <floating> (scale * (-y_true[i, r, j] + (1.0 - y_true[i, r, j])
                                                         * (j == at)) if value > 0 else 0)
            else:
                for j in range(k):
                    grad[i, r, j] = <floating> (scale * term_grad(kind, y_true[i, r, j],
                                                                  y_pred[i, r, j], delta, eps))
