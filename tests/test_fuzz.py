"""Property-based tests (hypothesis): every CPU backend against the reference on drawn
geometries (batch 1-5, odd and tiny sizes, windows as large as the input, strides and
dilations up to 4, every padding form, both dtypes, non-contiguous and negative-stride
views, out= arrays), and drawn invalid arguments, which must raise ValueError or
TypeError (a crash ends the run; the backend fixture's guard pages make stray reads
crash). The invalid arguments run in a child process (test_invalid_arguments_never_crash),
so a crash there is a failure here. Examples per test: the hypothesis profile's
(tests/conftest.py: 'ci' by default, derandomized; --hypothesis-profile=long for deeper
runs)."""
import copy
import os
import subprocess
import sys

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis") if not os.environ.get("CI") else __import__("hypothesis")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastdl  # noqa: E402
from fastdl import ops  # noqa: E402
from fastdl.backends import _spec  # noqa: E402
from fastdl.ops._checks import ACTIVATIONS  # noqa: E402

from support import assert_close, reference  # noqa: E402

fuzz = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                                      HealthCheck.filter_too_much])
CHILD = os.environ.get("FASTDL_FUZZ_CHILD") == "1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DTYPES = st.sampled_from([np.float32, np.float64])
LAYOUTS = st.sampled_from(["contiguous", "strided", "reversed"])


def view(a, layout):
    """a itself, or the same values as a non-contiguous or negative-stride view."""
    if layout == "strided":  # every other element of a twice-as-large array along the last axis
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if layout == "reversed" and a.ndim >= 2:
        return np.ascontiguousarray(a[:, ::-1])[:, ::-1]
    return a


def normal(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def check_against_reference(fn, args, kwargs, dtype, scale=1.0):
    got = fn(*copy.deepcopy(args), **copy.deepcopy(kwargs))
    want = reference(fn, *copy.deepcopy(args), **copy.deepcopy(kwargs))
    got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
    for g, w in zip(got, want):
        if w is None:
            assert g is None
        else:
            assert_close(np.asarray(g), np.asarray(w), dtype, scale)
    return got


def span(k, d):
    return d * (k - 1) + 1


@st.composite
def window_geometry(draw, max_size=11):
    """(x shape, window, strides, dilation, padding) of a valid 2-D window."""
    n, c = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dh, dw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    padding = draw(st.one_of(st.sampled_from(["valid", "same"]),
                             st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)),
                                       st.tuples(st.integers(0, 3), st.integers(0, 3)))))
    extra = (0, 0) if padding in ("valid", "same") else (sum(padding[0]), sum(padding[1]))
    # the input at least as large as the window (padding included); often exactly as large
    low_h = max(1, span(kh, dh) - extra[0]) if padding != "same" else 1
    low_w = max(1, span(kw, dw) - extra[1]) if padding != "same" else 1
    h = draw(st.integers(low_h, max(low_h, max_size)))
    w = draw(st.integers(low_w, max(low_w, max_size)))
    return (n, h, w, c), (kh, kw), (sh, sw), (dh, dw), padding


@pytest.mark.parametrize("direction", ["forward", "backward"])
@fuzz
@given(geometry=window_geometry(), filters=st.integers(1, 5), activation=st.sampled_from(ACTIVATIONS),
       dtype=DTYPES, layout=LAYOUTS, with_bias=st.booleans(), use_out=st.booleans(), seed=st.integers(0, 2**16))
def test_conv2d(backend, direction, geometry, filters, activation, dtype, layout, with_bias, use_out, seed):
    shape, window, strides, dilation, padding = geometry
    rng = np.random.default_rng(seed)
    x = view(normal(rng, shape, dtype), layout)
    kernel = view(normal(rng, window + (shape[3], filters), dtype), layout)
    bias = normal(rng, (filters,), dtype) if with_bias else None
    geo = dict(strides=strides, padding=padding, dilation_rate=dilation)
    if direction == "forward":
        want = reference(ops.conv2d, x, kernel, bias, activation=activation, **geo)
        out = np.full(want.shape, np.nan, dtype) if use_out else None
        got = ops.conv2d(x, kernel, bias, activation=activation, out=out, **geo)
        assert got is out or not use_out
        assert_close(got, want, dtype, scale=shape[3] * window[0] * window[1])
    else:
        y = reference(ops.conv2d, x, kernel, **geo)
        dy = view(normal(rng, y.shape, dtype), layout)
        check_against_reference(ops.conv2d_backward, (dy, x, kernel), dict(need_dx=not use_out, **geo), dtype,
                                scale=max(y.shape[0] * y.shape[1] * y.shape[2], filters * window[0] * window[1]))


