"""Functional models (fastdl.models.Model(inputs, outputs)) and the merge layers: the
graph runs forward in topological order and backward in reverse with the gradients of a
tensor read twice summed, checked by finite differences, against Keras 3 itself, and
with the conv+pool fusion inside the graph."""
import numpy as np
import pytest

import fastdl
from fastdl import layers, optimizers
from fastdl.fusion import ConvPoolStep
from fastdl.models import Model, Sequential

from support import keras_or_skip, numerical_gradient


def residual(k, merge="Add", dtype=None):
    """A residual block and a merge, in Keras's or fastdl's namespace."""
    kw = {"dtype": dtype} if dtype else {}
    inputs = k.Input((6, 5, 3))
    x = k.layers.Conv2D(4, 3, padding="same", activation="relu", **kw)(inputs)
    y = k.layers.Conv2D(4, 3, padding="same", **kw)(x)
    y = k.layers.BatchNormalization(**kw)(y)
    if merge == "Concatenate":
        z = k.layers.Concatenate(**kw)([x, y])
    else:
        z = getattr(k.layers, merge)(**kw)([x, y])
    z = k.layers.Activation("tanh", **kw)(z)
    z = k.layers.Conv2D(3, 2, **kw)(z)
    z = k.layers.MaxPooling2D(2, **kw)(z)  # fused with the convolution before it
    z = k.layers.Flatten(**kw)(z)
    outputs = k.layers.Dense(3, activation="softmax", **kw)(z)
    return k.Model(inputs, outputs) if k is not fastdl else Model(inputs, outputs, dtype=dtype or "float32")


MERGES = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Concatenate"]


@pytest.mark.parametrize("merge", MERGES)
def test_the_graphs_gradient_matches_finite_differences(backend, merge):
    fastdl.utils.set_random_seed(1)
    model = residual(fastdl, merge, dtype="float64")
    model.compile(optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((4, 6, 5, 3)), np.array([0, 1, 2, 1])
    model.train_on_batch(x, y)
    grad = model.flat_grads.copy()

    def training_loss():
        return float(model.loss.per_sample(y, model._forward(x, training=True), model._from_logits).mean())
    np.testing.assert_allclose(grad, numerical_gradient(training_loss, model.flat_params), rtol=1e-5, atol=1e-8)
    assert any(isinstance(step, ConvPoolStep) for step in model._steps)


@pytest.mark.parametrize("merge", MERGES)
def test_predicts_as_keras_does_with_the_same_weights(merge):
    keras = keras_or_skip()
    ours, theirs = residual(fastdl, merge), residual(keras, merge)
    ours.build()
    assert [type(layer).__name__ for layer in ours.layers] == [type(layer).__name__ for layer in theirs.layers]
    theirs.set_weights(ours.get_weights())
    x = np.random.default_rng(3).standard_normal((5, 6, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(ours.predict(x), np.asarray(theirs.predict(x, verbose=0)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours(x, training=True), np.asarray(theirs(x, training=True)), rtol=1e-4, atol=1e-5)


def test_a_chain_built_functionally_trains_as_the_same_sequential_model():
    def functional():
        inputs = fastdl.Input((6, 5, 3))
        x = layers.Conv2D(4, 3, activation="relu")(inputs)
        x = layers.MaxPooling2D()(x)
        return Model(inputs, layers.Dense(3, activation="softmax")(layers.Flatten()(x)))

    def sequential():
        return Sequential([fastdl.Input((6, 5, 3)), layers.Conv2D(4, 3, activation="relu"), layers.MaxPooling2D(),
                           layers.Flatten(), layers.Dense(3, activation="softmax")])
    rng = np.random.default_rng(4)
    x, y = rng.random((32, 6, 5, 3)).astype(np.float32), rng.integers(0, 3, 32)
    results = []
    for make in (functional, sequential):
        fastdl.utils.set_random_seed(5)
        model = make()
        model.compile(optimizers.Adam(0.01), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
        results.append(model.get_weights())
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_a_tensor_read_by_three_layers_gets_the_sum_of_their_gradients():
    inputs = fastdl.Input((4,))
    hidden = layers.Dense(5, activation="tanh", dtype="float64")(inputs)
    a = layers.Dense(2, dtype="float64")(hidden)
    b = layers.Dense(2, dtype="float64")(hidden)
    c = layers.Dense(2, dtype="float64")(hidden)
    model = Model(inputs, layers.Add(dtype="float64")([layers.Add(dtype="float64")([a, b]), c]), dtype="float64")
    model.compile(optimizers.SGD(0.0), "mse")
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 2))
    model.train_on_batch(x, y)
    grad = model.flat_grads.copy()
    np.testing.assert_allclose(grad, numerical_gradient(lambda: model.evaluate(x, y, verbose=0), model.flat_params),
                               rtol=1e-6, atol=1e-9)


def test_graphs_save_as_keras_files_and_weights_and_export_to_onnx(tmp_path):
    keras = keras_or_skip()
    model = residual(fastdl, "Concatenate")
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(np.random.default_rng(9).standard_normal((8, 6, 5, 3)).astype(np.float32), np.arange(8) % 3,
              epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    x = np.random.default_rng(7).standard_normal((2, 6, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(keras.saving.load_model(tmp_path / "m.keras").predict(x, verbose=0)),
                               model.predict(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(fastdl.models.load_model(tmp_path / "m.keras").predict(x), model.predict(x))
    onnxruntime = pytest.importorskip("onnxruntime")
    from fastdl import onnx as fastdl_onnx

    session = onnxruntime.InferenceSession(fastdl_onnx.to_onnx(model).SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x})[0], model.predict(x), rtol=1e-5, atol=1e-6)
    model.save_weights(tmp_path / "m.weights.h5")
    other = residual(fastdl, "Concatenate")
    other.load_weights(tmp_path / "m.weights.h5")
    x = np.random.default_rng(7).standard_normal((2, 6, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))


def test_keras_reads_the_weights_of_a_fastdl_graph(tmp_path):
    keras = keras_or_skip()
    ours = residual(fastdl, "Concatenate")
    ours.build()
    ours.save_weights(tmp_path / "g.weights.h5")
    theirs = residual(keras, "Concatenate")
    theirs.load_weights(tmp_path / "g.weights.h5")
    x = np.random.default_rng(8).standard_normal((3, 6, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(theirs.predict(x, verbose=0)), ours.predict(x), rtol=1e-5, atol=1e-6)


def test_bad_graphs_are_clear_errors():
    inputs = fastdl.Input((4,))
    dense = layers.Dense(3)
    out = dense(inputs)
    with pytest.raises(ValueError, match="already called on a tensor"):
        dense(inputs)
    other = fastdl.Input((4,))
    with pytest.raises(ValueError, match="not among the Model's inputs"):
        Model(inputs, layers.Add()([out, layers.Dense(3)(other)]))
    with pytest.raises(ValueError, match="one input and one output"):
        Model([inputs, other], out)
    with pytest.raises(TypeError, match="symbolic tensors"):
        Model(inputs, np.zeros(3))
    with pytest.raises(ValueError, match="one shape"):
        layers.Add()([fastdl.Input((3,)), fastdl.Input((4,))])
    with pytest.raises(ValueError, match="at least 2 inputs"):
        layers.Add()([fastdl.Input((3,))])
    with pytest.raises(ValueError, match="differ only along axis"):
        layers.Concatenate(axis=1)([fastdl.Input((3, 2)), fastdl.Input((3, 4))])
