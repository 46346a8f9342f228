"""The CUDA backend (numba.cuda): every kernel of fastdl.ops on an NVIDIA GPU.

All kernels and launches live in kernels.py beside this file. fastdl.ops hands this module device
arrays, host arrays or a mix: device arrays are used where they are, host arrays are
copied to the device once per call. Results go into the caller's output array wherever
it lives; new results (gradients, losses) stay on the device when any input came from
there and are copied to the host otherwise.

It loads only with a real GPU, or under the CUDA simulator when NUMBA_ENABLE_CUDASIM=1
was set before Numba was imported (the tests run it that way, on tiny shapes).
"""
import os

import numpy as np

from fastdl.ops.losses import EPSILON
from fastdl.ops.pool import ARGMAX_NONE

from fastdl.backends import _compose
from fastdl.backends._spec import ACTIVATION_CODES, LOSS_CODES
from fastdl.backends.cuda import kernels as gpu
# fastdl._device reaches the device through this module: allocations, copies, overlap
from fastdl.backends.cuda.kernels import (  # noqa: F401
    as_device_array, copy, device_array, full, may_share_memory, same_memory, to_device)

ARRAYS_ON_DEVICE = True

if not gpu.available() and os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    raise RuntimeError("the 'cuda' backend needs an NVIDIA GPU with its driver: numba.cuda.is_available() "
                       "is False here (install fastdl[cuda] on a machine with a GPU, or set "
                       "NUMBA_ENABLE_CUDASIM=1 before importing numba to run the simulator)")



def _dev(a):
    """a on the device: a device array as it is, a host array copied there."""
    return a if gpu.is_device_array(a) else gpu.to_device(np.ascontiguousarray(a))


def _target(out):
    """Where a kernel writes out's result: out itself on the device, else scratch."""
    return out if gpu.is_device_array(out) else gpu.device_array(out.shape, out.dtype)


def _finish(device, out):
    """Copy a scratch result into a host output (a device output already holds it)."""
    if device is not out:
        out[...] = device.copy_to_host().reshape(out.shape)
    return out


def _result(device, *inputs):
    """A new result: kept on the device when any input came from there, else copied back."""
    return device if any(gpu.is_device_array(a) for a in inputs) else device.copy_to_host()


def _loaded(out, x):
    """out's device target holding a copy of x (for kernels that work in place)."""
    target = _target(out)
    if not (gpu.is_device_array(x) and gpu.same_memory(target, x)):
        gpu.copy(target, x if gpu.is_device_array(x) else np.ascontiguousarray(x))
    return target


def conv2d(x, kernel, bias, out, g, activation):
    kk, f = g.kh * g.kw * g.c, kernel.shape[3]
    rows = g.n * g.oh * g.ow
    cols = gpu.device_array((rows, kk), x.dtype)
    gpu.im2col(_dev(x), cols, g.kernel_args())
    y = _target(out)
    y_rows = y.reshape(rows, f)
    gpu.matmul(cols, _dev(kernel).reshape(kk, f), y_rows)
    if bias is not None:
        gpu.add_row_vector(y_rows, _dev(bias))
    if activation is not None:
        gpu.activate(y_rows, ACTIVATION_CODES[activation])
    _finish(y, out)


def conv2d_max_pool(x, kernel, bias, conv_out, out, g, activation, ph, pw, argmax=None):
    _compose.conv2d_max_pool(conv2d, max_pool2d, x, kernel, bias, conv_out, out, g, activation, ph, pw,
                             argmax, _mark_no_gradient)


def _mark_no_gradient(y, argmax):
    arg = _loaded(argmax, argmax)
    gpu.mark_no_gradient(_dev(y), arg, ARGMAX_NONE)
    _finish(arg, argmax)


def conv2d_backward(dy, x, kernel, g, dx):
    kk, f = g.kh * g.kw * g.c, kernel.shape[3]
    rows = g.n * g.oh * g.ow
    dy_d = _dev(dy).reshape(rows, f)
    cols = gpu.device_array((rows, kk), x.dtype)
    gpu.im2col(_dev(x), cols, g.kernel_args())
    dk = gpu.device_array((kk, f), x.dtype)
    gpu.matmul(cols, dy_d, dk, trans_a=True)
    if dx is not None:
        dcols = gpu.device_array((rows, kk), x.dtype)
        gpu.matmul(dy_d, _dev(kernel).reshape(kk, f), dcols, trans_b=True)
        dx_d = _target(dx)
        gpu.col2im(dcols, dx_d, g.kernel_args())
        _finish(dx_d, dx)
    db = gpu.device_array((f,), dy.dtype)
    gpu.column_sums(dy_d, db)
    return dx, _result(dk.reshape(*kernel.shape), dy, x, kernel), _result(db, dy, x, kernel)