@fuzz
@given(geometry=window_geometry(), filters=st.integers(1, 4), pool=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       activation=st.sampled_from([None, "relu", "tanh"]), dtype=DTYPES, layout=LAYOUTS, seed=st.integers(0, 2**16))
def test_conv2d_max_pool(backend, geometry, filters, pool, activation, dtype, layout, seed):
    shape, window, strides, dilation, padding = geometry
    rng = np.random.default_rng(seed)
    x = view(normal(rng, shape, dtype), layout)
    kernel = normal(rng, window + (shape[3], filters), dtype)
    geo = dict(strides=strides, padding=padding, dilation_rate=dilation)
    conv = reference(ops.conv2d, x, kernel, **geo)
    assume(conv.shape[1] >= pool[0] and conv.shape[2] >= pool[1])
    pooled_shape = (conv.shape[0], conv.shape[1] // pool[0], conv.shape[2] // pool[1], filters)
    argmax = np.zeros(pooled_shape, np.uint8)
    check_against_reference(ops.conv2d_max_pool, (x, kernel, normal(rng, (filters,), dtype)),
                            dict(activation=activation, pool_size=pool, argmax_out=argmax, **geo), dtype,
                            scale=shape[3] * window[0] * window[1])


@st.composite
def pool_geometry(draw):
    n, c = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    ph, pw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    strides = draw(st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(1, 4))))
    padding = draw(st.sampled_from(["valid", "same"]))
    h = draw(st.integers(ph if padding == "valid" else 1, 10))
    w = draw(st.integers(pw if padding == "valid" else 1, 10))
    return (n, h, w, c), (ph, pw), strides, padding


@pytest.mark.parametrize("kind", ["max", "avg"])
@fuzz
@given(geometry=pool_geometry(), dtype=DTYPES, layout=LAYOUTS, seed=st.integers(0, 2**16), ties=st.booleans())
def test_pooling_forward_and_backward(backend, kind, geometry, dtype, layout, seed, ties):
    shape, pool, strides, padding = geometry
    rng = np.random.default_rng(seed)
    x = normal(rng, shape, dtype)
    if ties:  # equal values in a window: the first maximum takes the gradient
        x = np.round(x).astype(dtype)
    x = view(x, layout)
    forward, backward = (ops.max_pool2d, ops.max_pool2d_backward) if kind == "max" else (
        ops.avg_pool2d, ops.avg_pool2d_backward)
    y = check_against_reference(forward, (x, pool, strides, padding), {}, dtype)[0]
    dy = view(normal(rng, y.shape, dtype), layout)
    check_against_reference(backward, (dy, x, pool, strides, padding), {}, dtype, scale=pool[0] * pool[1])


@fuzz
@given(n=st.integers(1, 5), features=st.integers(1, 40), units=st.integers(1, 40),
       activation=st.sampled_from(ACTIVATIONS), dtype=DTYPES, layout=LAYOUTS, with_bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_dense_forward_and_backward(backend, n, features, units, activation, dtype, layout, with_bias, seed):
    rng = np.random.default_rng(seed)
    x = view(normal(rng, (n, features), dtype), layout)
    kernel = view(normal(rng, (features, units), dtype), layout)
    bias = normal(rng, (units,), dtype) if with_bias else None
    y = check_against_reference(ops.dense, (x, kernel, bias, activation), {}, dtype, scale=features)[0]
    dy = normal(rng, y.shape, dtype)
    check_against_reference(ops.dense_backward, (dy, x, kernel),
                            dict(activation=activation, output=np.asarray(y), has_bias=with_bias), dtype,
                            scale=max(n, units))


@fuzz
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple),
       name=st.sampled_from([a for a in ACTIVATIONS if a]), dtype=DTYPES, layout=LAYOUTS,
       seed=st.integers(0, 2**16), scale=st.sampled_from([1.0, 30.0]))
def test_activations_forward_and_backward(backend, shape, name, dtype, layout, seed, scale):
    rng = np.random.default_rng(seed)
    x = view(normal(rng, shape, dtype) * dtype(scale), layout)
    y = check_against_reference(ops.activation, (x, name), {}, dtype)[0]
    dy = view(normal(rng, shape, dtype), layout)
    check_against_reference(ops.activation_backward, (dy, np.asarray(y), name), {}, dtype)
    b = view(normal(rng, shape, dtype), layout)
    check_against_reference(ops.add, (x, b), {}, dtype)
    check_against_reference(ops.multiply, (x, b), {}, dtype)


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad", "rmsprop", "adam"])
@fuzz
@given(size=st.integers(1, 3000), dtype=DTYPES, lr=st.floats(1e-5, 1.0), momentum=st.sampled_from([0.0, 0.5, 0.9]),
       weight_decay=st.sampled_from([0.0, 1e-3]), flag=st.booleans(), step=st.integers(1, 50),
       seed=st.integers(0, 2**16))
