"""The reference backend: plain NumPy, written to be obviously correct. The test oracle.

Sliding windows are computed one window offset (ky, kx) at a time over a padded copy
of the input: each offset is a strided slice, so no index arithmetic can go wrong.
"""
import numpy as np

from fastdl.backends import _compose, _spec
from fastdl.backends._spec import CONSTANT, COORD_LIMIT, REFLECT, WRAP
from fastdl.ops.losses import EPSILON

ARRAYS_ON_DEVICE = False  # NumPy arrays in, NumPy arrays out (_spec.py)


def _padded(x, g, fill):
    return np.pad(x, ((0, 0), (g.pt, g.pb), (g.pl, g.pr), (0, 0)), constant_values=fill)


def _offset(g, ky, kx):
    """The slice of the padded input that window offset (ky, kx) reads for every output."""
    top, left = ky * g.dh, kx * g.dw
    return (slice(None),
            slice(top, top + g.sh * (g.oh - 1) + 1, g.sh),
            slice(left, left + g.sw * (g.ow - 1) + 1, g.sw),
            slice(None))


def _unpadded(xp, g):
    return xp[:, g.pt:g.pt + g.h, g.pl:g.pl + g.w, :]


def conv2d(x, kernel, bias, out, g, activation):
    xp = _padded(x, g, 0)
    out[...] = 0 if bias is None else bias
    for ky in range(g.kh):
        for kx in range(g.kw):
            out += xp[_offset(g, ky, kx)] @ kernel[ky, kx]
    _activate(out.reshape(-1, out.shape[-1]), activation)


def conv2d_max_pool(x, kernel, bias, conv_out, out, g, activation, ph, pw, argmax=None):
    _compose.conv2d_max_pool(conv2d, max_pool2d, x, kernel, bias, conv_out, out, g, activation, ph, pw,
                             argmax)


def conv2d_backward(dy, x, kernel, g, dx):
    xp = _padded(x, g, 0)
    dkernel = np.empty_like(kernel)
    for ky in range(g.kh):
        for kx in range(g.kw):
            dkernel[ky, kx] = np.tensordot(xp[_offset(g, ky, kx)], dy, axes=([0, 1, 2], [0, 1, 2]))
    if dx is not None:
        dx[...] = _input_gradient(dy, kernel, g)
    return dx, dkernel, dy.sum(axis=(0, 1, 2))


def _input_gradient(dy, kernel, g):
    """conv2d's gradient with respect to its input (N, H, W, C): each tap's dy @ K^T added
    where that tap read."""
    dxp = np.zeros((g.n, g.h + g.pt + g.pb, g.w + g.pl + g.pr, g.c), dy.dtype)
    for ky in range(g.kh):
        for kx in range(g.kw):
            dxp[_offset(g, ky, kx)] += dy @ kernel[ky, kx].T
    return _unpadded(dxp, g)


def conv2d_transpose(x, kernel, bias, out, g):
    out[...] = _input_gradient(x, kernel, g) + (0 if bias is None else bias)


def max_pool2d(x, out, g, argmax=None):
    xp = _padded(x, g, -np.inf)
    out[...] = -np.inf
    for ky in range(g.kh):
        for kx in range(g.kw):
            np.maximum(out, xp[_offset(g, ky, kx)], out=out)
    if argmax is not None:
        argmax[...] = _first_maxima(x, g)


def _first_maxima(x, g):
    """Each window's first maximum's position ky * kw + kx: a row-major scan from its
    first real element that moves on a strict `>`, or to the first NaN (as the compiled
    kernels do: a window holding a NaN has NaN for its maximum)."""
    xp = _padded(x, g, 0)
    real = _padded(np.ones((1, g.h, g.w, 1), bool), g, False)
    shape = (g.n, g.oh, g.ow, g.c)
    best, at, seen = np.zeros(shape, x.dtype), np.zeros(shape, np.uint8), np.zeros(shape, bool)
    for ky in range(g.kh):
        for kx in range(g.kw):
            window = _offset(g, ky, kx)
            value, is_real = xp[window], real[window]
            better = is_real & (~seen | (value > best) | (np.isnan(value) & ~np.isnan(best)))
            best = np.where(better, value, best)
            at[better] = ky * g.kw + kx
            seen |= is_real
    return at