def conv2d_transpose(x, kernel, bias, out, g):
    kk, f = g.kh * g.kw * g.c, kernel.shape[3]
    rows = g.n * g.oh * g.ow
    dcols = gpu.device_array((rows, kk), x.dtype)
    gpu.matmul(_dev(x).reshape(rows, f), _dev(kernel).reshape(kk, f), dcols, trans_b=True)
    y = _target(out)
    gpu.col2im(dcols, y, g.kernel_args())
    if bias is not None:
        gpu.add_row_vector(y.reshape(g.n * g.h * g.w, g.c), _dev(bias))
    _finish(y, out)


def _pool(x, out, g, is_max, argmax=None):
    y = _target(out)
    arg = None if argmax is None else _target(argmax)
    gpu.pool_forward(_dev(x), y, arg, g.kernel_args(), is_max)
    _finish(y, out)
    if argmax is not None:
        _finish(arg, argmax)


def _pool_backward(dy, x, g, dx, is_max):
    d = _target(dx)
    gpu.pool_backward(_dev(dy), _dev(x), d, g.kernel_args(), is_max)
    _finish(d, dx)


def max_pool2d(x, out, g, argmax=None):
    _pool(x, out, g, True, argmax)


def avg_pool2d(x, out, g):
    _pool(x, out, g, False)


def max_pool2d_backward(dy, x, g, dx, through_relu, argmax=None):
    if argmax is not None:  # x is not read
        d = _target(dx)
        gpu.max_pool_backward_saved(_dev(dy), _dev(argmax), d, g.kernel_args())
        _finish(d, dx)
        return
    _pool_backward(dy, x, g, dx, True)
    if through_relu:
        relu_backward(dx, x, dx)


def avg_pool2d_backward(dy, g, dx):
    _pool_backward(dy, dx, g, dx, False)  # x is not read by average pooling


def matmul(a, b, out, trans_a, trans_b):
    c = _target(out)
    gpu.matmul(_dev(a), _dev(b), c, trans_a, trans_b)
    _finish(c, out)


def activation(x, out, name):
    z = _loaded(out, x)
    gpu.activate(z, ACTIVATION_CODES[name])
    _finish(z, out)


def activation_backward(dy, y, name, dz):
    d = _target(dz)
    gpu.activation_backward(_dev(dy), _dev(y), d, ACTIVATION_CODES[name])
    _finish(d, dz)


def dense(x, kernel, bias, activation, out):
    z = _target(out)
    gpu.matmul(_dev(x), _dev(kernel), z)
    if bias is not None:
        gpu.add_row_vector(z, _dev(bias))
    if activation is not None:
        gpu.activate(z, ACTIVATION_CODES[activation])
    _finish(z, out)


def dense_backward(dy, x, kernel, activation, output, has_bias, need_dx):
    inputs = (dy, x, kernel, output)
    dz = _dev(dy)
    if activation is not None:
        dz_in, dz = dz, gpu.device_array(dy.shape, dy.dtype)
        gpu.activation_backward(dz_in, _dev(output), dz, ACTIVATION_CODES[activation])
    dk = gpu.device_array(kernel.shape, kernel.dtype)
    gpu.matmul(_dev(x), dz, dk, trans_a=True)
    dx = None
    if need_dx:
        dx = gpu.device_array(x.shape, x.dtype)
        gpu.matmul(dz, _dev(kernel), dx, trans_b=True)
        dx = _result(dx, *inputs)
    dbias = None
    if has_bias:
        dbias = gpu.device_array((kernel.shape[1],), dy.dtype)
        gpu.column_sums(dz, dbias)
        dbias = _result(dbias, *inputs)
    return dx, _result(dk, *inputs), dbias


def add(a, b, out):
    target = _target(out)
    gpu.add(_dev(a), _dev(b), target)
    _finish(target, out)


def multiply(a, b, out):
    target = _target(out)
    gpu.multiply(_dev(a), _dev(b), target)
    _finish(target, out)


def relu(x, out):
    activation(x.reshape(1, -1), out.reshape(1, -1), "relu")


def relu_backward(dy, x, dx):
    activation_backward(dy.reshape(1, -1), x.reshape(1, -1), "relu", dx.reshape(1, -1))


def softmax(x, out):
    activation(x, out, "softmax")


_last_labels = [None, None]  # (host copy, device copy) of the labels the loss saw last


def _labels(labels):
    """Labels on the device; a training step's loss and gradient see the same labels,
    which are then copied once (compared by value, so reuse is always correct)."""
    host, device = _last_labels
    if host is None or host.shape != labels.shape or not np.array_equal(host, labels):
        _last_labels[:] = labels.copy(), _dev(labels)
    return _last_labels[1]


