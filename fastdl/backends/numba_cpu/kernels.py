"""Numba kernels: the Cython backend's kernel set, @njit-compiled for the host CPU.

Scalars arrive already in the arrays' dtype (the backend casts them), so float32 data
is computed in float32. Geometry tuples follow fastdl.ops._geometry.Window's first 14
fields: (n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow).
"""
import math

import numba
import numpy as np
from numba import njit, prange

from fastdl.backends import _element_losses as element_losses
from fastdl.backends import _element_updates as updates
from fastdl.backends._spec import (
    CATEGORICAL_HINGE, CONSTANT, COORD_LIMIT, GRU, KLD, LSTM, RELU, SIGMOID, SIMPLE_RNN, SOFTMAX, TANH)

OPTS = dict(cache=True, nogil=True)


# -- convolution ---------------------------------------------------------------------------

@njit(**OPTS)
def _im2col(x, cols, g, u0, nu):
    n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    kk = kh * kw * c
    for u in range(nu):
        i = (u0 + u) // oh
        oy = (u0 + u) % oh
        for ox in range(ow):
            row = (u * ow + ox) * kk
            for ky in range(kh):
                iy = oy * sh - pt + ky * dh
                for kx in range(kw):
                    ix = ox * sw - pl + kx * dw
                    base = row + (ky * kw + kx) * c
                    if 0 <= iy < h and 0 <= ix < w:
                        for ch in range(c):
                            cols[base + ch] = x[i, iy, ix, ch]
                    else:
                        for ch in range(c):
                            cols[base + ch] = 0


@njit(**OPTS)
def _col2im(dcols, dx, g, i0, ni):
    n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    kk = kh * kw * c
    for i in range(i0, i0 + ni):
        dx[i] = 0
        for oy in range(oh):
            for ox in range(ow):
                row = (((i - i0) * oh + oy) * ow + ox) * kk
                for ky in range(kh):
                    iy = oy * sh - pt + ky * dh
                    if iy < 0 or iy >= h:
                        continue
                    for kx in range(kw):
                        ix = ox * sw - pl + kx * dw
                        if ix < 0 or ix >= w:
                            continue
                        base = row + (ky * kw + kx) * c
                        for ch in range(c):
                            dx[i, iy, ix, ch] += dcols[base + ch]


@njit(parallel=True, **OPTS)
def conv2d_forward(x, kmat, bias, has_bias, y2d, work, g, rows_per_block, threads):
    """y2d (N*OH*OW, F) = im2col(x) @ kmat (+ bias): each block im2cols into its thread's
    workspace slot and runs its own GEMM."""
    n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    kk, f = kmat.shape
    units = n * oh
    blocks = (units + rows_per_block - 1) // rows_per_block
    slot = rows_per_block * ow * kk
    for b in prange(blocks):
        u0 = b * rows_per_block
        nu = min(rows_per_block, units - u0)
        t = numba.get_thread_id()
        cols = work[t * slot:t * slot + nu * ow * kk]
        _im2col(x, cols, g, u0, nu)
        out = y2d[u0 * ow:(u0 + nu) * ow]
        np.dot(cols.reshape(nu * ow, kk), kmat, out)
        if has_bias:
            for r in range(nu * ow):
                for j in range(f):
                    out[r, j] += bias[j]


@njit(parallel=True, **OPTS)
def conv2d_backward(dy2d, x, kmat, dx, want_dx, partial, work_cols, work_dcols, g, images_per_block):
    """Kernel gradient partials per thread (summed by the caller) and dx, by image blocks."""
    n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    kk, f = kmat.shape
    blocks = (n + images_per_block - 1) // images_per_block
    slot = images_per_block * oh * ow * kk
    partial[:] = 0
    for b in prange(blocks):
        i0 = b * images_per_block
        ni = min(images_per_block, n - i0)
        rows = ni * oh * ow
        t = numba.get_thread_id()
        cols = work_cols[t * slot:t * slot + rows * kk]
        _im2col(x, cols, g, i0 * oh, ni * oh)
        dyb = dy2d[i0 * oh * ow:i0 * oh * ow + rows]
        partial[t] += np.dot(cols.reshape(rows, kk).T, dyb)
        if want_dx:
            dcols = work_dcols[t * slot:t * slot + rows * kk]
            np.dot(dyb, kmat.T, dcols.reshape(rows, kk))
            _col2im(dcols, dx, g, i0, ni)


