"""Fused optimizer updates: every option against the reference backend and torch.optim."""
import numpy as np
import pytest

import fastdl
from fastdl import ops

from support import ALL_BACKENDS

STEPS = 50

# (update, options, state arrays it needs) — every option of every optimizer
CONFIGS = [
    ("sgd", dict(lr=0.1), ()),
    ("sgd", dict(lr=0.1, momentum=0.9), ("velocity",)),
    ("sgd", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01), ("velocity",)),
    ("sgd", dict(lr=0.05, momentum=0.8, nesterov=True, maximize=True), ("velocity",)),
    ("adagrad", dict(lr=0.1), ("accumulator",)),
    ("adagrad", dict(lr=0.1, lr_decay=0.01, epsilon=1e-6, weight_decay=0.02), ("accumulator",)),
    ("rmsprop", dict(lr=0.01), ("square_avg",)),
    ("rmsprop", dict(lr=0.01, rho=0.9, centered=True, weight_decay=0.01), ("square_avg", "grad_avg")),
    ("rmsprop", dict(lr=0.01, momentum=0.9), ("square_avg", "momentum_buffer")),
    ("rmsprop", dict(lr=0.01, momentum=0.5, centered=True), ("square_avg", "grad_avg", "momentum_buffer")),
    ("adam", dict(lr=0.01), ("m", "v")),
    ("adam", dict(lr=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-6, weight_decay=0.05), ("m", "v")),
    ("adam", dict(lr=0.01, weight_decay=0.05, decoupled_weight_decay=True), ("m", "v")),
    ("adam", dict(lr=0.01, amsgrad=True, maximize=True), ("m", "v", "v_max")),
]
UPDATES = {"sgd": ops.sgd_update, "adagrad": ops.adagrad_update,
           "rmsprop": ops.rmsprop_update, "adam": ops.adam_update}
POSITIONAL = {"adagrad": ("accumulator",), "rmsprop": ("square_avg",), "adam": ("m", "v")}


def run_updates(name, options, state_names, param, grads, convention="torch"):
    """Apply STEPS updates; returns the final param and state."""
    param = param.copy()
    state = {s: np.zeros_like(param) for s in state_names}
    for t, g in enumerate(grads, start=1):
        args = [state[s] for s in POSITIONAL.get(name, ())]
        kwargs = {s: a for s, a in state.items() if s not in POSITIONAL.get(name, ())}
        if name != "rmsprop":
            kwargs["step"] = t
        UPDATES[name](param, g, *args, convention=convention, **options, **kwargs)
    return param, state


