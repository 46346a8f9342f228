"""matmul, dense and dense_backward against the reference, finite differences and torch."""
import numpy as np
import pytest

import fastdl
from fastdl import ops

from support import ALL_BACKENDS, assert_close, numerical_gradient, reference

ACTIVATIONS = [None, "linear", "relu", "sigmoid", "tanh", "softmax"]


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (7, 3, 5), (33, 64, 10), (128, 1600, 128)])
@pytest.mark.parametrize("order", ["CC", "FC", "CF", "FF"])
def test_matmul_matches_numpy(backend, dtype, m, k, n, order):
    rng = np.random.default_rng(0)
    a = np.asarray(rng.standard_normal((m, k)), dtype, order=order[0])
    b = np.asarray(rng.standard_normal((k, n)), dtype, order=order[1])
    assert_close(ops.matmul(a, b), a.astype(np.float64) @ b, dtype, np.sqrt(k))


@pytest.mark.parametrize("m", [1, 6, 7, 300])
@pytest.mark.parametrize("n", [1, 16, 17, 64, 65, 130, 601])
@pytest.mark.parametrize("k", [1, 256, 257])
@pytest.mark.parametrize("order", ["CC", "FC", "CF", "FF"])
def test_float32_matmul_across_the_gemm_kernels_tile_edges(m, n, k, order):
    """The compiled backends' float32 GEMM works in tiles of 6 rows x 64 columns (16 at a
    time) and blocks of 256 along K: every edge of those, and each operand transposed
    (a transposed B with few rows of output and many columns is computed transposed)."""
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a = np.asarray(rng.standard_normal((m, k)), np.float32, order=order[0])
    b = np.asarray(rng.standard_normal((k, n)), np.float32, order=order[1])
    with fastdl.use_backend("cython"):
        assert_close(ops.matmul(a, b), a.astype(np.float64) @ b, np.float32, np.sqrt(k))


def test_matmul_strided_and_out(backend):
    a = np.random.default_rng(0).standard_normal((10, 12))[::2, ::3]
    b = np.random.default_rng(1).standard_normal((4, 6))
    out = np.empty((5, 6))
    assert ops.matmul(a, b, out=out) is out
    np.testing.assert_allclose(out, a @ b)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(1, 3, 2), (17, 9, 10), (4, 5, 6, 7)])
def test_dense_matches_reference(backend, dtype, activation, shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape[:-1]).astype(dtype)
    kernel = rng.standard_normal(shape[-2:]).astype(dtype)
    bias = rng.standard_normal(shape[-1]).astype(dtype)
    y = ops.dense(x, kernel, bias, activation)
    assert_close(y, reference(ops.dense, x, kernel, bias, activation), dtype, 10)
    dy = rng.standard_normal(y.shape).astype(dtype)
    got = ops.dense_backward(dy, x, kernel, activation=activation, output=y)
    want = reference(ops.dense_backward, dy, x, kernel, activation=activation, output=y)
    for a, b in zip(got, want):
        assert_close(a, b, dtype, 10)


@pytest.mark.parametrize("backend_name", ALL_BACKENDS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_gradients_match_finite_differences(backend_name, activation):
    rng = np.random.default_rng(2)
    x, kernel, bias = rng.standard_normal((3, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)
    dy = rng.standard_normal((3, 5))
    with fastdl.use_backend(backend_name):
        def loss():
            return float((ops.dense(x, kernel, bias, activation) * dy).sum())

        y = ops.dense(x, kernel, bias, activation)
        dx, dkernel, dbias = ops.dense_backward(dy, x, kernel, activation=activation, output=y)
        for got, wrt in ((dx, x), (dkernel, kernel), (dbias, bias)):
            np.testing.assert_allclose(got, numerical_gradient(loss, wrt), rtol=1e-6, atol=1e-8)


def test_dense_matches_torch(backend, torch):
    rng = np.random.default_rng(3)
    x, kernel, bias = rng.standard_normal((6, 8)), rng.standard_normal((8, 3)), rng.standard_normal(3)
    tx, tk, tb = (torch.tensor(a, requires_grad=True) for a in (x, kernel, bias))
    ty = torch.tanh(tx @ tk + tb)
    y = ops.dense(x, kernel, bias, "tanh")
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    grads = ops.dense_backward(dy, x, kernel, activation="tanh", output=y)
    for got, t in zip(grads, (tx, tk, tb)):
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_dense_backward_options(backend):
    x, kernel = np.ones((2, 3)), np.ones((3, 4))
    dx, dkernel, dbias = ops.dense_backward(np.ones((2, 4)), x, kernel, has_bias=False, need_dx=False)
    assert dx is None and dbias is None
    np.testing.assert_array_equal(dkernel, np.full((3, 4), 2.0))