def test_optimizer_updates(backend, optimizer, size, dtype, lr, momentum, weight_decay, flag, step, seed):
    rng = np.random.default_rng(seed)
    p, g = normal(rng, size, dtype), normal(rng, size, dtype)
    if optimizer == "sgd":
        velocity = normal(rng, size, dtype) if momentum else None
        args, kwargs = (p, g), dict(lr=lr, momentum=momentum, velocity=velocity, nesterov=flag and momentum > 0,
                                    weight_decay=weight_decay)
    elif optimizer == "adagrad":
        args, kwargs = (p, g, np.abs(normal(rng, size, dtype))), dict(lr=lr, step=step, weight_decay=weight_decay)
    elif optimizer == "rmsprop":
        kwargs = dict(lr=lr, momentum=momentum, centered=flag, weight_decay=weight_decay)
        if momentum:
            kwargs["momentum_buffer"] = normal(rng, size, dtype)
        if flag:
            kwargs["grad_avg"] = normal(rng, size, dtype) * dtype(0.1)
        args = (p, g, np.abs(normal(rng, size, dtype)) + dtype(1.0))
    else:
        args = (p, g, normal(rng, size, dtype), np.abs(normal(rng, size, dtype)))
        kwargs = dict(step=step, lr=lr, amsgrad=flag, weight_decay=weight_decay,
                      v_max=np.abs(normal(rng, size, dtype)) if flag else None)
    check_against_reference(getattr(ops, f"{optimizer}_update"), args, kwargs, dtype)


@fuzz
@given(n=st.integers(1, 5), h=st.integers(1, 12), w=st.integers(1, 12), c=st.sampled_from([1, 2, 3, 4]),
       dtype=st.sampled_from([np.uint8, np.float32, np.float64]), batch=st.integers(0, 6),
       mode=st.sampled_from(["nearest", "constant", "reflect", "wrap"]), reach=st.sampled_from([1.0, 5.0, 1e6]),
       seed=st.integers(0, 2**16))
def test_affine_transform_batch(backend, n, h, w, c, dtype, batch, mode, reach, seed):
    rng = np.random.default_rng(seed)
    images = (rng.random((n, h, w, c)) * 255).astype(dtype)
    indices = rng.integers(0, n, batch)
    matrices = rng.standard_normal((batch, 2, 3)) * np.array([1.0, 1.0, reach])
    check_against_reference(ops.affine_transform_batch, (images, indices, matrices),
                            dict(fill_mode=mode, cval=3.0, scale=0.5), np.float32, scale=255)


@fuzz
@given(m=st.integers(1, 40), k=st.integers(1, 40), n=st.integers(1, 40), transposed=st.tuples(st.booleans(),
       st.booleans()), dtype=DTYPES, seed=st.integers(0, 2**16))
def test_matmul_of_plain_and_transposed_operands(backend, m, k, n, transposed, dtype, seed):
    rng = np.random.default_rng(seed)
    a = normal(rng, (k, m), dtype).T if transposed[0] else normal(rng, (m, k), dtype)  # a BLAS-transposed view
    b = normal(rng, (n, k), dtype).T if transposed[1] else normal(rng, (k, n), dtype)
    check_against_reference(ops.matmul, (a, b), {}, dtype, scale=k)


@fuzz
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple), dtype=DTYPES, layout=LAYOUTS,
       seed=st.integers(0, 2**16), scale=st.sampled_from([1.0, 50.0]))
def test_relu_and_softmax(backend, shape, dtype, layout, seed, scale):
    rng = np.random.default_rng(seed)
    x = view(normal(rng, shape, dtype) * dtype(scale), layout)
    check_against_reference(ops.relu, (x,), {}, dtype)
    check_against_reference(ops.relu_backward, (view(normal(rng, shape, dtype), layout), x), {}, dtype)
    check_against_reference(ops.softmax, (x,), {}, dtype)
    if x.ndim > 1:
        check_against_reference(ops.softmax, (x,), dict(axis=0), dtype)


@fuzz
@given(n=st.integers(1, 6), classes=st.integers(1, 12), from_logits=st.booleans(), dtype=DTYPES,
       seed=st.integers(0, 2**16))
