"""The losses of ops.loss, one element (or one row) at a time, written once as plain
Python and compiled twice: with numba.njit by the Numba CPU backend and with
numba.cuda.jit(device=True) by the CUDA backend. kernels/losses.pyx holds the same
formulas in C and the NumPy reference its own; fastdl.ops.losses states them in words.

`y` is the target, `p` the prediction; `eps` clips probabilities and denominators as
Keras does (1e-7), `delta` is Huber's threshold. Gradients are d(term)/dp.
"""
import math

from fastdl.backends._spec import (
    BCE, BCE_LOGITS, HINGE, HUBER, KLD, LOG_COSH, MAE, MAPE, MSE, MSLE, POISSON, SQUARED_HINGE)

LOG2 = math.log(2.0)
# As in the C: min/max and selects of ready values rather than branches on the data.
# no helper functions: a jitted function may only call what is itself compiled, and these
# are compiled by whoever imports them

def term(kind, y, p, delta, eps):
    """One element's loss (every kind but the row losses)."""
    if kind == MSE:
        return (p - y) * (p - y)
    if kind == MAE:
        return abs(p - y)
    if kind == MAPE:
        return 100.0 * abs(y - p) / max(abs(y), eps)
    if kind == MSLE:
        a = math.log(max(p, eps) + 1.0) - math.log(max(y, eps) + 1.0)
        return a * a
    if kind == HUBER:  # a = min(|e|, delta): e^2 / 2 inside, delta |e| - delta^2 / 2 beyond
        e = abs(p - y)
        a = min(e, delta)
        return a * (e - 0.5 * a)
    if kind == LOG_COSH:
        e = abs(p - y)  # log(cosh(e)) = |e| + log1p(exp(-2|e|)) - log 2, stable for any e
        return e + math.log1p(math.exp(-2.0 * e)) - LOG2
    if kind == BCE:
        q = min(max(p, eps), 1.0 - eps)
        return -(y * math.log(q) + (1.0 - y) * math.log(1.0 - q))
    if kind == BCE_LOGITS:
        return max(p, 0.0) - p * y + math.log1p(math.exp(-abs(p)))
    if kind == POISSON:
        return p - y * math.log(p + eps)
    if kind == HINGE:
        return max(1.0 - y * p, 0.0)
    if kind == SQUARED_HINGE:
        h = max(1.0 - y * p, 0.0)
        return h * h
    if kind == KLD:  # summed over the row, not averaged
        yc = min(max(y, eps), 1.0)
        return yc * math.log(yc / min(max(p, eps), 1.0))
    return 0.0


def term_grad(kind, y, p, delta, eps):
    """d term / dp; zero where a clip is active, as the clip's own gradient is."""
    if kind == MSE:
        return 2.0 * (p - y)
    e = p - y
    sign = (1.0 if e > 0 else 0.0) - (1.0 if e < 0 else 0.0)  # selects (numba has no float(bool))
    if kind == MAE:
        return sign
    if kind == MAPE:
        return 100.0 * sign / max(abs(y), eps)
    if kind == MSLE:
        if p < eps:
            return 0.0
        return 2.0 * (math.log(p + 1.0) - math.log(max(y, eps) + 1.0)) / (p + 1.0)
    if kind == HUBER:
        return min(max(e, -delta), delta)
    if kind == LOG_COSH:
        return math.tanh(p - y)
    if kind == BCE:
        if p < eps or p > 1.0 - eps:
            return 0.0
        return (p - y) / (p * (1.0 - p))
    if kind == BCE_LOGITS:
        q = math.exp(-abs(p))  # sigmoid(p) from exp(-|p|), which cannot overflow
        return (1.0 if p >= 0 else q) / (1.0 + q) - y
    if kind == POISSON:
        return 1.0 - y / (p + eps)
    if kind == HINGE:
        return -y if 1.0 - y * p > 0 else 0.0
    if kind == SQUARED_HINGE:
        return -2.0 * y * max(1.0 - y * p, 0.0)
    if kind == KLD:
        if p < eps or p > 1.0:
            return 0.0
        return -min(max(y, eps), 1.0) / p
    return 0.0


def categorical_hinge(y_true, y_pred, i, r):
    """Row r of sample i: (max(neg - pos + 1, 0), the column of neg) with pos = sum(y * p)
    and neg = max((1 - y) * p) (its first column on ties)."""
    k = y_pred.shape[2]
    pos = 0.0
    neg = (1.0 - y_true[i, r, 0]) * y_pred[i, r, 0]
    at = 0
    for j in range(k):
        pos += y_true[i, r, j] * y_pred[i, r, j]
        v = (1.0 - y_true[i, r, j]) * y_pred[i, r, j]
        if v > neg:
            neg = v
            at = j
    return max(neg - pos + 1.0, 0.0), at
