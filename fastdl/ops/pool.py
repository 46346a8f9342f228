"""Max and average pooling on NHWC activations (Keras semantics)."""
import numpy as np

from fastdl import _device
from fastdl._config import backend_module
from fastdl.ops import _checks
from fastdl.ops._geometry import window

# A saved position (argmax) that names no element: the window passes no gradient. Only
# conv2d_max_pool after a ReLU writes it, where the window's maximum is 0.
from fastdl.backends._spec import ARGMAX_NONE  # noqa: E402  (one value for C and Python)


def _forward(x, pool_size, strides, padding, out, device=False):
    """Validated (x, geometry, y) for a pooling's forward pass."""
    x = _checks.float_array("x", x, 4, "(batch, height, width, channels)")
    g = _geometry(x.shape, pool_size, strides, padding)
    y = _checks.output("out", out, (g.n, g.oh, g.ow, g.c), x.dtype, device or _checks.on_device(x))
    return x, g, y


def _geometry(shape, pool_size, strides, padding):
    size = _checks.int_pair("pool_size", pool_size)
    steps = size if strides is None else _checks.int_pair("strides", strides)
    return window(shape, size, steps, (1, 1), _checks.padding_spec(padding, allow_explicit=False))


def _fits(name, g):
    """Every position ky * KW + kx of the window fits in a uint8 below ARGMAX_NONE."""
    if g.kh * g.kw > ARGMAX_NONE:
        raise ValueError(f"{name}: pool_size {(g.kh, g.kw)} has {g.kh * g.kw} positions; argmax "
                         f"holds at most {ARGMAX_NONE}")


def _argmax_out(a, g, device):
    """argmax_out: a new or the caller's uint8 (N, OH, OW, C) array."""
    _fits("argmax_out", g)
    return _checks.output("argmax_out", a, (g.n, g.oh, g.ow, g.c), np.dtype(np.uint8), device)


def _saved_argmax(a, g):
    """argmax as max_pool2d's argmax_out left it: uint8 (N, OH, OW, C), contiguous."""
    _fits("argmax", g)
    if _device.is_device(a):
        a = _checks.device_contiguous("argmax", _device.adopt("argmax", a))
    elif isinstance(a, np.ndarray):
        a = _checks.contiguous("argmax", a)
    else:
        raise TypeError(f"argmax must be a numpy.ndarray of uint8; got {type(a).__name__}")
    if a.dtype != np.uint8:
        raise TypeError(f"argmax must have dtype uint8 (as max_pool2d's argmax_out); got {a.dtype}")
    _checks.shape_is("argmax", a, (g.n, g.oh, g.ow, g.c), "the pooling's output shape")
    return a


def _backward(dy, x, pool_size, strides, padding, out, shape_only=False):
    """Validated (dy, x, geometry, dx) for a pooling's backward pass. shape_only: x may be
    just the input's shape (N, H, W, C); x is then None and dx takes dy's dtype."""
    dy = _checks.float_array("dy", dy, 4, "(batch, out_height, out_width, channels)")
    if isinstance(x, tuple):
        if not shape_only:
            raise TypeError(f"x must be the pooling's input array; its shape {x} stands for it "
                            f"only in max_pool2d_backward with argmax")
        shape, x = _checks.shape_tuple("x", x, 4), None
        g = _geometry(shape, pool_size, strides, padding)
    else:
        x, g, _ = _forward(x, pool_size, strides, padding, None)
        _checks.same_dtype(dy=dy, x=x)
        shape = x.shape
    _checks.shape_is("dy", dy, (g.n, g.oh, g.ow, g.c), "the pooling's output shape")
    dx = _checks.output("out", out, shape, dy.dtype, _checks.on_device(dy, x))
    _checks.distinct("out", dx, dy=dy, x=x)
    return dy, x, g, dx


def max_pool2d(x, pool_size=2, strides=None, padding="valid", *, out=None, argmax_out=None):
    """The maximum of each pool_size window of x (N, H, W, C); strides default to pool_size.

    argmax_out: a uint8 array shaped like the result that receives the position
    ky * pool_width + kx of each window's first maximum (row-major), for
    max_pool2d_backward(argmax=...), which then needs only x's shape.
    """
    x, g, y = _forward(x, pool_size, strides, padding, out)
    _checks.distinct("out", y, x=x)
    if argmax_out is None:
        backend_module().max_pool2d(x, y, g)
        return y
    arg = _argmax_out(argmax_out, g, _checks.on_device(x, y))
    _checks.distinct("argmax_out", arg, x=x, y=y)
    backend_module().max_pool2d(x, y, g, arg)
    return y


def max_pool2d_backward(dy, x, pool_size=2, strides=None, padding="valid", *, through_relu=False,
                        argmax=None, out=None):
    """dx (N, H, W, C): each window's gradient goes to its first maximum in row-major order.

    through_relu=True: x is a ReLU's output, and dx is the gradient with respect to that
    ReLU's input, relu_backward(max_pool2d_backward(...), x) in one pass (a window whose
    maximum is 0 passes nothing).

    argmax: the positions max_pool2d's argmax_out (or conv2d_max_pool's) saved; x is then
    not read, and its shape (N, H, W, C) may stand for it. A position that names no
    element of its window (ARGMAX_NONE) passes nothing.
    """
    if argmax is None:
        dy, x, g, dx = _backward(dy, x, pool_size, strides, padding, out)
        backend_module().max_pool2d_backward(dy, x, g, dx, bool(through_relu))
        return dx
    if through_relu:
        raise ValueError("through_relu reads x's values, which argmax replaces; conv2d_max_pool "
                         "with activation='relu' records the ReLU in argmax itself")
    dy, x, g, dx = _backward(dy, x, pool_size, strides, padding, out, shape_only=True)
    arg = _saved_argmax(argmax, g)
    _checks.distinct("out", dx, argmax=arg)
    backend_module().max_pool2d_backward(dy, x, g, dx, False, arg)
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
