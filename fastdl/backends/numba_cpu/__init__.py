"""The Numba backend: every kernel of the Cython backend, JIT-compiled for this CPU.

Imported on first use only (Numba takes ~0.3 s to import and seconds to compile);
compiled kernels are cached on disk (see _runtime.cache_dir). `warmup()` compiles
everything ahead of a timed run.
"""
import sys

import numpy as np

from fastdl._config import get_num_threads
from fastdl._kernels import linalg as _linalg
from fastdl.backends import _compose, _plan, _spec
from fastdl.backends._spec import ACTIVATION_CODES
from fastdl.backends._workspace import Workspace
from fastdl.backends.numba_cpu import _runtime
from fastdl.ops.losses import EPSILON

numba = _runtime.configure()
from fastdl.backends.numba_cpu import kernels as _k  # noqa: E402  (after the configuration)

ARRAYS_ON_DEVICE = False  # NumPy arrays in, NumPy arrays out (_spec.py)

workspace = Workspace()


def _threads():
    """Numba's thread count is per calling thread: set it for this one."""
    n = min(get_num_threads(), numba.config.NUMBA_NUM_THREADS)
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
    return n


def _scalar(dtype, value):
    return np.dtype(dtype).type(value)


def conv2d(x, kernel, bias, out, g, activation):
    threads = _threads()
    kk, f = g.kh * g.kw * g.c, kernel.shape[3]
    rows = _plan.block(g.n * g.oh, g.ow * kk * x.itemsize, threads)
    work = workspace.get("im2col", threads * rows * g.ow * kk, x.dtype)
    has_bias = bias is not None
    _k.conv2d_forward(x, kernel.reshape(kk, f), bias if has_bias else kernel.reshape(-1)[:f],
                      has_bias, out.reshape(-1, f), work, g.kernel_args(), rows, threads)
    if activation is not None:
        rows_view = out.reshape(-1, f)
        _k.bias_activation(rows_view, rows_view[0], False, ACTIVATION_CODES[activation])


def conv2d_transpose(x, kernel, bias, out, g):
    threads = _threads()
    kk, f = g.kh * g.kw * g.c, kernel.shape[3]
    images = _plan.block(g.n, g.oh * g.ow * kk * x.itemsize, threads)
    dcols = workspace.get("col2im", threads * images * g.oh * g.ow * kk, x.dtype)
    _k.conv2d_transpose(x.reshape(-1, f), kernel.reshape(kk, f), out, dcols, g.kernel_args(), images)
    if bias is not None:
        rows = out.reshape(-1, g.c)
        _k.bias_activation(rows, bias, True, ACTIVATION_CODES[None])


def conv2d_max_pool(x, kernel, bias, conv_out, out, g, activation, ph, pw, argmax=None):
    _compose.conv2d_max_pool(conv2d, max_pool2d, x, kernel, bias, conv_out, out, g, activation, ph, pw,
                             argmax)


def conv2d_backward(dy, x, kernel, g, dx):
    need_dx = dx is not None
    threads = _threads()
    kk, f = g.kh * g.kw * g.c, kernel.shape[3]
    images = _plan.block(g.n, g.oh * g.ow * kk * x.itemsize, threads)
    size = threads * images * g.oh * g.ow * kk
    cols = workspace.get("im2col", size, x.dtype)
    dcols = workspace.get("col2im", size, x.dtype) if need_dx else cols
    partial = workspace.get("dkernel", threads * kk * f, x.dtype).reshape(threads, kk, f)
    _k.conv2d_backward(dy.reshape(-1, f), x, kernel.reshape(kk, f), dx if need_dx else x, need_dx, partial,
                       cols, dcols,
                       g.kernel_args(), images)
    dkernel = partial.sum(axis=0).reshape(kernel.shape)
    dbias = np.empty(f, dy.dtype)
    _k.column_sums(dy.reshape(-1, f), dbias, threads)
    return (dx if need_dx else None), dkernel, dbias


_NO_ARGMAX = np.empty((0, 0, 0, 0), np.uint8)


def max_pool2d(x, out, g, argmax=None):
    _threads()
    _k.pool_forward(x, out, _NO_ARGMAX if argmax is None else argmax, g.kernel_args(), True)


