"""Every op on the 'cuda' backend against 'reference', on tiny shapes (the simulator is
slow), including the tiled matmul on sizes that are not multiples of the tile."""
import numpy as np
import pytest

import fastdl
from fastdl import ops

from support import reference

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def on_cuda():
    with fastdl.use_backend("cuda"):
        yield


def close(a, b, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (17, 19, 23), (16, 32, 16), (33, 5, 2)])
@pytest.mark.parametrize("order", ["CC", "FC", "CF"])
def test_tiled_matmul_any_size(m, k, n, order):
    a = np.asarray(RNG.standard_normal((m, k)), order=order[0])
    b = np.asarray(RNG.standard_normal((k, n)), order=order[1])
    close(ops.matmul(a, b), a @ b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("geometry", [dict(), dict(strides=(2, 1), padding="same"),
                                      dict(padding=((1, 0), (2, 1)), dilation_rate=(1, 2))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_forward_backward(geometry, dtype):
    x = RNG.standard_normal((2, 6, 5, 2)).astype(dtype)
    k = RNG.standard_normal((3, 2, 2, 3)).astype(dtype)
    b = RNG.standard_normal(3).astype(dtype)
    y = ops.conv2d(x, k, b, **geometry)
    close(y, reference(ops.conv2d, x, k, b, **geometry), rtol=1e-4, atol=1e-5)
    close(ops.conv2d(x, k, b, activation="relu", **geometry), np.maximum(y, 0), rtol=1e-4, atol=1e-5)
    dy = RNG.standard_normal(y.shape).astype(dtype)
    for got, want in zip(ops.conv2d_backward(dy, x, k, **geometry),
                         reference(ops.conv2d_backward, dy, x, k, **geometry)):
        close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pool", [(ops.max_pool2d, ops.max_pool2d_backward), (ops.avg_pool2d, ops.avg_pool2d_backward)])
@pytest.mark.parametrize("args", [dict(pool_size=2), dict(pool_size=3, strides=1, padding="same")])
def test_pooling(pool, args):
    forward, backward = pool
    x = RNG.standard_normal((2, 5, 6, 3))
    y = forward(x, **args)
    close(y, reference(forward, x, **args))
    dy = RNG.standard_normal(y.shape)
    close(backward(dy, x, **args), reference(backward, dy, x, **args))


@pytest.mark.parametrize("args", [dict(pool_size=2), dict(pool_size=3, strides=1, padding="same"),
                                  dict(pool_size=(2, 3), strides=2, padding="same")])
def test_max_pooling_argmax(args):
    x = RNG.standard_normal((2, 5, 6, 3))
    y = ops.max_pool2d(x, **args)
    argmax, expected = np.empty(y.shape, np.uint8), np.empty(y.shape, np.uint8)
    close(ops.max_pool2d(x, **args, argmax_out=argmax), y)
    reference(ops.max_pool2d, x, **args, argmax_out=expected)
    np.testing.assert_array_equal(argmax, expected)
    dy = RNG.standard_normal(y.shape)
    close(ops.max_pool2d_backward(dy, x.shape, **args, argmax=argmax),
          reference(ops.max_pool2d_backward, dy, x, **args))


@pytest.mark.parametrize("activation", [None, "relu", "sigmoid", "tanh", "softmax"])
def test_dense_and_activations(activation):
    x, k, b = RNG.standard_normal((5, 4)), RNG.standard_normal((4, 3)), RNG.standard_normal(3)
    y = ops.dense(x, k, b, activation)
    close(y, reference(ops.dense, x, k, b, activation))
    dy = RNG.standard_normal(y.shape)
    for got, want in zip(ops.dense_backward(dy, x, k, activation=activation, output=y),
                         reference(ops.dense_backward, dy, x, k, activation=activation, output=y)):
        close(got, want)
    close(ops.relu_backward(dy, x[:, :3]), reference(ops.relu_backward, dy, x[:, :3]))


@pytest.mark.parametrize("from_logits", [True, False])
def test_crossentropy(from_logits):
    outputs = RNG.standard_normal((6, 4)) if from_logits else RNG.uniform(0.1, 1, (6, 4))
    labels = RNG.integers(0, 4, 6)
    close(ops.sparse_categorical_crossentropy(labels, outputs, from_logits),
          reference(ops.sparse_categorical_crossentropy, labels, outputs, from_logits))
    close(ops.sparse_categorical_crossentropy_backward(labels, outputs, from_logits),
          reference(ops.sparse_categorical_crossentropy_backward, labels, outputs, from_logits))


@pytest.mark.parametrize("update", ["adam", "amsgrad", "sgd", "nesterov", "adagrad", "rmsprop"])
def test_optimizer_updates(update):
    def run():
        p = np.linspace(-1, 1, 37)
        state = [np.zeros_like(p) for _ in range(3)]
        for step in range(1, 4):
            g = np.cos(p * step)
            if update in ("adam", "amsgrad"):
                ops.adam_update(p, g, state[0], state[1], step=step, lr=0.1, amsgrad=update == "amsgrad",
                                v_max=state[2], weight_decay=0.01)
            elif update in ("sgd", "nesterov"):
                ops.sgd_update(p, g, lr=0.1, momentum=0.9, velocity=state[0], nesterov=update == "nesterov", step=step)
            elif update == "adagrad":
                ops.adagrad_update(p, g, state[0], lr=0.1, step=step)
            else:
                ops.rmsprop_update(p, g, state[0], lr=0.1, centered=True, grad_avg=state[1], momentum=0.5,
                                   momentum_buffer=state[2])
        return p, state
    got = run()
    with fastdl.use_backend("reference"):
        want = run()
    close(got[0], want[0], rtol=1e-10)
    for a, b in zip(got[1], want[1]):
        close(a, b, rtol=1e-10)


@pytest.mark.parametrize("mode", ["nearest", "constant", "reflect", "wrap"])
def test_augmentation(mode):
    images = RNG.integers(0, 255, (3, 6, 5, 2)).astype(np.uint8)
    m = np.array([[[0.9, -0.3, 1.2], [0.4, 1.1, -0.8]], [[1, 0, 0], [0, 1, 0]]])
    close(ops.affine_transform_batch(images, [2, 0], m, fill_mode=mode, cval=3.0),
          reference(ops.affine_transform_batch, images, [2, 0], m, fill_mode=mode, cval=3.0), atol=1e-3)


def test_a_tiny_model_trains_on_cuda():
    from fastdl import layers
    from fastdl.models import Sequential

    fastdl.utils.set_random_seed(0)
    x = RNG.standard_normal((16, 6, 6, 1)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(int)
    model = Sequential([layers.Conv2D(2, 3, activation="relu", input_shape=(6, 6, 1)),
                        layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    assert model.evaluate(x, y, verbose=0) < first


def test_cuda_available_is_false_under_the_simulator():
    assert fastdl.cuda_available() is False