@njit(parallel=True, **OPTS)
def conv2d_transpose(x2d, kmat, out, work_dcols, g, images_per_block):
    """out (N, H, W, C): conv2d's input gradient of x (N*OH*OW, F) for geometry g, by image
    blocks (col2im never crosses threads)."""
    n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    kk = kmat.shape[0]
    blocks = (n + images_per_block - 1) // images_per_block
    slot = images_per_block * oh * ow * kk
    for b in prange(blocks):
        i0 = b * images_per_block
        ni = min(images_per_block, n - i0)
        rows = ni * oh * ow
        t = numba.get_thread_id()
        dcols = work_dcols[t * slot:t * slot + rows * kk]
        np.dot(x2d[i0 * oh * ow:i0 * oh * ow + rows], kmat.T, dcols.reshape(rows, kk))
        _col2im(dcols, out, g, i0, ni)


# -- pooling -------------------------------------------------------------------------------

@njit(**OPTS)
def _span(g, oy, ox):
    n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    y0 = oy * sh - pt
    x0 = ox * sw - pl
    return max(y0, 0), min(y0 + kh, h), max(x0, 0), min(x0 + kw, w)


@njit(parallel=True, **OPTS)
def pool_forward(x, y, arg, g, is_max):
    """arg: (N, OH, OW, C) uint8 for the positions of the maxima, or of size 0 for none."""
    n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    save = arg.size > 0
    for r in prange(n * oh):
        i = r // oh
        oy = r % oh
        for ox in range(ow):
            y0, y1, x0, x1 = _span(g, oy, ox)
            if is_max:
                for ch in range(c):
                    y[i, oy, ox, ch] = x[i, y0, x0, ch]
                    if save:
                        arg[i, oy, ox, ch] = (y0 - oy * sh + pt) * kw + x0 - ox * sw + pl
                for iy in range(y0, y1):
                    for ix in range(x0, x1):
                        for ch in range(c):
                            v = x[i, iy, ix, ch]
                            best = y[i, oy, ox, ch]
                            # strict: ties keep the first; the first NaN wins and stays
                            if v > best or (v != v and best == best):
                                y[i, oy, ox, ch] = v
                                if save:
                                    arg[i, oy, ox, ch] = (iy - oy * sh + pt) * kw + ix - ox * sw + pl
            else:
                for ch in range(c):
                    y[i, oy, ox, ch] = 0
                for iy in range(y0, y1):
                    for ix in range(x0, x1):
                        for ch in range(c):
                            y[i, oy, ox, ch] += x[i, iy, ix, ch]
                scale = y.dtype.type(1) / y.dtype.type((y1 - y0) * (x1 - x0))
                for ch in range(c):
                    y[i, oy, ox, ch] *= scale


@njit(parallel=True, **OPTS)
def max_pool_backward_saved(dy, arg, dx, g):
    """dx from the positions a forward pass saved; a position outside the window's real
    elements (ARGMAX_NONE, or a bad value) passes nothing. By images: windows may overlap."""
    n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    for i in prange(n):
        dx[i] = 0
        for oy in range(oh):
            for ox in range(ow):
                y0, y1, x0, x1 = _span(g, oy, ox)
                for ch in range(c):
                    k = arg[i, oy, ox, ch]
                    iy = oy * sh - pt + k // kw
                    ix = ox * sw - pl + k % kw
                    if k < kh * kw and y0 <= iy < y1 and x0 <= ix < x1:
                        dx[i, iy, ix, ch] += dy[i, oy, ox, ch]


@njit(**OPTS)
def _pool_backward_row(dy, x, dx, g, is_max, i, oy):
    n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    for ox in range(ow):
        y0, y1, x0, x1 = _span(g, oy, ox)
        if is_max:
            for ch in range(c):
                best = x[i, y0, x0, ch]
                by, bx = y0, x0
                for iy in range(y0, y1):
                    for ix in range(x0, x1):
                        v = x[i, iy, ix, ch]
                        # strict: ties keep the first; the first NaN wins and stays
                        if v > best or (v != v and best == best):
                            best = x[i, iy, ix, ch]
                            by, bx = iy, ix
                dx[i, by, bx, ch] += dy[i, oy, ox, ch]
        else:
            scale = dx.dtype.type(1) / dx.dtype.type((y1 - y0) * (x1 - x0))
            for iy in range(y0, y1):
                for ix in range(x0, x1):
                    for ch in range(c):
                        dx[i, iy, ix, ch] += dy[i, oy, ox, ch] * scale


