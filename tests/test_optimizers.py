"""Keras-style optimizer classes: their documented Keras formulas, flat buffers, state."""
import numpy as np
import pytest

from fastdl import optimizers

STEPS = 10


def grads_for(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s) for s in shapes] for _ in range(STEPS)]


def keras_adam(p, gs, lr=0.001, b1=0.9, b2=0.999, eps=1e-7, amsgrad=False, wd=0.0):
    m, v, vhat = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(gs, start=1):
        p = p - p * wd * lr
        lr_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        if amsgrad:
            vhat = np.maximum(vhat, v)
        p = p - lr_t * m / (np.sqrt(vhat if amsgrad else v) + eps)
    return p


def keras_sgd(p, gs, lr=0.01, momentum=0.0, nesterov=False):
    m = np.zeros_like(p)
    for g in gs:
        if momentum:
            m = momentum * m - lr * g
            p = p + (momentum * m - lr * g if nesterov else m)
        else:
            p = p - lr * g
    return p


def keras_rmsprop(p, gs, lr=0.001, rho=0.9, momentum=0.0, eps=1e-7, centered=False):
    vel, avg, mom = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for g in gs:
        vel = rho * vel + (1 - rho) * g * g
        if centered:
            avg = rho * avg + (1 - rho) * g
            denom = vel - avg * avg + eps
        else:
            denom = vel + eps
        inc = lr * g / np.sqrt(denom)
        if momentum:
            mom = momentum * mom + inc
            p = p - mom
        else:
            p = p - inc
    return p


def keras_adagrad(p, gs, lr=0.001, init=0.1, eps=1e-7):
    acc = np.full_like(p, init)
    for g in gs:
        acc = acc + g * g
        p = p - lr * g / np.sqrt(acc + eps)
    return p


@pytest.mark.parametrize("make,formula", [
    (lambda: optimizers.Adam(), keras_adam),
    (lambda: optimizers.Adam(learning_rate=0.01, beta_1=0.8, amsgrad=True),
     lambda p, gs: keras_adam(p, gs, lr=0.01, b1=0.8, amsgrad=True)),
    (lambda: optimizers.AdamW(learning_rate=0.01), lambda p, gs: keras_adam(p, gs, lr=0.01, wd=0.004)),
    (lambda: optimizers.SGD(), keras_sgd),
    (lambda: optimizers.SGD(momentum=0.9), lambda p, gs: keras_sgd(p, gs, momentum=0.9)),
    (lambda: optimizers.SGD(momentum=0.9, nesterov=True), lambda p, gs: keras_sgd(p, gs, momentum=0.9, nesterov=True)),
    (lambda: optimizers.RMSprop(), keras_rmsprop),
    (lambda: optimizers.RMSprop(momentum=0.5, centered=True),
     lambda p, gs: keras_rmsprop(p, gs, momentum=0.5, centered=True)),
    (lambda: optimizers.Adagrad(learning_rate=0.1), lambda p, gs: keras_adagrad(p, gs, lr=0.1)),
])
def test_classes_follow_keras_formulas(backend, make, formula):
    shapes = [(3, 4), (4,)]
    params = [np.random.default_rng(9).standard_normal(s) for s in shapes]
    steps = grads_for(shapes)
    opt = make()
    variables = [p.copy() for p in params]
    for gs in steps:
        opt.apply(gs, variables)
    for i, p in enumerate(params):
        np.testing.assert_allclose(variables[i], formula(p, [gs[i] for gs in steps]), rtol=1e-12, atol=1e-14)
    assert opt.iterations == STEPS


