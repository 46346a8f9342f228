"""Max and average pooling: backends against the reference, finite differences, torch, ties."""
import numpy as np
import pytest

import fastdl
from fastdl import ops

from support import ALL_BACKENDS, assert_close, numerical_gradient, reference


def random_case(seed):
    rng = np.random.default_rng(seed)
    while True:
        n, h, w, c = rng.integers(1, 4), rng.integers(1, 11), rng.integers(1, 11), rng.integers(1, 5)
        pool = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        strides = None if rng.random() < 0.3 else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        padding = ["valid", "same"][rng.integers(0, 2)]
        if padding == "same" or (h >= pool[0] and w >= pool[1]):
            return dict(shape=(n, h, w, c), pool_size=pool, strides=strides, padding=padding)


CASES = [random_case(seed) for seed in range(40)] + [
    dict(shape=(4, 30, 30, 32), pool_size=2, strides=None, padding="valid"),  # the reference CNN
    dict(shape=(4, 13, 13, 64), pool_size=2, strides=None, padding="valid"),  # odd size: last row dropped
    dict(shape=(1, 7, 7, 1), pool_size=3, strides=1, padding="same"),         # overlapping windows
]

POOLS = {"max": (ops.max_pool2d, ops.max_pool2d_backward),
         "avg": (ops.avg_pool2d, ops.avg_pool2d_backward)}


def make(case, dtype, seed=0):
    x = np.random.default_rng(seed).standard_normal(case["shape"]).astype(dtype)
    return x, {k: case[k] for k in ("pool_size", "strides", "padding")}


@pytest.mark.parametrize("kind", POOLS)
@pytest.mark.parametrize("case", CASES)
def test_pool_matches_reference(backend, dtype, kind, case):
    forward, backward = POOLS[kind]
    x, args = make(case, dtype)
    y = forward(x, **args)
    assert_close(y, reference(forward, x, **args), dtype)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    assert_close(backward(dy, x, **args), reference(backward, dy, x, **args), dtype)


@pytest.mark.parametrize("case", CASES[::2] + CASES[-3:])
def test_max_pool_backward_through_relu_is_relu_backward_of_max_pool_backward(backend, dtype, case):
    """through_relu=True fuses the ReLU's gradient: a ReLU output (a third of it zero,
    so whole windows have maximum 0) gives relu_backward(max_pool2d_backward)."""
    x, args = make(case, dtype)
    x = np.maximum(x - 0.4, 0)
    dy = np.random.default_rng(1).standard_normal(ops.max_pool2d(x, **args).shape).astype(dtype)
    got = ops.max_pool2d_backward(dy, x, **args, through_relu=True)
    with fastdl.use_backend("reference"):
        expected = ops.relu_backward(ops.max_pool2d_backward(dy, x, **args), x)
    assert_close(got, expected, dtype)  # overlapping windows sum in another order
    np.testing.assert_array_equal(got == 0, expected == 0)


