"""Max and average pooling on NHWC activations (Keras semantics)."""
from fastdl._config import backend_module
from fastdl.ops import _checks
from fastdl.ops._geometry import window


def _forward(x, pool_size, strides, padding, out, device=False):
    """Validated (x, geometry, y) for a pooling's forward pass."""
    x = _checks.float_array("x", x, 4, "(batch, height, width, channels)")
    size = _checks.int_pair("pool_size", pool_size)
    steps = size if strides is None else _checks.int_pair("strides", strides)
    g = window(x.shape, size, steps, (1, 1), _checks.padding_spec(padding, allow_explicit=False))
    y = _checks.output("out", out, (g.n, g.oh, g.ow, g.c), x.dtype, device or _checks.on_device(x))
    return x, g, y


def _backward(dy, x, pool_size, strides, padding, out):
    """Validated (dy, x, geometry, dx) for a pooling's backward pass."""
    x, g, _ = _forward(x, pool_size, strides, padding, None)
    dy = _checks.float_array("dy", dy, 4, "(batch, out_height, out_width, channels)")
    _checks.same_dtype(dy=dy, x=x)
    _checks.shape_is("dy", dy, (g.n, g.oh, g.ow, g.c), "the pooling's output shape")
    dx = _checks.output("out", out, x.shape, x.dtype, _checks.on_device(dy, x))
    _checks.distinct("out", dx, dy=dy, x=x)
    return dy, x, g, dx


def max_pool2d(x, pool_size=2, strides=None, padding="valid", *, out=None):
    """The maximum of each pool_size window of x (N, H, W, C); strides default to pool_size."""
    x, g, y = _forward(x, pool_size, strides, padding, out)
    _checks.distinct("out", y, x=x)
    backend_module().max_pool2d(x, y, g)
    return y


def max_pool2d_backward(dy, x, pool_size=2, strides=None, padding="valid", *, through_relu=False,
                        out=None):
    """dx (N, H, W, C): each window's gradient goes to its first maximum in row-major order.

    through_relu=True: x is a ReLU's output, and dx is the gradient with respect to that
    ReLU's input, relu_backward(max_pool2d_backward(...), x) in one pass (a window whose
    maximum is 0 passes nothing).
    """
    dy, x, g, dx = _backward(dy, x, pool_size, strides, padding, out)
    backend_module().max_pool2d_backward(dy, x, g, dx, bool(through_relu))
    return dx


def avg_pool2d(x, pool_size=2, strides=None, padding="valid", *, out=None):
    """The mean of each window of x (N, H, W, C); padded positions are not counted."""
    x, g, y = _forward(x, pool_size, strides, padding, out)
    _checks.distinct("out", y, x=x)
    backend_module().avg_pool2d(x, y, g)
    return y


def avg_pool2d_backward(dy, x, pool_size=2, strides=None, padding="valid", *, out=None):
    """dx (N, H, W, C): each window's gradient shared equally by its unpadded positions.

    x is used for its shape and dtype only.
    """
    dy, x, g, dx = _backward(dy, x, pool_size, strides, padding, out)
    backend_module().avg_pool2d_backward(dy, g, dx)
    return dx