@pytest.mark.parametrize("name", ["adam", "sgd", "rmsprop", "adagrad", "adamw"])
def test_flat_buffer_equals_per_array_updates(backend, name):
    sizes = [12, 4, 7]
    flat = np.random.default_rng(1).standard_normal(sum(sizes)).astype(np.float32)
    views = np.split(flat.copy(), np.cumsum(sizes)[:-1])
    separate = [v.copy() for v in views]
    rng = np.random.default_rng(2)
    per_array, fused = optimizers.get(name), optimizers.get(name)
    for _ in range(STEPS):
        flat_grad = rng.standard_normal(flat.size).astype(np.float32)
        per_array.apply(np.split(flat_grad, np.cumsum(sizes)[:-1]), separate)
        fused.apply_flat(flat_grad, flat, sizes)
    np.testing.assert_allclose(flat, np.concatenate(separate), rtol=1e-6)


def test_legacy_lr_warns_and_is_used():
    with pytest.warns(DeprecationWarning, match="use `learning_rate`"):
        opt = optimizers.Adam(lr=0.5)
    assert opt.learning_rate == 0.5


def test_unknown_argument_and_identifier():
    with pytest.raises(TypeError, match=r"unexpected arguments: \['betas'\]"):
        optimizers.Adam(betas=(0.9, 0.99))
    with pytest.raises(ValueError, match="unknown optimizer 'adamax'"):
        optimizers.get("adamax")
    with pytest.raises(ValueError, match="learning_rate must be finite"):
        optimizers.SGD(learning_rate=float("nan"))
    with pytest.raises(ValueError, match="only one of clipnorm and global_clipnorm"):
        optimizers.SGD(clipnorm=1.0, global_clipnorm=1.0)


def test_schedule_is_called_with_the_step_count():
    seen = []

    def schedule(step):
        seen.append(step)
        return 0.1 / (1 + step)

    opt = optimizers.SGD(learning_rate=schedule)
    p = np.zeros(3)
    for _ in range(3):
        opt.apply([np.ones(3)], [p])
    assert seen == [0, 1, 2]
    np.testing.assert_allclose(p, -(0.1 + 0.05 + 0.1 / 3) * np.ones(3))


def test_clipping_follows_keras():
    g = np.array([3.0, 4.0])  # norm 5
    p = np.zeros(2)
    optimizers.SGD(learning_rate=1.0, clipnorm=1.0).apply([g], [p])
    np.testing.assert_allclose(p, [-0.6, -0.8])
    p = np.zeros(2)
    optimizers.SGD(learning_rate=1.0, clipvalue=3.5).apply([g], [p])
    np.testing.assert_allclose(p, [-3.0, -3.5])
    p, q = np.zeros(2), np.zeros(1)
    optimizers.SGD(learning_rate=1.0, global_clipnorm=6.5).apply([g, np.array([12.0])], [p, q])
    np.testing.assert_allclose(np.concatenate([p, q]), -np.array([3.0, 4.0, 12.0]) * 6.5 / 13.0)


def test_config_round_trip():
    opt = optimizers.RMSprop(learning_rate=0.02, rho=0.8, momentum=0.1, centered=True, clipvalue=2.0)
    clone = optimizers.RMSprop.from_config(opt.get_config())
    assert clone.get_config() == opt.get_config()


@pytest.mark.parametrize("name", ["adam", "sgd", "rmsprop", "adagrad"])
def test_state_restore_resumes_bit_for_bit(backend, name):
    rng = np.random.default_rng(3)
    steps = [rng.standard_normal(50).astype(np.float32) for _ in range(10)]
    opt = optimizers.get(name) if name != "sgd" else optimizers.SGD(momentum=0.9)
    p = rng.standard_normal(50).astype(np.float32)
    for g in steps[:5]:
        opt.apply_flat(g, p)
    saved_p, saved = p.copy(), opt.get_state()
    for g in steps[5:]:
        opt.apply_flat(g, p)
    resumed = optimizers.get(name) if name != "sgd" else optimizers.SGD(momentum=0.9)
    resumed.set_state(saved)
    q = saved_p.copy()
    for g in steps[5:]:
        resumed.apply_flat(g, q)
    np.testing.assert_array_equal(p, q)
