"""Batch normalization over the last axis (channels, NHWC): the statistics, the
normalisation, and the training-mode backward pass."""
import numpy as np

from fastdl import _device
from fastdl._config import backend_module
from fastdl.ops import _checks


def _rows(name, x):
    """x (..., C), at least 2-D, as (M, C) rows."""
    x = _checks.float_array(name, x)
    if x.ndim < 2:
        raise ValueError(f"{name} must be at least 2-D (batch, ..., channels); got shape {x.shape}")
    return x, x.reshape(-1, x.shape[-1])


def _channel(name, a, x, default=None):
    """A (C,) array of x's dtype (default: a constant, when a is None)."""
    if a is None:
        if default is None:
            raise ValueError(f"{name} is needed")
        return _device.full((x.shape[-1],), x.dtype, default, _checks.on_device(x))
    a = _checks.float_array(name, a, 1, "(channels,)")
    _checks.same_dtype(x=x, **{name: a})
    _checks.shape_is(name, a, (x.shape[-1],), "one value per channel, x's last axis")
    return a


def _variance(var, x):
    var = _channel("var", var, x)
    if not _device.is_device(var) and (np.asarray(var) < 0).any():
        raise ValueError(f"var must be >= 0 everywhere; got {np.asarray(var).min()}")
    return var


def batch_norm_stats(x):
    """(mean, var): the mean and the biased variance of x (..., C) over every axis but the
    last (a training-mode BatchNormalization's batch statistics)."""
    x, rows = _rows("x", x)
    device = _checks.on_device(x)
    mean = _device.empty((x.shape[-1],), x.dtype, device)
    var = _device.empty((x.shape[-1],), x.dtype, device)
    backend_module().batch_norm_stats(rows, mean, var)
    return mean, var


def batch_norm(x, mean, var, gamma=None, beta=None, epsilon=1e-3, *, out=None):
    """(x - mean) / sqrt(var + epsilon) * gamma + beta over x's last axis; gamma None is
    ones and beta None zeros (Keras's scale=False / center=False). `out` may be x."""
    x, rows = _rows("x", x)
    mean, var = _channel("mean", mean, x), _variance(var, x)
    gamma, beta = _channel("gamma", gamma, x, 1.0), _channel("beta", beta, x, 0.0)
    epsilon = _checks.finite_number("epsilon", epsilon, 0, inclusive=False)
    y = _checks.output("out", out, x.shape, x.dtype, _checks.on_device(x, mean, var, gamma, beta))
    _checks.exact_or_distinct("out", y, x=x)
    _checks.distinct("out", y, mean=mean, var=var, gamma=gamma, beta=beta)
    backend_module().batch_norm(rows, mean, var, gamma, beta, epsilon, y.reshape(rows.shape))
    return y


def batch_norm_backward(dy, x, mean, var, gamma=None, epsilon=1e-3, *, dx_out=None):
    """(dx, dgamma, dbeta) of batch_norm in training mode, where mean and var are x's own
    batch statistics (batch_norm_stats(x)): the gradient flows through them too.
    dx_out may be dy (in place)."""
    x, rows = _rows("x", x)
    dy = _checks.float_array("dy", dy)
    _checks.same_dtype(dy=dy, x=x)
    _checks.shape_is("dy", dy, x.shape, "the shape of x")
    mean, var = _channel("mean", mean, x), _variance(var, x)
    gamma = _channel("gamma", gamma, x, 1.0)
    epsilon = _checks.finite_number("epsilon", epsilon, 0, inclusive=False)
    dx = _checks.output("dx_out", dx_out, x.shape, x.dtype, _checks.on_device(dy, x, mean, var, gamma))
    _checks.exact_or_distinct("dx_out", dx, dy=dy, x=x)
    _checks.distinct("dx_out", dx, mean=mean, var=var, gamma=gamma)
    dgamma, dbeta = backend_module().batch_norm_backward(dy.reshape(rows.shape), rows, mean, var, gamma, epsilon,
                                                         dx.reshape(rows.shape))
    return dx, dgamma, dbeta


def _row_statistic(name, a, x):
    """A (rows,) statistic of x's rows (x.shape[:-1]), of x's dtype."""
    a = _checks.float_array(name, a)
    _checks.same_dtype(x=x, **{name: a})
    _checks.shape_is(name, a, x.shape[:-1], "one value per row: x.shape[:-1]")
    return a.reshape(-1)


def layer_norm(x, gamma=None, beta=None, epsilon=1e-3, *, out=None, return_statistics=False):
    """(x - mean) / sqrt(var + epsilon) * gamma + beta with each row's own mean and
    biased variance over x's last axis (Keras's LayerNormalization); gamma None is ones,
    beta None zeros. With return_statistics: (y, mean, rstd), rstd = 1 / sqrt(var +
    epsilon), both of shape x.shape[:-1]: what layer_norm_backward takes."""
    x, rows = _rows("x", x)
    gamma, beta = _channel("gamma", gamma, x, 1.0), _channel("beta", beta, x, 0.0)
    epsilon = _checks.finite_number("epsilon", epsilon, 0, inclusive=False)
    device = _checks.on_device(x, gamma, beta)
    y = _checks.output("out", out, x.shape, x.dtype, device)
    _checks.exact_or_distinct("out", y, x=x)
    _checks.distinct("out", y, gamma=gamma, beta=beta)
    mean = _device.empty(x.shape[:-1], x.dtype, device)
    rstd = _device.empty(x.shape[:-1], x.dtype, device)
    backend_module().layer_norm(rows, gamma, beta, epsilon, y.reshape(rows.shape), mean.reshape(-1),
                                rstd.reshape(-1))
    return (y, mean, rstd) if return_statistics else y


def layer_norm_backward(dy, x, mean, rstd, gamma=None, *, dx_out=None):
    """(dx, dgamma, dbeta) of layer_norm, mean and rstd its statistics (return_statistics):
    the gradient flows through each row's statistics. dx_out may be dy (in place)."""
    x, rows = _rows("x", x)
    dy = _checks.float_array("dy", dy)
    _checks.same_dtype(dy=dy, x=x)
    _checks.shape_is("dy", dy, x.shape, "the shape of x")
    mean, rstd = _row_statistic("mean", mean, x), _row_statistic("rstd", rstd, x)
    if not _device.is_device(rstd) and not (np.asarray(rstd) > 0).all():
        raise ValueError(f"rstd must be > 0 everywhere (1 / sqrt(var + epsilon)); got {np.asarray(rstd).min()}")
    gamma = _channel("gamma", gamma, x, 1.0)
    dx = _checks.output("dx_out", dx_out, x.shape, x.dtype, _checks.on_device(dy, x, mean, rstd, gamma))
    _checks.exact_or_distinct("dx_out", dx, dy=dy, x=x)
    _checks.distinct("dx_out", dx, mean=mean, rstd=rstd, gamma=gamma)
    dgamma, dbeta = backend_module().layer_norm_backward(dy.reshape(rows.shape), rows, mean, rstd, gamma,
                                                         dx.reshape(rows.shape))
    return dx, dgamma, dbeta