def test_sparse_crossentropy_and_its_gradient(backend, n, classes, from_logits, dtype, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    outputs = normal(rng, (n, classes), dtype) * 3 if from_logits else rng.uniform(0.01, 1, (n, classes)).astype(dtype)
    check_against_reference(ops.sparse_categorical_crossentropy, (labels, outputs, from_logits), {}, dtype)
    check_against_reference(ops.sparse_categorical_crossentropy_backward, (labels, outputs, from_logits), {}, dtype)


@fuzz
@given(name=st.sampled_from(list(_spec.LOSSES)), shape=st.sampled_from([(5, 3), (1, 4), (2, 3, 4), (6,), (3, 1)]),
       dtype=DTYPES, seed=st.integers(0, 2**16))
def test_every_loss_and_its_gradient(backend, name, shape, dtype, seed):
    from optable import _loss_sample

    y, p, kwargs = _loss_sample(np.random.default_rng(seed), name, shape)
    y, p = y.astype(dtype), p.astype(dtype)
    check_against_reference(ops.loss, (name, y, p), kwargs, dtype, scale=3)
    check_against_reference(ops.loss_backward, (name, y, p), kwargs, dtype, scale=3)


@fuzz
@given(shape=st.lists(st.integers(1, 7), min_size=2, max_size=4).map(tuple), dtype=DTYPES, layout=LAYOUTS,
       offset=st.sampled_from([0.0, 100.0]), affine=st.booleans(), epsilon=st.sampled_from([1e-5, 1e-3, 0.5]),
       seed=st.integers(0, 2**16))
def test_batch_norm_ops(backend, shape, dtype, layout, offset, affine, epsilon, seed):
    rng = np.random.default_rng(seed)
    x = view((normal(rng, shape, np.float64) + offset).astype(dtype), layout)
    c = shape[-1]
    mean, var = check_against_reference(ops.batch_norm_stats, (x,), {}, dtype, scale=1 + offset)
    mean, var = np.asarray(mean), np.asarray(var)
    gamma, beta = (normal(rng, c, dtype), normal(rng, c, dtype)) if affine else (None, None)
    check_against_reference(ops.batch_norm, (x, mean, var, gamma, beta), dict(epsilon=epsilon), dtype,
                            scale=1 + offset)
    dy = view(normal(rng, shape, dtype), layout)
    check_against_reference(ops.batch_norm_backward, (dy, x, mean, var, gamma), dict(epsilon=epsilon), dtype,
                            scale=(1 + offset) * np.prod(shape))


GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}


@fuzz
@given(cell=st.sampled_from(sorted(GATES)), steps=st.integers(1, 6), batch=st.integers(1, 5), units=st.integers(1, 7),
       activation=st.sampled_from(["tanh", "relu", "sigmoid", "linear"]),
       recurrent_activation=st.sampled_from(["sigmoid", "tanh", "linear"]), dtype=DTYPES, layout=LAYOUTS,
       states=st.booleans(), masked=st.booleans(), bias=st.booleans(), sequence_gradient=st.booleans(),
       seed=st.integers(0, 2**16))
def test_recurrent_cells_forward_and_backward(backend, cell, steps, batch, units, activation, recurrent_activation,
                                              dtype, layout, states, masked, bias, sequence_gradient, seed):
    rng = np.random.default_rng(seed)
    width = GATES[cell] * units
    xp = view(normal(rng, (steps, batch, width), dtype), layout)
    u = (normal(rng, (units, width), np.float64) / np.sqrt(units)).astype(dtype)
    kwargs = dict(activation=activation, recurrent_activation=recurrent_activation)
    if states:
        kwargs["h0"] = normal(rng, (batch, units), dtype)
        if cell == "lstm":
            kwargs["c0"] = normal(rng, (batch, units), dtype)
    if bias:
        kwargs["bias"] = normal(rng, width, dtype)
        if cell == "gru":
            kwargs["recurrent_bias"] = normal(rng, width, dtype)
    if masked:
        kwargs["mask"] = rng.random((steps, batch)) < 0.6
    h, c, gates = check_against_reference(ops.recurrent, (cell, xp, u), kwargs, dtype, scale=3 * steps)
    back = {k: kwargs[k] for k in ("mask", "activation", "recurrent_activation") if k in kwargs}
    back["dh_last"] = normal(rng, (batch, units), dtype)
    dh_seq = view(normal(rng, (steps, batch, units), dtype), layout) if sequence_gradient else None
    with fastdl.use_backend("reference"):  # the reference's own states: both backwards read the same
        h, c, gates = ops.recurrent(cell, xp, u, **kwargs)
    check_against_reference(ops.recurrent_backward, (cell, dh_seq, u, h, c, gates), back, dtype,
                            scale=10 * steps * (units + 1))


@fuzz
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple), rows=st.integers(1, 9),
       dim=st.integers(1, 40), dtype=DTYPES, index_dtype=st.sampled_from([np.int64, np.int32, np.uint8, np.float32]),
       seed=st.integers(0, 2**16))
