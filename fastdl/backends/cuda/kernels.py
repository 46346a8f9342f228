"""Every numba.cuda kernel and launch of the CUDA backend, in this one module, so that
moving from the numba.cuda built into Numba to the numba-cuda package (or whatever
succeeds it) is a change to this file alone.

Kernels take device arrays; scalars arrive in the arrays' dtype. Geometry tuples follow
fastdl.ops._geometry.Window's first 14 fields.
"""
import math

import numpy as np
from numba import cuda

from fastdl.backends import _element_losses as element_losses
from fastdl.backends import _element_updates as updates
from fastdl.backends._spec import (
    CATEGORICAL_HINGE, CONSTANT, COORD_LIMIT, GRU, KLD, LSTM, RELU, SIGMOID, SIMPLE_RNN, SOFTMAX, TANH)

TILE = 16  # the shared-memory matmul's tile edge: blocks of TILE x TILE threads
THREADS = 256  # threads per block of the one-dimensional kernels


def available():
    """A real GPU and driver (the simulator does not count)."""
    if _simulated():
        return False
    try:
        return bool(cuda.is_available())
    except Exception:
        return False


def _simulated():
    from numba import config

    return bool(getattr(config, "ENABLE_CUDASIM", 0))


if _simulated():
    # A real device array's host-side .shape is a plain tuple (shape[-1] works); the
    # simulator's refuses negative indices, which would fail host code that is right on
    # a GPU. Inside kernels the simulator reads the NumPy shape, so they are unaffected.
    from numba.cuda.simulator.cudadrv import devicearray as _simulated_arrays

    _simulated_arrays.FakeCUDAArray.shape = property(lambda self: self._ary.shape)


def to_device(a):
    return cuda.to_device(a)


def device_array(shape, dtype):
    return cuda.device_array(shape, dtype)


def is_device_array(a):
    """A Numba device array (real or simulated)."""
    return bool(getattr(a, "__cuda_ndarray__", False))


def as_device_array(a):
    """A Numba device array viewing `a` (any object with __cuda_array_interface__, such
    as a CuPy array or a torch CUDA tensor), without a copy."""
    return a if is_device_array(a) else cuda.as_cuda_array(a)


def _span(a):
    """[start, end) of the memory a contiguous device array covers."""
    if _simulated():
        start = a._ary.__array_interface__["data"][0]
    else:
        start = a.__cuda_array_interface__["data"][0]
    return start, start + a.nbytes


def may_share_memory(a, b):
    (a0, a1), (b0, b1) = _span(a), _span(b)
    return a0 < b1 and b0 < a1 and a.nbytes > 0 and b.nbytes > 0


def same_memory(a, b):
    return _span(a) == _span(b)


def copy(dst, src):
    """dst[...] = src for a device dst and a device or host src of dst's size."""
    if src.shape != dst.shape:
        src = src.reshape(dst.shape)
    dst.copy_to_device(src)


def _launch(kernel, n, *args):
    """Run a one-dimensional kernel over n items, THREADS to a block."""
    kernel[(max(1, math.ceil(n / THREADS)),), (THREADS,)](*args)


# -- matrix multiply ----------------------------------------------------------------------

