"""Elementwise activations, softmax, and any activation by name with its gradient."""
import numpy as np

from fastdl import _device
from fastdl._config import backend_module
from fastdl.ops import _checks


def relu(x, *, out=None):
    """max(x, 0) elementwise; `out` may be x itself (in place)."""
    x = _checks.float_array("x", x)
    y = _checks.output("out", out, x.shape, x.dtype, _checks.on_device(x))
    _checks.exact_or_distinct("out", y, x=x)
    backend_module().relu(x.reshape(-1), y.reshape(-1))
    return y


def relu_backward(dy, x, *, out=None):
    """dx = dy where x > 0, else 0 (x is relu's input, or equally its output)."""
    x = _checks.float_array("x", x)
    dy = _checks.float_array("dy", dy)
    _checks.same_dtype(dy=dy, x=x)
    _checks.shape_is("dy", dy, x.shape, "the shape of x")
    dx = _checks.output("out", out, x.shape, x.dtype, _checks.on_device(dy, x))  # may be dy (in place)
    _checks.exact_or_distinct("out", dx, dy=dy, x=x)
    backend_module().relu_backward(dy.reshape(-1), x.reshape(-1), dx.reshape(-1))
    return dx


def softmax(x, axis=-1, *, out=None):
    """exp(x) / sum(exp(x)) along `axis`, computed stably (max subtracted first)."""
    x = _checks.float_array("x", x)
    if not isinstance(axis, int) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis must be an int in [-{x.ndim}, {x.ndim}) for x of shape {x.shape}; got {axis!r}")
    y = _checks.output("out", out, x.shape, x.dtype, _checks.on_device(x))
    _checks.exact_or_distinct("out", y, x=x)  # rows are computed in place when out is x
    if axis % x.ndim == x.ndim - 1:
        backend_module().softmax(x.reshape(-1, x.shape[-1]), y.reshape(-1, x.shape[-1]))
        return y
    if _checks.on_device(x, y):
        raise ValueError(f"softmax of device arrays takes the last axis only; got axis={axis} for x of "
                         f"shape {x.shape}")
    # the axis moved last, as a copy of its own: moveaxis may hand back a view of x
    # that is already contiguous, which the kernel would overwrite
    moved = np.array(np.moveaxis(x, axis, -1), order="C", copy=True)
    backend_module().softmax(moved.reshape(-1, moved.shape[-1]), moved.reshape(-1, moved.shape[-1]))
    y[...] = np.moveaxis(moved, -1, axis)
    return y


def activation(x, name, *, out=None):
    """Apply the activation `name` ('linear'/None, 'relu', 'sigmoid', 'tanh', or
    'softmax' over the last axis) to x of any shape."""
    x = _checks.float_array("x", x)
    name = _checks.activation_name(name)
    y = _checks.output("out", out, x.shape, x.dtype, _checks.on_device(x))
    _checks.exact_or_distinct("out", y, x=x)
    if name is None:
        if not _device.same_memory(y, x):
            _device.copy_into(y, x)
        return y
    rows = (-1, x.shape[-1]) if x.ndim > 1 else (1, -1)
    backend_module().activation(x.reshape(rows), y.reshape(rows), name)
    return y


def activation_backward(dy, output, name, *, out=None):
    """dL/dx of activation `name` from dy = dL/dy and its forward output y."""
    output = _checks.float_array("output", output)
    dy = _checks.float_array("dy", dy)
    _checks.same_dtype(dy=dy, output=output)
    _checks.shape_is("dy", dy, output.shape, "the activation's output shape")
    name = _checks.activation_name(name)
    dz = _checks.output("out", out, dy.shape, dy.dtype, _checks.on_device(dy, output))
    if name is None:
        if not _device.same_memory(dz, dy):
            _device.copy_into(dz, dy)
        return dz
    if name == "softmax":
        _checks.distinct("out", dz, dy=dy, output=output)  # a row is read after it is written
    else:  # elementwise: out may be dy or output itself, never a shifted view of them
        _checks.exact_or_distinct("out", dz, dy=dy, output=output)
    rows = (-1, output.shape[-1]) if output.ndim > 1 else (1, -1)
    backend_module().activation_backward(dy.reshape(rows), output.reshape(rows), name, dz.reshape(rows))
    return dz
