"""2-D convolution on NHWC activations with HWIO kernels (Keras layouts)."""
import numpy as np

from fastdl import _device
from fastdl._config import backend_module
from fastdl.ops import _checks, pool
from fastdl.ops._geometry import window


def _prepare(x, kernel, strides, padding, dilation_rate):
    x = _checks.float_array("x", x, 4, "(batch, height, width, channels)")
    kernel = _checks.float_array("kernel", kernel, 4, "(kernel_h, kernel_w, in_channels, filters)")
    _checks.same_dtype(x=x, kernel=kernel)
    if kernel.shape[2] != x.shape[3]:
        raise ValueError(
            f"kernel in_channels ({kernel.shape[2]}, kernel shape {kernel.shape}) must equal "
            f"the channels of x ({x.shape[3]}, x shape {x.shape})"
        )
    geometry = window(
        x.shape,
        kernel.shape[:2],
        _checks.int_pair("strides", strides),
        _checks.int_pair("dilation_rate", dilation_rate),
        _checks.padding_spec(padding),
    )
    return x, kernel, geometry


def _bias(bias, x, filters):
    """None, or a (filters,) array of x's dtype."""
    if bias is None:
        return None
    bias = _checks.float_array("bias", bias, 1, "(filters,)")
    _checks.same_dtype(x=x, bias=bias)
    _checks.shape_is("bias", bias, (filters,), "one value per filter")
    return bias


def conv2d(x, kernel, bias=None, *, strides=1, padding="valid", dilation_rate=1, activation=None,
           out=None):
    """activation(cross-correlation of x (N, H, W, C) with kernel (KH, KW, C, F) + bias (F,)).

    padding: 'valid', 'same' (Keras: output ceil(H / stride), extra pixel bottom/right)
    or ((top, bottom), (left, right)). activation: None/'linear', 'relu', 'sigmoid',
    'tanh' or 'softmax' (over filters); the compiled backends apply ReLU to each block of
    output while it is still in cache. Returns y (N, OH, OW, F), written into `out` if given.
    """
    x, kernel, g = _prepare(x, kernel, strides, padding, dilation_rate)
    activation = _checks.activation_name(activation)
    bias = _bias(bias, x, kernel.shape[3])
    y = _checks.output("out", out, (g.n, g.oh, g.ow, kernel.shape[3]), x.dtype,
                       _checks.on_device(x, kernel, bias))
    _checks.distinct("out", y, x=x, kernel=kernel, bias=bias)
    backend_module().conv2d(x, kernel, bias, y, g, activation)
    return y