@cuda.jit
def _matmul(a, b, c, trans_a, trans_b, beta):
    """c = op(a) @ op(b) + beta * c, tiled through shared memory; any M, N, K: tiles at
    the edges are bounds-checked and padded with zeros, K is walked in ceil(K/TILE) steps."""
    sa = cuda.shared.array((TILE, TILE), dtype=c.dtype)
    sb = cuda.shared.array((TILE, TILE), dtype=c.dtype)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE + ty
    col = cuda.blockIdx.x * TILE + tx
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    acc = c.dtype.type(0)
    for t in range((k + TILE - 1) // TILE):
        ka = t * TILE + tx
        kb = t * TILE + ty
        if row < m and ka < k:
            sa[ty, tx] = a[ka, row] if trans_a else a[row, ka]
        else:
            sa[ty, tx] = 0
        if col < n and kb < k:
            sb[ty, tx] = b[col, kb] if trans_b else b[kb, col]
        else:
            sb[ty, tx] = 0
        cuda.syncthreads()
        for j in range(TILE):
            acc += sa[ty, j] * sb[j, tx]
        cuda.syncthreads()
    if row < m and col < n:
        c[row, col] = acc + (beta * c[row, col] if beta != 0 else 0)


def matmul(a, b, c, trans_a=False, trans_b=False, beta=0.0):
    m, n = c.shape
    grid = (math.ceil(n / TILE), math.ceil(m / TILE))
    _matmul[grid, (TILE, TILE)](a, b, c, trans_a, trans_b, c.dtype.type(beta))


@cuda.jit(device=True)
def _nhwc(i, h, w, c):
    """(image, row, column, channel) of flat index i in an (n, h, w, c) array."""
    return i // (c * w * h), (i // (c * w)) % h, (i // c) % w, i % c


# -- convolution -----------------------------------------------------------------------------

@cuda.jit
def _im2col(x, cols, g):
    n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    i = cuda.grid(1)
    kk = kh * kw * c
    if i >= cols.shape[0] * kk:
        return
    row, col = i // kk, i % kk
    img, rest = row // (oh * ow), row % (oh * ow)
    oy, ox = rest // ow, rest % ow
    ky, rem = col // (kw * c), col % (kw * c)
    kx, ch = rem // c, rem % c
    iy = oy * sh - pt + ky * dh
    ix = ox * sw - pl + kx * dw
    cols[row, col] = x[img, iy, ix, ch] if (0 <= iy < h and 0 <= ix < w) else 0


@cuda.jit
def _col2im(dcols, dx, g):
    """Gather form: each input element sums the columns entries it fed (no atomics)."""
    n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    i = cuda.grid(1)
    if i >= n * h * w * c:
        return
    img, iy, ix, ch = _nhwc(i, h, w, c)
    acc = dx.dtype.type(0)
    for ky in range(kh):
        ty = iy + pt - ky * dh
        if ty < 0 or ty % sh != 0 or ty // sh >= oh:
            continue
        oy = ty // sh
        for kx in range(kw):
            tx = ix + pl - kx * dw
            if tx < 0 or tx % sw != 0 or tx // sw >= ow:
                continue
            ox = tx // sw
            acc += dcols[(img * oh + oy) * ow + ox, (ky * kw + kx) * c + ch]
    dx[img, iy, ix, ch] = acc


def im2col(x, cols, g):
    _launch(_im2col, cols.shape[0] * cols.shape[1], x, cols, g)


def col2im(dcols, dx, g):
    _launch(_col2im, dx.size, dcols, dx, g)


@cuda.jit
def _add_row_vector(z, bias):
    i = cuda.grid(1)
    if i < z.shape[0] * z.shape[1]:
        z[i // z.shape[1], i % z.shape[1]] += bias[i % z.shape[1]]


def add_row_vector(z, bias):
    _launch(_add_row_vector, z.shape[0] * z.shape[1], z, bias)


@cuda.jit
def _column_sums(x, out):
    j = cuda.grid(1)
    if j < x.shape[1]:
        acc = 0.0
        for i in range(x.shape[0]):
            acc += x[i, j]
        out[j] = acc


def column_sums(x, out):
    _launch(_column_sums, x.shape[1], x, out)


# -- pooling ---------------------------------------------------------------------------------

@cuda.jit
def _pool_forward(x, y, arg, g, is_max, save):
    """save: arg receives each maximum's position ky * kw + kx in its window."""
    n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    i = cuda.grid(1)
    if i >= y.size:
        return
    img, oy, ox, ch = _nhwc(i, oh, ow, c)
    y0, x0 = max(oy * sh - pt, 0), max(ox * sw - pl, 0)
    y1, x1 = min(oy * sh - pt + kh, h), min(ox * sw - pl + kw, w)
    acc = x[img, y0, x0, ch] if is_max else x.dtype.type(0)
    at = (y0 - oy * sh + pt) * kw + x0 - ox * sw + pl
    for iy in range(y0, y1):
        for ix in range(x0, x1):
            v = x[img, iy, ix, ch]
            if is_max:
                if v > acc or (v != v and acc == acc):  # the first NaN wins and stays
                    acc = v
                    at = (iy - oy * sh + pt) * kw + ix - ox * sw + pl
            else:
                acc += v
    y[img, oy, ox, ch] = acc if is_max else acc / ((y1 - y0) * (x1 - x0))
    if save:
        arg[img, oy, ox, ch] = at


@cuda.jit
def _mark_no_gradient(y, arg, none):
    """Windows whose maximum (after a ReLU) is not above 0 pass no gradient (y, arg flat)."""
    i = cuda.grid(1)
    if i < y.size and not y[i] > 0:
        arg[i] = none


@cuda.jit
def _pool_backward(dy, x, arg, dx, g, is_max, saved):
    """Gather form: each input element collects from every window that contains it
    (max: only where it is that window's first maximum, found in x or, saved, the
    position a forward pass left in arg)."""
    n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    i = cuda.grid(1)
    if i >= dx.size:
        return
    img, iy, ix, ch = _nhwc(i, h, w, c)
    acc = dx.dtype.type(0)
    for oy in range(max(0, (iy + pt - kh) // sh), min(oh, (iy + pt) // sh + 1)):
        y0, y1 = max(oy * sh - pt, 0), min(oy * sh - pt + kh, h)
        if iy < y0 or iy >= y1:
            continue
        for ox in range(max(0, (ix + pl - kw) // sw), min(ow, (ix + pl) // sw + 1)):
            x0, x1 = max(ox * sw - pl, 0), min(ox * sw - pl + kw, w)
            if ix < x0 or ix >= x1:
                continue
            if saved:
                if arg[img, oy, ox, ch] == (iy - oy * sh + pt) * kw + ix - ox * sw + pl:
                    acc += dy[img, oy, ox, ch]
            elif is_max:
                by, bx = y0, x0
                best = x[img, y0, x0, ch]
                for yy in range(y0, y1):
                    for xx in range(x0, x1):
                        v = x[img, yy, xx, ch]
                        if v > best or (v != v and best == best):
                            best = v
                            by, bx = yy, xx
                if by == iy and bx == ix:
                    acc += dy[img, oy, ox, ch]
            else:
                acc += dy[img, oy, ox, ch] / ((y1 - y0) * (x1 - x0))
    dx[img, iy, ix, ch] = acc


_no_positions = None


def _placeholder():
    """A uint8 device array for the kernels' arg when no positions are saved or read."""
    global _no_positions
    if _no_positions is None:
        _no_positions = cuda.device_array((1, 1, 1, 1), "uint8")
    return _no_positions


def pool_forward(x, y, arg, g, is_max):
    """arg: a uint8 device array for the maxima's positions, or None."""
    _launch(_pool_forward, y.size, x, y, _placeholder() if arg is None else arg, g, is_max,
            arg is not None)


def max_pool_backward_saved(dy, arg, dx, g):
    _launch(_pool_backward, dx.size, dy, dy, arg, dx, g, True, True)  # (x is not read)


def mark_no_gradient(y, arg, none):
    _launch(_mark_no_gradient, y.size, y.reshape(y.size), arg.reshape(arg.size), none)


def pool_backward(dy, x, dx, g, is_max):
    _launch(_pool_backward, dx.size, dy, x, _placeholder(), dx, g, is_max, False)


# -- activations and losses ------------------------------------------------------------------

@cuda.jit
def _softmax_rows(z):
    """In place, one thread a row."""
    r = cuda.grid(1)
    if r >= z.shape[0]:
        return
    k = z.shape[1]
    m = z[r, 0]
    for j in range(1, k):
        m = max(m, z[r, j])
    s = z.dtype.type(0)
    for j in range(k):
        z[r, j] = math.exp(z[r, j] - m)
        s += z[r, j]
    for j in range(k):
        z[r, j] /= s


@cuda.jit
def _softmax_backward_rows(dy, y, dz):
    r = cuda.grid(1)
    if r >= dy.shape[0]:
        return
    k = dy.shape[1]
    dot = dy.dtype.type(0)
    for j in range(k):
        dot += dy[r, j] * y[r, j]
    for j in range(k):
        dz[r, j] = y[r, j] * (dy[r, j] - dot)


@cuda.jit(device=True)
def _activate_one(v, code):
    if code == RELU:
        return v if v > 0 else 0
    if code == SIGMOID:
        return 1 / (1 + math.exp(-v))
    if code == TANH:
        return math.tanh(v)
    return v


@cuda.jit(device=True)
def _derivative_one(dy, y, code):
    if code == RELU:
        return dy if y > 0 else 0
    if code == SIGMOID:
        return dy * y * (1 - y)
    if code == TANH:
        return dy * (1 - y * y)
    return dy


@cuda.jit
def _activate_flat(z, code):
    i = cuda.grid(1)
    if i < z.size:
        z[i] = _activate_one(z[i], code)


@cuda.jit
def _activation_backward_flat(dy, y, dz, code):
    i = cuda.grid(1)
    if i < dz.size:
        dz[i] = _derivative_one(dy[i], y[i], code)


def activate(z, code):
    """In place over a whole contiguous array (codes: 1 relu, 2 sigmoid, 3 tanh, 4 softmax
    over the last axis): one thread per element, or per row for softmax."""
    if code == SOFTMAX:
        rows = z.reshape(-1, z.shape[-1])
        _launch(_softmax_rows, rows.shape[0], rows)
        return
    flat = z.reshape(-1)
    _launch(_activate_flat, flat.size, flat, code)


def activation_backward(dy, y, dz, code):
    if code == SOFTMAX:
        rows = dz.reshape(-1, dz.shape[-1])
        _launch(_softmax_backward_rows, rows.shape[0], dy.reshape(rows.shape), y.reshape(rows.shape), rows)
        return
    _launch(_activation_backward_flat, dz.size, dy.reshape(-1), y.reshape(-1), dz.reshape(-1), code)


@cuda.jit
def _sparse_ce(outputs, labels, from_logits, eps, dloss, loss, grad, want_grad):
    """Per row: the loss and, when want_grad, its gradient scaled by dloss."""
    r = cuda.grid(1)
    if r >= outputs.shape[0]:
        return
    k = outputs.shape[1]
    y = labels[r]
    if from_logits:
        m = outputs[r, 0]
        for j in range(1, k):
            m = max(m, outputs[r, j])
        s = outputs.dtype.type(0)
        for j in range(k):
            s += math.exp(outputs[r, j] - m)
        loss[r] = m + math.log(s) - outputs[r, y]
        if want_grad:
            for j in range(k):
                grad[r, j] = math.exp(outputs[r, j] - m) / s * dloss[r]
            grad[r, y] -= dloss[r]
    else:
        s = outputs.dtype.type(0)
        for j in range(k):
            s += outputs[r, j]
        p = outputs[r, y] / s
        inside = eps <= p <= 1 - eps
        loss[r] = -math.log(min(max(p, eps), 1 - eps))
        if want_grad:
            gval = dloss[r] / (p * s) if inside else 0
            for j in range(k):
                grad[r, j] = p * gval
            grad[r, y] -= gval


def sparse_ce(outputs, labels, from_logits, eps, dloss, loss, grad, want_grad):
    _launch(_sparse_ce, outputs.shape[0], outputs, labels, from_logits, eps, dloss, loss, grad, want_grad)


_term = cuda.jit(device=True)(element_losses.term)
_term_grad = cuda.jit(device=True)(element_losses.term_grad)
_categorical_hinge = cuda.jit(device=True)(element_losses.categorical_hinge)


@cuda.jit
def _loss(kind, y_true, y_pred, delta, eps, dloss, loss, grad, want_grad):
    """Sample i's loss (each thread a sample: losses are small beside the layers) and,
    when want_grad, its gradient scaled by dloss[i]."""
    i = cuda.grid(1)
    if i >= y_pred.shape[0]:
        return
    rows, k = y_pred.shape[1], y_pred.shape[2]
    count = rows if kind == KLD or kind == CATEGORICAL_HINGE else rows * k
    total = 0.0
    scale = dloss[i] / count if want_grad else 0.0
    for r in range(rows):
        if kind == CATEGORICAL_HINGE:
            value, at = _categorical_hinge(y_true, y_pred, i, r)
            total += value
            if want_grad:
                for j in range(k):
                    hit = 1.0 if j == at else 0.0
                    grad[i, r, j] = scale * (-y_true[i, r, j] + (1.0 - y_true[i, r, j]) * hit) if value > 0 else 0.0
        else:
            for j in range(k):
                total += _term(kind, y_true[i, r, j], y_pred[i, r, j], delta, eps)
                if want_grad:
                    grad[i, r, j] = scale * _term_grad(kind, y_true[i, r, j], y_pred[i, r, j], delta, eps)
    loss[i] = total / count


def loss(kind, y_true, y_pred, delta, eps, dloss, out, grad, want_grad):
    _launch(_loss, y_pred.shape[0], kind, y_true, y_pred, delta, eps, dloss, out, grad, want_grad)


# -- optimizer updates -----------------------------------------------------------------------

_adam_step = cuda.jit(device=True)(updates.adam)
_sgd_step = cuda.jit(device=True)(updates.sgd)
_adagrad_step = cuda.jit(device=True)(updates.adagrad)
_rmsprop_step = cuda.jit(device=True)(updates.rmsprop)
_fold = cuda.jit(device=True)(updates.fold)


@cuda.jit
def _adam(p, g, m, v, vmax, has_vmax, step_size, eps_hat, b1, b2, r1, r2, l2, decay, sign):
    i = cuda.grid(1)
    if i < p.size:
        p[i], m[i], v[i], vm = _adam_step(p[i], g[i], m[i], v[i], vmax[i], has_vmax, step_size, eps_hat,
                                          b1, b2, r1, r2, l2, decay, sign)
        if has_vmax:
            vmax[i] = vm


@cuda.jit
def _sgd(p, g, buf, has_buf, lr, momentum, keep, l2, decay, sign, nesterov, init, keras):
    i = cuda.grid(1)
    if i < p.size:
        p[i], b = _sgd_step(p[i], g[i], buf[i], has_buf, lr, momentum, keep, l2, decay, sign, nesterov,
                            init, keras)
        if has_buf:
            buf[i] = b


@cuda.jit
def _adagrad(p, g, acc, lr, eps, l2, decay, eps_inside):
    i = cuda.grid(1)
    if i < p.size:
        p[i], acc[i] = _adagrad_step(p[i], g[i], acc[i], lr, eps, l2, decay, eps_inside)


@cuda.jit
def _rmsprop(p, g, sq, ga, has_ga, buf, has_buf, lr, rho, rest, eps, momentum, l2, decay, keras):
    i = cuda.grid(1)
    if i < p.size:
        p[i], sq[i], a, b = _rmsprop_step(p[i], g[i], sq[i], ga[i], has_ga, buf[i], has_buf, lr, rho, rest,
                                          eps, momentum, l2, decay, keras)
        if has_ga:
            ga[i] = a
        if has_buf:
            buf[i] = b


def elementwise(kernel_name, n, *args):
    _launch({"adam": _adam, "sgd": _sgd, "adagrad": _adagrad, "rmsprop": _rmsprop}[kernel_name], n, *args)


# -- elementwise -----------------------------------------------------------------------------

@cuda.jit
def _multiply(a, b, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = a[i] * b[i]


@cuda.jit
def _add(a, b, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = a[i] + b[i]


def add(a, b, out):
    """out = a + b over flat device arrays of one size."""
    _launch(_add, out.size, a, b, out)


def multiply(a, b, out):
    """out = a * b over flat device arrays of one size."""
    _launch(_multiply, out.size, a, b, out)


@cuda.jit
def _fill(a, value):
    i = cuda.grid(1)
    if i < a.size:
        a[i] = value


def full(shape, dtype, value):
    a = cuda.device_array(shape, dtype)
    flat = a.reshape(-1)
    _launch(_fill, flat.size, flat, flat.dtype.type(value))
    return a


# -- augmentation ----------------------------------------------------------------------------

@cuda.jit
def _affine(images, indices, matrices, out, mode, fill, scale):
    i = cuda.grid(1)
    b_count, h, w, channels = out.shape
    if i >= b_count * h * w:
        return
    c = i % w
    r = (i // w) % h
    b = i // (w * h)
    src = indices[b]
    rin = matrices[b, 0] * r + matrices[b, 1] * c + matrices[b, 2]
    cin = matrices[b, 3] * r + matrices[b, 4] * c + matrices[b, 5]
    if mode == CONSTANT and (rin < -1e-9 or rin > h - 1 + 1e-9 or cin < -1e-9 or cin > w - 1 + 1e-9):
        for ch in range(channels):
            out[b, r, c, ch] = fill
        return
    rin = min(max(rin, -COORD_LIMIT), COORD_LIMIT)  # never beyond int64
    cin = min(max(cin, -COORD_LIMIT), COORD_LIMIT)
    fr0, fc0 = math.floor(rin), math.floor(cin)
    fr, fc = rin - fr0, cin - fc0
    rows = (int(fr0), int(fr0) + 1)
    cols = (int(fc0), int(fc0) + 1)
    r0, r1 = _fold(rows[0], h, mode), _fold(rows[1], h, mode)
    c0, c1 = _fold(cols[0], w, mode), _fold(cols[1], w, mode)
    for ch in range(channels):
        v = ((1 - fr) * (1 - fc) * images[src, r0, c0, ch] + (1 - fr) * fc * images[src, r0, c1, ch]
             + fr * (1 - fc) * images[src, r1, c0, ch] + fr * fc * images[src, r1, c1, ch])
        out[b, r, c, ch] = v * scale


def affine(images, indices, matrices, out, mode, fill, scale):
    pixels = out.shape[0] * out.shape[1] * out.shape[2]
    _launch(_affine, pixels, images, indices, matrices, out, mode, fill, scale)


# -- batch normalization over the rows of x (M, C) ------------------------------------------
# Threads (column j, block of rows) sum their rows and add into float64 sums (2, C) with
# atomics; one thread a column then finishes the statistics or coefficients; the
# normalisation and dx are elementwise.

BN_ROWS = 64  # rows a thread sums
_BN_BLOCK = (32, 8)


def _bn_grid(m, c):
    chunks = math.ceil(m / BN_ROWS)
    return (math.ceil(c / _BN_BLOCK[0]), math.ceil(chunks / _BN_BLOCK[1])), _BN_BLOCK


@cuda.jit
def _bn_stat_sums(x, sums):
    j, chunk = cuda.grid(2)
    m, c = x.shape
    if j >= c or chunk * BN_ROWS >= m:
        return
    s1 = 0.0
    s2 = 0.0
    for i in range(chunk * BN_ROWS, min(m, (chunk + 1) * BN_ROWS)):
        d = float(x[i, j]) - float(x[0, j])
        s1 += d
        s2 += d * d
    cuda.atomic.add(sums, (0, j), s1)
    cuda.atomic.add(sums, (1, j), s2)


@cuda.jit
def _bn_stat_finish(x, sums, mean, var):
    j = cuda.grid(1)
    m, c = x.shape
    if j < c:
        s1 = sums[0, j] / m
        mean[j] = x[0, j] + s1
        var[j] = max(sums[1, j] / m - s1 * s1, 0.0)


@cuda.jit
def _bn_scale_shift(mean, var, gamma, beta, eps, coefficients):
    j = cuda.grid(1)
    if j < mean.size:
        s = gamma[j] / math.sqrt(float(var[j]) + eps)
        coefficients[0, j] = s
        coefficients[1, j] = beta[j]


@cuda.jit
def _bn_apply(x, mean, coefficients, out):
    i = cuda.grid(1)
    c = x.shape[1]
    if i < x.size:
        r, j = i // c, i % c
        out[r, j] = (x[r, j] - mean[j]) * coefficients[0, j] + coefficients[1, j]


@cuda.jit
def _bn_grad_sums(dy, x, mean, sums):
    j, chunk = cuda.grid(2)
    m, c = x.shape
    if j >= c or chunk * BN_ROWS >= m:
        return
    s1 = 0.0
    s2 = 0.0
    for i in range(chunk * BN_ROWS, min(m, (chunk + 1) * BN_ROWS)):
        grad = float(dy[i, j])
        s1 += grad
        s2 += grad * (float(x[i, j]) - float(mean[j]))
    cuda.atomic.add(sums, (0, j), s1)
    cuda.atomic.add(sums, (1, j), s2)


@cuda.jit
def _bn_grad_finish(sums, mean, var, gamma, eps, m, dgamma, dbeta, coefficients):
    """dgamma, dbeta, and dx = a dy + b x + k's coefficients (3, C)."""
    j = cuda.grid(1)
    if j < mean.size:
        sdy, sdyx = sums[0, j], sums[1, j]
        inv = 1.0 / math.sqrt(float(var[j]) + eps)
        dbeta[j] = sdy
        dgamma[j] = sdyx * inv
        a = gamma[j] * inv
        b = -a * inv * inv * sdyx / m
        coefficients[0, j] = a
        coefficients[1, j] = b
        coefficients[2, j] = -a * sdy / m


@cuda.jit
def _bn_apply_backward(dy, x, mean, coefficients, dx):
    i = cuda.grid(1)
    c = x.shape[1]
    if i < x.size:
        r, j = i // c, i % c
        dx[r, j] = dy[r, j] * coefficients[0, j] + (x[r, j] - mean[j]) * coefficients[1, j] + coefficients[2, j]


def batch_norm_stats(x, mean, var):
    m, c = x.shape
    sums = cuda.to_device(np.zeros((2, c)))
    blocks, threads = _bn_grid(m, c)
    _bn_stat_sums[blocks, threads](x, sums)
    _launch(_bn_stat_finish, c, x, sums, mean, var)


def batch_norm(x, mean, var, gamma, beta, eps, out):
    c = x.shape[1]
    coefficients = cuda.device_array((2, c), x.dtype)
    _launch(_bn_scale_shift, c, mean, var, gamma, beta, eps, coefficients)
    _launch(_bn_apply, x.size, x, mean, coefficients, out)


def batch_norm_backward(dy, x, mean, var, gamma, eps, dx, dgamma, dbeta):
    m, c = x.shape
    sums = cuda.to_device(np.zeros((2, c)))
    blocks, threads = _bn_grid(m, c)
    _bn_grad_sums[blocks, threads](dy, x, mean, sums)
    coefficients = cuda.device_array((3, c), x.dtype)
    _launch(_bn_grad_finish, c, sums, mean, var, gamma, eps, m, dgamma, dbeta, coefficients)
    _launch(_bn_apply_backward, x.size, dy, x, mean, coefficients, dx)


# -- recurrent cells: per step one matmul and one launch over the (B, H) units ----------------

@cuda.jit(device=True)
def _act(v, code, one):
    if code == RELU:
        return (one - one) if v < 0 else v
    if code == SIGMOID:
        return one / (one + math.exp(-v))
    if code == TANH:
        return math.tanh(v)
    return v


@cuda.jit(device=True)
def _dact(y, code, one):
    if code == RELU:
        return one if y > 0 else one - one
    if code == SIGMOID:
        return y * (one - y)
    if code == TANH:
        return one - y * y
    return one


@cuda.jit
def _recurrent_step(cell, t, xp, bias, inner, rb, mask, has_mask, a, ra, h, c, gates):
    """Step t for unit (b, j): gates and the new states (the old ones where masked)."""
    i = cuda.grid(1)
    batch, n = h.shape[1], h.shape[2]
    if i >= batch * n:
        return
    b, j = i // n, i % n
    one = xp.dtype.type(1)
    keep = (not has_mask) or mask[t, b] != 0
    x, s, g = xp[t, b], inner[b], gates[t, b]
    if not keep:  # the states kept, zeros saved for the gates (as recurrent_cell.h)
        for q in range(g.shape[0] // n):
            g[q * n + j] = 0
        h[t + 1, b, j] = h[t, b, j]
        if cell == LSTM:
            c[t + 1, b, j] = c[t, b, j]
        return
    if cell == SIMPLE_RNN:
        z = _act(x[j] + bias[j] + s[j], a, one)
        g[j] = z
        h[t + 1, b, j] = z if keep else h[t, b, j]
    elif cell == LSTM:
        ig = _act(x[j] + bias[j] + s[j], ra, one)
        f = _act(x[n + j] + bias[n + j] + s[n + j], ra, one)
        cc = _act(x[2 * n + j] + bias[2 * n + j] + s[2 * n + j], a, one)
        o = _act(x[3 * n + j] + bias[3 * n + j] + s[3 * n + j], ra, one)
        g[j], g[n + j], g[2 * n + j], g[3 * n + j] = ig, f, cc, o
        if keep:
            cv = f * c[t, b, j] + ig * cc
            c[t + 1, b, j] = cv
            h[t + 1, b, j] = o * _act(cv, a, one)
        else:
            c[t + 1, b, j] = c[t, b, j]
            h[t + 1, b, j] = h[t, b, j]
    else:
        z = _act(x[j] + bias[j] + s[j] + rb[j], ra, one)
        r = _act(x[n + j] + bias[n + j] + s[n + j] + rb[n + j], ra, one)
        rec = s[2 * n + j] + rb[2 * n + j]
        cc = _act(x[2 * n + j] + bias[2 * n + j] + r * rec, a, one)
        g[j], g[n + j], g[2 * n + j], g[3 * n + j] = z, r, cc, rec
        h[t + 1, b, j] = z * h[t, b, j] + (one - z) * cc if keep else h[t, b, j]


@cuda.jit
def _recurrent_step_backward(cell, t, dh_seq, has_seq, gates, h, c, mask, has_mask, a, ra, dh, dc, dxp, dinner):
    """Step t backward for unit (b, j): see recurrent_cell.h's fastdl_step_backward."""
    i = cuda.grid(1)
    batch, n = h.shape[1], h.shape[2]
    if i >= batch * n:
        return
    b, j = i // n, i % n
    one = h.dtype.type(1)
    keep = (not has_mask) or mask[t, b] != 0
    d = dh[b, j] + dh_seq[t, b, j] if has_seq else dh[b, j]
    g, dx, di = gates[t, b], dxp[t, b], dinner[t, b]
    if not keep:
        dh[b, j] = d
        for q in range(dx.shape[0] // n):
            dx[q * n + j] = 0
            if cell == GRU:
                di[q * n + j] = 0
        return
    if cell == SIMPLE_RNN:
        dx[j] = d * _dact(g[j], a, one)
        dh[b, j] = 0
    elif cell == LSTM:
        ig, f, cc, o = g[j], g[n + j], g[2 * n + j], g[3 * n + j]
        th = _act(c[t + 1, b, j], a, one)
        dcell = dc[b, j] + d * o * _dact(th, a, one)
        dx[j] = dcell * cc * _dact(ig, ra, one)
        dx[n + j] = dcell * c[t, b, j] * _dact(f, ra, one)
        dx[2 * n + j] = dcell * ig * _dact(cc, a, one)
        dx[3 * n + j] = d * th * _dact(o, ra, one)
        dc[b, j] = dcell * f
        dh[b, j] = 0
    else:
        z, r, cc = g[j], g[n + j], g[2 * n + j]
        dcand = d * (one - z) * _dact(cc, a, one)
        dz = d * (h[t, b, j] - cc) * _dact(z, ra, one)
        dr = dcand * g[3 * n + j] * _dact(r, ra, one)
        dx[j], dx[n + j], dx[2 * n + j] = dz, dr, dcand
        di[j], di[n + j], di[2 * n + j] = dz, dr, dcand * r
        dh[b, j] = d * z


@cuda.jit
def _masked_state(h, t, rm, hm):
    """hm (B, G*H) = h[t] tiled once a gate, times the recurrent dropout mask rm (B, G*H)."""
    i = cuda.grid(1)
    width, n = rm.shape[1], h.shape[2]
    if i < hm.size:
        b, j = i // width, i % width
        hm[b, j] = h[t, b, j % n] * rm[b, j]


@cuda.jit
def _add_masked(part, rm, g, dh):
    """dh += part * gate g's columns of the recurrent dropout mask."""
    i = cuda.grid(1)
    n = dh.shape[1]
    if i < dh.size:
        b, j = i // n, i % n
        dh[b, j] += part[b, j] * rm[b, g * n + j]


def _gate_columns(a, g, n):
    return a[:, g * n:(g + 1) * n]


def recurrent(cell, xp, u, bias, rb, mask, rm, a, ra, h, c, gates):
    """rb, mask, rm and c may be None (LSTM alone has c, GRU alone rb); rm: the recurrent
    dropout mask (B, G*H), each gate's product from its own masked copy of h."""
    steps, batch, width = xp.shape
    n = h.shape[2]
    has_mask = mask is not None
    rb = rb if rb is not None else cuda.to_device(np.zeros(1, xp.dtype))
    mask = mask if has_mask else cuda.to_device(np.zeros((1, 1), np.uint8))
    c = c if c is not None else h
    inner = cuda.device_array((batch, width), xp.dtype)
    hm = None if rm is None else cuda.device_array((batch, width), xp.dtype)
    for t in range(steps):
        if rm is None:
            matmul(h[t], u, inner)
        else:
            _launch(_masked_state, hm.size, h, t, rm, hm)
            for g in range(width // n):
                matmul(_gate_columns(hm, g, n), _gate_columns(u, g, n), _gate_columns(inner, g, n))
        _launch(_recurrent_step, batch * h.shape[2], cell, t, xp, bias, inner, rb, mask, has_mask, a, ra, h, c,
                gates)


def recurrent_backward(cell, dh_seq, u, h, c, gates, mask, rm, a, ra, dh, dc, dxp, dinner):
    steps, n = dxp.shape[0], dh.shape[1]
    part = None if rm is None else cuda.device_array(dh.shape, dh.dtype)
    has_seq, has_mask = dh_seq is not None, mask is not None
    dh_seq = dh_seq if has_seq else h
    mask = mask if has_mask else cuda.to_device(np.zeros((1, 1), np.uint8))
    c = c if c is not None else h
    dc = dc if dc is not None else dh
    inner = dinner if dinner is not None else dxp
    for t in range(steps - 1, -1, -1):
        _launch(_recurrent_step_backward, dh.size, cell, t, dh_seq, has_seq, gates, h, c, mask, has_mask, a, ra,
                dh, dc, dxp, inner)
        if rm is None:
            matmul(inner[t], u, dh, trans_b=True, beta=1.0)  # dh += dinner[t] @ U^T
            continue
        for g in range(u.shape[1] // n):  # dh += (dinner[t]_g @ U_g^T) * rm_g
            matmul(_gate_columns(inner[t], g, n), _gate_columns(u, g, n), part, trans_b=True)
            _launch(_add_masked, dh.size, part, rm, g, dh)


@cuda.jit
def _embedding(indices, table, out):
    i = cuda.grid(1)
    d = table.shape[1]
    if i < out.size:
        out[i // d, i % d] = table[indices[i // d], i % d]


@cuda.jit
def _embedding_backward(indices, dy, dtable):
    """One thread a column: the rows are added in index order (no atomics, no races)."""
    j = cuda.grid(1)
    if j < dtable.shape[1]:
        for i in range(indices.shape[0]):
            dtable[indices[i], j] += dy[i, j]


def embedding(indices, table, out):
    _launch(_embedding, out.size, indices, table, out)


def embedding_backward(indices, dy, dtable):
    _launch(_embedding_backward, dtable.shape[1], indices, dy, dtable)


# -- resampling: one thread an output element --------------------------------------------------

@cuda.jit
def _pad2d(x, out, top, left):
    i = cuda.grid(1)
    n, oh, ow, c = out.shape
    if i < out.size:
        img, y, xx, ch = _nhwc(i, oh, ow, c)
        sy, sx = y - top, xx - left
        inside = 0 <= sy < x.shape[1] and 0 <= sx < x.shape[2]
        out[img, y, xx, ch] = x[img, sy, sx, ch] if inside else 0


@cuda.jit
def _crop2d(x, out, top, left):
    i = cuda.grid(1)
    n, oh, ow, c = out.shape
    if i < out.size:
        img, y, xx, ch = _nhwc(i, oh, ow, c)
        out[img, y, xx, ch] = x[img, top + y, left + xx, ch]


@cuda.jit
def _upsample2d(x, out, sh, sw):
    i = cuda.grid(1)
    n, oh, ow, c = out.shape
    if i < out.size:
        img, y, xx, ch = _nhwc(i, oh, ow, c)
        out[img, y, xx, ch] = x[img, y // sh, xx // sw, ch]


@cuda.jit
def _upsample2d_backward(dy, dx, sh, sw):
    i = cuda.grid(1)
    n, h, w, c = dx.shape
    if i < dx.size:
        img, y, xx, ch = _nhwc(i, h, w, c)
        total = dx.dtype.type(0)
        for a in range(sh):
            for b in range(sw):
                total += dy[img, y * sh + a, xx * sw + b, ch]
        dx[img, y, xx, ch] = total


def pad2d(x, out, top, left):
    _launch(_pad2d, out.size, x, out, top, left)


def crop2d(x, out, top, left):
    _launch(_crop2d, out.size, x, out, top, left)


def upsample2d(x, out, sh, sw):
    _launch(_upsample2d, out.size, x, out, sh, sw)


def upsample2d_backward(dy, dx, sh, sw):
    _launch(_upsample2d_backward, dx.size, dy, dx, sh, sw)


# -- layer normalization: a thread a row (statistics, dx), a thread a column (dgamma, dbeta) --

@cuda.jit
def _layer_norm(x, gamma, beta, eps, out, mean, rstd):
    i = cuda.grid(1)
    m, c = x.shape
    if i < m:
        s = 0.0
        for j in range(c):
            s += x[i, j]
        mu = s / c
        s = 0.0
        for j in range(c):
            s += (x[i, j] - mu) * (x[i, j] - mu)
        inv = 1.0 / math.sqrt(s / c + eps)
        mean[i] = mu
        rstd[i] = inv
        for j in range(c):
            out[i, j] = (x[i, j] - mu) * inv * gamma[j] + beta[j]


@cuda.jit
def _layer_norm_dx(dy, x, mean, rstd, gamma, dx):
    i = cuda.grid(1)
    m, c = x.shape
    if i < m:
        sg = 0.0
        sgx = 0.0
        for j in range(c):
            scaled = dy[i, j] * gamma[j]
            sg += scaled
            sgx += scaled * (x[i, j] - mean[i]) * rstd[i]
        for j in range(c):
            xhat = (x[i, j] - mean[i]) * rstd[i]
            dx[i, j] = rstd[i] * (dy[i, j] * gamma[j] - sg / c - xhat * sgx / c)


@cuda.jit
def _layer_norm_params(dy, x, mean, rstd, dgamma, dbeta):
    j = cuda.grid(1)
    m, c = x.shape
    if j < c:
        a = 0.0
        b = 0.0
        for i in range(m):
            a += dy[i, j] * (x[i, j] - mean[i]) * rstd[i]
            b += dy[i, j]
        dgamma[j] = a
        dbeta[j] = b


def layer_norm(x, gamma, beta, eps, out, mean, rstd):
    _launch(_layer_norm, x.shape[0], x, gamma, beta, eps, out, mean, rstd)


def layer_norm_backward(dy, x, mean, rstd, gamma, dx, dgamma, dbeta):
    _launch(_layer_norm_dx, x.shape[0], dy, x, mean, rstd, gamma, dx)
    _launch(_layer_norm_params, x.shape[1], dy, x, mean, rstd, dgamma, dbeta)


# -- depthwise convolution: a thread an output, an input pixel, a kernel value ------------------

@cuda.jit
def _depthwise(x, kernel, bias, has_bias, out, g):
    n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    i = cuda.grid(1)
    m = kernel.shape[3]
    if i < out.size:
        img, oy, ox, q = _nhwc(i, oh, ow, c * m)
        ch, mm = q // m, q % m
        acc = bias[q] if has_bias else out.dtype.type(0)
        for ky in range(kh):
            iy = oy * sh - pt + ky * dh
            for kx in range(kw):
                ix = ox * sw - pl + kx * dw
                if 0 <= iy < h and 0 <= ix < w:
                    acc += x[img, iy, ix, ch] * kernel[ky, kx, ch, mm]
        out[img, oy, ox, q] = acc


@cuda.jit
def _depthwise_dx(dy, kernel, dx, g):
    n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    i = cuda.grid(1)
    m = kernel.shape[3]
    if i < dx.size:
        img, iy, ix, ch = _nhwc(i, h, w, c)
        acc = dx.dtype.type(0)
        for ky in range(kh):
            ny = iy + pt - ky * dh
            for kx in range(kw):
                nx = ix + pl - kx * dw
                if ny >= 0 and nx >= 0 and ny % sh == 0 and nx % sw == 0 and ny // sh < oh and nx // sw < ow:
                    for mm in range(m):
                        acc += dy[img, ny // sh, nx // sw, ch * m + mm] * kernel[ky, kx, ch, mm]
        dx[img, iy, ix, ch] = acc


@cuda.jit
def _depthwise_dkernel(dy, x, dkernel, dbias, g):
    n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = g
    i = cuda.grid(1)
    m = dkernel.shape[3]
    if i < dkernel.size:
        ky, kx, ch, mm = _nhwc(i, kw, c, m)
        acc = 0.0
        total = 0.0
        for img in range(n):
            for oy in range(oh):
                iy = oy * sh - pt + ky * dh
                for ox in range(ow):
                    ix = ox * sw - pl + kx * dw
                    if ky == 0 and kx == 0:
                        total += dy[img, oy, ox, ch * m + mm]
                    if 0 <= iy < h and 0 <= ix < w:
                        acc += x[img, iy, ix, ch] * dy[img, oy, ox, ch * m + mm]
        dkernel[ky, kx, ch, mm] = acc
        if ky == 0 and kx == 0:
            dbias[ch * m + mm] = total


def depthwise_conv2d(x, kernel, bias, out, g):
    has_bias = bias is not None
    bias = bias if has_bias else cuda.to_device(np.zeros(1, x.dtype))
    _launch(_depthwise, out.size, x, kernel, bias, has_bias, out, g)


def depthwise_conv2d_backward(dy, x, kernel, g, dx, dkernel, dbias):
    if dx is not None:
        _launch(_depthwise_dx, dx.size, dy, kernel, dx, g)
    _launch(_depthwise_dkernel, dkernel.size, dy, x, dkernel, dbias, g)