def test_embedding_lookup_and_its_scatter_add(backend, shape, rows, dim, dtype, index_dtype, seed):
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, rows, shape).astype(index_dtype)  # few rows: repeated indices
    table = normal(rng, (rows, dim), dtype)
    check_against_reference(ops.embedding, (indices, table), {}, dtype)
    check_against_reference(ops.embedding_backward, (indices, normal(rng, shape + (dim,), dtype), rows), {}, dtype,
                            scale=np.prod(shape))


@fuzz
@given(n=st.integers(1, 3), h=st.integers(1, 7), w=st.integers(1, 7), c=st.integers(1, 5),
       margins=st.tuples(*[st.integers(0, 3)] * 4), size=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       dtype=DTYPES, layout=LAYOUTS, seed=st.integers(0, 2**16))
def test_padding_cropping_and_upsampling(backend, n, h, w, c, margins, size, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    x = view(normal(rng, (n, h, w, c), dtype), layout)
    top, bottom, left, right = margins
    padding = ((top, bottom), (left, right))
    padded = check_against_reference(ops.pad2d, (x, padding), {}, dtype)[0]
    check_against_reference(ops.crop2d, (np.asarray(padded), padding), {}, dtype)
    if top + bottom < h and left + right < w:
        check_against_reference(ops.crop2d, (x, padding), {}, dtype)
    up = check_against_reference(ops.upsample2d, (x, size), {}, dtype)[0]
    check_against_reference(ops.upsample2d_backward, (view(np.asarray(up), layout), size), {}, dtype,
                            scale=size[0] * size[1])


@fuzz
@given(shape=st.lists(st.integers(1, 7), min_size=2, max_size=4).map(tuple), dtype=DTYPES, layout=LAYOUTS,
       offset=st.sampled_from([0.0, 100.0]), affine=st.booleans(), epsilon=st.sampled_from([1e-5, 1e-3, 0.5]),
       seed=st.integers(0, 2**16))
def test_layer_norm_and_its_backward(backend, shape, dtype, layout, offset, affine, epsilon, seed):
    rng = np.random.default_rng(seed)
    x = view((normal(rng, shape, np.float64) + offset).astype(dtype), layout)
    c = shape[-1]
    gamma, beta = (normal(rng, c, dtype), normal(rng, c, dtype)) if affine else (None, None)
    _, mean, rstd = check_against_reference(ops.layer_norm, (x, gamma, beta, epsilon), dict(return_statistics=True),
                                            dtype, scale=1 + offset)
    with fastdl.use_backend("reference"):  # the reference's statistics: both backwards read the same
        _, mean, rstd = ops.layer_norm(x, gamma, beta, epsilon, return_statistics=True)
    dy = view(normal(rng, shape, dtype), layout)
    check_against_reference(ops.layer_norm_backward, (dy, x, mean, rstd, gamma), {}, dtype,
                            scale=(1 + offset) * np.prod(shape) / epsilon ** 0.5)


@fuzz
@given(geometry=window_geometry(), multiplier=st.integers(1, 3), dtype=DTYPES, layout=LAYOUTS,
       with_bias=st.booleans(), seed=st.integers(0, 2**16))
def test_depthwise_conv2d_forward_and_backward(backend, geometry, multiplier, dtype, layout, with_bias, seed):
    shape, size, strides, dilation, padding = geometry
    rng = np.random.default_rng(seed)
    x = view(normal(rng, shape, dtype), layout)
    kernel = normal(rng, size + (shape[3], multiplier), dtype)
    bias = normal(rng, shape[3] * multiplier, dtype) if with_bias else None
    kwargs = dict(strides=strides, padding=padding, dilation_rate=dilation)
    y = check_against_reference(ops.depthwise_conv2d, (x, kernel, bias), kwargs, dtype, scale=size[0] * size[1])[0]
    dy = view(normal(rng, np.shape(y), dtype), layout)
    check_against_reference(ops.depthwise_conv2d_backward, (dy, x, kernel), kwargs, dtype,
                            scale=np.prod(np.shape(y)[:3]) * size[0] * size[1])


# -- invalid arguments: drawn, refused with an error naming the argument -----------------
# They run in a child process: a crash (a kernel reached with what it cannot take) ends
# the child, and the test below reports it.

in_child = pytest.mark.skipif(not CHILD, reason="runs in the child process of test_invalid_arguments_never_crash")
CHILD_TESTS = "refuse or pass_nothing"  # the names of the in_child tests


def test_invalid_arguments_never_crash(request):
    if CHILD:
        pytest.skip("the child runs the refusal tests themselves")
    profile = request.config.getoption("hypothesis_profile", None) or "ci"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", CHILD_TESTS,
                           f"--hypothesis-profile={profile}", os.path.abspath(__file__)],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "FASTDL_FUZZ_CHILD": "1"})
    assert proc.returncode == 0, (f"the child process ended with {proc.returncode} "
                                  f"(negative: killed by that signal):\n{proc.stdout[-6000:]}{proc.stderr[-3000:]}")
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1], proc.stdout[-2000:]


