"""Shared fixtures: the backends under test, tolerances, and a finite-difference helper."""
import numpy as np
import pytest

import fastdl

# Every compiled backend is checked against the 'reference' backend (the oracle).
COMPILED_BACKENDS = ["cython"]
DTYPES = [np.float32, np.float64]


@pytest.fixture(params=COMPILED_BACKENDS)
def backend(request):
    """The name of a compiled backend, active for the whole test."""
    with fastdl.use_backend(request.param):
        yield request.param


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return request.param


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


@pytest.fixture
def torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(fastdl.get_num_threads())
    return torch