@pytest.mark.parametrize("backend_name", ALL_BACKENDS)
@pytest.mark.parametrize("kind", POOLS)
@pytest.mark.parametrize("case", CASES[:8] + CASES[-1:])
def test_pool_gradients_match_finite_differences(backend_name, kind, case):
    forward, backward = POOLS[kind]
    x, args = make(case, np.float64, seed=4)
    with fastdl.use_backend(backend_name):
        dy = np.random.default_rng(3).standard_normal(forward(x, **args).shape)
        expected = numerical_gradient(lambda: float((forward(x, **args) * dy).sum()), x)
        np.testing.assert_allclose(backward(dy, x, **args), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", CASES[::4])
def test_pool_matches_torch(backend, torch, case):
    x, args = make(case, np.float64)
    if args["padding"] == "same":
        pytest.skip("torch pads pools symmetrically and counts padding differently")
    stride = args["strides"] or args["pool_size"]
    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    for forward, backward, torch_pool in (
        (ops.max_pool2d, ops.max_pool2d_backward, torch.nn.functional.max_pool2d),
        (ops.avg_pool2d, ops.avg_pool2d_backward, torch.nn.functional.avg_pool2d),
    ):
        tx.grad = None
        ty = torch_pool(tx, args["pool_size"], stride)
        y = forward(x, **args)
        np.testing.assert_allclose(y, ty.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-12)
        dy = np.random.default_rng(2).standard_normal(y.shape)
        ty.backward(torch.tensor(dy.transpose(0, 3, 1, 2)))
        np.testing.assert_allclose(backward(dy, x, **args), tx.grad.numpy().transpose(0, 2, 3, 1),
                                   rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend_name", ALL_BACKENDS)
def test_max_pool_ties_send_gradient_to_the_first_maximum(backend_name):
    x = np.zeros((1, 4, 4, 2), np.float32)
    x[0, 2:, 2:, 1] = [[5, 5], [5, 1]]  # a tie in one window of channel 1
    dy = np.arange(1, 9, dtype=np.float32).reshape(1, 2, 2, 2)
    with fastdl.use_backend(backend_name):
        dx = ops.max_pool2d_backward(dy, x, 2)
    expected = np.zeros_like(x)
    for i in range(2):
        for j in range(2):
            expected[0, 2 * i, 2 * j, :] = dy[0, i, j, :]  # all-zero windows: the top-left wins
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("case", CASES)
def test_max_pool_argmax_matches_reference(backend, dtype, case):
    """argmax_out holds each window's first maximum (padding clips windows, windows
    overlap, ties); backward from it, with x's shape only, writes every element of a
    NaN-filled out and equals the backward that reads x."""
    x, args = make(case, dtype)
    x[..., ::2] = np.round(x[..., ::2])  # ties in every other channel
    y = ops.max_pool2d(x, **args)
    argmax = np.full(y.shape, 77, np.uint8)
    np.testing.assert_array_equal(ops.max_pool2d(x, **args, argmax_out=argmax), y)
    expected = np.empty(y.shape, np.uint8)
    reference(ops.max_pool2d, x, **args, argmax_out=expected)
    np.testing.assert_array_equal(argmax, expected)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    out = np.full_like(x, np.nan)
    assert ops.max_pool2d_backward(dy, x.shape, **args, argmax=argmax, out=out) is out
    assert_close(out, reference(ops.max_pool2d_backward, dy, x, **args), dtype)


@pytest.mark.parametrize("backend_name", ALL_BACKENDS)
@pytest.mark.parametrize("case", [CASES[-1], CASES[-2],
                                  dict(shape=(2, 5, 6, 19), pool_size=(2, 3), strides=(2, 2), padding="same"),
                                  dict(shape=(2, 5, 7, 19), pool_size=(2, 3), strides=(2, 3), padding="same")])
def test_max_pool_backward_from_any_argmax_writes_only_named_elements(backend_name, case):
    """Every uint8 value: ARGMAX_NONE, positions in the padding and past the window pass
    nothing (no write outside dx whatever the values), the rest go where they point."""
    x, args = make(case, np.float64)
    rng = np.random.default_rng(5)
    y_shape = ops.max_pool2d(x, **args).shape
    argmax = rng.integers(0, 256, y_shape).astype(np.uint8)
    argmax.reshape(-1)[:6] = [0, 1, 4, 8, 254, ops.ARGMAX_NONE]
    dy = rng.standard_normal(y_shape)
    with fastdl.use_backend(backend_name):
        got = ops.max_pool2d_backward(dy, x.shape, **args, argmax=argmax)
    # the scatter written out: window (oy, ox) puts dy at its element ky * kw + kx
    from fastdl.ops.pool import _geometry

    g = _geometry(x.shape, args["pool_size"], args["strides"], args["padding"])
    expected = np.zeros_like(x)
    for i, oy, ox, ch in np.ndindex(*y_shape):
        ky, kx = divmod(int(argmax[i, oy, ox, ch]), g.kw)
        iy, ix = oy * g.sh - g.pt + ky, ox * g.sw - g.pl + kx
        if ky < g.kh and 0 <= iy < g.h and 0 <= ix < g.w:
            expected[i, iy, ix, ch] += dy[i, oy, ox, ch]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES[-3:] + CASES[:10])
def test_max_pool_backward_streaming_stores_give_the_same_dx(backend, monkeypatch, case):
    """A dx of at least STREAM_BYTES is written with non-temporal stores where the
    windows do not overlap (whole aligned vectors only): same result, aligned or not."""
    from fastdl._device import aligned_empty
    from fastdl.backends import cython as cython_backend

    x, args = make(case, np.float32)
    argmax = np.empty(ops.max_pool2d(x, **args).shape, np.uint8)
    ops.max_pool2d(x, **args, argmax_out=argmax)
    dy = np.random.default_rng(1).standard_normal(argmax.shape).astype(np.float32)
    expected = reference(ops.max_pool2d_backward, dy, x, **args)
    monkeypatch.setattr(cython_backend, "STREAM_BYTES", 0)
    raw = aligned_empty(x.size + 1, np.float32)
    for out in (raw[:-1].reshape(x.shape), raw[1:].reshape(x.shape)):
        out[...] = np.nan
        assert_close(ops.max_pool2d_backward(dy, x.shape, **args, argmax=argmax, out=out), expected,
                     np.float32)
        out[...] = np.nan
        assert_close(ops.max_pool2d_backward(dy, x, **args, out=out), expected, np.float32)


def test_avg_pool_same_excludes_padding(backend):
    x = np.ones((1, 3, 3, 1))
    y = ops.avg_pool2d(x, 2, strides=2, padding="same")
    np.testing.assert_array_equal(y, np.ones((1, 2, 2, 1)))  # padded zeros are not averaged in


def test_pool_out_parameter(backend, dtype):
    x, args = make(CASES[-3], dtype)
    out = np.empty((4, 15, 15, 32), dtype)
    assert ops.max_pool2d(x, out=out, **args) is out
    assert_close(out, reference(ops.max_pool2d, x, **args), dtype)


@pytest.mark.parametrize("through_relu", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_max_pool_backward_writes_every_element_of_out(backend, case, through_relu):
    """A NaN-filled out: positions no window covers (gaps when strides exceed the pool,
    the rows and columns left over at the end, padding) must come back zero."""
    x, args = make(case, np.float32)
    x = np.maximum(x, 0) if through_relu else x
    dy = np.random.default_rng(1).standard_normal(ops.max_pool2d(x, **args).shape).astype(np.float32)
    out = np.full_like(x, np.nan)
    ops.max_pool2d_backward(dy, x, out=out, through_relu=through_relu, **args)
    expected = reference(ops.max_pool2d_backward, dy, x, through_relu=through_relu, **args)
    assert_close(out, expected, np.float32)


def test_backward_out_parameters_are_filled_and_returned(backend, dtype):
    x, args = make(CASES[-3], dtype)
    dy = np.ones(ops.max_pool2d(x, **args).shape, dtype)
    for backward in (ops.max_pool2d_backward, ops.avg_pool2d_backward):
        out = np.full_like(x, np.nan)
        assert backward(dy, x, out=out, **args) is out
        assert_close(out, reference(backward, dy, x, **args), dtype)
    with pytest.raises(ValueError, match="out must not overlap x"):
        ops.max_pool2d_backward(dy, x, out=x, **args)