def max_pool2d_backward(dy, x, g, dx, through_relu, argmax=None):
    _threads()
    if argmax is not None:
        _k.max_pool_backward_saved(dy, argmax, dx, g.kernel_args())
        return
    _k.pool_backward(dy, x, dx, g.kernel_args(), True)
    if through_relu:
        _k.relu_backward(dx.reshape(-1), x.reshape(-1), dx.reshape(-1))


def avg_pool2d(x, out, g):
    _threads()
    _k.pool_forward(x, out, _NO_ARGMAX, g.kernel_args(), False)


def avg_pool2d_backward(dy, g, dx):
    _threads()
    _k.pool_backward(dy, dx, dx, g.kernel_args(), False)  # x unused by average pooling


def matmul(a, b, out, trans_a, trans_b):
    # numba.np.dot goes to the same single-threaded BLAS; the compiled kernel's split runs
    # it in parallel
    _linalg.matmul(a, b, out, trans_a, trans_b, get_num_threads())


def activation(x, out, name):
    _threads()
    if not np.may_share_memory(out, x):
        np.copyto(out, x)
    _k.bias_activation(out, out[0], False, ACTIVATION_CODES[name])


def activation_backward(dy, y, name, dz):
    _threads()
    _k.activation_backward(dy, y, dz, ACTIVATION_CODES[name])


def dense(x, kernel, bias, activation, out):
    matmul(x, kernel, out, False, False)
    if bias is not None or activation is not None:
        _threads()
        _k.bias_activation(out, bias if bias is not None else out[0], bias is not None,
                           ACTIVATION_CODES[activation])


def dense_backward(dy, x, kernel, activation, output, has_bias, need_dx):
    dz = dy
    if activation is not None:
        dz = np.empty_like(dy)
        activation_backward(dy, output, activation, dz)
    dkernel = np.empty_like(kernel)
    matmul(x, dz, dkernel, True, False)
    dx = None
    if need_dx:
        dx = np.empty_like(x)
        matmul(dz, kernel, dx, False, True)
    dbias = None
    if has_bias:
        dbias = np.empty(kernel.shape[1], dy.dtype)
        _k.column_sums(dz, dbias, _threads())
    return dx, dkernel, dbias


def add(a, b, out):
    _threads()
    _k.add(a, b, out)


def multiply(a, b, out):
    _threads()
    _k.multiply(a, b, out)


def relu(x, out):
    _threads()
    _k.relu(x, out)


def relu_backward(dy, x, dx):
    _threads()
    _k.relu_backward(dy, x, dx)


def softmax(x, out):
    _threads()
    _k.softmax(x, out)


def sparse_categorical_crossentropy(labels, outputs, from_logits):
    _threads()
    loss = np.empty(outputs.shape[0], outputs.dtype)
    _k.sparse_ce(outputs, labels, from_logits, _scalar(outputs.dtype, EPSILON), loss)
    return loss


def sparse_categorical_crossentropy_backward(labels, outputs, from_logits, dloss):
    _threads()
    grad = np.empty_like(outputs)
    _k.sparse_ce_backward(outputs, labels, from_logits, _scalar(outputs.dtype, EPSILON), dloss, grad)
    return grad


def loss(name, y_true, y_pred, delta):
    _threads()
    out = np.empty(y_pred.shape[0], y_pred.dtype)
    _k.loss(_spec.LOSS_CODES[name], y_true, y_pred, float(delta), EPSILON, out)
    return out


def loss_backward(name, y_true, y_pred, delta, dloss):
    _threads()
    grad = np.empty_like(y_pred)
    _k.loss_backward(_spec.LOSS_CODES[name], y_true, y_pred, float(delta), EPSILON, dloss, grad)
    return grad


def sgd_update(p, g, buf, lr, momentum, dampening, l2, decay, sign, nesterov, init, keras):
    _threads()
    s = p.dtype.type
    _k.sgd(p, g, p if buf is None else buf, buf is not None, s(lr), s(momentum), s(1 - dampening),
           s(l2), s(decay), s(sign), nesterov, init, keras)


