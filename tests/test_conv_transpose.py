"""Conv2DTranspose: equal to Keras 3's layer with the same weights for every padding,
stride, output padding and dilation; gradients against finite differences on every
backend; .keras files both ways; ONNX; bad arguments. The ops themselves are in the op
table (tests/optable.py, against PyTorch's conv_transpose2d too)."""
import os

import numpy as np
import pytest

import fastdl
from fastdl import Sequential, layers, optimizers

from support import keras_or_skip, numerical_gradient

CONFIGS = [dict(kernel_size=3), dict(kernel_size=(3, 2), strides=2, padding="same"),
           dict(kernel_size=2, strides=2), dict(kernel_size=1, strides=(2, 3)),
           dict(kernel_size=3, strides=2, output_padding=1), dict(kernel_size=4, strides=(2, 1), padding="same",
                                                                  output_padding=(1, 0)),
           dict(kernel_size=3, padding="same", dilation_rate=2, activation="relu"),
           dict(kernel_size=(2, 3), strides=3, padding="same", use_bias=False, activation="tanh")]


@pytest.mark.parametrize("config", CONFIGS)
def test_the_layer_matches_keras(config):
    keras = keras_or_skip()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    theirs = keras.Sequential([keras.Input((5, 4, 3)), keras.layers.Conv2DTranspose(4, **config)])
    ours = Sequential([layers.InputLayer((5, 4, 3)), layers.Conv2DTranspose(4, **config)])
    ours.build()
    assert ours.layers[-1].output_shape == tuple(theirs.output_shape[1:])
    theirs.set_weights([w + rng.standard_normal(w.shape).astype(np.float32) * 0.3 for w in theirs.get_weights()])
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def decoder(lib, inputs):
    """A small encoder-decoder: down by a strided convolution, up by transposed ones."""
    return [inputs, lib.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu"),
            lib.layers.Conv2DTranspose(3, 3, strides=2, padding="same", activation="relu"),
            lib.layers.Conv2DTranspose(2, (2, 3), strides=(1, 2), output_padding=(0, 1)),
            lib.layers.Flatten(), lib.layers.Dense(3, activation="softmax")]


def test_a_decoder_round_trips_through_keras_files_both_ways(tmp_path):
    keras = keras_or_skip()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 7, 6, 2)).astype(np.float32)
    ours = Sequential(decoder(fastdl, layers.InputLayer((7, 6, 2))))
    ours.compile(optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    ours.fit(x, np.array([0, 1, 2]), epochs=2, verbose=0)
    ours.save(tmp_path / "ours.keras")
    theirs = keras.saving.load_model(tmp_path / "ours.keras")
    np.testing.assert_allclose(theirs.predict(x, verbose=0), ours.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    theirs.save(tmp_path / "theirs.keras")
    back = fastdl.models.load_model(tmp_path / "theirs.keras")
    np.testing.assert_allclose(back.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    transposed = [layer for layer in back.layers if isinstance(layer, layers.Conv2DTranspose)]
    assert [t.output_padding for t in transposed] == [None, (0, 1)] and transposed[0].strides == (2, 2)


def test_a_decoders_gradient_matches_finite_differences(backend):
    fastdl.utils.set_random_seed(2)
    model = Sequential(decoder(fastdl, layers.InputLayer((5, 6, 2))), dtype="float64")
    model.compile(optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((2, 5, 6, 2)), np.array([1, 2])
    model.train_on_batch(x, y)
    grad = model.flat_grads.copy()
    np.testing.assert_allclose(grad, numerical_gradient(lambda: model.evaluate(x, y, verbose=0), model.flat_params),
                               rtol=1e-5, atol=1e-8)


def test_the_decoder_runs_in_onnxruntime_as_predict():
    onnxruntime = pytest.importorskip("onnxruntime") if not os.environ.get("CI") else __import__("onnxruntime")
    from fastdl import onnx

    fastdl.utils.set_random_seed(4)
    model = Sequential(decoder(fastdl, layers.InputLayer((7, 6, 2))))
    model.build()
    x = np.random.default_rng(5).standard_normal((4, 7, 6, 2)).astype(np.float32)
    session = onnxruntime.InferenceSession(onnx.to_onnx(model).SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x})[0], model.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-6)
    for config in CONFIGS:  # every geometry alone, the output an image
        single = Sequential([layers.InputLayer((5, 4, 3)), layers.Conv2DTranspose(4, **config)])
        single.build()
        images = np.random.default_rng(6).standard_normal((2, 5, 4, 3)).astype(np.float32)
        session = onnxruntime.InferenceSession(onnx.to_onnx(single).SerializeToString(),
                                               providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(session.run(None, {"input": images})[0], single.predict(images, verbose=0),
                                   rtol=1e-5, atol=1e-5, err_msg=str(config))


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="output_padding must be smaller than strides"):
        layers.Conv2DTranspose(2, 3, strides=2, output_padding=2)
    with pytest.raises(ValueError, match="padding must be 'valid', 'same'"):
        layers.Conv2DTranspose(2, 3, padding="full")
    with pytest.raises(ValueError, match="data_format must be 'channels_last'"):
        layers.Conv2DTranspose(2, 3, data_format="channels_first")
    with pytest.raises(ValueError, match="filters must be a positive int"):
        layers.Conv2DTranspose(0, 3)
    with pytest.raises(ValueError, match="takes \\(batch, height, width, channels\\)"):
        Sequential([layers.InputLayer((5, 3)), layers.Conv2DTranspose(2, 3)]).build()