def conv2d_max_pool(x, kernel, bias=None, *, strides=1, padding="valid", dilation_rate=1,
                    activation=None, pool_size=2, conv_out=None, out=None, argmax_out=None):
    """max_pool2d(conv2d(x, kernel, bias, activation=...), pool_size) in one pass: the
    pooling that Keras's MaxPooling2D(pool_size) applies after a Conv2D (strides equal to
    the pool size, no padding). The compiled backends pool each block of convolution
    output while it is in cache, so it never has to be read back from memory.

    Returns the pooled (N, OH // PH, OW // PW, F). conv_out, when given, receives the
    convolution's output (N, OH, OW, F) too. argmax_out (uint8, shaped like the result),
    when given, receives each window's maximum's position as max_pool2d's does, and after
    activation='relu' ARGMAX_NONE where the maximum is 0 (the ReLU passes no gradient), so
    that max_pool2d_backward(dy, (N, OH, OW, F), pool_size, argmax=argmax_out) is the
    gradient before the activation: training then needs no conv_out.
    """
    x, kernel, g = _prepare(x, kernel, strides, padding, dilation_rate)
    bias = _bias(bias, x, kernel.shape[3])
    activation = _checks.activation_name(activation)
    ph, pw = _checks.int_pair("pool_size", pool_size)
    if g.oh < ph or g.ow < pw:
        raise ValueError(f"pool_size {(ph, pw)} is larger than the convolution's output "
                         f"{(g.oh, g.ow)}")
    f = kernel.shape[3]
    device = _checks.on_device(x, kernel, bias, conv_out, out)
    if conv_out is not None:
        conv_out = _checks.output("conv_out", conv_out, (g.n, g.oh, g.ow, f), x.dtype, device)
        _checks.distinct("conv_out", conv_out, x=x, kernel=kernel, bias=bias)
    y = _checks.output("out", out, (g.n, g.oh // ph, g.ow // pw, f), x.dtype, device)
    _checks.distinct("out", y, x=x, kernel=kernel, bias=bias, conv_out=conv_out)
    if argmax_out is None:
        backend_module().conv2d_max_pool(x, kernel, bias, conv_out, y, g, activation, ph, pw)
        return y
    pooling = window((g.n, g.oh, g.ow, f), (ph, pw), (ph, pw), (1, 1), "valid")
    arg = pool._argmax_out(argmax_out, pooling, device)
    _checks.distinct("argmax_out", arg, x=x, kernel=kernel, bias=bias, conv_out=conv_out, y=y)
    backend_module().conv2d_max_pool(x, kernel, bias, conv_out, y, g, activation, ph, pw, arg)
    return y


def conv2d_backward(dy, x, kernel, *, strides=1, padding="valid", dilation_rate=1, need_dx=True,
                    dx_out=None):
    """Gradients of conv2d: (dx (N, H, W, C) or None, dkernel (KH, KW, C, F), dbias (F,)).

    dy (N, OH, OW, F) is the gradient of the loss with respect to conv2d's output.
    need_dx=False skips dx (the first layer of a network needs none); dx_out receives
    dx when given.
    """
    x, kernel, g = _prepare(x, kernel, strides, padding, dilation_rate)
    dy = _checks.float_array("dy", dy, 4, "(batch, out_height, out_width, filters)")
    _checks.same_dtype(dy=dy, x=x)
    _checks.shape_is("dy", dy, (g.n, g.oh, g.ow, kernel.shape[3]), "conv2d's output shape")
    dx = None
    if need_dx:
        dx = _checks.output("dx_out", dx_out, x.shape, x.dtype, _checks.on_device(dy, x, kernel))
        _checks.distinct("dx_out", dx, dy=dy, x=x, kernel=kernel)
    return backend_module().conv2d_backward(dy, x, kernel, g, dx)


# -- the transposed convolution (Keras's Conv2DTranspose) --------------------------------------

def _transpose_axis(size, k, stride, dilation, padding, output_padding):
    """(pad_top, pad_bottom, out) along one axis: the padding of the convolution whose
    input gradient this transposed convolution is, and its output size (Keras 3's: a
    dilated input padded by `left` and `right`, then a valid convolution)."""
    span = (k - 1) * dilation + 1
    if padding == "valid":
        extra = max(span, stride) - span if output_padding is None else output_padding
        left, right = span - 1, span - 1 + extra
    else:
        total = stride + span - 2 if output_padding is None else span + span % 2 - 2 + output_padding
        left = min(total // 2 + total % 2, span - 1)
        right = total - left
    # output rows past the last one the convolution reads (right > span - 1, never a
    # stride or more) only get the bias: no bottom padding, the floor division drops them
    return span - 1 - left, max(span - 1 - right, 0), (size - 1) * stride + left + right - span + 2


def _prepare_transpose(x, kernel, strides, padding, output_padding, dilation_rate):
    x = _checks.float_array("x", x, 4, "(batch, height, width, channels)")
    kernel = _checks.float_array("kernel", kernel, 4, "(kernel_h, kernel_w, filters, in_channels)")
    _checks.same_dtype(x=x, kernel=kernel)
    if kernel.shape[3] != x.shape[3]:
        raise ValueError(f"kernel in_channels (its last axis: {kernel.shape[3]}, kernel shape {kernel.shape}) must "
                         f"equal the channels of x ({x.shape[3]}, x shape {x.shape})")
    padding = _checks.padding_spec(padding, allow_explicit=False)
    strides = _checks.int_pair("strides", strides)
    dilation = _checks.int_pair("dilation_rate", dilation_rate)
    extra = (None, None) if output_padding is None else _checks.int_pair("output_padding", output_padding, minimum=0)
    for e, s in zip(extra, strides):
        if e is not None and e >= s:
            raise ValueError(f"output_padding must be smaller than strides along each axis; got output_padding "
                             f"{output_padding!r} with strides {strides}")
    axes = [_transpose_axis(x.shape[1 + i], kernel.shape[i], strides[i], dilation[i], padding, extra[i])
            for i in range(2)]
    (pt, pb, oh), (pl, pr, ow) = axes
    if oh < 1 or ow < 1:
        raise ValueError(f"the transposed convolution's output would be {(oh, ow)}; x {x.shape}, kernel "
                         f"{kernel.shape}, padding {padding!r}")
    g = window((x.shape[0], oh, ow, kernel.shape[2]), kernel.shape[:2], strides, dilation, (pt, pb, pl, pr))
    assert (g.oh, g.ow) == x.shape[1:3], (g, x.shape)
    return x, kernel, g


def conv2d_transpose(x, kernel, bias=None, *, strides=1, padding="valid", output_padding=None, dilation_rate=1,
                     out=None):
    """Keras's Conv2DTranspose: the transpose of a convolution (its input gradient) of x
    (N, H, W, C) with kernel (KH, KW, F, C), F the output channels, plus bias (F,).

    padding 'valid' or 'same', output_padding None or (< strides) as Keras 3 sizes the
    output: valid (H - 1) * s + max(k, s) (+ output_padding for max(k, s)); same H * s,
    or (H - 1) * s + k % 2 + output_padding (k the dilated kernel's extent). Returns y
    (N, OH, OW, F), written into `out` if given."""
    x, kernel, g = _prepare_transpose(x, kernel, strides, padding, output_padding, dilation_rate)
    bias = _bias(bias, x, kernel.shape[2])
    y = _checks.output("out", out, (g.n, g.h, g.w, g.c), x.dtype, _checks.on_device(x, kernel, bias))
    _checks.distinct("out", y, x=x, kernel=kernel, bias=bias)
    backend_module().conv2d_transpose(x, kernel, bias, y, g)
    return y


def conv2d_transpose_backward(dy, x, kernel, *, strides=1, padding="valid", output_padding=None, dilation_rate=1,
                              need_dx=True, dx_out=None):
    """Gradients of conv2d_transpose: (dx (N, H, W, C) or None, dkernel (KH, KW, F, C),
    dbias (F,)). dx is the convolution of dy with the kernel and dkernel that
    convolution's kernel gradient with x as its output's gradient."""
    x, kernel, g = _prepare_transpose(x, kernel, strides, padding, output_padding, dilation_rate)
    dy = _checks.float_array("dy", dy, 4, "(batch, out_height, out_width, filters)")
    _checks.same_dtype(dy=dy, x=x)
    _checks.shape_is("dy", dy, (g.n, g.h, g.w, g.c), "conv2d_transpose's output shape")
    device = _checks.on_device(dy, x, kernel)
    backend = backend_module()
    dx = None
    if need_dx:
        dx = _checks.output("dx_out", dx_out, x.shape, x.dtype, device)
        _checks.distinct("dx_out", dx, dy=dy, x=x, kernel=kernel)
        backend.conv2d(dy, kernel, None, dx, g, None)
    _, dkernel, _ = backend.conv2d_backward(x, dy, kernel, g, None)
    host = _device.to_host(dy)
    dbias = host.sum(axis=(0, 1, 2), dtype=np.float64).astype(dy.dtype)
    return dx, dkernel, (_device.to_device(dbias) if device else dbias)


def _prepare_depthwise(x, kernel, strides, padding, dilation_rate):
    x = _checks.float_array("x", x, 4, "(batch, height, width, channels)")
    kernel = _checks.float_array("kernel", kernel, 4, "(kernel_h, kernel_w, channels, depth_multiplier)")
    _checks.same_dtype(x=x, kernel=kernel)
    if kernel.shape[2] != x.shape[3]:
        raise ValueError(f"kernel channels ({kernel.shape[2]}, kernel shape {kernel.shape}) must equal the "
                         f"channels of x ({x.shape[3]}, x shape {x.shape})")
    geometry = window(x.shape, kernel.shape[:2], _checks.int_pair("strides", strides),
                      _checks.int_pair("dilation_rate", dilation_rate), _checks.padding_spec(padding))
    return x, kernel, geometry


def depthwise_conv2d(x, kernel, bias=None, *, strides=1, padding="valid", dilation_rate=1, activation=None,
                     out=None):
    """Each channel c of x (N, H, W, C) cross-correlated with its own M filters, kernel
    (KH, KW, C, M), into output channels c * M + m, + bias (C * M,), then activation
    (Keras's DepthwiseConv2D, depth_multiplier M). Returns y (N, OH, OW, C * M)."""
    x, kernel, g = _prepare_depthwise(x, kernel, strides, padding, dilation_rate)
    activation = _checks.activation_name(activation)
    channels = kernel.shape[2] * kernel.shape[3]
    if bias is not None:
        bias = _checks.float_array("bias", bias, 1, "(channels * depth_multiplier,)")
        _checks.same_dtype(x=x, bias=bias)
        _checks.shape_is("bias", bias, (channels,), "one value per output channel")
    y = _checks.output("out", out, (g.n, g.oh, g.ow, channels), x.dtype, _checks.on_device(x, kernel, bias))
    _checks.distinct("out", y, x=x, kernel=kernel, bias=bias)
    backend = backend_module()
    backend.depthwise_conv2d(x, kernel, bias, y, g)
    if activation is not None:  # in place, over rows of channels as ops.activation runs it
        rows = y.reshape(-1, channels)
        backend.activation(rows, rows, activation)
    return y


def depthwise_conv2d_backward(dy, x, kernel, *, strides=1, padding="valid", dilation_rate=1, need_dx=True,
                              dx_out=None):
    """Gradients of depthwise_conv2d before its activation: (dx (N, H, W, C) or None,
    dkernel (KH, KW, C, M), dbias (C * M,)) from dy (N, OH, OW, C * M)."""
    x, kernel, g = _prepare_depthwise(x, kernel, strides, padding, dilation_rate)
    dy = _checks.float_array("dy", dy, 4, "(batch, out_height, out_width, channels * depth_multiplier)")
    _checks.same_dtype(dy=dy, x=x)
    _checks.shape_is("dy", dy, (g.n, g.oh, g.ow, kernel.shape[2] * kernel.shape[3]), "depthwise_conv2d's output")
    dx = None
    if need_dx:
        dx = _checks.output("dx_out", dx_out, x.shape, x.dtype, _checks.on_device(dy, x, kernel))
        _checks.distinct("dx_out", dx, dy=dy, x=x, kernel=kernel)
    return backend_module().depthwise_conv2d_backward(dy, x, kernel, g, dx)
