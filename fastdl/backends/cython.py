"""The Cython backend: compiled OpenMP kernels with SciPy's BLAS (the default on CPUs)."""
import numpy as np

from fastdl._config import get_num_threads
from fastdl._kernels import activations as _activations
from fastdl._kernels import augment as _augment
from fastdl._kernels import conv as _conv
from fastdl._kernels import depthwise as _depthwise
from fastdl._kernels import linalg as _linalg
from fastdl._kernels import losses as _losses
from fastdl._kernels import norm as _norm
from fastdl._kernels import optim as _optim
from fastdl._kernels import pool as _pool
from fastdl._kernels import recurrent as _recurrent
from fastdl._kernels import resample as _resample
from fastdl.backends import _compose
from fastdl.backends._spec import ACTIVATION_CODES, LOSS_CODES
from fastdl.backends._plan import IM2COL_BLOCK_BYTES
from fastdl.backends._plan import block as _block
from fastdl.backends._workspace import Workspace
from fastdl.ops.losses import EPSILON

ARRAYS_ON_DEVICE = False  # NumPy arrays in, NumPy arrays out (_spec.py)


# A max pooling's dx at least this large is written around the caches (non-temporal
# stores): measured on this project's machine (32 MB L3), a 14.7 MB dx is written
# 35% faster and the b128 training step, whose next layer reads that dx, 2.5-3.4%
# faster; a 5.5 MB dx was 15-25% slower that way (it stays in cache otherwise).
STREAM_BYTES = 8 << 20
# Below these and Winograd's transforms cost more than its 16 small GEMMs save over
# im2col (measured on 16x16 images, batch 32: C=8 is a wash either way, C >= 16 saves
# 23-50%; the first layer's 3 channels would lose).
WINOGRAD_MIN_CHANNELS = 16
WINOGRAD_MIN_FILTERS = 8
_WINOGRAD_AVAILABLE = _conv.winograd_available()


workspace = Workspace()

# Below this many elements an elementwise pass (an activation, a loss, an optimizer
# update, pooling's windows) runs on one thread: waking a second costs more than it
# saves (measured at batch 1 of the seed CNN: softmax 5.6 -> 1.6 us, the last dense
# layer's epilogue 7.7 -> 3.3 us on one thread).
SMALL_WORK = 1 << 15


def _threads_for(elements):
    return 1 if elements < SMALL_WORK else get_num_threads()


def _winograd(x, g, f, *operands):
    """Whether a convolution runs as Winograd F(2x2, 3x3): float32 3x3 kernels with
    stride 1, channels and filters enough for its 16 GEMMs to pay for the transforms,
    and finite operands: its transforms subtract neighbours, so an inf would come out
    NaN where the direct sum keeps inf (as PyTorch does); such calls take im2col (the
    check reads each operand once, a few percent of the convolution)."""
    return (_WINOGRAD_AVAILABLE and x.dtype == np.float32 and g.kh == g.kw == 3
            and g.sh == g.sw == 1 and g.dh == g.dw == 1
            and g.c >= WINOGRAD_MIN_CHANNELS and f >= WINOGRAD_MIN_FILTERS
            and all(_conv.all_finite(a.reshape(-1)) for a in (x,) + operands))


