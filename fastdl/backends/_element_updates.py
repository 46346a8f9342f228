"""Per-element optimizer updates and the fill-mode index fold, written once as plain
Python and compiled twice: with numba.njit by the Numba CPU backend and with
numba.cuda.jit(device=True) by the CUDA backend. (The C kernels in kernels/optim.h and
the NumPy reference hold the same formulas; see fastdl.ops.optim for them in words.)

Each update takes one element of the parameter, gradient and state and returns the new
values; `sign` is -1 to maximize, `l2` is coupled weight decay, `decay` the decoupled
shrink factor.
"""
import math

from fastdl.backends._spec import REFLECT, WRAP


def adam(p, g, m, v, vmax, has_vmax, step_size, eps_hat, b1, b2, r1, r2, l2, decay, sign):
    """-> (p, m, v, vmax)"""
    gi = sign * g + l2 * p
    mi = b1 * m + r1 * gi
    vi = b2 * v + r2 * gi * gi
    vm = max(vi, vmax) if has_vmax else vi
    return p * decay - step_size * mi / (math.sqrt(vm) + eps_hat), mi, vi, vm


def sgd(p, g, buf, has_buf, lr, momentum, keep, l2, decay, sign, nesterov, init, keras):
    """-> (p, buf)"""
    gi = sign * g + l2 * p
    if not has_buf:
        return p * decay - lr * gi, buf
    if keras:
        b = momentum * buf - lr * gi
        return p * decay + (momentum * b - lr * gi if nesterov else b), b
    b = gi if init else momentum * buf + keep * gi
    return p * decay - lr * (gi + momentum * b if nesterov else b), b


def adagrad(p, g, acc, lr, eps, l2, decay, eps_inside):
    """-> (p, acc)"""
    gi = g + l2 * p
    a = acc + gi * gi
    denom = math.sqrt(a + eps) if eps_inside else math.sqrt(a) + eps
    return p * decay - lr * gi / denom, a


def rmsprop(p, g, sq, ga, has_ga, buf, has_buf, lr, rho, rest, eps, momentum, l2, decay, keras):
    """-> (p, sq, ga, buf)"""
    gi = g + l2 * p
    s = rho * sq + rest * gi * gi
    var = s
    a = ga
    if has_ga:
        a = rho * ga + rest * gi
        var = s - a * a
    denom = math.sqrt(var + eps) if keras else math.sqrt(var) + eps
    q = p * decay
    if has_buf:
        b = momentum * buf + (lr * gi / denom if keras else gi / denom)
        return (q - b if keras else q - lr * b), s, a, b
    return q - lr * gi / denom, s, a, buf


def fold(i, n, mode):
    """An index outside [0, n) mapped into it: 2 reflect (half-sample symmetric),
    3 wrap (periodic), otherwise clamped (nearest; constant mode clamps neighbours)."""
    if 0 <= i < n:
        return i
    if mode == REFLECT:
        period = 2 * n
        i = i % period
        return period - 1 - i if i >= n else i
    if mode == WRAP:
        return i % n
    return 0 if i < 0 else n - 1