def problem(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    param = rng.standard_normal(shape).astype(dtype)
    grads = [rng.standard_normal(shape).astype(dtype) for _ in range(STEPS)]
    return param, grads


@pytest.mark.parametrize("convention", ["torch", "keras"])
@pytest.mark.parametrize("shape", [(7,), (33, 5), (70001,)])
@pytest.mark.parametrize("name,options,state_names", CONFIGS)
def test_update_matches_reference(backend, dtype, name, options, state_names, shape, convention):
    param, grads = problem(shape, dtype)
    got, got_state = run_updates(name, options, state_names, param, grads, convention)
    with fastdl.use_backend("reference"):
        want, want_state = run_updates(name, options, state_names, param, grads, convention)
    rtol, atol = (1e-4, 1e-5) if dtype == np.float32 else (1e-11, 1e-12)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    for s in state_names:
        np.testing.assert_allclose(got_state[s], want_state[s], rtol=rtol, atol=atol)


@pytest.mark.parametrize("convention", ["torch", "keras"])
@pytest.mark.parametrize("name,options,state_names", CONFIGS)
def test_update_bits_do_not_depend_on_where_the_arrays_start(backend, dtype, name, options, state_names,
                                                             convention):
    """The compiled loops peel elements up to a cache line of the parameter: arrays that
    start anywhere within a line (the same for all of them, or not) get the same bits."""
    param, grads = problem((40000,), dtype, seed=4)
    results = []
    for offsets in ((0, 0), (1, 1), (5, 5), (15, 15), (3, 8)):
        def placed(a, offset):
            raw = fastdl._device.aligned_empty(a.size + 16, a.dtype)
            view = raw[offset:offset + a.size]
            view[...] = a
            return view

        p = placed(param, offsets[0])
        state = {s: placed(np.zeros_like(param), offsets[1]) for s in state_names}
        for t, g in enumerate(grads[:3], start=1):
            args = [state[s] for s in POSITIONAL.get(name, ())]
            kwargs = {s: a for s, a in state.items() if s not in POSITIONAL.get(name, ())}
            if name != "rmsprop":
                kwargs["step"] = t
            UPDATES[name](p, placed(g, offsets[1]), *args, convention=convention, **options, **kwargs)
        results.append(p.copy())
    for got in results[1:]:
        np.testing.assert_array_equal(got, results[0])


def torch_optimizer(torch, name, options, tensor):
    o = dict(options)
    lr = o.pop("lr")
    wd = o.pop("weight_decay", 0.0)
    if name == "sgd":
        return torch.optim.SGD([tensor], lr=lr, weight_decay=wd, foreach=False, **o)
    if name == "adagrad":
        return torch.optim.Adagrad([tensor], lr=lr, lr_decay=o.get("lr_decay", 0.0),
                                   eps=o.get("epsilon", 1e-10), weight_decay=wd, foreach=False)
    if name == "rmsprop":
        return torch.optim.RMSprop([tensor], lr=lr, alpha=o.get("rho", 0.99), eps=o.get("epsilon", 1e-8),
                                   weight_decay=wd, momentum=o.get("momentum", 0.0),
                                   centered=o.get("centered", False), foreach=False)
    cls = torch.optim.AdamW if o.get("decoupled_weight_decay") else torch.optim.Adam
    return cls([tensor], lr=lr, betas=(o.get("beta_1", 0.9), o.get("beta_2", 0.999)),
               eps=o.get("epsilon", 1e-8), weight_decay=wd, amsgrad=o.get("amsgrad", False),
               maximize=o.get("maximize", False), foreach=False)


@pytest.mark.parametrize("dtype_name", ["float64", "float32"])
@pytest.mark.parametrize("name,options,state_names", CONFIGS)
def test_update_matches_torch_optim(backend, torch, name, options, state_names, dtype_name):
    dtype = np.dtype(dtype_name)
    param, grads = problem((5, 11), dtype, seed=1)
    got, _ = run_updates(name, options, state_names, param, grads)
    tensor = torch.tensor(param.copy(), requires_grad=True)
    opt = torch_optimizer(torch, name, options, tensor)
    for g in grads:
        tensor.grad = torch.tensor(g)
        opt.step()
    rtol, atol = (2e-4, 2e-5) if dtype == np.float32 else (1e-10, 1e-12)
    np.testing.assert_allclose(got, tensor.detach().numpy(), rtol=rtol, atol=atol)


def test_seed_momentum_form_is_reachable(backend):
    # the seed's 3.2.3: v = beta * v + (1 - beta) * g; W -= alpha * v
    w = np.array([1.0, -2.0])
    v = np.zeros(2)
    g = np.array([0.5, 0.25])
    expected_w, expected_v = w.copy(), v.copy()
    for _ in range(3):
        ops.sgd_update(w, g, lr=0.1, momentum=0.9, dampening=0.9, velocity=v)
        expected_v = 0.9 * expected_v + 0.1 * g
        expected_w = expected_w - 0.1 * expected_v
    np.testing.assert_allclose(w, expected_w)
    np.testing.assert_allclose(v, expected_v)


@pytest.mark.parametrize("call,error,message", [
    (lambda p, g, s: ops.adam_update(p, g[:3], s, s.copy(), step=1, lr=0.1), ValueError, r"grad must have shape \(4,\)"),
    (lambda p, g, s: ops.adam_update(p, g.astype(np.float32), s, s.copy(), step=1, lr=0.1), TypeError, r"grad must have param's dtype float64; got float32"),
    (lambda p, g, s: ops.adam_update(p, g, s, None, step=1, lr=0.1), ValueError, r"adam_update needs v="),
    (lambda p, g, s: ops.adam_update(p, g, s, s, step=1, lr=0.1), ValueError, r"v must not share memory with m"),
    (lambda p, g, s: ops.adam_update(p, g, s, s.copy(), step=0, lr=0.1), ValueError, r"step must be an int >= 1"),
    (lambda p, g, s: ops.adam_update(p, g, s, s.copy(), step=1, lr=float("nan")), ValueError, r"lr must be finite; got nan"),
    (lambda p, g, s: ops.adam_update(p, g, s, s.copy(), step=1, lr=-0.1), ValueError, r"lr must be in \[0, inf\]; got -0.1"),
    (lambda p, g, s: ops.adam_update(p, g, s, s.copy(), step=1, lr=0.1, beta_1=1.0), ValueError, r"beta_1 and beta_2 must be in \[0, 1\)"),
    (lambda p, g, s: ops.adam_update(p, g, s, s.copy(), step=1, lr=0.1, amsgrad=True), ValueError, r"amsgrad=True needs v_max="),
    (lambda p, g, s: ops.adam_update(p, g, s.astype(np.float32), s.copy(), step=1, lr=0.1), TypeError, r"m must have param's dtype"),
    (lambda p, g, s: ops.sgd_update(p, g, lr=0.1, momentum=0.9), ValueError, r"momentum=0.9 needs velocity="),
    (lambda p, g, s: ops.sgd_update(p, g, lr=0.1, nesterov=True), ValueError, r"nesterov needs momentum > 0"),
    (lambda p, g, s: ops.sgd_update(p, g, lr=0.1, momentum=-1.0, velocity=s), ValueError, r"momentum must be in"),
    (lambda p, g, s: ops.sgd_update(p, g, lr=0.1, momentum=0.9, velocity=p), ValueError, r"velocity must not share memory with param"),
    (lambda p, g, s: ops.sgd_update(p, g, lr=0.1, convention="jax"), ValueError, r"convention must be one of"),
    (lambda p, g, s: ops.rmsprop_update(p, g, s, lr=0.1, centered=True), ValueError, r"centered=True needs grad_avg="),
    (lambda p, g, s: ops.rmsprop_update(p, g, s, lr=0.1, rho=1.5), ValueError, r"rho must be in \[0, 1\]"),
    (lambda p, g, s: ops.adagrad_update(p, g, s[:, None], lr=0.1, step=1), ValueError, r"accumulator must have shape \(4,\)"),
    (lambda p, g, s: ops.adagrad_update(p, g, s, lr=0.1, step=1, epsilon=float("inf")), ValueError, r"epsilon must be finite"),
    (lambda p, g, s: ops.sgd_update(p.tolist(), g, lr=0.1), TypeError, r"param must be a numpy.ndarray"),
    (lambda p, g, s: ops.sgd_update(np.zeros(8)[::2], g, lr=0.1), ValueError, r"param must be C-contiguous and writeable"),
])
def test_bad_input_changes_nothing(call, error, message):
    for backend_name in ALL_BACKENDS:
        with fastdl.use_backend(backend_name):
            p, g, s = np.arange(4.0), np.ones(4), np.zeros(4)
            before = p.copy(), s.copy()
            with pytest.raises(error, match=message):
                call(p, g, s)
            np.testing.assert_array_equal(p, before[0])
            np.testing.assert_array_equal(s, before[1])