def max_pool2d_backward(dy, x, g, dx, through_relu, argmax=None):
    if argmax is not None:  # x is not read: each window's gradient goes where argmax says
        dxp = np.zeros((g.n, g.h + g.pt + g.pb, g.w + g.pl + g.pr, g.c), dx.dtype)
        for ky in range(g.kh):
            for kx in range(g.kw):
                dxp[_offset(g, ky, kx)] += np.where(argmax == ky * g.kw + kx, dy, 0)
        dx[...] = _unpadded(dxp, g)
        return
    xp = _padded(x, g, -np.inf)
    y = np.empty(dy.shape, x.dtype)
    max_pool2d(x, y, g)
    dxp = np.zeros_like(xp)
    taken = np.zeros(dy.shape, bool)  # windows whose maximum already got its gradient
    for ky in range(g.kh):
        for kx in range(g.kw):
            window = _offset(g, ky, kx)
            first = ((xp[window] == y) | (np.isnan(xp[window]) & np.isnan(y))) & ~taken
            dxp[window] += np.where(first, dy, 0)
            taken |= first
    dx[...] = _unpadded(dxp, g)
    if through_relu:  # then through the ReLU whose output x is
        dx *= x > 0


def _window_counts(g, dtype):
    ones = _padded(np.ones((1, g.h, g.w, 1), dtype), g, 0)
    counts = np.zeros((1, g.oh, g.ow, 1), dtype)
    for ky in range(g.kh):
        for kx in range(g.kw):
            counts += ones[_offset(g, ky, kx)]
    return counts


def avg_pool2d(x, out, g):
    xp = _padded(x, g, 0)
    out[...] = 0
    for ky in range(g.kh):
        for kx in range(g.kw):
            out += xp[_offset(g, ky, kx)]
    out /= _window_counts(g, x.dtype)


def avg_pool2d_backward(dy, g, dx):
    share = dy / _window_counts(g, dx.dtype)
    dxp = np.zeros((g.n, g.h + g.pt + g.pb, g.w + g.pl + g.pr, g.c), dx.dtype)
    for ky in range(g.kh):
        for kx in range(g.kw):
            dxp[_offset(g, ky, kx)] += share
    dx[...] = _unpadded(dxp, g)


def matmul(a, b, out, trans_a, trans_b):
    np.matmul(a.T if trans_a else a, b.T if trans_b else b, out=out)


def _activate(z, activation):
    if activation == "relu":
        np.maximum(z, 0, out=z)
    elif activation == "sigmoid":
        z[...] = 1 / (1 + np.exp(-z))
    elif activation == "tanh":
        np.tanh(z, out=z)
    elif activation == "softmax":
        softmax(z, z)


def activation(x, out, name):
    if not np.may_share_memory(out, x):
        np.copyto(out, x)
    _activate(out, name)


def activation_backward(dy, y, name, dz):
    dz[...] = _activation_backward(dy, y, name)


def dense(x, kernel, bias, activation, out):
    np.matmul(x, kernel, out=out)
    if bias is not None:
        out += bias
    _activate(out, activation)


def _activation_backward(dy, y, activation):
    if activation == "relu":
        return np.where(y > 0, dy, 0)
    if activation == "sigmoid":
        return dy * y * (1 - y)
    if activation == "tanh":
        return dy * (1 - y * y)
    if activation == "softmax":
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True))
    return dy


