"""The BatchNormalization layer: Keras 3's semantics (momentum 0.99, epsilon 1e-3, the
biased batch variance in the moving statistics, non-trainable moving weights, inference
mode when frozen), checked against Keras itself, PyTorch and finite differences."""
import numpy as np
import pytest

import fastdl
from fastdl import layers, optimizers
from fastdl.models import Sequential

from support import keras_or_skip, numerical_gradient


def bn_model(k, dtype=None, **bn):
    """Conv2D, BatchNormalization, ReLU, Dense in Keras's or fastdl's namespace."""
    model = k.Sequential([k.Input((7, 6, 3)), k.layers.Conv2D(5, 3, padding="same"), k.layers.BatchNormalization(**bn),
                          k.layers.ReLU(), k.layers.Flatten(), k.layers.Dense(4, activation="softmax")],
                         **({"dtype": dtype} if dtype else {}))
    return model


def images(n=6, seed=0, dtype=np.float32):
    return (np.random.default_rng(seed).standard_normal((n, 7, 6, 3)) * 2 + 1).astype(dtype)


def test_matches_keras_in_training_and_inference_and_moves_the_statistics_the_same():
    keras = keras_or_skip()
    fastdl.utils.set_random_seed(1)
    ours = bn_model(fastdl, momentum=0.9)
    ours.build()
    theirs = bn_model(keras, momentum=0.9)
    rng = np.random.default_rng(2)
    weights = [w if i not in (4, 5) else rng.random(w.shape).astype(np.float32) + 0.5
               for i, w in enumerate(ours.get_weights())]  # moving statistics away from 0 and 1
    ours.set_weights(weights)
    theirs.set_weights(weights)
    x = images()
    np.testing.assert_allclose(ours.predict(x), np.asarray(theirs.predict(x, verbose=0)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours(x, training=True), np.asarray(theirs(x, training=True)), rtol=1e-4, atol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):  # moving_mean, moving_variance moved alike
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-6)
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]


def test_matches_torch_batch_norm_forward_backward_and_running_mean(torch):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 5, 3, 6)) * 3 + 2
    dy = rng.standard_normal(x.shape)
    layer = layers.BatchNormalization(momentum=0.8, epsilon=1e-5, dtype="float64")
    model = Sequential([layers.Input(x.shape[1:]), layer], dtype="float64")
    model.build()
    gamma, beta = rng.random(6) + 0.5, rng.standard_normal(6)
    model.set_weights([gamma, beta, np.zeros(6), np.ones(6)])
    y = layer.forward(x, training=True)
    dx = layer.backward(dy)
    tx = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_()
    running_mean, running_var = torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    weight = torch.from_numpy(gamma).requires_grad_()
    bias = torch.from_numpy(beta).requires_grad_()
    # Keras's momentum m keeps m of the old statistic; torch's keeps 1 - m
    ty = torch.nn.functional.batch_norm(tx, running_mean, running_var, weight, bias, training=True, momentum=0.2,
                                        eps=1e-5)
    ty.backward(torch.from_numpy(dy).permute(0, 3, 1, 2))
    np.testing.assert_allclose(y, ty.detach().permute(0, 2, 3, 1).numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, tx.grad.permute(0, 2, 3, 1).numpy(), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(layer.grads[0], weight.grad.numpy(), rtol=1e-9)
    np.testing.assert_allclose(layer.grads[1], bias.grad.numpy(), rtol=1e-9)
    np.testing.assert_allclose(layer.states[0], running_mean.numpy(), rtol=1e-10)
    # torch moves its running variance by the unbiased variance, Keras (and fastdl) by the biased one
    m = x.size // 6
    np.testing.assert_allclose((layer.states[1] - 0.8) / 0.2, (running_var.numpy() - 0.8) / 0.2 * (m - 1) / m,
                               rtol=1e-10)


def test_the_whole_model_gradient_in_training_mode_matches_finite_differences(backend):
    fastdl.utils.set_random_seed(4)
    model = bn_model(fastdl, dtype="float64")
    model.compile(optimizers.SGD(learning_rate=0.0), "sparse_categorical_crossentropy")
    x, y = images(5, seed=5, dtype=np.float64), np.array([0, 1, 2, 3, 1])
    model.train_on_batch(x, y)
    grad = model.flat_grads.copy()

    def training_loss():  # the loss with the batch's own statistics, as the training step sees it
        out = model._forward(x, training=True)
        return float(model.loss.per_sample(y, out, model._from_logits).mean())
    np.testing.assert_allclose(grad, numerical_gradient(training_loss, model.flat_params), rtol=1e-5, atol=1e-8)


def test_moving_statistics_are_not_trained_and_a_frozen_layer_runs_in_inference_mode():
    fastdl.utils.set_random_seed(6)
    model = bn_model(fastdl)
    model.compile(optimizers.AdamW(0.01, weight_decay=0.5), "sparse_categorical_crossentropy")
    x, y = images(16, seed=6), np.arange(16) % 4
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    bn = model.layers[2]
    assert bn.count_params() == 20 and bn.count_trainable_params() == 10
    moving = [s.copy() for s in bn.states]
    bn.trainable = False
    np.testing.assert_array_equal(model(x, training=True), model.predict(x))  # inference mode when frozen
    assert all(np.array_equal(a, b) for a, b in zip(bn.states, moving))


@pytest.mark.parametrize("center, scale", [(True, False), (False, True), (False, False)])
def test_without_center_or_scale(center, scale):
    keras = keras_or_skip()
    ours, theirs = bn_model(fastdl, center=center, scale=scale), bn_model(keras, center=center, scale=scale)
    ours.build()
    assert len(ours.get_weights()) == len(theirs.get_weights())
    theirs.set_weights(ours.get_weights())
    x = images(4, seed=7)
    np.testing.assert_allclose(ours(x, training=True), np.asarray(theirs(x, training=True)), rtol=1e-4, atol=1e-5)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="momentum"):
        layers.BatchNormalization(momentum=1.5)
    with pytest.raises(ValueError, match="epsilon"):
        layers.BatchNormalization(epsilon=0)
    with pytest.raises(TypeError, match="axis must be an int"):
        layers.BatchNormalization(axis="channels")
    with pytest.raises(ValueError, match="normalises the last axis"):
        Sequential([layers.Input((4, 4, 2)), layers.BatchNormalization(axis=1)]).build()