@njit(parallel=True, **OPTS)
def pool_backward(dy, x, dx, g, is_max):
    """By output rows when windows of different rows cannot overlap, else by images."""
    n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    if sh >= kh:
        for r in prange(n * oh):
            i = r // oh
            oy = r % oh
            band0 = 0 if oy == 0 else max(oy * sh - pt, 0)
            band1 = h if oy + 1 == oh else min((oy + 1) * sh - pt, h)
            dx[i, band0:band1] = 0
            _pool_backward_row(dy, x, dx, g, is_max, i, oy)
    else:
        for i in prange(n):
            dx[i] = 0
            for oy in range(oh):
                _pool_backward_row(dy, x, dx, g, is_max, i, oy)


# -- elementwise, activations, losses ------------------------------------------------------

@njit(parallel=True, **OPTS)
def add(a, b, out):
    for i in prange(out.size):
        out[i] = a[i] + b[i]


@njit(parallel=True, **OPTS)
def multiply(a, b, out):
    for i in prange(out.size):
        out[i] = a[i] * b[i]


@njit(parallel=True, fastmath=False, **OPTS)
def relu(x, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = 0 if v < 0 else v


@njit(parallel=True, **OPTS)
def relu_backward(dy, x, dx):
    for i in prange(x.size):
        dx[i] = dy[i] if x[i] > 0 else 0


@njit(**OPTS)
def _softmax_row(z):
    m = z[0]
    for j in range(1, z.size):
        if z[j] > m:
            m = z[j]
    s = z.dtype.type(0)
    for j in range(z.size):
        z[j] = np.exp(z[j] - m)
        s += z[j]
    inv = z.dtype.type(1) / s
    for j in range(z.size):
        z[j] *= inv


@njit(parallel=True, **OPTS)
def bias_activation(z, bias, has_bias, code):
    """In place: z = activation(z + bias); codes 0 linear, 1 relu, 2 sigmoid, 3 tanh, 4 softmax."""
    one = z.dtype.type(1)
    for r in prange(z.shape[0]):
        for j in range(z.shape[1]):
            v = z[r, j]
            if has_bias:
                v += bias[j]
            if code == RELU:
                v = 0 if v < 0 else v
            elif code == SIGMOID:
                v = one / (one + np.exp(-v))
            elif code == TANH:
                v = np.tanh(v)
            z[r, j] = v
        if code == SOFTMAX:
            _softmax_row(z[r])


@njit(parallel=True, **OPTS)
def activation_backward(dy, y, dz, code):
    one = dy.dtype.type(1)
    for r in prange(dy.shape[0]):
        if code == SOFTMAX:
            dot = dy.dtype.type(0)
            for j in range(dy.shape[1]):
                dot += dy[r, j] * y[r, j]
            for j in range(dy.shape[1]):
                dz[r, j] = y[r, j] * (dy[r, j] - dot)
        else:
            for j in range(dy.shape[1]):
                if code == RELU:
                    dz[r, j] = dy[r, j] if y[r, j] > 0 else 0
                elif code == SIGMOID:
                    dz[r, j] = dy[r, j] * y[r, j] * (one - y[r, j])
                elif code == TANH:
                    dz[r, j] = dy[r, j] * (one - y[r, j] * y[r, j])
                else:
                    dz[r, j] = dy[r, j]


@njit(parallel=True, **OPTS)
def softmax(x, out):
    for r in prange(x.shape[0]):
        out[r] = x[r]
        _softmax_row(out[r])


@njit(parallel=True, **OPTS)
def column_sums(x, out, parts):
    """out = x summed over rows, accumulated in float64 per block of rows."""
    m, k = x.shape
    parts = max(1, min(parts, m))
    partial = np.zeros((parts, k))
    for t in prange(parts):
        for i in range(t * m // parts, (t + 1) * m // parts):
            for j in range(k):
                partial[t, j] += x[i, j]
    for j in range(k):
        out[j] = partial[:, j].sum()


@njit(**OPTS)
def _logsumexp(row):
    m = row.max()
    s = row.dtype.type(0)
    for j in range(row.size):
        s += np.exp(row[j] - m)
    return m + np.log(s)


@njit(parallel=True, **OPTS)
def sparse_ce(outputs, labels, from_logits, eps, loss):
    for r in prange(outputs.shape[0]):
        row = outputs[r]
        if from_logits:
            loss[r] = _logsumexp(row) - row[labels[r]]
        else:
            p = row[labels[r]] / row.sum()
            p = min(max(p, eps), 1 - eps)
            loss[r] = -np.log(p)


@njit(parallel=True, **OPTS)
def sparse_ce_backward(outputs, labels, from_logits, eps, dloss, grad):
    for r in prange(outputs.shape[0]):
        row = outputs[r]
        if from_logits:
            lse = _logsumexp(row)
            for j in range(row.size):
                grad[r, j] = np.exp(row[j] - lse) * dloss[r]
            grad[r, labels[r]] -= dloss[r]
        else:
            s = row.sum()
            p = row[labels[r]] / s
            if p < eps or p > 1 - eps:
                grad[r] = 0
            else:
                gval = dloss[r] / (p * s)
                for j in range(row.size):
                    grad[r, j] = p * gval
                grad[r, labels[r]] -= gval


_term = njit(inline="always")(element_losses.term)
_term_grad = njit(inline="always")(element_losses.term_grad)
_categorical_hinge = njit(inline="always")(element_losses.categorical_hinge)


@njit(parallel=True, **OPTS)
def loss(kind, y_true, y_pred, delta, eps, out):
    """out (N,): each sample's terms averaged over its elements (row losses: over rows)."""
    n, rows, k = y_pred.shape
    count = rows if kind == KLD or kind == CATEGORICAL_HINGE else rows * k
    for i in prange(n):
        total = 0.0
        for r in range(rows):
            if kind == CATEGORICAL_HINGE:
                total += _categorical_hinge(y_true, y_pred, i, r)[0]
            else:
                for j in range(k):
                    total += _term(kind, y_true[i, r, j], y_pred[i, r, j], delta, eps)
        out[i] = total / count


@njit(parallel=True, **OPTS)
def loss_backward(kind, y_true, y_pred, delta, eps, dloss, grad):
    n, rows, k = y_pred.shape
    count = rows if kind == KLD or kind == CATEGORICAL_HINGE else rows * k
    for i in prange(n):
        scale = dloss[i] / count
        for r in range(rows):
            if kind == CATEGORICAL_HINGE:
                value, at = _categorical_hinge(y_true, y_pred, i, r)
                for j in range(k):
                    hit = 1.0 if j == at else 0.0
                    grad[i, r, j] = scale * (-y_true[i, r, j] + (1.0 - y_true[i, r, j]) * hit) if value > 0 else 0.0
            else:
                for j in range(k):
                    grad[i, r, j] = scale * _term_grad(kind, y_true[i, r, j], y_pred[i, r, j], delta, eps)


# -- optimizer updates ---------------------------------------------------------------------

_adam = njit(inline="always")(updates.adam)
_sgd = njit(inline="always")(updates.sgd)
_adagrad = njit(inline="always")(updates.adagrad)
_rmsprop = njit(inline="always")(updates.rmsprop)
_fold = njit(inline="always")(updates.fold)


@njit(parallel=True, **OPTS)
def sgd(p, g, buf, has_buf, lr, momentum, keep, l2, decay, sign, nesterov, init, keras):
    for i in prange(p.size):
        p[i], b = _sgd(p[i], g[i], buf[i], has_buf, lr, momentum, keep, l2, decay, sign, nesterov, init, keras)
        if has_buf:
            buf[i] = b


@njit(parallel=True, **OPTS)
def adagrad(p, g, acc, lr, eps, l2, decay, eps_inside):
    for i in prange(p.size):
        p[i], acc[i] = _adagrad(p[i], g[i], acc[i], lr, eps, l2, decay, eps_inside)


@njit(parallel=True, **OPTS)
def rmsprop(p, g, sq, ga, has_ga, buf, has_buf, lr, rho, rest, eps, momentum, l2, decay, keras):
    for i in prange(p.size):
        p[i], sq[i], a, b = _rmsprop(p[i], g[i], sq[i], ga[i], has_ga, buf[i], has_buf, lr, rho, rest, eps,
                                     momentum, l2, decay, keras)
        if has_ga:
            ga[i] = a
        if has_buf:
            buf[i] = b


@njit(parallel=True, **OPTS)
def adam(p, g, m, v, vmax, has_vmax, step_size, eps_hat, b1, b2, r1, r2, l2, decay, sign):
    for i in prange(p.size):
        p[i], m[i], v[i], vm = _adam(p[i], g[i], m[i], v[i], vmax[i], has_vmax, step_size, eps_hat,
                                     b1, b2, r1, r2, l2, decay, sign)
        if has_vmax:
            vmax[i] = vm


# -- augmentation --------------------------------------------------------------------------

@njit(parallel=True, **OPTS)
def affine_batch(images, indices, matrices, out, mode, cval, scale):
    _, h, w, channels = images.shape
    fill = np.float32(cval * scale)
    for b in prange(out.shape[0]):
        src = indices[b]
        m = matrices[b]
        for r in range(h):
            for c in range(w):
                rin = m[0] * r + m[1] * c + m[2]
                cin = m[3] * r + m[4] * c + m[5]
                if mode == CONSTANT and (rin < -1e-9 or rin > h - 1 + 1e-9 or cin < -1e-9 or cin > w - 1 + 1e-9):
                    for ch in range(channels):
                        out[b, r, c, ch] = fill
                    continue
                rin = min(max(rin, -COORD_LIMIT), COORD_LIMIT)  # never beyond int64
                cin = min(max(cin, -COORD_LIMIT), COORD_LIMIT)
                fr0 = math.floor(rin)
                fc0 = math.floor(cin)
                fr = rin - fr0
                fc = cin - fc0
                r0 = _fold(int(fr0), h, mode)
                c0 = _fold(int(fc0), w, mode)
                r1 = _fold(int(fr0) + 1, h, mode)
                c1 = _fold(int(fc0) + 1, w, mode)
                for ch in range(channels):
                    v = ((1 - fr) * (1 - fc) * images[src, r0, c0, ch] + (1 - fr) * fc * images[src, r0, c1, ch]
                         + fr * (1 - fc) * images[src, r1, c0, ch] + fr * fc * images[src, r1, c1, ch])
                    out[b, r, c, ch] = np.float32(v * scale)


# -- batch normalization over the rows of x (M, C): see kernels/norm.pyx ---------------------

@njit(parallel=True, **OPTS)
def batch_norm_stats(x, mean, var, blocks):
    """mean, var of x's columns from shifted sums (x - x[0]) per block of rows, in float64."""
    m, c = x.shape
    partial = np.zeros((2, blocks, c))
    for t in prange(blocks):
        for i in range(t * m // blocks, (t + 1) * m // blocks):
            for j in range(c):
                d = np.float64(x[i, j]) - np.float64(x[0, j])
                partial[0, t, j] += d
                partial[1, t, j] += d * d
    for j in range(c):
        s1 = 0.0
        s2 = 0.0
        for t in range(blocks):
            s1 += partial[0, t, j]
            s2 += partial[1, t, j]
        s1 /= m
        mean[j] = x[0, j] + s1
        var[j] = max(s2 / m - s1 * s1, 0.0)


@njit(parallel=True, **OPTS)
def batch_norm(x, mean, var, gamma, beta, eps, out):
    m, c = x.shape
    scale = np.empty(c, x.dtype)
    shift = np.empty(c, x.dtype)
    for j in range(c):
        s = gamma[j] / math.sqrt(np.float64(var[j]) + eps)
        scale[j] = s
        shift[j] = beta[j]
    for i in prange(m):
        for j in range(c):  # x - mean first: see kernels/norm.pyx
            out[i, j] = (x[i, j] - mean[j]) * scale[j] + shift[j]


@njit(parallel=True, **OPTS)
def batch_norm_backward(dy, x, mean, var, gamma, eps, dx, dgamma, dbeta, blocks):
    m, c = x.shape
    partial = np.zeros((2, blocks, c))
    for t in prange(blocks):
        for i in range(t * m // blocks, (t + 1) * m // blocks):
            for j in range(c):
                grad = np.float64(dy[i, j])
                partial[0, t, j] += grad
                partial[1, t, j] += grad * (np.float64(x[i, j]) - np.float64(mean[j]))
    a = np.empty(c, x.dtype)
    b = np.empty(c, x.dtype)
    k = np.empty(c, x.dtype)
    for j in range(c):
        sdy = 0.0
        sdyx = 0.0
        for t in range(blocks):
            sdy += partial[0, t, j]
            sdyx += partial[1, t, j]
        inv = 1.0 / math.sqrt(np.float64(var[j]) + eps)
        dbeta[j] = sdy
        dgamma[j] = sdyx * inv
        aj = gamma[j] * inv
        bj = -aj * inv * inv * sdyx / m
        a[j] = aj
        b[j] = bj
        k[j] = -aj * sdy / m
    for i in prange(m):
        for j in range(c):
            dx[i, j] = dy[i, j] * a[j] + (x[i, j] - mean[j]) * b[j] + k[j]


# -- recurrent cells through time: see kernels/recurrent.pyx and recurrent_cell.h -----------

@njit(**OPTS)
def _act(v, code, one):
    """one: 1 in the arrays' dtype (float32 stays float32)."""
    if code == RELU:
        return (one - one) if v < 0 else v
    if code == SIGMOID:
        return one / (one + np.exp(-v))
    if code == TANH:
        return np.tanh(v)
    return v


@njit(**OPTS)
def _dact(y, code, one):
    """The activation's derivative at the point whose output is y."""
    if code == RELU:
        return one if y > 0 else one - one
    if code == SIGMOID:
        return y * (one - y)
    if code == TANH:
        return one - y * y
    return one


@njit(**OPTS)
def _step_row(cell, x, bias, inner, rb, hp, cp, hn, cn, g, keep, a, ra):
    n = hp.size
    one = x.dtype.type(1)
    if not keep:  # the states kept, zeros saved for the gates (as recurrent_cell.h)
        g[:] = 0
        hn[:] = hp
        if cell == LSTM:
            cn[:] = cp
        return
    for j in range(n):
        if cell == SIMPLE_RNN:
            z = _act(x[j] + bias[j] + inner[j], a, one)
            g[j] = z
            hn[j] = z if keep else hp[j]
        elif cell == LSTM:
            i = _act(x[j] + bias[j] + inner[j], ra, one)
            f = _act(x[n + j] + bias[n + j] + inner[n + j], ra, one)
            cc = _act(x[2 * n + j] + bias[2 * n + j] + inner[2 * n + j], a, one)
            o = _act(x[3 * n + j] + bias[3 * n + j] + inner[3 * n + j], ra, one)
            g[j], g[n + j], g[2 * n + j], g[3 * n + j] = i, f, cc, o
            if keep:
                cv = f * cp[j] + i * cc
                cn[j] = cv
                hn[j] = o * _act(cv, a, one)
            else:
                cn[j] = cp[j]
                hn[j] = hp[j]
        else:
            z = _act(x[j] + bias[j] + inner[j] + rb[j], ra, one)
            r = _act(x[n + j] + bias[n + j] + inner[n + j] + rb[n + j], ra, one)
            rec = inner[2 * n + j] + rb[2 * n + j]
            cc = _act(x[2 * n + j] + bias[2 * n + j] + r * rec, a, one)
            g[j], g[n + j], g[2 * n + j], g[3 * n + j] = z, r, cc, rec
            hn[j] = z * hp[j] + (one - z) * cc if keep else hp[j]


@njit(**OPTS)
def _masked_product(hp, rm, ug, out):
    """out (rows, G*H) = gate g's columns of h @ U from h * rm's gate g columns; ug (G, H, H)
    U's gate blocks, contiguous (recurrent dropout, see kernels/recurrent.pyx)."""
    n = hp.shape[1]
    for g in range(ug.shape[0]):
        out[:, g * n:(g + 1) * n] = np.dot(np.ascontiguousarray(hp * rm[:, g * n:(g + 1) * n]), ug[g])


@njit(parallel=True, **OPTS)
def recurrent(cell, xp, u, bias, rb, has_rb, mask, has_mask, rm, ug, has_rm, a, ra, h, c, has_c, gates, inner,
              parts):
    """h[1:], c[1:] and gates from xp + bias, U, h[0], c[0]; each of `parts` threads takes a block
    of samples through every step (inner: (B, G*H) scratch, its rows per block); with has_rm,
    rm (B, G*H) the recurrent dropout mask and ug (G, H, H) U's gate blocks."""
    steps, batch = xp.shape[0], xp.shape[1]
    for k in prange(parts):
        lo, hi = k * batch // parts, (k + 1) * batch // parts
        for t in range(steps):
            if has_rm:
                _masked_product(h[t, lo:hi], rm[lo:hi], ug, inner[lo:hi])
            else:
                np.dot(h[t, lo:hi], u, inner[lo:hi])
            for b in range(lo, hi):
                keep = (not has_mask) or mask[t, b] != 0
                _step_row(cell, xp[t, b], bias, inner[b], rb, h[t, b], c[t, b], h[t + 1, b], c[t + 1, b],
                          gates[t, b], keep, a, ra)


@njit(**OPTS)
def _step_row_backward(cell, dseq, has_seq, g, hp, cp, cn, dh, dc, dx, di, keep, a, ra):
    n = hp.size
    one = g.dtype.type(1)
    for j in range(n):
        d = dh[j] + dseq[j] if has_seq else dh[j]
        if not keep:
            dh[j] = d
            for q in range(dx.size // n):
                dx[q * n + j] = 0
                if cell == GRU:
                    di[q * n + j] = 0
            continue
        if cell == SIMPLE_RNN:
            dx[j] = d * _dact(g[j], a, one)
            dh[j] = 0
        elif cell == LSTM:
            i, f, cc, o = g[j], g[n + j], g[2 * n + j], g[3 * n + j]
            th = _act(cn[j], a, one)
            dcell = dc[j] + d * o * _dact(th, a, one)
            dx[j] = dcell * cc * _dact(i, ra, one)
            dx[n + j] = dcell * cp[j] * _dact(f, ra, one)
            dx[2 * n + j] = dcell * i * _dact(cc, a, one)
            dx[3 * n + j] = d * th * _dact(o, ra, one)
            dc[j] = dcell * f
            dh[j] = 0
        else:
            z, r, cc = g[j], g[n + j], g[2 * n + j]
            dcand = d * (one - z) * _dact(cc, a, one)
            dz = d * (hp[j] - cc) * _dact(z, ra, one)
            dr = dcand * g[3 * n + j] * _dact(r, ra, one)
            dx[j], dx[n + j], dx[2 * n + j] = dz, dr, dcand
            di[j], di[n + j], di[2 * n + j] = dz, dr, dcand * r
            dh[j] = d * z


@njit(parallel=True, **OPTS)
def recurrent_backward(cell, dh_seq, has_seq, ut, h, c, gates, mask, has_mask, rm, utg, has_rm, a, ra, dh, dc, dxp,
                       dinner, step_dh, parts):
    """dxp (and GRU's dinner) from dh, dc (the last states' gradients, turned into the
    initial states'); ut is U^T, C-contiguous; step_dh (B, H) scratch; with has_rm, rm the
    recurrent dropout mask and utg (G, H, H) the gate blocks of U, each transposed."""
    n = dh.shape[1]
    steps, batch = dxp.shape[0], dxp.shape[1]
    for k in prange(parts):
        lo, hi = k * batch // parts, (k + 1) * batch // parts
        for t in range(steps - 1, -1, -1):
            for b in range(lo, hi):
                keep = (not has_mask) or mask[t, b] != 0
                _step_row_backward(cell, dh_seq[t, b], has_seq, gates[t, b], h[t, b], c[t, b], c[t + 1, b],
                                   dh[b], dc[b], dxp[t, b], dinner[t, b], keep, a, ra)
            d = dinner[t, lo:hi] if cell == GRU else dxp[t, lo:hi]
            if not has_rm:
                np.dot(d, ut, step_dh[lo:hi])
                for b in range(lo, hi):
                    for j in range(n):
                        dh[b, j] += step_dh[b, j]
                continue
            for g in range(utg.shape[0]):
                part = np.dot(np.ascontiguousarray(d[:, g * n:(g + 1) * n]), utg[g])
                for b in range(lo, hi):
                    for j in range(n):
                        dh[b, j] += part[b - lo, j] * rm[b, g * n + j]


@njit(parallel=True, **OPTS)
def embedding(indices, table, out):
    for i in prange(indices.size):
        for j in range(table.shape[1]):
            out[i, j] = table[indices[i], j]


@njit(parallel=True, **OPTS)
def embedding_backward(indices, dy, dtable, chunks):
    """dtable[indices[i]] += dy[i]; the threads split the columns (no races, fixed order)."""
    d = dy.shape[1]
    for k in prange(chunks):
        for i in range(indices.size):
            for j in range(k * d // chunks, (k + 1) * d // chunks):
                dtable[indices[i], j] += dy[i, j]


# -- resampling: see kernels/resample.pyx ----------------------------------------------------

@njit(parallel=True, **OPTS)
def pad2d(x, out, top, left):
    n, h, w = x.shape[0], x.shape[1], x.shape[2]
    oh = out.shape[1]
    for r in prange(n * oh):
        i, y = r // oh, r % oh
        out[i, y] = 0
        if top <= y < top + h:
            out[i, y, left:left + w] = x[i, y - top]


@njit(parallel=True, **OPTS)
def crop2d(x, out, top, left):
    n, oh, ow = out.shape[0], out.shape[1], out.shape[2]
    for r in prange(n * oh):
        i, y = r // oh, r % oh
        out[i, y] = x[i, top + y, left:left + ow]


@njit(parallel=True, **OPTS)
def upsample2d(x, out, sh, sw):
    n, oh, ow = out.shape[0], out.shape[1], out.shape[2]
    for r in prange(n * oh):
        i, y = r // oh, r % oh
        for j in range(ow):
            out[i, y, j] = x[i, y // sh, j // sw]


@njit(parallel=True, **OPTS)
def upsample2d_backward(dy, dx, sh, sw):
    n, h, w, c = dx.shape
    for r in prange(n * h):
        i, y = r // h, r % h
        dx[i, y] = 0
        for a in range(y * sh, y * sh + sh):
            for j in range(w * sw):
                for k in range(c):
                    dx[i, y, j // sw, k] += dy[i, a, j, k]


# -- layer normalization: see kernels/norm.pyx ----------------------------------------------

@njit(parallel=True, **OPTS)
def layer_norm(x, gamma, beta, eps, out, mean, rstd):
    m, c = x.shape
    for i in prange(m):
        s = 0.0
        for j in range(c):
            s += np.float64(x[i, j])
        mu = s / c
        s = 0.0
        for j in range(c):
            d = np.float64(x[i, j]) - mu
            s += d * d
        inv = 1.0 / math.sqrt(s / c + eps)
        mean[i] = mu
        rstd[i] = inv
        for j in range(c):
            out[i, j] = (np.float64(x[i, j]) - mu) * inv * gamma[j] + beta[j]


@njit(parallel=True, **OPTS)
def layer_norm_backward(dy, x, mean, rstd, gamma, dx, dgamma, dbeta, blocks):
    m, c = x.shape
    partial = np.zeros((2, blocks, c))
    for t in prange(blocks):
        for i in range(t * m // blocks, (t + 1) * m // blocks):
            mu, inv = np.float64(mean[i]), np.float64(rstd[i])
            sg = 0.0
            sgx = 0.0
            for j in range(c):
                xhat = (np.float64(x[i, j]) - mu) * inv
                scaled = np.float64(dy[i, j]) * gamma[j]
                sg += scaled
                sgx += scaled * xhat
                partial[0, t, j] += dy[i, j] * xhat
                partial[1, t, j] += dy[i, j]
            sg /= c
            sgx /= c
            for j in range(c):
                xhat = (np.float64(x[i, j]) - mu) * inv
                dx[i, j] = inv * (np.float64(dy[i, j]) * gamma[j] - sg - xhat * sgx)
    for j in range(c):
        a = 0.0
        b = 0.0
        for t in range(blocks):
            a += partial[0, t, j]
            b += partial[1, t, j]
        dgamma[j] = a
        dbeta[j] = b


# -- depthwise convolution: see kernels/depthwise.pyx ----------------------------------------

@njit(parallel=True, **OPTS)
def depthwise_conv2d(x, kernel, bias, has_bias, out, g):
    n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    m = kernel.shape[3]
    for r in prange(n * oh):
        i, oy = r // oh, r % oh
        for ox in range(ow):
            for q in range(c * m):
                out[i, oy, ox, q] = bias[q] if has_bias else 0
            for ky in range(kh):
                iy = oy * sh - pt + ky * dh
                if iy < 0 or iy >= h:
                    continue
                for kx in range(kw):
                    ix = ox * sw - pl + kx * dw
                    if ix < 0 or ix >= w:
                        continue
                    for ch in range(c):
                        v = x[i, iy, ix, ch]
                        for q in range(m):
                            out[i, oy, ox, ch * m + q] += v * kernel[ky, kx, ch, q]


@njit(parallel=True, **OPTS)
def depthwise_conv2d_backward_input(dy, kernel, dx, g):
    n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    m = kernel.shape[3]
    for r in prange(n * h):
        i, iy = r // h, r % h
        for ix in range(w):
            for ch in range(c):
                dx[i, iy, ix, ch] = 0
            for ky in range(kh):
                ny = iy + pt - ky * dh
                if ny < 0 or ny % sh != 0 or ny // sh >= oh:
                    continue
                for kx in range(kw):
                    nx = ix + pl - kx * dw
                    if nx < 0 or nx % sw != 0 or nx // sw >= ow:
                        continue
                    for ch in range(c):
                        s = dx.dtype.type(0)
                        for q in range(m):
                            s += dy[i, ny // sh, nx // sw, ch * m + q] * kernel[ky, kx, ch, q]
                        dx[i, iy, ix, ch] += s


@njit(parallel=True, **OPTS)
def depthwise_conv2d_backward_kernel(dy, x, partial, partial_bias, g):
    n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    blocks, m = partial.shape[0], partial.shape[4]
    rows = n * oh
    partial[:] = 0
    partial_bias[:] = 0
    for t in prange(blocks):
        for r in range(t * rows // blocks, (t + 1) * rows // blocks):
            i, oy = r // oh, r % oh
            for ox in range(ow):
                for q in range(c * m):
                    partial_bias[t, q] += dy[i, oy, ox, q]
                for ky in range(kh):
                    iy = oy * sh - pt + ky * dh
                    if iy < 0 or iy >= h:
                        continue
                    for kx in range(kw):
                        ix = ox * sw - pl + kx * dw
                        if ix < 0 or ix >= w:
                            continue
                        for ch in range(c):
                            v = np.float64(x[i, iy, ix, ch])
                            for q in range(m):
                                partial[t, ky, kx, ch, q] += v * dy[i, oy, ox, ch * m + q]
