# Sparse categorical cross-entropy, from logits or from probabilities (Keras semantics:
# probabilities are renormalised over the last axis and clipped to [eps, 1 - eps]).
from cython cimport floating
from cython.parallel cimport prange

from _mathf cimport fexp, flog


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
