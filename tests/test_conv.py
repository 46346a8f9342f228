"""conv2d and conv2d_backward: every backend against the reference, finite differences, torch."""
import numpy as np
import pytest

import fastdl
from fastdl import ops
from fastdl.backends._workspace import Workspace

from support import ALL_BACKENDS, assert_close, numerical_gradient, reference


def random_case(seed):
    """A random convolution problem: odd sizes, non-square kernels, strides, dilation,
    every padding form. Resampled until the (dilated) kernel fits the padded input."""
    rng = np.random.default_rng(seed)
    while True:
        n, h, w = rng.integers(1, 4), rng.integers(1, 12), rng.integers(1, 12)
        c, f = rng.integers(1, 5), rng.integers(1, 6)
        kh, kw = rng.integers(1, 5), rng.integers(1, 5)
        strides = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
        padding = ["valid", "same", tuple(map(tuple, rng.integers(0, 3, (2, 2))))][rng.integers(0, 3)]
        pads = (0, 0, 0, 0) if padding == "valid" else (
            (99, 99, 99, 99) if padding == "same" else sum(padding, ()))
        if h + pads[0] + pads[1] >= (kh - 1) * dilation[0] + 1 and \
           w + pads[2] + pads[3] >= (kw - 1) * dilation[1] + 1:
            return dict(x_shape=(n, h, w, c), k_shape=(kh, kw, c, f), strides=strides,
                        padding=padding, dilation_rate=dilation)


CASES = [random_case(seed) for seed in range(40)] + [
    # the reference CNN's two layers, a pointwise kernel, batch 1 with one channel
    dict(x_shape=(4, 32, 32, 3), k_shape=(3, 3, 3, 32), strides=1, padding="valid", dilation_rate=1),
    dict(x_shape=(3, 15, 15, 32), k_shape=(3, 3, 32, 64), strides=1, padding="valid", dilation_rate=1),
    dict(x_shape=(2, 7, 5, 6), k_shape=(1, 1, 6, 4), strides=1, padding="valid", dilation_rate=1),
    dict(x_shape=(1, 9, 9, 1), k_shape=(5, 2, 1, 1), strides=(2, 3), padding="same", dilation_rate=1),
]


def make(case, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case["x_shape"]).astype(dtype)
    kernel = rng.standard_normal(case["k_shape"]).astype(dtype)
    bias = rng.standard_normal(case["k_shape"][3]).astype(dtype)
    geometry = {k: case[k] for k in ("strides", "padding", "dilation_rate")}
    return x, kernel, bias, geometry


@pytest.mark.parametrize("case", CASES)
def test_conv2d_matches_reference(backend, dtype, case):
    x, kernel, bias, geometry = make(case, dtype)
    y = ops.conv2d(x, kernel, bias, **geometry)
    expected = reference(ops.conv2d, x, kernel, bias, **geometry)
    scale = np.sqrt(np.prod(case["k_shape"][:3]))
    assert_close(y, expected, dtype, scale)

    dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    grads = ops.conv2d_backward(dy, x, kernel, **geometry)
    expected_grads = reference(ops.conv2d_backward, dy, x, kernel, **geometry)
    for got, want in zip(grads, expected_grads):
        assert_close(got, want, dtype, scale * np.sqrt(y.size))


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "softmax", "linear"])
@pytest.mark.parametrize("case", CASES[::5] + CASES[-4:])
def test_conv2d_with_a_fused_activation(backend, dtype, case, activation):
    """conv2d(..., activation=a) equals the activation applied to conv2d's output."""
    x, kernel, bias, geometry = make(case, dtype)
    y = ops.conv2d(x, kernel, bias, activation=activation, **geometry)
    with fastdl.use_backend("reference"):
        plain = ops.conv2d(x, kernel, bias, **geometry)
        expected = ops.activation(plain, activation)
    assert_close(y, expected, dtype, np.sqrt(np.prod(case["k_shape"][:3])))


def test_conv2d_rejects_an_unknown_activation(backend):
    with pytest.raises(ValueError, match="activation must be one of"):
        ops.conv2d(np.ones((1, 3, 3, 1)), np.ones((2, 2, 1, 1)), activation="gelu")