def _ce(labels, outputs, from_logits, dloss, want_grad):
    n = outputs.shape[0]
    loss = gpu.device_array((n,), outputs.dtype)
    grad = gpu.device_array(outputs.shape if want_grad else (1, 1), outputs.dtype)
    dl = _dev(dloss) if dloss is not None else loss  # read only when want_grad
    gpu.sparse_ce(_dev(outputs), _labels(labels), from_logits, outputs.dtype.type(EPSILON), dl, loss, grad,
                  want_grad)
    return _result(grad if want_grad else loss, outputs, dloss)


def sparse_categorical_crossentropy(labels, outputs, from_logits):
    return _ce(labels, outputs, from_logits, None, False)


def sparse_categorical_crossentropy_backward(labels, outputs, from_logits, dloss):
    return _ce(labels, outputs, from_logits, dloss, True)


def _loss(name, y_true, y_pred, delta, dloss, want_grad):
    n = y_pred.shape[0]
    loss = gpu.device_array((n,), y_pred.dtype)
    grad = gpu.device_array(y_pred.shape if want_grad else (1, 1, 1), y_pred.dtype)
    dl = _dev(dloss) if dloss is not None else loss  # read only when want_grad
    gpu.loss(LOSS_CODES[name], _dev(y_true), _dev(y_pred), float(delta), EPSILON, dl, loss, grad, want_grad)
    return _result(grad if want_grad else loss, y_true, y_pred, dloss)


def loss(name, y_true, y_pred, delta):
    return _loss(name, y_true, y_pred, delta, None, False)


def loss_backward(name, y_true, y_pred, delta, dloss):
    return _loss(name, y_true, y_pred, delta, dloss, True)


def _update(kernel, p, g, states, scalars):
    """Run an optimizer kernel where the arrays are: device arrays in place, host arrays
    through device copies written back."""
    param = _dev(p)
    # an absent state array is stood in for by the parameter: kernels read but never write it
    devices = [param] + [_dev(a) if a is not None else param for a in states]
    flags = [a is not None for a in states]
    gpu.elementwise(kernel, p.size, devices[0], _dev(g), *_interleave(devices[1:], flags, kernel), *scalars)
    for host, device in zip([p] + states, devices):
        if host is not None and device is not host:
            _finish(device, host)


def _interleave(devices, flags, kernel):
    """Each optional state array followed by its 'present' flag, as the kernels expect."""
    if kernel == "adam":  # m, v, vmax(optional)
        return devices[0], devices[1], devices[2], flags[2]
    if kernel == "sgd":
        return devices[0], flags[0]
    if kernel == "adagrad":
        return (devices[0],)
    return devices[0], devices[1], flags[1], devices[2], flags[2]  # rmsprop: sq, ga?, buf?


def sgd_update(p, g, buf, lr, momentum, dampening, l2, decay, sign, nesterov, init, keras):
    s = p.dtype.type
    _update("sgd", p, g, [buf], [s(lr), s(momentum), s(1 - dampening), s(l2), s(decay), s(sign),
                                 nesterov, init, keras])


def adagrad_update(p, g, acc, lr, eps, l2, decay, eps_inside):
    s = p.dtype.type
    _update("adagrad", p, g, [acc], [s(lr), s(eps), s(l2), s(decay), eps_inside])


def rmsprop_update(p, g, sq, ga, buf, lr, rho, eps, momentum, l2, decay, keras):
    s = p.dtype.type
    _update("rmsprop", p, g, [sq, ga, buf], [s(lr), s(rho), s(1 - rho), s(eps), s(momentum), s(l2),
                                             s(decay), keras])


def adam_update(p, g, m, v, vmax, step_size, eps_hat, beta1, beta2, l2, decay, sign):
    s = p.dtype.type
    _update("adam", p, g, [m, v, vmax], [s(step_size), s(eps_hat), s(beta1), s(beta2), s(1 - beta1),
                                         s(1 - beta2), s(l2), s(decay), s(sign)])


def affine_transform_batch(images, indices, matrices, out, mode, cval, scale):
    d = _target(out)
    gpu.affine(_dev(images), _dev(indices), _dev(matrices), d, mode, np.float32(cval * scale),
               np.float32(scale))
    _finish(d, out)


def batch_norm_stats(x, mean, var):
    m, v = _target(mean), _target(var)
    gpu.batch_norm_stats(_dev(x), m, v)
    _finish(m, mean)
    _finish(v, var)


def batch_norm(x, mean, var, gamma, beta, eps, out):
    y = _target(out)
    gpu.batch_norm(_dev(x), _dev(mean), _dev(var), _dev(gamma), _dev(beta), float(eps), y)
    _finish(y, out)