def dense_backward(dy, x, kernel, activation, output, has_bias, need_dx):
    dz = _activation_backward(dy, output, activation).astype(dy.dtype, copy=False)
    dx = dz @ kernel.T if need_dx else None
    return dx, x.T @ dz, dz.sum(axis=0) if has_bias else None


def add(a, b, out):
    np.add(a, b, out=out)


def multiply(a, b, out):
    np.multiply(a, b, out=out)


def relu(x, out):
    np.copyto(out, np.where(x < 0, 0, x))


def relu_backward(dy, x, dx):
    dx[...] = np.where(x > 0, dy, 0)


def softmax(x, out):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    np.divide(e, e.sum(axis=-1, keepdims=True), out=out)


def _probabilities_at_labels(labels, outputs):
    """(p, total): outputs renormalised at each sample's label, and the row sums."""
    total = outputs.sum(axis=1)
    return outputs[np.arange(len(labels)), labels] / total, total


def sparse_categorical_crossentropy(labels, outputs, from_logits):
    rows = np.arange(len(labels))
    if from_logits:
        top = outputs.max(axis=1)
        lse = top + np.log(np.exp(outputs - top[:, None]).sum(axis=1))
        return (lse - outputs[rows, labels]).astype(outputs.dtype)
    p, _ = _probabilities_at_labels(labels, outputs)
    return -np.log(np.clip(p, EPSILON, 1 - EPSILON)).astype(outputs.dtype)


def sparse_categorical_crossentropy_backward(labels, outputs, from_logits, dloss):
    rows = np.arange(len(labels))
    if from_logits:
        grad = np.empty_like(outputs)
        softmax(outputs, grad)
        grad[rows, labels] -= 1
        return grad * dloss[:, None]
    p, total = _probabilities_at_labels(labels, outputs)
    inside = (p >= EPSILON) & (p <= 1 - EPSILON)
    g = np.where(inside, dloss / (p * total), 0)  # -log(p_y): d/d out_j = -(delta_jy - p_y)/(p_y total)
    grad = np.repeat((p * g)[:, None], outputs.shape[1], axis=1)
    grad[rows, labels] -= g
    return grad.astype(outputs.dtype)


# Losses of ops.loss: each kind's terms over whole arrays (N, R, K), in float64.

def _loss_terms(kind, y, p, delta):
    """(terms (N, R, K) or per-row values (N, R), d terms / dp (N, R, K))."""
    eps = EPSILON
    e = p - y
    if kind == _spec.MSE:
        return e * e, 2 * e
    if kind == _spec.MAE:
        return np.abs(e), np.sign(e)
    if kind == _spec.MAPE:
        scale = 100 / np.maximum(np.abs(y), eps)
        return np.abs(e) * scale, np.sign(e) * scale
    if kind == _spec.MSLE:
        a = np.log(np.maximum(p, eps) + 1) - np.log(np.maximum(y, eps) + 1)
        return a * a, np.where(p >= eps, 2 * a / (p + 1), 0)
    if kind == _spec.HUBER:
        small = np.abs(e) <= delta
        return (np.where(small, 0.5 * e * e, delta * np.abs(e) - 0.5 * delta * delta),
                np.where(small, e, delta * np.sign(e)))
    if kind == _spec.LOG_COSH:
        return np.logaddexp(e, -e) - np.log(2), np.tanh(e)
    if kind == _spec.BCE:
        q = np.clip(p, eps, 1 - eps)
        inside = (p >= eps) & (p <= 1 - eps)
        return (-(y * np.log(q) + (1 - y) * np.log(1 - q)),
                np.where(inside, (q - y) / (q * (1 - q)), 0))
    if kind == _spec.BCE_LOGITS:
        return np.logaddexp(0, p) - p * y, 0.5 * (1 + np.tanh(p / 2)) - y
    if kind == _spec.POISSON:
        return p - y * np.log(p + eps), 1 - y / (p + eps)
    if kind in (_spec.HINGE, _spec.SQUARED_HINGE):
        h = np.maximum(1 - y * p, 0)
        if kind == _spec.HINGE:
            return h, np.where(h > 0, -y, 0)
        return h * h, -2 * y * h
    if kind == _spec.KLD:
        yc = np.clip(y, eps, 1)
        inside = (p >= eps) & (p <= 1)
        return ((yc * np.log(yc / np.clip(p, eps, 1))).sum(axis=-1),
                np.where(inside, -yc / np.where(inside, p, 1), 0))
    # categorical hinge: per row, max(max((1 - y) p) - sum(y p) + 1, 0)
    neg = (1 - y) * p
    at = neg.argmax(axis=-1)
    value = np.maximum(np.take_along_axis(neg, at[..., None], -1)[..., 0] - (y * p).sum(axis=-1) + 1, 0)
    onehot = np.arange(p.shape[-1]) == at[..., None]
    grad = np.where((value > 0)[..., None], -y + (1 - y) * onehot, 0)
    return value, grad