def _winograd_tile_rows(g, f, threads):
    """Output rows per block for Winograd: an even number whose tiles' transforms,
    16 * (C + F) floats per 2x2 tile, come to about IM2COL_BLOCK_BYTES."""
    row_pair = (g.ow + 1) // 2 * 16 * (g.c + f) * 4
    pairs = _block((g.n * g.oh + 1) // 2, row_pair, threads)
    return 2 * pairs


def _winograd_buffers(c, f, tiles, threads):
    """u (16, C, F), and per thread v (tiles, 16, C) and m (tiles, 16, F)."""
    return dict(wino_u=workspace.get("winograd_u", 16 * c * f, np.float32),
                wino_v=workspace.get("winograd_v", threads * 16 * tiles * c, np.float32),
                wino_m=workspace.get("winograd_m", threads * 16 * tiles * f, np.float32))


def _tiles(rows, ow):
    """2x2 tiles covering `rows` output rows of width ow."""
    return (rows + 1) // 2 * ((ow + 1) // 2)


def conv2d(x, kernel, bias, out, g, activation):
    threads = get_num_threads()
    kk, f = g.kh * g.kw * g.c, kernel.shape[3]
    fused_relu = activation == "relu"  # applied per block by the kernel, in cache
    if _winograd(x, g, f, kernel):
        rows = _winograd_tile_rows(g, f, threads)
        # a block's rows split over images: one odd segment more than its row pairs
        segments = min(rows, g.n * g.oh) // g.oh + 2
        wino = _winograd_buffers(g.c, f, (rows // 2 + segments) * ((g.ow + 1) // 2), threads)
        _conv.conv2d_forward(x, kernel.reshape(kk, f), bias, out, None, g.kernel_args(), rows,
                             threads, fused_relu, **wino)
    else:
        rows = _block(g.n * g.oh, g.ow * kk * x.itemsize, threads)
        cols = workspace.get("im2col", threads * rows * g.ow * kk, x.dtype)
        _conv.conv2d_forward(x, kernel.reshape(kk, f), bias, out, cols, g.kernel_args(), rows, threads,
                             fused_relu)
    if activation is not None and not fused_relu:
        flat = out.reshape(-1, out.shape[-1])
        _activations.bias_activation(flat, None, ACTIVATION_CODES[activation], threads)


def conv2d_max_pool(x, kernel, bias, conv_out, out, g, activation, ph, pw, argmax=None):
    if activation not in (None, "relu"):  # only ReLU is applied inside the blocks
        _compose.conv2d_max_pool(conv2d, max_pool2d, x, kernel, bias, conv_out, out, g, activation, ph, pw,
                                 argmax)
        return
    threads = get_num_threads()
    kk, f = g.kh * g.kw * g.c, kernel.shape[3]
    poh = g.oh // ph
    winograd = _winograd(x, g, f, kernel)
    # pooled rows per block: about IM2COL_BLOCK_BYTES of columns (or of Winograd's
    # transforms), within one image
    row_bytes = (g.ow + 1) // 2 * 8 * (g.c + f) * 4 if winograd else g.ow * kk * x.itemsize
    pooled_rows = max(1, min(poh, IM2COL_BLOCK_BYTES // (ph * row_bytes)))
    if g.n < threads:  # a small batch: blocks small enough for every thread to have one
        pooled_rows = max(1, min(pooled_rows, -(-poh * g.n // threads)))
    threads = min(threads, g.n * -(-poh // pooled_rows))  # no thread without a block
    most_rows = pooled_rows * ph + g.oh % ph
    cols = None if winograd else workspace.get("im2col", threads * most_rows * g.ow * kk, x.dtype)
    rows = (workspace.get("conv_rows", threads * most_rows * g.ow * f, x.dtype) if conv_out is None
            else None)
    wino = _winograd_buffers(g.c, f, _tiles(most_rows, g.ow), threads) if winograd else {}
    _conv.conv2d_max_pool_forward(x, kernel.reshape(kk, f), bias, conv_out, out, cols, rows,
                                  g.kernel_args(), ph, pw, pooled_rows, threads, activation == "relu",
                                  argmax, **wino)


def conv2d_backward(dy, x, kernel, g, dx):
    need_dx = dx is not None
    threads = get_num_threads()
    kk, f = g.kh * g.kw * g.c, kernel.shape[3]
    winograd = _winograd(x, g, f, dy, kernel)
    if winograd:
        # dkernel: each image's 2x2 blocks of dy and the 4x4 patches under them,
        # transformed; dx: the convolution of dy (F channels) with the flipped kernel
        per_image = _tiles(g.oh, g.ow)
        images = _block(g.n, per_image * 16 * (g.c + f) * 4, threads)
        wino = dict(wgrad_du=workspace.get("winograd_du", threads * 16 * g.c * f, np.float32),
                    wgrad_v=workspace.get("winograd_grad_v", threads * 16 * images * per_image * g.c,
                                          np.float32),
                    wgrad_w=workspace.get("winograd_grad_w", threads * 16 * images * per_image * f,
                                          np.float32))
        if need_dx:  # whole images per block
            wino.update(_winograd_buffers(f, g.c, images * _tiles(g.h, g.w), threads))
        cols = dcols = None
    else:
        images = _block(g.n, g.oh * g.ow * kk * x.itemsize, threads)
        size = threads * images * g.oh * g.ow * kk
        cols = workspace.get("im2col", size, x.dtype)
        dcols = workspace.get("col2im", size, x.dtype) if need_dx else None
        wino = {}
    partial = workspace.get("dkernel", threads * kk * f, x.dtype).reshape(threads, kk, f)
    kernel_t = workspace.get("kernel_t", f * kk, x.dtype).reshape(f, kk)
    np.copyto(kernel_t, kernel.reshape(kk, f).T)  # once per call, not once per block
    dbias_partial = workspace.get("dbias", threads * f, np.float64).reshape(threads, f)
    dkernel = np.empty_like(kernel)
    dbias = np.empty(f, dy.dtype)
    _conv.conv2d_backward(dy, x, kernel_t, dx, dkernel.reshape(kk, f), partial, dbias, dbias_partial,
                          cols, dcols, g.kernel_args(), images, threads, **wino)
    return dx, dkernel, dbias


def conv2d_transpose(x, kernel, bias, out, g):
    threads = get_num_threads()
    kk, f = g.kh * g.kw * g.c, kernel.shape[3]
    images = _block(g.n, g.oh * g.ow * kk * x.itemsize, threads)
    dcols = workspace.get("col2im", threads * images * g.oh * g.ow * kk, x.dtype)
    kernel_t = workspace.get("kernel_t", f * kk, x.dtype).reshape(f, kk)
    np.copyto(kernel_t, kernel.reshape(kk, f).T)
    _conv.conv2d_transpose(x, kernel_t, out, dcols, g.kernel_args(), images, threads)
    if bias is not None:
        _activations.bias_activation(out.reshape(-1, g.c), bias, ACTIVATION_CODES[None], threads)


def max_pool2d(x, out, g, argmax=None):
    _pool.max_pool2d_forward(x, out, g.kernel_args(), _threads_for(out.size * g.kh * g.kw), argmax)


def max_pool2d_backward(dy, x, g, dx, through_relu, argmax=None):
    _pool.max_pool2d_backward(dy, x, dx, g.kernel_args(), get_num_threads(), through_relu, argmax,
                              dx.nbytes >= STREAM_BYTES)


def avg_pool2d(x, out, g):
    _pool.avg_pool2d_forward(x, out, g.kernel_args(), _threads_for(out.size * g.kh * g.kw))


def avg_pool2d_backward(dy, g, dx):
    _pool.avg_pool2d_backward(dy, dx, g.kernel_args(), get_num_threads())


def matmul(a, b, out, trans_a, trans_b):
    _linalg.matmul(a, b, out, trans_a, trans_b, get_num_threads())


def dense(x, kernel, bias, activation, out):
    _linalg.matmul(x, kernel, out, False, False, get_num_threads())
    if bias is not None or activation is not None:
        _activations.bias_activation(out, bias, ACTIVATION_CODES[activation], _threads_for(out.size))


def activation(x, out, name):
    if name == "relu":  # one pass, not a copy then the activation in place
        _activations.relu(x.reshape(-1), out.reshape(-1), _threads_for(x.size))
        return
    if not np.may_share_memory(out, x):  # in place when out is x
        np.copyto(out, x)
    _activations.bias_activation(out, None, ACTIVATION_CODES[name], _threads_for(out.size))


def activation_backward(dy, y, name, dz):
    _activations.activation_backward(dy, y, dz, ACTIVATION_CODES[name], _threads_for(dy.size))


def dense_backward(dy, x, kernel, activation, output, has_bias, need_dx):
    threads = get_num_threads()
    if activation is None:
        dz = dy
    else:
        dz = np.empty_like(dy)
        activation_backward(dy, output, activation, dz)
    dkernel = np.empty_like(kernel)
    _linalg.matmul(x, dz, dkernel, True, False, threads)
    dx = None
    if need_dx:
        dx = np.empty_like(x)
        _linalg.matmul(dz, kernel, dx, False, True, threads)
    dbias = None
    if has_bias:
        dbias = np.empty(kernel.shape[1], dy.dtype)
        _linalg.column_sums(dz, dbias, threads)
    return dx, dkernel, dbias


def add(a, b, out):
    np.add(a, b, out=out)  # NumPy's loop already runs at memory speed


def multiply(a, b, out):
    np.multiply(a, b, out=out)


def relu(x, out):
    _activations.relu(x, out, _threads_for(x.size))


def relu_backward(dy, x, dx):
    _activations.relu_backward(dy, x, dx, _threads_for(x.size))


def softmax(x, out):
    _activations.softmax(x, out, _threads_for(x.size))


def sparse_categorical_crossentropy(labels, outputs, from_logits):
    loss = np.empty(outputs.shape[0], outputs.dtype)
    if from_logits:
        _losses.sparse_ce_from_logits(outputs, labels, loss, get_num_threads())
    else:
        _losses.sparse_ce_from_probs(outputs, labels, loss, EPSILON, get_num_threads())
    return loss


def sparse_categorical_crossentropy_backward(labels, outputs, from_logits, dloss):
    grad = np.empty_like(outputs)
    if from_logits:
        _losses.sparse_ce_from_logits_backward(outputs, labels, dloss, grad, get_num_threads())
    else:
        _losses.sparse_ce_from_probs_backward(outputs, labels, dloss, grad, EPSILON,
                                              get_num_threads())
    return grad


def loss(name, y_true, y_pred, delta):
    out = np.empty(y_pred.shape[0], y_pred.dtype)
    _losses.loss(LOSS_CODES[name], y_true, y_pred, delta, EPSILON, out, get_num_threads())
    return out


def loss_backward(name, y_true, y_pred, delta, dloss):
    grad = np.empty_like(y_pred)
    _losses.loss_backward(LOSS_CODES[name], y_true, y_pred, delta, EPSILON, dloss, grad, get_num_threads())
    return grad


def sgd_update(p, g, buf, lr, momentum, dampening, l2, decay, sign, nesterov, init, keras):
    _optim.sgd(p, g, buf, lr, momentum, dampening, l2, decay, sign, nesterov, init, keras,
               get_num_threads())


def adagrad_update(p, g, acc, lr, eps, l2, decay, eps_inside):
    _optim.adagrad(p, g, acc, lr, eps, l2, decay, eps_inside, get_num_threads())


def rmsprop_update(p, g, sq, ga, buf, lr, rho, eps, momentum, l2, decay, keras):
    _optim.rmsprop(p, g, sq, ga, buf, lr, rho, eps, momentum, l2, decay, keras, get_num_threads())


def adam_update(p, g, m, v, vmax, step_size, eps_hat, beta1, beta2, l2, decay, sign):
    _optim.adam(p, g, m, v, vmax, step_size, eps_hat, beta1, beta2, l2, decay, sign,
                get_num_threads())


def affine_transform_batch(images, indices, matrices, out, mode, cval, scale):
    _augment.affine_batch(images, indices, matrices, out, mode, cval, scale, get_num_threads())


def _blocks(m):
    """Row blocks of the batch-norm reductions: one a thread (each sums into its own row)."""
    return max(1, min(get_num_threads(), m))


def batch_norm_stats(x, mean, var):
    _norm.stats(x, mean, var, np.empty((2, _blocks(x.shape[0]), x.shape[1])))


def batch_norm(x, mean, var, gamma, beta, eps, out):
    _norm.normalize(x, mean, var, gamma, beta, eps, out, np.empty((2, x.shape[1]), x.dtype), get_num_threads())


def batch_norm_backward(dy, x, mean, var, gamma, eps, dx):
    c = x.shape[1]
    dgamma, dbeta = np.empty(c, x.dtype), np.empty(c, x.dtype)
    _norm.backward(dy, x, mean, var, gamma, eps, dx, dgamma, dbeta, np.empty((2, _blocks(x.shape[0]), c)),
                   np.empty((3, c), x.dtype), get_num_threads())
    return dgamma, dbeta


# A recurrence splits its samples among the threads when a step's GEMM is at least this
# many multiply-adds (below it a second thread's wake-up costs more than its half).
RECURRENT_PARALLEL_WORK = 1 << 17


def _recurrent_threads(batch, width, units):
    return get_num_threads() if batch > 1 and batch * width * units >= RECURRENT_PARALLEL_WORK else 1


def recurrent(cell, xp, u, bias, rbias, mask, rmask, activation, recurrent_activation, h, c, gates):
    batch, width = xp.shape[1], xp.shape[2]
    inner = workspace.get("recurrent_inner", batch * width, xp.dtype).reshape(batch, width)
    masked = None
    if rmask is not None:
        masked = workspace.get("recurrent_masked", batch * width, xp.dtype).reshape(batch, width)
    _recurrent.forward(cell, xp, u, bias, rbias, mask, rmask, ACTIVATION_CODES[activation],
                       ACTIVATION_CODES[recurrent_activation], h, c, gates, inner, masked,
                       _recurrent_threads(xp.shape[1], xp.shape[2], u.shape[0]))


def recurrent_backward(cell, dh_seq, u, h, c, gates, mask, rmask, activation, recurrent_activation, dh, dc, dxp,
                       dinner):
    part = None
    if rmask is not None:
        part = workspace.get("recurrent_part", dh.size, dh.dtype).reshape(dh.shape)
    _recurrent.backward(cell, np.ascontiguousarray(u.T), h, dh_seq, c, gates, mask, rmask,
                        ACTIVATION_CODES[activation], ACTIVATION_CODES[recurrent_activation], dh, dc, dxp, dinner,
                        part, _recurrent_threads(dxp.shape[1], dxp.shape[2], u.shape[0]))


def embedding(indices, table, out):
    _recurrent.embedding(indices, table, out, _threads_for(out.size))


def embedding_backward(indices, dy, dtable):
    _recurrent.embedding_backward(indices, dy, dtable, _threads_for(dy.size))


def pad2d(x, out, top, left):
    _resample.pad2d(x, out, top, left, _threads_for(out.size))


def crop2d(x, out, top, left):
    _resample.crop2d(x, out, top, left, _threads_for(out.size))


def upsample2d(x, out, sh, sw):
    _resample.upsample2d(x, out, sh, sw, _threads_for(out.size))


def upsample2d_backward(dy, dx, sh, sw):
    _resample.upsample2d_backward(dy, dx, sh, sw, _threads_for(dy.size))


def layer_norm(x, gamma, beta, eps, out, mean, rstd):
    _norm.layer_norm(x, gamma, beta, eps, out, mean, rstd, _threads_for(x.size))


def layer_norm_backward(dy, x, mean, rstd, gamma, dx):
    c = x.shape[1]
    dgamma, dbeta = np.empty(c, x.dtype), np.empty(c, x.dtype)
    blocks = _threads_for(x.size) if x.shape[0] > 1 else 1
    _norm.layer_norm_backward(dy, x, mean, rstd, gamma, dx, dgamma, dbeta, np.empty((2, blocks, c)))
    return dgamma, dbeta


def _row_kernels(g, kernel):
    """Whether the depthwise convolution runs whole rows (stride 1, one filter a channel)."""
    return kernel.shape[3] == 1 and g.sh == 1 and g.sw == 1


def _kernel_tile(kernel, g):
    """kernel[ky, kx, :, 0] tiled along a row of max(OW, W) pixels: (KH * KW, pixels * C)."""
    return np.ascontiguousarray(np.tile(kernel.reshape(g.kh * g.kw, g.c), (1, max(g.ow, g.w))))


def depthwise_conv2d(x, kernel, bias, out, g):
    threads = _threads_for(out.size)
    if _row_kernels(g, kernel):
        row = np.zeros(g.c, x.dtype) if bias is None else bias
        _depthwise.forward_rows(x, _kernel_tile(kernel, g), np.tile(row, g.ow), out, g.kernel_args(), threads)
        return
    _depthwise.forward(x, kernel, bias, out, g.kernel_args(), threads)


def depthwise_conv2d_backward(dy, x, kernel, g, dx):
    threads = _threads_for(dy.size)
    blocks = max(1, min(threads, g.n * g.oh))
    if _row_kernels(g, kernel):
        if dx is not None:
            _depthwise.backward_input_rows(dy, _kernel_tile(kernel, g), dx, g.kernel_args(), threads)
        acc = np.empty((blocks, g.kh * g.kw, g.ow * g.c))
        acc_bias = np.empty((blocks, g.ow * g.c))
        _depthwise.backward_kernel_rows(dy, x, acc, acc_bias, g.kernel_args())
        dkernel = acc.reshape(blocks, g.kh * g.kw, g.ow, g.c).sum(axis=(0, 2)).reshape(kernel.shape)
        return dx, dkernel.astype(x.dtype), acc_bias.reshape(blocks, g.ow, g.c).sum(axis=(0, 1)).astype(x.dtype)
    if dx is not None:
        _depthwise.backward_input(dy, kernel, dx, g.kernel_args(), threads)
    partial = np.empty((blocks,) + kernel.shape)
    partial_bias = np.empty((blocks, dy.shape[3]))
    _depthwise.backward_kernel(dy, x, partial, partial_bias, g.kernel_args())
    return dx, partial.sum(axis=0).astype(x.dtype), partial_bias.sum(axis=0).astype(x.dtype)
