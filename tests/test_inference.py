"""Inference plans (fastdl.inference): predict's kernels called back to back, checked
once, with the ordinary forward pass's bits, and kept in step with the model."""
import numpy as np
import pytest

import fastdl
from fastdl import inference, layers, optimizers, train
from fastdl.models import Sequential


def ordinary(model, x):
    """The prediction through the layers' own forward pass (no plan)."""
    with model._lock:
        return np.array(model._outputs_to_predictions(model._forward(model._as_batch(x), training=False)))


def every_layer(dtype="float32"):
    fastdl.utils.set_random_seed(4)
    return Sequential([
        layers.Input((13, 11, 3)),
        layers.Conv2D(5, (3, 2), strides=(2, 1), padding="same", activation="relu"),
        layers.BatchNormalization(scale=False),
        layers.MaxPooling2D((3, 2), strides=(1, 2), padding="same"),
        layers.Conv2D(4, 3, dilation_rate=2, activation="tanh", use_bias=False),
        layers.AveragePooling2D(2, strides=1, padding="same"),
        layers.Conv2D(3, 1, activation="sigmoid"),
        layers.Dropout(0.4),
        layers.Activation("softmax"),
        layers.Flatten(),
        layers.Dense(7),
        layers.BatchNormalization(),
        layers.ReLU(),
        layers.Dense(6, activation="tanh"),
        layers.Dense(3, activation="softmax"),
    ], dtype=dtype)


def models():
    seed = train.seed_cnn((32, 32, 3))
    seed.compile(optimizers.Adam(), "sparse_categorical_crossentropy")  # trains on logits: softmax after
    plain = every_layer()
    plain.build()
    wide = every_layer("float64")
    wide.compile("sgd", "mse")
    return {"seed-compiled": seed, "every-layer": plain, "every-layer-float64": wide}


@pytest.mark.parametrize("name", ["seed-compiled", "every-layer", "every-layer-float64"])
@pytest.mark.parametrize("batch", [1, 5])
def test_a_plan_predicts_the_ordinary_bits_on_every_backend(backend, name, batch):
    model = models()[name]
    model.build()
    x = np.random.default_rng(batch).standard_normal((batch,) + model.input_shape).astype(np.float32)
    planned = model.predict_on_batch(x)
    assert isinstance(inference.plan_for(model, x.shape), inference.InferencePlan)
    np.testing.assert_array_equal(planned, ordinary(model, x))
    np.testing.assert_array_equal(model(x), planned)


def test_the_plan_follows_new_weights_rebuilds_and_compiles():
    model = every_layer()
    model.build()
    x = np.random.default_rng(0).standard_normal((2, 13, 11, 3)).astype(np.float32)
    first = model.predict(x)
    weights = [w * 1.5 for w in model.get_weights()]
    model.set_weights(weights)  # the plan reads the weights where they live
    np.testing.assert_array_equal(model.predict(x), ordinary(model, x))
    assert not np.array_equal(model.predict(x), first)
    model.compile("adam", "sparse_categorical_crossentropy")  # re-plans the steps (softmax on logits)
    assert "_inference_plans" not in model.__dict__
    np.testing.assert_array_equal(model.predict(x), ordinary(model, x))
    model.fit(x, [0, 1], epochs=1, verbose=0)
    np.testing.assert_array_equal(model.predict(x), ordinary(model, x))


def test_inputs_of_other_dtypes_and_the_last_short_batch():
    model = train.seed_cnn((28, 28, 1))
    model.build()
    images = (np.random.default_rng(1).random((37, 28, 28, 1)) * 255).astype(np.uint8)
    for x in (images, images.astype(np.float64) / 255):
        np.testing.assert_array_equal(model.predict(x, batch_size=16), ordinary(model, x))
    assert {shape for shape, _ in model._inference_plans} == {(16, 28, 28, 1), (5, 28, 28, 1)}


def test_a_plan_is_made_per_backend():
    model = train.seed_cnn((16, 16, 3))
    model.build()
    x = np.random.default_rng(2).random((3, 16, 16, 3)).astype(np.float32)
    with fastdl.use_backend("reference"):
        theirs = model.predict(x)
        plan = inference.plan_for(model, x.shape)
    assert all(fn.__module__ == "fastdl.backends.reference" for fn, _ in plan._calls)
    with fastdl.use_backend("cython"):
        ours = model.predict(x)
        assert all(fn.__module__ == "fastdl.backends.cython" for fn, _ in inference.plan_for(model, x.shape)._calls)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_plans_per_model_are_bounded():
    model = Sequential([layers.Input((4,)), layers.Dense(2)])
    for batch in range(1, 3 * inference.MAX_PLANS):
        model.predict_on_batch(np.ones((batch, 4), np.float32))
    assert len(model._inference_plans) == inference.MAX_PLANS


def test_training_mode_calls_do_not_use_the_plan():
    model = Sequential([layers.Input((50,)), layers.Dropout(0.5)])
    x = np.ones((4, 50), np.float32)
    assert (model(x, training=True) == 0).any()  # dropout on
    np.testing.assert_array_equal(model(x), x)