def loss(name, y_true, y_pred, delta):
    kind = _spec.LOSS_CODES[name]
    value, _ = _loss_terms(kind, y_true.astype(np.float64), y_pred.astype(np.float64), delta)
    return value.reshape(len(value), -1).mean(axis=1).astype(y_pred.dtype)


def loss_backward(name, y_true, y_pred, delta, dloss):
    kind = _spec.LOSS_CODES[name]
    _, grad = _loss_terms(kind, y_true.astype(np.float64), y_pred.astype(np.float64), delta)
    n, rows, k = y_pred.shape
    count = rows if kind in _spec.ROW_LOSSES else rows * k
    return (grad * (dloss.astype(np.float64) / count)[:, None, None]).astype(y_pred.dtype)


# Optimizer updates: the formulas of fastdl.ops.optim, one NumPy expression at a time.

def sgd_update(p, g, buf, lr, momentum, dampening, l2, decay, sign, nesterov, init, keras):
    g = sign * g + l2 * p
    if buf is None:
        p[...] = p * decay - lr * g
    elif keras:
        buf[...] = momentum * buf - lr * g
        p[...] = p * decay + (momentum * buf - lr * g if nesterov else buf)
    else:
        buf[...] = g if init else momentum * buf + (1 - dampening) * g
        p[...] = p * decay - lr * (g + momentum * buf if nesterov else buf)


def adagrad_update(p, g, acc, lr, eps, l2, decay, eps_inside):
    g = g + l2 * p
    acc += g * g
    p[...] = p * decay - lr * g / (np.sqrt(acc + eps) if eps_inside else np.sqrt(acc) + eps)


def rmsprop_update(p, g, sq, ga, buf, lr, rho, eps, momentum, l2, decay, keras):
    g = g + l2 * p
    sq[...] = rho * sq + (1 - rho) * g * g
    var = sq
    if ga is not None:
        ga[...] = rho * ga + (1 - rho) * g
        var = sq - ga * ga
    denom = np.sqrt(var + eps) if keras else np.sqrt(var) + eps
    p *= decay
    if buf is None:
        p -= lr * g / denom
    elif keras:
        buf[...] = momentum * buf + lr * g / denom
        p -= buf
    else:
        buf[...] = momentum * buf + g / denom
        p -= lr * buf


def adam_update(p, g, m, v, vmax, step_size, eps_hat, beta1, beta2, l2, decay, sign):
    g = sign * g + l2 * p
    m[...] = beta1 * m + (1 - beta1) * g
    v[...] = beta2 * v + (1 - beta2) * g * g
    used = v
    if vmax is not None:
        np.maximum(vmax, v, out=vmax)
        used = vmax
    p[...] = p * decay - step_size * m / (np.sqrt(used) + eps_hat)


def _fold(i, n, mode):
    """Indices outside [0, n) mapped in by fill mode (1 constant clamps like 0 nearest)."""
    if mode == REFLECT:  # half-sample symmetric
        i = np.mod(i, 2 * n)
        return np.where(i >= n, 2 * n - 1 - i, i)
    if mode == WRAP:
        return np.mod(i, n)
    return np.clip(i, 0, n - 1)


