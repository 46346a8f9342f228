"""ZeroPadding2D, Cropping2D, UpSampling2D and LayerNormalization: equal to Keras 3's
layers, gradients against finite differences on every backend, .keras files both ways,
bad arguments. The ops themselves are in the op table (tests/optable.py)."""
import numpy as np
import pytest

import fastdl
from fastdl import Sequential, layers, optimizers

from support import keras_or_skip, numerical_gradient


def build(lib, inputs):
    return [inputs, lib.layers.ZeroPadding2D(((1, 2), (0, 3))), lib.layers.Conv2D(3, 3, activation="tanh"),
            lib.layers.UpSampling2D((2, 3)), lib.layers.Cropping2D(((1, 0), (2, 1))), lib.layers.ZeroPadding2D(1),
            lib.layers.Cropping2D(2), lib.layers.Flatten(), lib.layers.Dense(2, activation="softmax")]


def test_the_layers_match_keras_and_round_trip_through_keras_files(tmp_path):
    keras = keras_or_skip()
    x = np.random.default_rng(0).standard_normal((3, 6, 5, 2)).astype(np.float32)
    theirs = keras.Sequential(build(keras, keras.Input((6, 5, 2))))
    ours = Sequential(build(fastdl, layers.InputLayer((6, 5, 2))))
    ours.build()
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    ours.save(tmp_path / "ours.keras")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "ours.keras").predict(x, verbose=0),
                               ours.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    theirs.save(tmp_path / "theirs.keras")
    back = fastdl.models.load_model(tmp_path / "theirs.keras")
    np.testing.assert_allclose(back.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_a_models_gradient_through_the_resampling_layers_matches_finite_differences(backend):
    fastdl.utils.set_random_seed(1)
    model = Sequential(build(fastdl, layers.InputLayer((6, 5, 2))), dtype="float64")
    model.compile(optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((2, 6, 5, 2)), np.array([0, 1])
    model.train_on_batch(x, y)
    grad = model.flat_grads.copy()
    np.testing.assert_allclose(grad, numerical_gradient(lambda: model.evaluate(x, y, verbose=0), model.flat_params),
                               rtol=1e-6, atol=1e-9)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="padding must be >= 0"):
        layers.ZeroPadding2D(-1)
    with pytest.raises(ValueError, match="data_format must be 'channels_last'"):
        layers.UpSampling2D(data_format="channels_first")
    with pytest.raises(ValueError, match="interpolation='bilinear' is not supported"):
        layers.UpSampling2D(interpolation="bilinear")
    with pytest.raises(ValueError, match="leaves nothing"):
        Sequential([layers.InputLayer((4, 4, 1)), layers.Cropping2D(2)]).build()
    with pytest.raises(ValueError, match="takes \\(batch, height, width, channels\\)"):
        Sequential([layers.InputLayer((4, 4)), layers.ZeroPadding2D(1)]).build()


def normalized(lib, inputs):
    return [inputs, lib.layers.Conv2D(4, 3, activation="relu"), lib.layers.LayerNormalization(epsilon=1e-5),
            lib.layers.Reshape((12, 4)), lib.layers.LSTM(5, return_sequences=True),
            lib.layers.LayerNormalization(center=False), lib.layers.Flatten(),
            lib.layers.Dense(3), lib.layers.LayerNormalization(scale=False), lib.layers.Dense(2, activation="softmax")]


def test_layer_normalization_matches_keras_and_round_trips(tmp_path):
    keras = keras_or_skip()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 5, 6, 2)).astype(np.float32)
    theirs = keras.Sequential(normalized(keras, keras.Input((5, 6, 2))))
    ours = Sequential(normalized(fastdl, layers.InputLayer((5, 6, 2))))
    ours.build()
    ours.set_weights([w + rng.standard_normal(w.shape).astype(np.float32) * 0.3 for w in theirs.get_weights()])
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    ours.save(tmp_path / "ours.keras")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "ours.keras").predict(x, verbose=0),
                               ours.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    theirs.save(tmp_path / "theirs.keras")
    np.testing.assert_allclose(fastdl.models.load_model(tmp_path / "theirs.keras").predict(x, verbose=0),
                               theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_layer_normalizations_gradient_matches_finite_differences(backend):
    fastdl.utils.set_random_seed(4)
    model = Sequential(normalized(fastdl, layers.InputLayer((5, 6, 2))), dtype="float64")
    model.compile(optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((2, 5, 6, 2)), np.array([1, 0])
    model.train_on_batch(x, y)
    grad = model.flat_grads.copy()
    np.testing.assert_allclose(grad, numerical_gradient(lambda: model.evaluate(x, y, verbose=0), model.flat_params),
                               rtol=1e-5, atol=1e-8)


def separable(lib, inputs):
    return [inputs, lib.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu"),
            lib.layers.SeparableConv2D(5, (3, 2), strides=2, padding="same", activation="tanh"),
            lib.layers.DepthwiseConv2D((2, 2), dilation_rate=(1, 2), use_bias=False),
            lib.layers.SeparableConv2D(3, 1, depth_multiplier=3, use_bias=False), lib.layers.Flatten(),
            lib.layers.Dense(2, activation="softmax")]


def test_depthwise_and_separable_convolutions_match_keras_and_round_trip(tmp_path):
    keras = keras_or_skip()
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 9, 10, 3)).astype(np.float32)
    theirs = keras.Sequential(separable(keras, keras.Input((9, 10, 3))))
    ours = Sequential(separable(fastdl, layers.InputLayer((9, 10, 3))))
    ours.build()
    ours.set_weights([w + rng.standard_normal(w.shape).astype(np.float32) * 0.2 for w in theirs.get_weights()])
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    ours.save(tmp_path / "ours.keras")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "ours.keras").predict(x, verbose=0),
                               ours.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    theirs.save(tmp_path / "theirs.keras")
    np.testing.assert_allclose(fastdl.models.load_model(tmp_path / "theirs.keras").predict(x, verbose=0),
                               theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_depthwise_and_separable_gradients_match_finite_differences(backend):
    fastdl.utils.set_random_seed(7)
    model = Sequential(separable(fastdl, layers.InputLayer((6, 7, 2))), dtype="float64")
    model.compile(optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((2, 6, 7, 2)), np.array([1, 0])
    model.train_on_batch(x, y)
    grad = model.flat_grads.copy()
    np.testing.assert_allclose(grad, numerical_gradient(lambda: model.evaluate(x, y, verbose=0), model.flat_params),
                               rtol=1e-5, atol=1e-8)


def permuted(lib, inputs):
    """Permute on images (channels first and back) and on a sequence (steps <-> features)."""
    return [inputs, lib.layers.Conv2D(3, 2, activation="tanh"), lib.layers.Permute((3, 1, 2)),
            lib.layers.Reshape((3, 20)), lib.layers.Permute((2, 1)), lib.layers.Dense(4, activation="relu"),
            lib.layers.Flatten(), lib.layers.Dense(2, activation="softmax")]


def test_permute_matches_keras_and_round_trips(tmp_path):
    keras = keras_or_skip()
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 5, 6, 2)).astype(np.float32)
    theirs = keras.Sequential(permuted(keras, keras.Input((5, 6, 2))))
    ours = Sequential(permuted(fastdl, layers.InputLayer((5, 6, 2))))
    ours.build()
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    ours.save(tmp_path / "ours.keras")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "ours.keras").predict(x, verbose=0),
                               ours.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    theirs.save(tmp_path / "theirs.keras")
    np.testing.assert_allclose(fastdl.models.load_model(tmp_path / "theirs.keras").predict(x, verbose=0),
                               theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_permutes_gradient_matches_finite_differences(backend):
    fastdl.utils.set_random_seed(10)
    model = Sequential(permuted(fastdl, layers.InputLayer((5, 6, 2))), dtype="float64")
    model.compile(optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(11)
    x, y = rng.standard_normal((2, 5, 6, 2)), np.array([1, 0])
    model.train_on_batch(x, y)
    grad = model.flat_grads.copy()
    np.testing.assert_allclose(grad, numerical_gradient(lambda: model.evaluate(x, y, verbose=0), model.flat_params),
                               rtol=1e-5, atol=1e-8)


def test_permutes_bad_dims_are_clear_errors():
    with pytest.raises(ValueError, match="dims must be a permutation of 1..2"):
        layers.Permute((0, 1))
    with pytest.raises(ValueError, match="dims \\(2, 1\\) permutes 2 axes; the input has 3"):
        Sequential([layers.InputLayer((3, 4, 5)), layers.Permute((2, 1))]).build()