@pytest.mark.parametrize("backend_name", ALL_BACKENDS)
@pytest.mark.parametrize("case", [random_case(seed) for seed in (100, 101, 102, 103, 104, 105)])
def test_conv2d_gradients_match_finite_differences(backend_name, case):
    x, kernel, bias, geometry = make(case, np.float64, seed=7)
    with fastdl.use_backend(backend_name):
        dy = np.random.default_rng(3).standard_normal(ops.conv2d(x, kernel, **geometry).shape)

        def loss():
            return float((ops.conv2d(x, kernel, bias, **geometry) * dy).sum())

        dx, dkernel, dbias = ops.conv2d_backward(dy, x, kernel, **geometry)
        np.testing.assert_allclose(dx, numerical_gradient(loss, x), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(dkernel, numerical_gradient(loss, kernel), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(dbias, numerical_gradient(loss, bias), rtol=1e-6, atol=1e-7)


def torch_padding(x, kernel, geometry):
    """conv2d's padding as an explicit (top, bottom, left, right), for torch's F.pad."""
    from fastdl.ops._checks import int_pair, padding_spec
    from fastdl.ops._geometry import window

    g = window(x.shape, kernel.shape[:2], int_pair("s", geometry["strides"]),
               int_pair("d", geometry["dilation_rate"]), padding_spec(geometry["padding"]))
    return g.pt, g.pb, g.pl, g.pr


@pytest.mark.parametrize("case", CASES[::3])
def test_conv2d_matches_torch(backend, torch, case):
    x, kernel, bias, geometry = make(case, np.float64)
    top, bottom, left, right = torch_padding(x, kernel, geometry)
    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    tk = torch.tensor(kernel.transpose(3, 2, 0, 1), requires_grad=True)
    tb = torch.tensor(bias, requires_grad=True)
    padded = torch.nn.functional.pad(tx, (left, right, top, bottom))
    ty = torch.nn.functional.conv2d(padded, tk, tb, stride=geometry["strides"],
                                    dilation=geometry["dilation_rate"])
    y = ops.conv2d(x, kernel, bias, **geometry)
    np.testing.assert_allclose(y, ty.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-10)

    dy = np.random.default_rng(5).standard_normal(y.shape)
    ty.backward(torch.tensor(dy.transpose(0, 3, 1, 2)))
    dx, dkernel, dbias = ops.conv2d_backward(dy, x, kernel, **geometry)
    np.testing.assert_allclose(dx, tx.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dkernel, tk.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dbias, tb.grad.numpy(), rtol=1e-10, atol=1e-10)


def test_conv2d_same_padding_follows_keras(backend):
    # 'same' with stride 2 on an even size: output ceil(H/2), the odd pad at the bottom
    x = np.arange(1 * 6 * 6 * 1, dtype=np.float64).reshape(1, 6, 6, 1)
    kernel = np.zeros((3, 3, 1, 1))
    kernel[0, 0, 0, 0] = 1.0  # picks the window's top-left input
    y = ops.conv2d(x, kernel, strides=2, padding="same")
    assert y.shape == (1, 3, 3, 1)
    # total padding 1 per axis: 0 before, 1 after, so the top-left tap reads x[2i, 2j]
    np.testing.assert_array_equal(y[0, :, :, 0], x[0, ::2, ::2, 0])


def test_conv2d_steady_state_allocates_no_workspace(backend):
    x, kernel, bias, geometry = make(CASES[-4], np.float32)
    dy = np.ones(ops.conv2d(x, kernel, bias).shape, np.float32)
    ops.conv2d_backward(dy, x, kernel)
    before = Workspace.allocations
    for _ in range(3):
        ops.conv2d(x, kernel, bias)
        ops.conv2d_backward(dy, x, kernel)
    assert Workspace.allocations == before


def test_conv2d_accepts_strided_input_and_out(backend, dtype):
    x, kernel, bias, _ = make(CASES[-2], dtype)
    wide = np.repeat(x, 2, axis=2)[:, :, ::2, :]  # same values, not contiguous
    assert not wide.flags.c_contiguous
    out = np.empty((2, 7, 5, 4), dtype)
    result = ops.conv2d(wide, kernel, bias, out=out)
    assert result is out
    assert_close(out, reference(ops.conv2d, x, kernel, bias), dtype)


def test_conv2d_backward_without_dx(backend):
    x, kernel, _, geometry = make(CASES[-1], np.float64)
    dy = np.ones(ops.conv2d(x, kernel, **geometry).shape)
    dx, dkernel, dbias = ops.conv2d_backward(dy, x, kernel, need_dx=False, **geometry)
    assert dx is None
    np.testing.assert_allclose(dkernel, reference(ops.conv2d_backward, dy, x, kernel, **geometry)[1])


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_conv2d_blocks_do_not_change_results(backend, monkeypatch, threads):
    # a tiny block budget gives one output row (forward) or one image (backward) per
    # block, spread over 1 to 3 threads: results must not change
    from fastdl.backends import cython as cython_backend

    x, kernel, bias, geometry = make(dict(CASES[-4], x_shape=(5, 16, 16, 3)), np.float64)
    dy = np.random.default_rng(2).standard_normal(ops.conv2d(x, kernel, **geometry).shape)
    whole = ops.conv2d(x, kernel, bias, **geometry), ops.conv2d_backward(dy, x, kernel, **geometry)
    monkeypatch.setattr(cython_backend, "IM2COL_BLOCK_BYTES", 1)
    before = fastdl.get_num_threads()
    fastdl.set_num_threads(threads)
    try:
        chunked = ops.conv2d(x, kernel, bias, **geometry), ops.conv2d_backward(dy, x, kernel, **geometry)
    finally:
        fastdl.set_num_threads(before)
    np.testing.assert_allclose(chunked[0], whole[0], rtol=1e-12)
    for a, b in zip(chunked[1], whole[1]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_conv2d_backward_writes_dx_out(backend, dtype):
    x, kernel, _, geometry = make(CASES[-1], dtype)
    dy = np.ones(ops.conv2d(x, kernel, **geometry).shape, dtype)
    out = np.full_like(x, np.nan)
    dx, _, _ = ops.conv2d_backward(dy, x, kernel, dx_out=out, **geometry)
    assert dx is out
    assert_close(out, reference(ops.conv2d_backward, dy, x, kernel, **geometry)[0], dtype, 10)
    with pytest.raises(ValueError, match=r"dx_out must have shape"):
        ops.conv2d_backward(dy, x, kernel, dx_out=np.zeros((1, 2, 3, 4), dtype), **geometry)


def winograd_case(seed):
    """A float32 3x3 stride-1 convolution with channels enough for the Cython backend's
    Winograd F(2x2, 3x3) path (WINOGRAD_MIN_CHANNELS/FILTERS in fastdl.backends.cython):
    odd and tiny images, every padding form (explicit padding up to 3, wider than the
    kernel's reach)."""
    rng = np.random.default_rng(1000 + seed)
    while True:
        n, h, w = rng.integers(1, 4), rng.integers(1, 12), rng.integers(1, 12)
        c, f = rng.integers(16, 24), rng.integers(8, 20)
        padding = ["valid", "same", tuple(map(tuple, rng.integers(0, 4, (2, 2))))][rng.integers(0, 3)]
        pads = (1, 1, 1, 1) if padding == "same" else (0, 0, 0, 0) if padding == "valid" else sum(padding, ())
        if h + pads[0] + pads[1] >= 3 and w + pads[2] + pads[3] >= 3:
            return dict(x_shape=(n, h, w, c), k_shape=(3, 3, c, f), strides=1, padding=padding,
                        dilation_rate=1)


WINOGRAD_CASES = [winograd_case(seed) for seed in range(24)] + [CASES[-3]]


_WINOGRAD_KERNEL = ("winograd_u", np.dtype(np.float32))  # the workspace only Winograd uses


def _workspace_buffers():
    from fastdl.backends import cython as cython_backend

    return cython_backend.workspace._buffers


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("case", WINOGRAD_CASES)
def test_winograd_convolutions_match_the_reference(backend, case, activation):
    x, kernel, bias, geometry = make(case, np.float32)
    scale = np.sqrt(np.prod(case["k_shape"][:3]))
    _workspace_buffers().pop(_WINOGRAD_KERNEL, None)
    y = ops.conv2d(x, kernel, bias, activation=activation, **geometry)
    from fastdl.backends import cython as cython_backend

    used = backend == "cython" and cython_backend._WINOGRAD_AVAILABLE  # AVX-512 CPUs
    assert (_WINOGRAD_KERNEL in _workspace_buffers()) == used
    assert_close(y, reference(ops.conv2d, x, kernel, bias, activation=activation, **geometry),
                 np.float32, scale)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    dx_out = np.full_like(x, np.nan)
    grads = ops.conv2d_backward(dy, x, kernel, dx_out=dx_out, **geometry)
    expected = reference(ops.conv2d_backward, dy, x, kernel, **geometry)
    for got, want in zip(grads, expected):
        assert_close(got, want, np.float32, scale * np.sqrt(y.shape[0] * y.shape[1] * y.shape[2]))
    _, dkernel, dbias = ops.conv2d_backward(dy, x, kernel, need_dx=False, **geometry)
    np.testing.assert_array_equal(dkernel, grads[1])
    np.testing.assert_array_equal(dbias, grads[2])
    if y.shape[1] >= 2 and y.shape[2] >= 2:
        conv_out = np.full(y.shape, np.nan, np.float32)
        pooled = ops.conv2d_max_pool(x, kernel, bias, activation=activation, conv_out=conv_out, **geometry)
        assert_close(conv_out, y, np.float32, scale)
        assert_close(pooled, reference(ops.max_pool2d, y, 2), np.float32, scale)


@pytest.mark.parametrize("threads", [1, 3])
def test_winograd_blocks_do_not_change_results(backend, monkeypatch, threads):
    """Blocks of two output rows that straddle images of odd height, on 1 and 3 threads."""
    from fastdl.backends import cython as cython_backend

    case = dict(WINOGRAD_CASES[0], x_shape=(3, 9, 8, 16), k_shape=(3, 3, 16, 9), padding="valid")
    x, kernel, bias, geometry = make(case, np.float32)
    dy = np.random.default_rng(2).standard_normal((3, 7, 6, 9)).astype(np.float32)
    whole = ops.conv2d(x, kernel, bias, **geometry), *ops.conv2d_backward(dy, x, kernel, **geometry)
    monkeypatch.setattr(cython_backend, "IM2COL_BLOCK_BYTES", 1)
    before = fastdl.get_num_threads()
    fastdl.set_num_threads(threads)
    try:
        chunked = ops.conv2d(x, kernel, bias, **geometry), *ops.conv2d_backward(dy, x, kernel, **geometry)
    finally:
        fastdl.set_num_threads(before)
    for a, b in zip(chunked, whole):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


POOLED_CASES = [
    # (x shape, kernel shape, conv geometry, pool size): odd conv outputs leave rows and
    # columns no window uses; batch 1; non-square pools; a pointwise kernel
    ((4, 32, 32, 3), (3, 3, 3, 8), dict(), 2),
    ((3, 15, 15, 5), (3, 3, 5, 6), dict(), 2),
    ((1, 9, 11, 2), (2, 3, 2, 3), dict(strides=(1, 2), padding="same"), (3, 2)),
    ((2, 7, 6, 4), (1, 1, 4, 5), dict(), (2, 3)),
    ((2, 8, 8, 3), (3, 3, 3, 4), dict(padding="same", dilation_rate=2), 1),
]


@pytest.mark.parametrize("activation", ["relu", None, "tanh"])
@pytest.mark.parametrize("case", POOLED_CASES)
def test_conv2d_max_pool_is_max_pool_of_conv2d(backend, dtype, case, activation):
    x_shape, k_shape, geometry, pool = case
    rng = np.random.default_rng(7)
    x = rng.standard_normal(x_shape).astype(dtype)
    kernel = rng.standard_normal(k_shape).astype(dtype)
    bias = rng.standard_normal(k_shape[3]).astype(dtype)
    with fastdl.use_backend("reference"):
        conv = ops.conv2d(x, kernel, bias, activation=activation, **geometry)
        expected = ops.max_pool2d(conv, pool)
    scale = np.sqrt(np.prod(k_shape[:3]))
    assert_close(ops.conv2d_max_pool(x, kernel, bias, activation=activation, pool_size=pool, **geometry),
                 expected, dtype, scale)
    conv_out = np.full(conv.shape, np.nan, dtype)
    pooled = ops.conv2d_max_pool(x, kernel, None if activation else bias, activation=activation,
                                 pool_size=pool, conv_out=conv_out, **geometry)
    with fastdl.use_backend("reference"):
        conv_nb = ops.conv2d(x, kernel, None if activation else bias, activation=activation, **geometry)
    assert_close(conv_out, conv_nb, dtype, scale)  # every conv row, used by a window or not
    assert_close(pooled, ops.max_pool2d(conv_nb, pool), dtype, scale)


@pytest.mark.parametrize("activation", ["relu", None, "tanh"])
@pytest.mark.parametrize("case", POOLED_CASES)
def test_conv2d_max_pool_argmax_takes_the_pooling_and_relu_gradient(backend, dtype, case, activation):
    """argmax_out: the positions max_pool2d finds in the convolution's own output, and
    after a ReLU ARGMAX_NONE where the maximum is 0; the backward from it is the pooling's
    gradient taken through the ReLU, without conv_out."""
    x_shape, k_shape, geometry, pool = case
    rng = np.random.default_rng(9)
    x = rng.standard_normal(x_shape).astype(dtype)
    kernel = rng.standard_normal(k_shape).astype(dtype)
    bias = (rng.standard_normal(k_shape[3]) - 0.5).astype(dtype)  # some windows all below 0
    conv_out = np.empty(ops.conv2d(x, kernel, **geometry).shape, dtype)
    pooled_shape = ops.max_pool2d(conv_out, pool).shape
    argmax = np.full(pooled_shape, 77, np.uint8)
    pooled = ops.conv2d_max_pool(x, kernel, bias, activation=activation, pool_size=pool, conv_out=conv_out,
                                 argmax_out=argmax, **geometry)
    expected = np.empty(pooled_shape, np.uint8)
    np.testing.assert_array_equal(reference(ops.max_pool2d, conv_out, pool, argmax_out=expected), pooled)
    if activation == "relu":
        assert (pooled == 0).any()
        expected[pooled <= 0] = ops.ARGMAX_NONE
    np.testing.assert_array_equal(argmax, expected)
    unkept = np.empty_like(argmax)
    ops.conv2d_max_pool(x, kernel, bias, activation=activation, pool_size=pool, argmax_out=unkept, **geometry)
    np.testing.assert_array_equal(unkept, argmax)
    dy = rng.standard_normal(pooled_shape).astype(dtype)
    got = ops.max_pool2d_backward(dy, conv_out.shape, pool, argmax=argmax)
    want = reference(ops.max_pool2d_backward, dy, conv_out, pool, through_relu=activation == "relu")
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("threads", [1, 3])
def test_conv2d_max_pool_blocks_do_not_change_results(backend, monkeypatch, threads):
    """One pooled row per block (and the image's last block taking the unused row)."""
    from fastdl.backends import cython as cython_backend

    rng = np.random.default_rng(8)
    x, kernel = rng.standard_normal((3, 13, 12, 3)), rng.standard_normal((2, 2, 3, 4))
    whole = ops.conv2d_max_pool(x, kernel, activation="relu", conv_out=np.empty((3, 12, 11, 4)))
    monkeypatch.setattr(cython_backend, "IM2COL_BLOCK_BYTES", 1)
    before = fastdl.get_num_threads()
    fastdl.set_num_threads(threads)
    try:
        conv_out = np.empty((3, 12, 11, 4))
        chunked = ops.conv2d_max_pool(x, kernel, activation="relu", conv_out=conv_out)
        unkept = ops.conv2d_max_pool(x, kernel, activation="relu")
    finally:
        fastdl.set_num_threads(before)
    np.testing.assert_array_equal(chunked, whole)
    np.testing.assert_array_equal(unkept, whole)
    np.testing.assert_allclose(conv_out, ops.conv2d(x, kernel, activation="relu"), rtol=1e-12)


def test_conv2d_max_pool_checks_its_arguments(backend):
    x, kernel = np.ones((2, 5, 5, 1)), np.ones((3, 3, 1, 2))
    with pytest.raises(ValueError, match=r"pool_size \(4, 4\) is larger than the convolution's output"):
        ops.conv2d_max_pool(x, kernel, pool_size=4)
    with pytest.raises(ValueError, match=r"conv_out must have shape \(2, 3, 3, 2\)"):
        ops.conv2d_max_pool(x, kernel, conv_out=np.empty((2, 3, 3, 1)))
    conv_out = np.empty((2, 3, 3, 2))
    with pytest.raises(ValueError, match="out must not overlap conv_out"):
        ops.conv2d_max_pool(x, kernel, conv_out=conv_out, out=conv_out.reshape(-1)[:4].reshape(2, 1, 1, 2))