def affine_transform_batch(images, indices, matrices, out, mode, cval, scale):
    _, h, w, _ = images.shape
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    for b, (src, m) in enumerate(zip(indices, matrices)):
        rin = m[0] * rows + m[1] * cols + m[2]
        cin = m[3] * rows + m[4] * cols + m[5]
        outside = (rin < -1e-9) | (rin > h - 1 + 1e-9) | (cin < -1e-9) | (cin > w - 1 + 1e-9)
        # clamped as the compiled kernels do before indexing (far outside any image)
        rin, cin = np.clip(rin, -COORD_LIMIT, COORD_LIMIT), np.clip(cin, -COORD_LIMIT, COORD_LIMIT)
        r0, c0 = np.floor(rin), np.floor(cin)
        fr, fc = (rin - r0)[..., None], (cin - c0)[..., None]
        r0, c0 = r0.astype(np.intp), c0.astype(np.intp)
        img = images[src].astype(np.float64)

        def at(r, c):
            return img[_fold(r, h, mode), _fold(c, w, mode)]

        value = ((1 - fr) * (1 - fc) * at(r0, c0) + (1 - fr) * fc * at(r0, c0 + 1)
                 + fr * (1 - fc) * at(r0 + 1, c0) + fr * fc * at(r0 + 1, c0 + 1))
        if mode == CONSTANT:  # no interpolation beyond the edges
            value[outside] = cval
        out[b] = value * scale


# -- batch normalization: the textbook formulas in float64 ----------------------------------

def batch_norm_stats(x, mean, var):
    rows = x.astype(np.float64)
    m = rows.mean(axis=0)
    mean[...] = m
    var[...] = ((rows - m) ** 2).mean(axis=0)


def batch_norm(x, mean, var, gamma, beta, eps, out):
    xhat = (x.astype(np.float64) - mean) / np.sqrt(var.astype(np.float64) + eps)
    out[...] = xhat * gamma + beta


def batch_norm_backward(dy, x, mean, var, gamma, eps, dx):
    inv = 1.0 / np.sqrt(var.astype(np.float64) + eps)
    xhat = (x.astype(np.float64) - mean) * inv
    g = dy.astype(np.float64)
    dbeta, dgamma = g.sum(axis=0), (g * xhat).sum(axis=0)
    m = x.shape[0]
    dx[...] = gamma * inv / m * (m * g - dbeta - xhat * dgamma)
    return dgamma.astype(x.dtype), dbeta.astype(x.dtype)


# -- recurrent cells: one step at a time, in float64 -----------------------------------------

def _act(z, name):
    z = z.copy()
    _activate(z, name)
    return z


def _act_grad(y, name):
    """The activation's derivative, from its output y."""
    return _activation_backward(np.ones_like(y), y, name)


