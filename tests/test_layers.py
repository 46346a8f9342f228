"""Every layer's forward and backward against NumPy and finite differences (float64)."""
import numpy as np
import pytest

from fastdl import layers

from support import numerical_gradient


def attach_weights(layer, input_shape, seed=0):
    """Build a lone layer in float64 with random weights and zero gradient arrays."""
    layer.build(input_shape)
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(shape) for _, shape, _ in layer.weight_specs()]
    layer.attach(params, [np.zeros_like(p) for p in params])
    return params


LAYERS = [
    (lambda: layers.Conv2D(4, (3, 2), strides=(2, 1), padding="same", activation="tanh"), (7, 6, 3)),
    (lambda: layers.Conv2D(3, 3, dilation_rate=2, activation="relu", use_bias=False), (7, 7, 2)),
    (lambda: layers.MaxPooling2D((2, 2)), (6, 5, 3)),
    (lambda: layers.MaxPooling2D(3, strides=2, padding="same"), (7, 7, 2)),
    (lambda: layers.AveragePooling2D((2, 3), padding="same"), (5, 7, 2)),
    (lambda: layers.Flatten(), (3, 4, 2)),
    (lambda: layers.Dense(5, activation="sigmoid"), (6,)),
    (lambda: layers.Dense(4, activation="softmax"), (3,)),
    (lambda: layers.Activation("tanh"), (4, 3)),
    (lambda: layers.ReLU(), (4, 3)),
    (lambda: layers.Softmax(), (5,)),
]


@pytest.mark.parametrize("make,input_shape", LAYERS)
def test_layer_gradients_match_finite_differences(backend, make, input_shape):
    layer = make()
    params = attach_weights(layer, input_shape)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2,) + input_shape)
    dy = rng.standard_normal((2,) + layer.output_shape)

    def loss():
        return float((layer.forward(x.copy(), training=True) * dy).sum())

    layer.forward(x, training=True)
    dx = layer.backward(dy)
    np.testing.assert_allclose(dx, numerical_gradient(loss, x), rtol=1e-5, atol=1e-7)
    for p, g in zip(params, layer.grads):
        np.testing.assert_allclose(g, numerical_gradient(loss, p), rtol=1e-5, atol=1e-7)


def test_conv_and_dense_forward_match_numpy(backend):
    conv = layers.Conv2D(2, (2, 2), activation="relu")
    (kernel, bias) = attach_weights(conv, (3, 3, 1))
    x = np.arange(9.0).reshape(1, 3, 3, 1)
    y = conv.forward(x)
    expected = np.zeros((1, 2, 2, 2))
    for i in range(2):
        for j in range(2):
            expected[0, i, j] = np.maximum(
                np.tensordot(x[0, i:i + 2, j:j + 2, :], kernel, axes=3) + bias, 0)
    np.testing.assert_allclose(y, expected)

    dense = layers.Dense(3)
    (w, b) = attach_weights(dense, (4,))
    v = np.random.default_rng(2).standard_normal((5, 4))
    np.testing.assert_allclose(dense.forward(v), v @ w + b)


def test_dropout_scales_kept_units_and_is_identity_at_inference():
    layer = layers.Dropout(0.25, seed=3)
    layer.build((1000,))
    x = np.ones((4, 1000), np.float32)
    y = layer.forward(x, training=True)
    kept = y != 0
    assert 0.70 < kept.mean() < 0.80
    np.testing.assert_allclose(y[kept], 1 / 0.75)
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), y)
    np.testing.assert_array_equal(layer.forward(x, training=False), x)


def test_layer_defaults_follow_keras():
    conv = layers.Conv2D(8, 3)
    assert conv.padding == "valid" and conv.strides == (1, 1) and conv.use_bias
    assert conv.kernel_initializer.__name__ == "glorot_uniform"
    assert conv.bias_initializer.__name__ == "zeros"
    assert layers.MaxPooling2D().strides == (2, 2)
    assert layers.Conv2D(1, 1).name.startswith("conv2d")
    assert layers.MaxPooling2D().name.startswith("max_pooling2d")


@pytest.mark.parametrize("make,error,message", [
    (lambda: layers.Conv2D(0, 3), ValueError, r"filters must be a positive int; got 0"),
    (lambda: layers.Conv2D(4, (3, 0)), ValueError, r"kernel_size must be >= 1"),
    (lambda: layers.Conv2D(4, 3, padding="full"), ValueError, r"padding must be 'valid', 'same'"),
    (lambda: layers.Conv2D(4, 3, activation="swish"), ValueError, r"activation must be one of"),
    (lambda: layers.Conv2D(4, 3, kernel_initializer="lecun"), ValueError, r"unknown initializer 'lecun'"),
    (lambda: layers.Dense(2.5), ValueError, r"units must be a positive int"),
    (lambda: layers.Dropout(1.0), ValueError, r"rate must be in \[0, 1\)"),
    (lambda: layers.Dense(2, bogus=1), TypeError, r"unexpected arguments: \['bogus'\]"),
    (lambda: layers.Input(), ValueError, r"Input needs shape="),
])
def test_bad_layer_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


LAYERS = [
    lambda: layers.Conv2D(5, (3, 2), strides=2, padding="same", dilation_rate=1, activation="tanh",
                          use_bias=False, name="c"),
    lambda: layers.MaxPooling2D(3, strides=2, padding="same"),
    lambda: layers.AveragePooling2D((2, 3)),
    lambda: layers.Flatten(),
    lambda: layers.Dense(7, activation="relu", trainable=False),
    lambda: layers.Dense(3, dtype="float64"),
    lambda: layers.Dropout(0.3, seed=5),
    lambda: layers.Activation("sigmoid"),
    lambda: layers.ReLU(),
    lambda: layers.Softmax(),
    lambda: layers.InputLayer(shape=(4, 5, 2)),
]


@pytest.mark.parametrize("make", LAYERS)
def test_get_config_and_from_config_round_trip(make):
    layer = make()
    config = layer.get_config()
    again = type(layer).from_config(config)
    assert type(again) is type(layer) and again.get_config() == config
    assert again.dtype == layer.dtype


def test_a_layer_called_on_arrays_builds_its_weights_as_keras_does():
    """Keras's eager call: the first call builds on the input's shape and draws the weights."""
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    dense = layers.Dense(3)
    y = dense(x)
    kernel, bias = dense.params
    assert kernel.shape == (4, 3) and np.all(bias == 0) and np.any(kernel != 0)
    np.testing.assert_allclose(y, x @ kernel, rtol=1e-5, atol=1e-6)
    assert dense(x[:2]).shape == (2, 3)  # built once: the same weights on the next batch
    assert dense.params[0] is kernel
    norm = layers.BatchNormalization()
    out = norm(np.ones((2, 6, 6, 3), np.float32) * 4, training=True)
    assert out.shape == (2, 6, 6, 3) and len(norm.states) == 2
    with pytest.raises(ValueError, match="in_features"):
        dense(np.ones((2, 5), np.float32))