def adagrad_update(p, g, acc, lr, eps, l2, decay, eps_inside):
    _threads()
    s = p.dtype.type
    _k.adagrad(p, g, acc, s(lr), s(eps), s(l2), s(decay), eps_inside)


def rmsprop_update(p, g, sq, ga, buf, lr, rho, eps, momentum, l2, decay, keras):
    _threads()
    s = p.dtype.type
    _k.rmsprop(p, g, sq, sq if ga is None else ga, ga is not None, sq if buf is None else buf,
               buf is not None, s(lr), s(rho), s(1 - rho), s(eps), s(momentum), s(l2), s(decay), keras)


def adam_update(p, g, m, v, vmax, step_size, eps_hat, beta1, beta2, l2, decay, sign):
    _threads()
    s = p.dtype.type
    _k.adam(p, g, m, v, v if vmax is None else vmax, vmax is not None, s(step_size), s(eps_hat),
            s(beta1), s(beta2), s(1 - beta1), s(1 - beta2), s(l2), s(decay), s(sign))


def affine_transform_batch(images, indices, matrices, out, mode, cval, scale):
    _threads()
    _k.affine_batch(images, indices, matrices, out, mode, float(cval), float(scale))


def warmup():
    """Compile (or load from the cache) every kernel for float32 and float64, so that a
    timed run measures no JIT. Returns the seconds it took. Every op of the backend
    contract (_spec.NAMES) must be among those run: a new op without its line here is a
    RuntimeError, not a first call that compiles for half a minute."""
    import time

    from fastdl.backends import auto

    start = time.perf_counter()
    module = sys.modules[__name__]
    originals = {name: getattr(module, name) for name in _spec.NAMES}
    called = set()

    def counted(name, fn):
        def run(*args):
            called.add(name)
            return fn(*args)
        return run
    for name, fn in originals.items():
        setattr(module, name, counted(name, fn))
    try:
        _warm_every_op()
    finally:
        for name, fn in originals.items():
            setattr(module, name, fn)
    missing = sorted(set(_spec.NAMES) - called)
    if missing:
        raise RuntimeError(f"numba_cpu.warmup() runs no {missing}: add a call of each")
    auto.mark_numba_ready()  # from now on 'auto' measures Numba too
    return time.perf_counter() - start


def batch_norm_stats(x, mean, var):
    _k.batch_norm_stats(x, mean, var, max(1, min(_threads(), x.shape[0])))


def batch_norm(x, mean, var, gamma, beta, eps, out):
    _threads()
    _k.batch_norm(x, mean, var, gamma, beta, float(eps), out)


def batch_norm_backward(dy, x, mean, var, gamma, eps, dx):
    c = x.shape[1]
    dgamma, dbeta = np.empty(c, x.dtype), np.empty(c, x.dtype)
    _k.batch_norm_backward(dy, x, mean, var, gamma, float(eps), dx, dgamma, dbeta,
                           max(1, min(_threads(), x.shape[0])))
    return dgamma, dbeta


def _recurrent_parts(batch, width, units):
    threads = _threads()
    return threads if batch > 1 and batch * width * units >= _RECURRENT_PARALLEL_WORK else 1


_RECURRENT_PARALLEL_WORK = 1 << 17  # as the Cython backend's RECURRENT_PARALLEL_WORK


def _gate_blocks(u, transposed):
    """U (H, G*H)'s gate blocks as one contiguous (G, H, H) array, each block transposed or not."""
    n = u.shape[0]
    blocks = u.reshape(n, -1, n).transpose(1, 0, 2)
    return np.ascontiguousarray(blocks.transpose(0, 2, 1) if transposed else blocks)


def _dropout_args(rmask, u, transposed):
    """(rm, gate blocks, has_rm): stand-ins the kernel never reads when rmask is None."""
    if rmask is None:
        return np.zeros((1, 1), u.dtype), np.zeros((1, 1, 1), u.dtype), False
    return rmask, _gate_blocks(u, transposed), True


