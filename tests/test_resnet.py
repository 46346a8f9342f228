"""ResNet v1 (fastdl.applications.resnet_v1) and the layers it and its kind need:
GlobalAveragePooling2D, GlobalMaxPooling2D, Reshape; against Keras 3 built the same way,
finite differences, ONNX Runtime and the .keras files."""
import numpy as np
import pytest

import fastdl
from fastdl import applications, layers, optimizers
from fastdl.models import Sequential, load_model

from support import keras_or_skip, numerical_gradient


def keras_resnet(keras, input_shape, depth=20, classes=10):
    """The same network written with Keras's layers (the Keras CIFAR-10 example's
    resnet_v1, without its L2 regularizer and with bias-free convolutions before BN)."""
    L = keras.layers

    def conv_bn(x, filters, kernel_size=3, strides=1, activation="relu", bn=True):
        x = L.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=not bn)(x)
        if bn:
            x = L.BatchNormalization()(x)
        return L.Activation(activation)(x) if activation else x
    inputs = keras.Input(input_shape)
    x, filters = conv_bn(inputs, 16), 16
    for stage in range(3):
        for block in range((depth - 2) // 6):
            strides = 2 if stage > 0 and block == 0 else 1
            y = conv_bn(conv_bn(x, filters, strides=strides), filters, activation=None)
            if strides != 1:
                x = conv_bn(x, filters, kernel_size=1, strides=strides, activation=None, bn=False)
            x = L.Activation("relu")(L.Add()([x, y]))
        filters *= 2
    outputs = L.Dense(classes, activation="softmax")(L.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def test_resnet20_is_keras_resnet20_layer_for_layer_and_predicts_the_same():
    keras = keras_or_skip()
    fastdl.utils.set_random_seed(0)
    ours = applications.resnet_v1((28, 28, 1), depth=20)
    theirs = keras_resnet(keras, (28, 28, 1))
    ours.build()
    assert [type(layer).__name__ for layer in ours.layers] == [type(layer).__name__ for layer in theirs.layers]
    assert ours.count_params() == theirs.count_params() == 273_466
    rng = np.random.default_rng(1)
    weights = ours.get_weights()
    ours.set_weights([w + rng.random(w.shape).astype(np.float32) * 0.1 for w in weights])  # moving stats off 0/1
    theirs.set_weights(ours.get_weights())
    x = rng.standard_normal((4, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(ours.predict(x), np.asarray(theirs.predict(x, verbose=0)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours(x, training=True), np.asarray(theirs(x, training=True)), rtol=1e-3, atol=1e-4)


def test_a_small_resnets_gradient_matches_finite_differences(backend):
    fastdl.utils.set_random_seed(2)
    model = applications.resnet_v1((8, 7, 2), depth=8, classes=3, dtype="float64")
    model.compile(optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((3, 8, 7, 2)), np.array([0, 2, 1])
    model.train_on_batch(x, y)
    grad = model.flat_grads.copy()

    def training_loss():
        return float(model.loss.per_sample(y, model._forward(x, training=True), model._from_logits).mean())
    # central differences at 150 of its ~78,000 weights, drawn across every layer (all of
    # them would take two forward passes each)
    at = rng.choice(model.flat_params.size, 150, replace=False)
    numerical = numerical_gradient(training_loss, model.flat_params, at=at)
    np.testing.assert_allclose(grad[at], numerical[at], rtol=1e-4, atol=1e-7)


def test_resnet_trains_and_its_bad_depths_are_refused():
    fastdl.utils.set_random_seed(4)
    model = applications.resnet_v1((12, 12, 1), depth=8, classes=2)
    model.compile(optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, 12, 12, 1)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(int)
    history = model.fit(x, y, epochs=8, batch_size=16, verbose=0)
    assert history.history["accuracy"][-1] > 0.9
    for depth in (19, 2, 20.0, True):
        with pytest.raises(ValueError, match="6n \\+ 2"):
            applications.resnet_v1(depth=depth)


def head(pooling, **kwargs):
    return Sequential([layers.Input((5, 4, 3)), layers.Conv2D(6, 2, activation="tanh"), pooling(**kwargs),
                       layers.Reshape((2, 3)) if not kwargs.get("keepdims") else layers.Reshape((6,)),
                       layers.Flatten(), layers.Dense(2, activation="softmax")], dtype="float64")


@pytest.mark.parametrize("pooling", [layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_and_reshape_gradients_match_finite_differences(backend, pooling, keepdims):
    fastdl.utils.set_random_seed(6)
    model = head(pooling, keepdims=keepdims)
    model.compile(optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((3, 5, 4, 3)), np.array([0, 1, 1])
    model.train_on_batch(x, y)
    grad = model.flat_grads.copy()
    np.testing.assert_allclose(grad, numerical_gradient(lambda: model.evaluate(x, y, verbose=0), model.flat_params),
                               rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", ["GlobalAveragePooling2D", "GlobalMaxPooling2D"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_and_reshape_match_keras_and_round_trip_through_keras_files(tmp_path, name, keepdims):
    keras = keras_or_skip()
    ours = Sequential([layers.Input((5, 4, 3)), layers.Conv2D(6, 2), getattr(layers, name)(keepdims=keepdims),
                       layers.Reshape((3, 2)), layers.Flatten(), layers.Dense(2)])
    ours.build()
    ours.save(tmp_path / "m.keras")
    theirs = keras.saving.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(8).standard_normal((4, 5, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(theirs.predict(x, verbose=0)), ours.predict(x), rtol=1e-5, atol=1e-6)
    theirs.save(tmp_path / "k.keras")
    np.testing.assert_allclose(load_model(tmp_path / "k.keras").predict(x), ours.predict(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_and_reshape_export_to_onnx(keepdims):
    onnxruntime = pytest.importorskip("onnxruntime")
    from fastdl import onnx as fastdl_onnx

    for pooling in (layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D):
        model = Sequential([layers.Input((6, 5, 3)), layers.Conv2D(4, 3, padding="same"), pooling(keepdims=keepdims),
                            layers.Reshape((2, 2)), layers.Flatten(), layers.Dense(3)])
        model.build()
        x = np.random.default_rng(9).standard_normal((3, 6, 5, 3)).astype(np.float32)
        session = onnxruntime.InferenceSession(fastdl_onnx.to_onnx(model).SerializeToString(),
                                               providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(session.run(None, {"input": x})[0], model.predict(x), rtol=1e-5, atol=1e-6)


def test_bad_arguments_of_the_new_layers():
    with pytest.raises(ValueError, match="channels_last"):
        layers.GlobalAveragePooling2D(data_format="channels_first")
    with pytest.raises(ValueError, match="at most one -1"):
        layers.Reshape((-1, -1))
    with pytest.raises(TypeError, match="tuple of ints"):
        layers.Reshape("flat")
    with pytest.raises(ValueError, match="cannot reshape"):
        Sequential([layers.Input((4, 3)), layers.Reshape((5,))]).build()
    with pytest.raises(ValueError, match="expects inputs \\(height, width, channels\\)"):
        Sequential([layers.Input((4,)), layers.GlobalMaxPooling2D()]).build()