def batch_norm_backward(dy, x, mean, var, gamma, eps, dx):
    target = _target(dx)
    c = x.shape[1]
    dgamma, dbeta = gpu.device_array((c,), x.dtype), gpu.device_array((c,), x.dtype)
    gpu.batch_norm_backward(_dev(dy), _dev(x), _dev(mean), _dev(var), _dev(gamma), float(eps), target,
                            dgamma, dbeta)
    _finish(target, dx)
    return _result(dgamma, dy, x), _result(dbeta, dy, x)


def _optional(a):
    return None if a is None else _dev(a)


def recurrent(cell, xp, u, bias, rbias, mask, rmask, activation, recurrent_activation, h, c, gates):
    # h and c arrive holding the initial states: the device targets start as copies
    th, tg = _loaded(h, h), _target(gates)
    tc = None if c is None else _loaded(c, c)
    gpu.recurrent(cell, _dev(xp), _dev(u), _dev(bias), _optional(rbias), _optional(mask), _optional(rmask),
                  ACTIVATION_CODES[activation], ACTIVATION_CODES[recurrent_activation], th, tc, tg)
    _finish(th, h)
    _finish(tg, gates)
    if c is not None:
        _finish(tc, c)


def recurrent_backward(cell, dh_seq, u, h, c, gates, mask, rmask, activation, recurrent_activation, dh, dc, dxp,
                       dinner):
    tdh, tdx = _loaded(dh, dh), _target(dxp)
    tdc = None if dc is None else _loaded(dc, dc)
    tdi = None if dinner is None else _target(dinner)
    gpu.recurrent_backward(cell, _optional(dh_seq), _dev(u), _dev(h), _optional(c), _dev(gates), _optional(mask),
                           _optional(rmask), ACTIVATION_CODES[activation], ACTIVATION_CODES[recurrent_activation],
                           tdh, tdc, tdx, tdi)
    for target, out in ((tdh, dh), (tdc, dc), (tdx, dxp), (tdi, dinner)):
        if out is not None:
            _finish(target, out)


def embedding(indices, table, out):
    y = _target(out)
    gpu.embedding(_dev(indices), _dev(table), y)
    _finish(y, out)


def embedding_backward(indices, dy, dtable):
    target = _loaded(dtable, dtable)
    gpu.embedding_backward(_dev(indices), _dev(dy), target)
    _finish(target, dtable)


def _resampled(kernel, x, out, *sizes):
    y = _target(out)
    kernel(_dev(x), y, *sizes)
    _finish(y, out)


def pad2d(x, out, top, left):
    _resampled(gpu.pad2d, x, out, top, left)


def crop2d(x, out, top, left):
    _resampled(gpu.crop2d, x, out, top, left)


def upsample2d(x, out, sh, sw):
    _resampled(gpu.upsample2d, x, out, sh, sw)


def upsample2d_backward(dy, dx, sh, sw):
    _resampled(gpu.upsample2d_backward, dy, dx, sh, sw)


def layer_norm(x, gamma, beta, eps, out, mean, rstd):
    y, m, r = _target(out), _target(mean), _target(rstd)
    gpu.layer_norm(_dev(x), _dev(gamma), _dev(beta), float(eps), y, m, r)
    for target, host in ((y, out), (m, mean), (r, rstd)):
        _finish(target, host)


def layer_norm_backward(dy, x, mean, rstd, gamma, dx):
    target = _target(dx)
    c = x.shape[1]
    dgamma, dbeta = gpu.device_array((c,), x.dtype), gpu.device_array((c,), x.dtype)
    gpu.layer_norm_backward(_dev(dy), _dev(x), _dev(mean), _dev(rstd), _dev(gamma), target, dgamma, dbeta)
    _finish(target, dx)
    return _result(dgamma, dy, x), _result(dbeta, dy, x)


def depthwise_conv2d(x, kernel, bias, out, g):
    y = _target(out)
    gpu.depthwise_conv2d(_dev(x), _dev(kernel), _optional(bias), y, g.kernel_args())
    _finish(y, out)


def depthwise_conv2d_backward(dy, x, kernel, g, dx):
    target = None if dx is None else _target(dx)
    dkernel = gpu.device_array(kernel.shape, x.dtype)
    dbias = gpu.device_array((dy.shape[3],), x.dtype)
    gpu.depthwise_conv2d_backward(_dev(dy), _dev(x), _dev(kernel), g.kernel_args(), target, dkernel, dbias)
    if dx is not None:
        _finish(target, dx)
    return dx, _result(dkernel, dy, x), _result(dbias, dy, x)