def recurrent(cell, xp, u, bias, rbias, mask, rmask, activation, recurrent_activation, h, c, gates):
    batch, width = xp.shape[1], xp.shape[2]
    # absent arrays become stand-ins the kernel never reads (Numba wants one type a call)
    rb = rbias if rbias is not None else np.zeros(1, xp.dtype)
    m = mask if mask is not None else np.zeros((1, 1), np.uint8)
    _k.recurrent(cell, xp, u, bias, rb, rbias is not None, m, mask is not None, *_dropout_args(rmask, u, False),
                 ACTIVATION_CODES[activation], ACTIVATION_CODES[recurrent_activation], h, c if c is not None else h,
                 c is not None, gates, np.empty((batch, width), xp.dtype), _recurrent_parts(batch, width, u.shape[0]))


def recurrent_backward(cell, dh_seq, u, h, c, gates, mask, rmask, activation, recurrent_activation, dh, dc, dxp,
                       dinner):
    batch, width = dxp.shape[1], dxp.shape[2]
    m = mask if mask is not None else np.zeros((1, 1), np.uint8)
    _k.recurrent_backward(cell, dh_seq if dh_seq is not None else h, dh_seq is not None, np.ascontiguousarray(u.T),
                          h, c if c is not None else h, gates, m, mask is not None, *_dropout_args(rmask, u, True),
                          ACTIVATION_CODES[activation],
                          ACTIVATION_CODES[recurrent_activation], dh, dc if dc is not None else dh, dxp,
                          dinner if dinner is not None else dxp, np.empty_like(dh),
                          _recurrent_parts(batch, width, u.shape[0]))


def embedding(indices, table, out):
    _threads()
    _k.embedding(indices, table, out)


def embedding_backward(indices, dy, dtable):
    _k.embedding_backward(indices, dy, dtable, max(1, min(_threads(), dy.shape[1])))


def _warm_every_op():
    from fastdl import ops, use_backend

    with use_backend("numba"):
        for dtype in (np.float32, np.float64):
            x = np.ones((2, 5, 5, 2), dtype)
            k = np.ones((3, 3, 2, 3), dtype)
            y = ops.conv2d(x, k, np.ones(3, dtype), activation="relu")
            ops.conv2d_max_pool(x, k, np.ones(3, dtype), activation="relu",
                                argmax_out=np.empty((2, 1, 1, 3), np.uint8))
            ops.max_pool2d_backward(ops.max_pool2d(y, 2), y, 2, through_relu=True)
            pooled = ops.max_pool2d(y, 2, argmax_out=np.empty((2, 1, 1, 3), np.uint8))
            ops.max_pool2d_backward(pooled, y, 2, argmax=np.zeros((2, 1, 1, 3), np.uint8))
            ops.conv2d_backward(y, x, k)
            ops.conv2d_backward(y, x, k, need_dx=False)
            ops.conv2d_transpose(y, np.ones((3, 3, 2, 3), dtype), np.ones(2, dtype))
            for pool, back in ((ops.max_pool2d, ops.max_pool2d_backward), (ops.avg_pool2d, ops.avg_pool2d_backward)):
                p = pool(x, 2)
                back(p, x, 2)
                back(pool(x, 3, 1), x, 3, 1)
            d = np.ones((2, 4), dtype)
            w = np.ones((4, 3), dtype)
            ops.matmul(d, w)
            for act in (None, "relu", "softmax"):
                out = ops.dense(d, w, np.ones(3, dtype), act)
                ops.dense_backward(out, d, w, activation=act, output=out)
            ops.activation_backward(out, ops.activation(out, "tanh"), "tanh")
            ops.relu_backward(x, ops.relu(x))
            ops.multiply(ops.add(x, x), x)
            ops.softmax(d)
            for logits in (True, False):
                ops.sparse_categorical_crossentropy([0, 1], np.full((2, 3), 0.5, dtype), logits)
                ops.sparse_categorical_crossentropy_backward([0, 1], np.full((2, 3), 0.5, dtype), logits)
            target, prediction = np.full((2, 1, 3), 0.5, dtype), np.full((2, 1, 3), 0.25, dtype)
            for name in ("mean_squared_error", "categorical_hinge"):  # one compilation for every kind
                ops.loss_backward(name, target, prediction)
                ops.loss(name, target, prediction)
            p, g = np.ones(4, dtype), np.ones(4, dtype)
            ops.sgd_update(p, g, lr=0.1)
            ops.sgd_update(p, g, lr=0.1, momentum=0.9, velocity=np.zeros(4, dtype))
            ops.adagrad_update(p, g, np.zeros(4, dtype), lr=0.1, step=1)
            ops.rmsprop_update(p, g, np.zeros(4, dtype), lr=0.1)
            ops.adam_update(p, g, np.zeros(4, dtype), np.zeros(4, dtype), step=1, lr=0.1)
            rows, channel = np.ones((6, 3), dtype), np.ones(3, dtype)
            mean, var = ops.batch_norm_stats(rows)
            ops.batch_norm(rows, mean, var, channel, channel)
            ops.batch_norm_backward(rows, rows, mean, var, channel)
            _, row_mean, row_rstd = ops.layer_norm(rows, channel, channel, return_statistics=True)
            ops.layer_norm_backward(rows, rows, row_mean, row_rstd, channel)
            for cell, gates in (("simple_rnn", 1), ("lstm", 4), ("gru", 3)):
                xp, u = np.ones((2, 2, 2 * gates), dtype), np.ones((2, 2 * gates), dtype)
                for mask in (None, np.ones((2, 2), bool)):
                    h, c, saved = ops.recurrent(cell, xp, u, mask=mask)
                    for dh_seq in (None, h[1:]):
                        ops.recurrent_backward(cell, dh_seq, u, h, c, saved, mask=mask)
            table = ops.embedding([0, 1], np.ones((2, 3), dtype))
            ops.embedding_backward([0, 1], table, 2)
            ops.crop2d(ops.pad2d(x, 1), 1)
            depthwise = np.ones((3, 3, 2, 2), dtype)
            ops.depthwise_conv2d_backward(ops.depthwise_conv2d(x, depthwise, np.ones(4, dtype)), x, depthwise)
            ops.upsample2d_backward(ops.upsample2d(x, 2), 2)
        for images in (np.zeros((1, 4, 4, 1), np.uint8), np.zeros((1, 4, 4, 1), np.float32)):
            ops.affine_transform_batch(images, [0], np.tile(np.eye(2, 3), (1, 1, 1)))


