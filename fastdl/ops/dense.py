"""Matrix multiply and fully connected layers with a fused activation."""
import numpy as np

from fastdl._config import backend_module
from fastdl.ops import _checks


def _blas_operand(name, a):
    """(array, transposed): a C-contiguous array as is, an F-contiguous one as its
    transpose (BLAS reads it without a copy), anything else copied to C order."""
    if _checks.on_device(a):
        return _checks.float_array(name, a, 2, "(rows, columns)"), False
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    if a.ndim == 2 and not a.flags.c_contiguous and a.flags.f_contiguous:
        return _checks.float_array(name, a.T, 2), True
    return _checks.float_array(name, a, 2, "(rows, columns)"), False


def matmul(a, b, out=None):
    """a (M, K) @ b (K, N) -> (M, N) through BLAS, float32 or float64."""
    a_mat, trans_a = _blas_operand("a", a)
    b_mat, trans_b = _blas_operand("b", b)
    _checks.same_dtype(a=a_mat, b=b_mat)
    (m, k) = a_mat.shape[::-1] if trans_a else a_mat.shape
    (k2, n) = b_mat.shape[::-1] if trans_b else b_mat.shape
    if k != k2:
        raise ValueError(f"matmul: a's columns ({k}) must equal b's rows ({k2}); "
                         f"got a {(m, k)} and b {(k2, n)}")
    y = _checks.output("out", out, (m, n), a_mat.dtype, _checks.on_device(a_mat, b_mat))
    _checks.distinct("out", y, a=a_mat, b=b_mat)
    backend_module().matmul(a_mat, b_mat, y, trans_a, trans_b)
    return y


def _prepare(x, kernel, bias):
    x = _checks.float_array("x", x, None)
    if x.ndim < 2:
        raise ValueError(f"x must be at least 2-D (batch, ..., features); got shape {x.shape}")
    kernel = _checks.float_array("kernel", kernel, 2, "(in_features, units)")
    _checks.same_dtype(x=x, kernel=kernel)
    if x.shape[-1] != kernel.shape[0]:
        raise ValueError(f"x's last axis ({x.shape[-1]}, x shape {x.shape}) must equal the "
                         f"kernel's in_features ({kernel.shape[0]}, kernel shape {kernel.shape})")
    if bias is not None:
        bias = _checks.float_array("bias", bias, 1, "(units,)")
        _checks.same_dtype(x=x, bias=bias)
        _checks.shape_is("bias", bias, (kernel.shape[1],), "one value per unit")
    return x, kernel, bias


def dense(x, kernel, bias=None, activation=None, *, out=None):
    """activation(x @ kernel + bias): x (..., K), kernel (K, U), bias (U,) -> (..., U).

    activation: None/'linear', 'relu', 'sigmoid', 'tanh' or 'softmax' (over units),
    applied in the same pass that adds the bias.
    """
    x, kernel, bias = _prepare(x, kernel, bias)
    activation = _checks.activation_name(activation)
    y = _checks.output("out", out, x.shape[:-1] + (kernel.shape[1],), x.dtype,
                       _checks.on_device(x, kernel, bias))
    _checks.distinct("out", y, x=x, kernel=kernel, bias=bias)
    rows = y.reshape(-1, kernel.shape[1])
    backend_module().dense(x.reshape(-1, kernel.shape[0]), kernel, bias, activation, rows)
    return y


def dense_backward(dy, x, kernel, *, activation=None, output=None, has_bias=True, need_dx=True):
    """Gradients of dense: (dx (..., K) or None, dkernel (K, U), dbias (U,) or None).

    dy (..., U) is the gradient with respect to dense's output. With an activation,
    `output` must be that forward output: every supported activation's derivative
    follows from it.
    """
    x, kernel, _ = _prepare(x, kernel, None)
    activation = _checks.activation_name(activation)
    out_shape = x.shape[:-1] + (kernel.shape[1],)
    dy = _checks.float_array("dy", dy, len(out_shape), "shaped like dense's output")
    _checks.same_dtype(dy=dy, x=x)
    _checks.shape_is("dy", dy, out_shape, "dense's output shape")
    if activation is not None:
        if output is None:
            raise ValueError(f"dense_backward with activation={activation!r} needs output=, "
                             "the forward result")
        output = _checks.float_array("output", output, len(out_shape))
        _checks.same_dtype(dy=dy, output=output)
        _checks.shape_is("output", output, out_shape, "dense's output shape")
        output = output.reshape(-1, kernel.shape[1])
    dx, dkernel, dbias = backend_module().dense_backward(
        dy.reshape(-1, kernel.shape[1]), x.reshape(-1, kernel.shape[0]), kernel,
        activation, output, bool(has_bias), bool(need_dx))
    if dx is not None:
        dx = dx.reshape(x.shape)
    return dx, dkernel, dbias