def _bad_array(draw, good, alone=False):
    """good with one thing wrong: its rank, dtype (int, bool, float16, object, or the
    other float where another array sets the dtype), an empty axis."""
    kinds = ["rank", "int", "bool", "float16", "object", "empty"] + ([] if alone else ["other-dtype"])
    kind = draw(st.sampled_from(kinds))
    if kind == "rank":
        return good.reshape(good.shape + (1,)) if draw(st.booleans()) or good.ndim == 1 else good.reshape(-1)
    if kind == "empty":
        return np.zeros((0,) + good.shape[1:], good.dtype)
    if kind == "other-dtype":
        return good.astype(np.float64 if good.dtype == np.float32 else np.float32)
    return good.astype({"int": np.int64, "bool": bool, "float16": np.float16, "object": object}[kind])


BAD_SCALARS = st.sampled_from([float("nan"), float("inf"), -1.0, 0, -3, True, "2", None, 2.5, (1, 2, 3), 10**12])
# the names a message may give an argument that is wrong only by its dtype next to others
DTYPE_WORDS = "|arrays must share one dtype"


def _raises_naming(name, fn, *args, **kwargs):
    with pytest.raises((ValueError, TypeError), match=f"{name}{DTYPE_WORDS}"):
        fn(*args, **kwargs)


@in_child
@fuzz
@given(data=st.data(), which=st.sampled_from(["x", "kernel", "bias", "strides", "padding", "dilation_rate",
                                              "activation", "out"]))
def test_conv2d_refuses_bad_arguments(backend, data, which):
    rng = np.random.default_rng(0)
    args = dict(x=normal(rng, (2, 6, 5, 3), np.float32), kernel=normal(rng, (3, 2, 3, 4), np.float32),
                bias=normal(rng, (4,), np.float32))
    kwargs = dict(strides=1, padding="valid", dilation_rate=1, activation=None, out=None)
    if which in args:
        args[which] = _bad_array(data.draw, args[which])
    elif which == "out":
        x = args["x"]
        kwargs["out"] = data.draw(st.sampled_from([
            np.zeros((2, 4, 4, 5), np.float32), np.zeros((2, 4, 4, 4)), np.zeros((2, 4, 8, 4), np.float32)[:, :, ::2],
            [[0.0]], _read_only(np.zeros((2, 4, 4, 4), np.float32)),
            x.reshape(-1)[:128].reshape(2, 4, 4, 4)]))  # aliasing x
    elif which == "padding":
        kwargs["padding"] = data.draw(st.sampled_from(["full", "SAME ", ((1,), (1, 1)), ((-1, 0), (0, 0)), 3]))
    elif which == "activation":
        kwargs["activation"] = data.draw(st.sampled_from(["gelu", 3, "RELU"]))
    else:
        kwargs[which] = data.draw(BAD_SCALARS)
    _raises_naming(which, ops.conv2d, args["x"], args["kernel"], args["bias"], **kwargs)


def _read_only(a):
    a.flags.writeable = False
    return a


@in_child
@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
@fuzz
@given(data=st.data(), which=st.sampled_from(["x", "pool_size", "strides", "padding", "out"]))
def test_pooling_refuses_bad_arguments(backend, op, data, which):
    args = dict(x=np.ones((2, 5, 5, 3), np.float32), pool_size=2, strides=None, padding="valid")
    out = None
    if which == "x":
        args["x"] = _bad_array(data.draw, args["x"], alone=True)
    elif which == "padding":
        args["padding"] = data.draw(st.sampled_from(["full", ((0, 0), (0, 0)), None]))
    elif which == "out":
        out = data.draw(st.sampled_from([np.zeros((2, 2, 2, 3)), _read_only(np.zeros((2, 2, 2, 3), np.float32)),
                                         np.zeros((2, 3, 2, 3), np.float32), args["x"][:2, :2, :2]]))
    else:
        args[which] = data.draw(BAD_SCALARS.filter(lambda v: v is not None))
    _raises_naming(which, getattr(ops, op), args["x"], args["pool_size"], args["strides"], args["padding"], out=out)


