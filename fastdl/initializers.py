"""Weight initializers with Keras names and formulas. Each is a callable
(shape, dtype, rng) -> array; fans follow Keras (conv kernels: receptive field times
channels in/out)."""
import math

import numpy as np


def _fans(shape):
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def _truncated_normal(rng, shape, stddev):
    """Normal values redrawn until within two standard deviations (Keras's truncation)."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2
    return out * stddev


def zeros(shape, dtype, rng):
    return np.zeros(shape, dtype)


def ones(shape, dtype, rng):
    return np.ones(shape, dtype)


def glorot_uniform(shape, dtype, rng):
    fan_in, fan_out = _fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(dtype)


def glorot_normal(shape, dtype, rng):
    fan_in, fan_out = _fans(shape)
    # 0.8796... is the standard deviation of a unit normal truncated at 2
    return _truncated_normal(rng, shape, math.sqrt(2.0 / (fan_in + fan_out)) / 0.87962566103423978).astype(dtype)


def he_uniform(shape, dtype, rng):
    limit = math.sqrt(6.0 / _fans(shape)[0])
    return rng.uniform(-limit, limit, shape).astype(dtype)


def he_normal(shape, dtype, rng):
    return _truncated_normal(rng, shape, math.sqrt(2.0 / _fans(shape)[0]) / 0.87962566103423978).astype(dtype)


def random_normal(shape, dtype, rng):
    return (rng.standard_normal(shape) * 0.05).astype(dtype)


def random_uniform(shape, dtype, rng):
    return rng.uniform(-0.05, 0.05, shape).astype(dtype)


_BY_NAME = {f.__name__: f for f in (zeros, ones, glorot_uniform, glorot_normal, he_uniform,
                                    he_normal, random_normal, random_uniform)}


def get(identifier):
    """An initializer from its Keras name or a callable (shape, dtype, rng) -> array."""
    if callable(identifier):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]
    raise ValueError(f"unknown initializer {identifier!r}; use one of {sorted(_BY_NAME)} or a callable")


def orthogonal(shape, dtype, rng):
    """Keras's Orthogonal (gain 1): the Q of a normal matrix's QR, signs fixed by R's
    diagonal, over the shape flattened to (rows, last axis)."""
    rows, cols = math.prod(shape[:-1]) if len(shape) > 1 else 1, shape[-1]
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return q.reshape(shape).astype(dtype)


_BY_NAME["orthogonal"] = orthogonal
_BY_NAME["uniform"] = random_uniform  # Keras's "uniform": RandomUniform(-0.05, 0.05)
