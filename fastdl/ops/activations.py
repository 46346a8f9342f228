"""Elementwise activations and softmax."""
import numpy as np

from fastdl._config import backend_module
from fastdl.ops import _checks


def relu(x, *, out=None):
    """max(x, 0) elementwise; `out` may be x itself (in place)."""
    x = _checks.float_array("x", x)
    y = _checks.output("out", out, x.shape, x.dtype)
    backend_module().relu(x.reshape(-1), y.reshape(-1))
    return y


def relu_backward(dy, x):
    """dx = dy where x > 0, else 0 (x is relu's input, or equally its output)."""
    x = _checks.float_array("x", x)
    dy = _checks.float_array("dy", dy)
    _checks.same_dtype(dy=dy, x=x)
    _checks.shape_is("dy", dy, x.shape, "the shape of x")
    return backend_module().relu_backward(dy.reshape(-1), x.reshape(-1)).reshape(x.shape)


def softmax(x, axis=-1, *, out=None):
    """exp(x) / sum(exp(x)) along `axis`, computed stably (max subtracted first)."""
    x = _checks.float_array("x", x)
    if not isinstance(axis, int) or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis must be an int in [-{x.ndim}, {x.ndim}) for x of shape {x.shape}; got {axis!r}")
    y = _checks.output("out", out, x.shape, x.dtype)
    if axis % x.ndim == x.ndim - 1:
        backend_module().softmax(x.reshape(-1, x.shape[-1]), y.reshape(-1, x.shape[-1]))
        return y
    moved = np.ascontiguousarray(np.moveaxis(x, axis, -1))
    backend_module().softmax(moved.reshape(-1, moved.shape[-1]), moved.reshape(-1, moved.shape[-1]))
    y[...] = np.moveaxis(moved, -1, axis)
    return y