@in_child
@fuzz
@given(data=st.data(), which=st.sampled_from(["argmax", "dy", "x"]))
def test_max_pool_backward_refuses_bad_saved_positions(backend, data, which):
    x = np.random.default_rng(1).standard_normal((2, 6, 6, 3)).astype(np.float32)
    argmax = np.zeros((2, 3, 3, 3), np.uint8)
    ops.max_pool2d(x, 2, argmax_out=argmax)
    dy = np.ones((2, 3, 3, 3), np.float32)
    if which == "argmax":
        argmax = data.draw(st.sampled_from([argmax.astype(np.int64), argmax[:, :2], argmax.astype(np.float32),
                                            "positions"]))
    elif which == "dy":
        dy = _bad_array(data.draw, dy, alone=True)
    else:
        x = data.draw(st.sampled_from([(2, 6, 6), (2, 7, 7, 3, 1), (2, 0, 6, 3), "shape"]))
    _raises_naming(which, ops.max_pool2d_backward, dy, x.shape if which != "x" else x, 2, argmax=argmax)


@in_child
@fuzz
@given(positions=st.lists(st.integers(0, 255), min_size=54, max_size=54), padding=st.sampled_from(["valid", "same"]))
def test_max_pool_backward_positions_outside_the_window_pass_nothing(backend, positions, padding):
    # the kernels' documented contract for positions max_pool2d never writes (4..254 of a
    # 2x2 window, or ones in the padding): no gradient, as in the reference, never a stray write
    shape = (2, 5, 5, 3) if padding == "same" else (2, 6, 6, 3)
    argmax = np.array(positions, np.uint8).reshape(2, 3, 3, 3)
    dy = np.random.default_rng(2).standard_normal((2, 3, 3, 3)).astype(np.float32)
    check_against_reference(ops.max_pool2d_backward, (dy, shape, 2, None, padding), dict(argmax=argmax),
                            np.float32)


@in_child
@fuzz
@given(data=st.data(), which=st.sampled_from(["x", "kernel", "bias", "activation", "out"]))
def test_dense_refuses_bad_arguments(backend, data, which):
    rng = np.random.default_rng(0)
    args = dict(x=normal(rng, (3, 5), np.float32), kernel=normal(rng, (5, 2), np.float32),
                bias=normal(rng, (2,), np.float32), activation="relu", out=None)
    if which == "activation":
        args["activation"] = data.draw(st.sampled_from(["gelu", 1, "Relu"]))
    elif which == "out":
        args["out"] = data.draw(st.sampled_from([np.zeros((3, 3), np.float32), _read_only(np.zeros((3, 2), np.float32)),
                                                 args["x"][:, :2]]))
    else:
        args[which] = _bad_array(data.draw, args[which])
    _raises_naming(which, ops.dense, args["x"], args["kernel"], args["bias"], args["activation"], out=args["out"])


@in_child
@fuzz
@given(labels=st.sampled_from([[0, 5, 1], [-1, 0, 1], [0, 1, 2**40], [0.5, 1, 2], [np.nan, 0, 1], [0, 1], ["a"] * 3,
                               [[0, 1, 2]]]), from_logits=st.booleans())
def test_sparse_crossentropy_refuses_bad_labels(backend, labels, from_logits):
    outputs = np.full((3, 5), 0.2, np.float32)
    for op in (ops.sparse_categorical_crossentropy, ops.sparse_categorical_crossentropy_backward):
        _raises_naming("labels", op, np.array(labels), outputs, from_logits)


@in_child
@fuzz
@given(data=st.data(), cell=st.sampled_from(sorted(GATES)),
       which=st.sampled_from(["xp", "recurrent_kernel", "h0", "c0", "recurrent_bias", "mask", "activation"]))
def test_recurrent_refuses_bad_arguments(backend, data, cell, which):
    rng = np.random.default_rng(0)
    width = GATES[cell] * 3
    args = dict(xp=normal(rng, (4, 2, width), np.float32), recurrent_kernel=normal(rng, (3, width), np.float32),
                h0=normal(rng, (2, 3), np.float32))
    if which == "c0":
        args["c0"] = normal(rng, (2, 3), np.float32)
        if cell == "lstm":
            args["c0"] = _bad_array(data.draw, args["c0"])
    elif which == "recurrent_bias":
        args["recurrent_bias"] = normal(rng, (width,), np.float32)
        if cell == "gru":
            args["recurrent_bias"] = data.draw(st.sampled_from([np.ones(width + 1, np.float32), np.ones(width),
                                                                np.ones((1, width), np.float32)]))
    elif which == "mask":
        args["mask"] = data.draw(st.sampled_from([np.ones((2, 4), bool), np.ones(4, bool),
                                                  np.array([["a", "b"]] * 4), np.ones((4, 2, 1))]))
    elif which == "activation":
        args["activation"] = data.draw(st.sampled_from(["softmax", "gelu", 3]))
    else:
        args[which] = _bad_array(data.draw, args[which])
    _raises_naming(which, ops.recurrent, cell, **args)