def pad2d(x, out, top, left):
    _threads()
    _k.pad2d(x, out, top, left)


def crop2d(x, out, top, left):
    _threads()
    _k.crop2d(x, out, top, left)


def upsample2d(x, out, sh, sw):
    _threads()
    _k.upsample2d(x, out, sh, sw)


def upsample2d_backward(dy, dx, sh, sw):
    _threads()
    _k.upsample2d_backward(dy, dx, sh, sw)


def layer_norm(x, gamma, beta, eps, out, mean, rstd):
    _threads()
    _k.layer_norm(x, gamma, beta, float(eps), out, mean, rstd)


def layer_norm_backward(dy, x, mean, rstd, gamma, dx):
    c = x.shape[1]
    dgamma, dbeta = np.empty(c, x.dtype), np.empty(c, x.dtype)
    _k.layer_norm_backward(dy, x, mean, rstd, gamma, dx, dgamma, dbeta, max(1, min(_threads(), x.shape[0])))
    return dgamma, dbeta


def depthwise_conv2d(x, kernel, bias, out, g):
    _threads()
    _k.depthwise_conv2d(x, kernel, bias if bias is not None else np.zeros(1, x.dtype), bias is not None, out,
                        g.kernel_args())


def depthwise_conv2d_backward(dy, x, kernel, g, dx):
    threads = _threads()
    if dx is not None:
        _k.depthwise_conv2d_backward_input(dy, kernel, dx, g.kernel_args())
    blocks = max(1, min(threads, g.n * g.oh))
    partial, partial_bias = np.empty((blocks,) + kernel.shape), np.empty((blocks, dy.shape[3]))
    _k.depthwise_conv2d_backward_kernel(dy, x, partial, partial_bias, g.kernel_args())
    return dx, partial.sum(axis=0).astype(x.dtype), partial_bias.sum(axis=0).astype(x.dtype)
