"""Helpers shared by the tests: tolerances, the reference oracle, finite differences."""
import importlib.util

import numpy as np

import fastdl

# Every compiled backend is checked against the 'reference' backend (the oracle).
COMPILED_BACKENDS = ["cython"] + (["numba"] if importlib.util.find_spec("numba") else [])
ALL_BACKENDS = ["reference"] + COMPILED_BACKENDS
DTYPES = [np.float32, np.float64]


def tolerance(dtype):
    """(rtol, atol) for comparing two backends' results of unit-scale data."""
    return (2e-4, 2e-5) if np.dtype(dtype) == np.float32 else (1e-10, 1e-12)


def assert_close(actual, expected, dtype, scale=1.0):
    rtol, atol = tolerance(dtype)
    assert actual.dtype == np.dtype(dtype)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale)


def reference(fn, *args, **kwargs):
    with fastdl.use_backend("reference"):
        return fn(*args, **kwargs)


def numerical_gradient(f, x, eps=1e-6):
    """Central differences of the scalar f() with respect to every element of x (float64)."""
    grad = np.empty_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        up = f()
        flat[i] = saved - eps
        down = f()
        flat[i] = saved
        gflat[i] = (up - down) / (2 * eps)
    return grad