@in_child
@fuzz
@given(indices=st.sampled_from([[0, 7], [-1, 2], [2**40], [0.5], [np.nan], ["a"], [], [[0, 1], [2, 8]]]),
       backward=st.booleans())
def test_embedding_refuses_bad_indices(backend, indices, backward):
    table = np.ones((7, 3), np.float32)
    indices = np.array(indices)
    if backward:
        _raises_naming("indices", ops.embedding_backward, indices, np.ones(indices.shape + (3,), np.float32), 7)
    else:
        _raises_naming("indices", ops.embedding, indices, table)


def _valid_hyper(optimizer, value):
    """Whether value is a good momentum (sgd), step (adagrad), rho or beta_1: not a case."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        return False
    if optimizer == "adagrad":
        return isinstance(value, int) and value >= 1
    return value >= 0 if optimizer == "sgd" else 0 <= value <= 1  # as torch: any momentum >= 0


HYPER = {"sgd": "momentum", "adagrad": "step", "rmsprop": "rho", "adam": "beta_1"}


@in_child
@pytest.mark.parametrize("optimizer", ["sgd", "adagrad", "rmsprop", "adam"])
@fuzz
@given(value=BAD_SCALARS, which=st.sampled_from(["lr", "hyper", "grad", "param"]), bad=st.data())
def test_optimizer_updates_refuse_bad_arguments(backend, optimizer, value, which, bad):
    p, g = np.ones(10, np.float32), np.ones(10, np.float32)
    state = [np.ones(10, np.float32) for _ in range(2)]
    if which == "grad":
        g = bad.draw(st.sampled_from([np.ones(9, np.float32), np.ones(10), np.ones(10, np.float16),
                                      np.ones((10, 1), np.float32)]))
    elif which == "param":
        p = bad.draw(st.sampled_from([_read_only(np.ones(10, np.float32)), np.ones(20, np.float32)[::2],
                                      np.ones(10, np.int32)]))
    lr = value if which == "lr" else 0.1
    hyper = value if which == "hyper" else None
    assume(not (which == "lr" and isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
                and np.isfinite(value)))
    assume(not (which == "hyper" and (value is None or _valid_hyper(optimizer, value))))
    name = HYPER[optimizer] if which == "hyper" else which
    if optimizer == "sgd":
        _raises_naming(name, ops.sgd_update, p, g, lr=lr, momentum=0.0 if hyper is None else hyper,
                       velocity=state[0] if hyper is not None else None)
    elif optimizer == "adagrad":
        _raises_naming(name, ops.adagrad_update, p, g, state[0], lr=lr, step=1 if hyper is None else hyper)
    elif optimizer == "rmsprop":
        _raises_naming(name, ops.rmsprop_update, p, g, state[0], lr=lr, rho=0.9 if hyper is None else hyper)
    else:
        _raises_naming(name, ops.adam_update, p, g, state[0], state[1], step=1, lr=lr,
                       beta_1=0.9 if hyper is None else hyper)


HUGE = 2 ** 44  # elements: a view of any size costs nothing; its copy would end the process


def _huge(shape_tail, dtype=np.float32):
    n = HUGE // int(np.prod(shape_tail))
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype), shape=(n,) + tuple(shape_tail),
                                           strides=(0,) * (1 + len(shape_tail)))


@in_child
@pytest.mark.parametrize("op", ["relu", "conv2d", "max_pool2d", "dense", "add", "softmax", "augment", "sgd"])
def test_stride_trick_views_too_large_to_copy_are_refused(backend, op):
    small = np.ones((4, 4, 4, 1), np.float32)
    calls = {
        "relu": ("x", lambda: ops.relu(_huge((4, 4, 1)))),
        "conv2d": ("x", lambda: ops.conv2d(_huge((4, 4, 1)), np.ones((1, 1, 1, 1), np.float32))),
        "max_pool2d": ("x", lambda: ops.max_pool2d(_huge((4, 4, 1)), 2)),
        "dense": ("x", lambda: ops.dense(_huge((16,)), np.ones((16, 2), np.float32))),
        "add": ("a", lambda: ops.add(_huge((4, 4, 1)), small)),
        "softmax": ("x", lambda: ops.softmax(_huge((16,)))),
        "augment": ("images", lambda: ops.affine_transform_batch(_huge((4, 4, 1), np.uint8), [0], np.zeros((1, 2, 3)))),
        "sgd": ("grad", lambda: ops.sgd_update(np.ones(8, np.float32), _huge((8,)), lr=0.1)),
    }
    name, call = calls[op]
    with pytest.raises(ValueError, match=name):
        call()