def _recurrent_product(hp, u64, rmask, n):
    """h @ U, each gate's columns from h * its recurrent dropout mask when there is one."""
    if rmask is None:
        return hp @ u64
    return np.concatenate([(hp * rmask[:, g * n:(g + 1) * n]) @ u64[:, g * n:(g + 1) * n]
                           for g in range(u64.shape[1] // n)], axis=1)


def _recurrent_product_backward(d_inner, u64, rmask, n):
    """The gradient of h from that of _recurrent_product's result."""
    if rmask is None:
        return d_inner @ u64.T
    return sum((d_inner[:, g * n:(g + 1) * n] @ u64[:, g * n:(g + 1) * n].T) * rmask[:, g * n:(g + 1) * n]
               for g in range(u64.shape[1] // n))


def recurrent(cell, xp, u, bias, rbias, mask, rmask, activation, recurrent_activation, h, c, gates):
    n = u.shape[0]
    u64 = u.astype(np.float64)
    rmask = None if rmask is None else rmask.astype(np.float64)
    hs = np.zeros(h.shape)  # h[0], c[0] hold the initial states, the rest is to be filled
    hs[0] = h[0]
    cs = None
    if c is not None:
        cs = np.zeros(c.shape)
        cs[0] = c[0]
    for t in range(xp.shape[0]):
        inner = _recurrent_product(hs[t], u64, rmask, n)
        z = xp[t].astype(np.float64) + bias
        if cell == _spec.SIMPLE_RNN:
            y = _act(z + inner, activation)
            new_h, saved = y, [y]
        elif cell == _spec.LSTM:
            z = z + inner
            i, f = _act(z[:, :n], recurrent_activation), _act(z[:, n:2 * n], recurrent_activation)
            g, o = _act(z[:, 2 * n:3 * n], activation), _act(z[:, 3 * n:], recurrent_activation)
            new_c = f * cs[t] + i * g
            new_h = o * _act(new_c, activation)
            saved = [i, f, g, o]
        else:  # GRU, reset_after
            inner = inner + rbias
            zg = _act(z[:, :n] + inner[:, :n], recurrent_activation)
            r = _act(z[:, n:2 * n] + inner[:, n:2 * n], recurrent_activation)
            candidate = _act(z[:, 2 * n:] + r * inner[:, 2 * n:], activation)
            new_h = zg * hs[t] + (1 - zg) * candidate
            saved = [zg, r, candidate, inner[:, 2 * n:]]
        keep = np.ones((xp.shape[1], 1), bool) if mask is None else (mask[t] != 0)[:, None]
        hs[t + 1] = np.where(keep, new_h, hs[t])
        if cs is not None:
            cs[t + 1] = np.where(keep, new_c, cs[t])
        gates[t] = np.where(keep, np.concatenate(saved, axis=1), 0)  # masked rows save zeros
    h[...] = hs
    if c is not None:
        c[...] = cs


def recurrent_backward(cell, dh_seq, u, h, c, gates, mask, rmask, activation, recurrent_activation, dh, dc, dxp,
                       dinner):
    n = u.shape[0]
    u64 = u.astype(np.float64)
    rmask = None if rmask is None else rmask.astype(np.float64)
    hs, saved = h.astype(np.float64), gates.astype(np.float64)
    dh64 = dh.astype(np.float64)
    dc64 = None if dc is None else dc.astype(np.float64)
    for t in range(dxp.shape[0] - 1, -1, -1):
        if dh_seq is not None:
            dh64 = dh64 + dh_seq[t]
        keep = np.ones((dxp.shape[1], 1), bool) if mask is None else (mask[t] != 0)[:, None]
        s = saved[t]
        direct = 0.0
        if cell == _spec.SIMPLE_RNN:
            dz = dh64 * _act_grad(s, activation)
            d_inner = dz
        elif cell == _spec.LSTM:
            i, f, g, o = s[:, :n], s[:, n:2 * n], s[:, 2 * n:3 * n], s[:, 3 * n:]
            a = _act(c[t + 1].astype(np.float64), activation)
            dcell = dc64 + dh64 * o * _act_grad(a, activation)
            dz = np.concatenate([dcell * g * _act_grad(i, recurrent_activation),
                                 dcell * c[t].astype(np.float64) * _act_grad(f, recurrent_activation),
                                 dcell * i * _act_grad(g, activation),
                                 dh64 * a * _act_grad(o, recurrent_activation)], axis=1)
            d_inner = dz
            dc64 = np.where(keep, dcell * f, dc64)
        else:
            zg, r, candidate, rec = s[:, :n], s[:, n:2 * n], s[:, 2 * n:3 * n], s[:, 3 * n:]
            dcand = dh64 * (1 - zg) * _act_grad(candidate, activation)
            dzg = dh64 * (hs[t] - candidate) * _act_grad(zg, recurrent_activation)
            dr = dcand * rec * _act_grad(r, recurrent_activation)
            dz = np.concatenate([dzg, dr, dcand], axis=1)
            d_inner = np.concatenate([dzg, dr, dcand * r], axis=1)
            direct = dh64 * zg
        dz, d_inner = np.where(keep, dz, 0), np.where(keep, d_inner, 0)
        dxp[t] = dz
        if dinner is not None:
            dinner[t] = d_inner
        dh64 = np.where(keep, direct + _recurrent_product_backward(d_inner, u64, rmask, n), dh64)
    dh[...] = dh64
    if dc is not None:
        dc[...] = dc64


def embedding(indices, table, out):
    out[...] = table[indices]


def embedding_backward(indices, dy, dtable):
    np.add.at(dtable, indices, dy)


# -- resampling: slices of padded and repeated copies ----------------------------------------

def pad2d(x, out, top, left):
    out[...] = 0
    out[:, top:top + x.shape[1], left:left + x.shape[2]] = x


def crop2d(x, out, top, left):
    out[...] = x[:, top:top + out.shape[1], left:left + out.shape[2]]


def upsample2d(x, out, sh, sw):
    out[...] = np.repeat(np.repeat(x, sh, axis=1), sw, axis=2)


def upsample2d_backward(dy, dx, sh, sw):
    n, h, w, c = dx.shape
    dx[...] = dy.astype(np.float64).reshape(n, h, sh, w, sw, c).sum(axis=(2, 4))


def layer_norm(x, gamma, beta, eps, out, mean, rstd):
    rows = x.astype(np.float64)
    m = rows.mean(axis=1)
    inv = 1.0 / np.sqrt(((rows - m[:, None]) ** 2).mean(axis=1) + eps)
    mean[...], rstd[...] = m, inv
    out[...] = (rows - m[:, None]) * inv[:, None] * gamma + beta


def layer_norm_backward(dy, x, mean, rstd, gamma, dx):
    inv = rstd.astype(np.float64)[:, None]
    xhat = (x.astype(np.float64) - mean[:, None]) * inv
    d = dy.astype(np.float64)
    g = d * gamma
    dx[...] = inv * (g - g.mean(axis=1, keepdims=True) - xhat * (g * xhat).mean(axis=1, keepdims=True))
    return (d * xhat).sum(axis=0).astype(x.dtype), d.sum(axis=0).astype(x.dtype)


# -- depthwise convolution: one window offset at a time, as conv2d ---------------------------

def depthwise_conv2d(x, kernel, bias, out, g):
    xp = _padded(x.astype(np.float64), g, 0)
    c, m = kernel.shape[2], kernel.shape[3]
    acc = np.zeros((g.n, g.oh, g.ow, c, m))
    for ky in range(g.kh):
        for kx in range(g.kw):
            acc += xp[_offset(g, ky, kx)][..., None] * kernel[ky, kx]
    if bias is not None:
        acc += bias.reshape(c, m)
    out[...] = acc.reshape(out.shape)


def depthwise_conv2d_backward(dy, x, kernel, g, dx):
    c, m = kernel.shape[2], kernel.shape[3]
    d = dy.astype(np.float64).reshape(g.n, g.oh, g.ow, c, m)
    xp = _padded(x.astype(np.float64), g, 0)
    dxp = np.zeros_like(xp)
    dkernel = np.zeros(kernel.shape)
    for ky in range(g.kh):
        for kx in range(g.kw):
            window = _offset(g, ky, kx)
            dkernel[ky, kx] = (xp[window][..., None] * d).sum(axis=(0, 1, 2))
            dxp[window] += (d * kernel[ky, kx]).sum(axis=-1)
    if dx is not None:
        dx[...] = _unpadded(dxp, g)
    return dx, dkernel.astype(x.dtype), d.sum(axis=(0, 1, 2)).reshape(-1).astype(x.dtype)
