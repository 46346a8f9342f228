"""Sequential: whole-model gradients, PyTorch equivalence, learning, weights, bad input."""
import io
import os

import numpy as np
import pytest

import fastdl
from fastdl import callbacks, fusion, layers, optimizers, train
from fastdl.models import Sequential

from support import numerical_gradient


def seed_cnn(input_shape=(32, 32, 3), dtype="float32"):
    """The reference program's CNN (section 4 of the seed)."""
    return train.seed_cnn(input_shape, dtype=dtype)


def small_model(dtype="float64"):
    model = Sequential([
        layers.Input(shape=(7, 6, 2)),
        layers.Conv2D(3, (3, 2), activation="tanh", padding="same"),
        layers.AveragePooling2D((2, 2)),
        layers.Conv2D(4, 2, strides=2, activation="relu"),
        layers.Flatten(),
        layers.Dense(5, activation="sigmoid"),
        layers.Dense(3, activation="softmax"),
    ], dtype=dtype)
    model.compile(optimizer=optimizers.SGD(learning_rate=0.0), loss="sparse_categorical_crossentropy")
    return model


def model_gradient(model, x, y):
    """The flat gradient of the mean loss, from one train step with a zero learning rate."""
    model.train_on_batch(x, y)
    return model.flat_grads.copy()


def test_whole_model_gradient_matches_finite_differences(backend):
    fastdl.utils.set_random_seed(0)
    model = small_model()
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((4, 7, 6, 2)), rng.integers(0, 3, 4)
    grad = model_gradient(model, x, y)
    expected = numerical_gradient(lambda: model.evaluate(x, y, batch_size=4, verbose=0), model.flat_params)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-8)


def test_relu_taken_through_max_pooling_keeps_the_gradient_exact(backend):
    """Conv2D(relu) followed by MaxPooling2D: the model hands the ReLU's gradient to the
    pooling's backward pass; the whole gradient still matches finite differences."""
    fastdl.utils.set_random_seed(2)
    model = Sequential([layers.Input(shape=(6, 7, 2)), layers.Conv2D(3, 3, activation="relu", padding="same"),
                        layers.MaxPooling2D(3, strides=2, padding="same"), layers.Flatten(),
                        layers.Dense(3, activation="softmax")], dtype="float64")
    model.compile(optimizer=optimizers.SGD(learning_rate=0.0), loss="sparse_categorical_crossentropy")
    model.build()
    step = model._steps[0]  # one fused step: the ReLU's gradient taken by the pooling
    assert isinstance(step, fusion.ConvPoolStep) and step.relu and not step.pools_in_pass
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((3, 6, 7, 2)), rng.integers(0, 3, 3)
    grad = model_gradient(model, x, y)
    expected = numerical_gradient(lambda: model.evaluate(x, y, batch_size=3, verbose=0), model.flat_params)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
def test_max_pooling_from_saved_positions_keeps_the_gradient_exact(backend, activation):
    """In training the pooling keeps where each maximum was, not its input: fused after a
    Conv2D (the ReLU's zeros recorded there too; tanh keeps the convolution's output for
    its own backward) and on its own, first in the model (windows overlap, padding)."""
    fastdl.utils.set_random_seed(3)
    model = Sequential([layers.Input(shape=(9, 8, 2)), layers.MaxPooling2D(2, strides=1, padding="same"),
                        layers.Conv2D(3, 3, activation=activation), layers.MaxPooling2D(2), layers.Flatten(),
                        layers.Dense(3, activation="softmax")], dtype="float64")
    model.compile(optimizer=optimizers.SGD(learning_rate=0.0), loss="sparse_categorical_crossentropy")
    model.build()
    assert isinstance(model._steps[1], fusion.ConvPoolStep) and model._steps[1].pools_in_pass
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((3, 9, 8, 2)), rng.integers(0, 3, 3)
    grad = model_gradient(model, x, y)
    assert (model._steps[1]._argmax is None) == (activation == "tanh")
    assert model.layers[1]._argmax is not None
    expected = numerical_gradient(lambda: model.evaluate(x, y, batch_size=3, verbose=0), model.flat_params)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-8)


def test_seed_cnn_matches_pytorch(backend, torch):
    """Same weights in PyTorch: the loss and every gradient agree to float32 tolerance."""
    fastdl.utils.set_random_seed(1)
    model = seed_cnn(input_shape=(16, 16, 3))
    model.compile(optimizer=optimizers.SGD(learning_rate=0.0), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(1)
    x, y = rng.random((8, 16, 16, 3)).astype(np.float32), rng.integers(0, 10, 8)
    loss = model.train_on_batch(x, y)

    F = torch.nn.functional
    w = [torch.tensor(p, requires_grad=True) for layer in model.layers for p in layer.params]
    tx = torch.tensor(x).permute(0, 3, 1, 2)
    h = F.max_pool2d(F.relu(F.conv2d(tx, w[0].permute(3, 2, 0, 1), w[1])), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, w[2].permute(3, 2, 0, 1), w[3])), 2)
    h = h.permute(0, 2, 3, 1).reshape(8, -1)  # flatten in NHWC order, as Keras does
    h = F.relu(h @ w[4] + w[5])
    tloss = F.cross_entropy(h @ w[6] + w[7], torch.tensor(y))
    tloss.backward()
    assert abs(loss - tloss.item()) < 1e-5
    for layer_grads, tw in zip([g for layer in model.layers for g in layer.grads], w):
        np.testing.assert_allclose(layer_grads, tw.grad.numpy(), rtol=2e-3, atol=2e-6)


def test_model_learns_a_separable_problem():
    fastdl.utils.set_random_seed(2)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((600, 6, 6, 1)).astype(np.float32)
    y = (x[:, :3].mean(axis=(1, 2, 3)) > x[:, 3:].mean(axis=(1, 2, 3))).astype(np.int64)  # top vs bottom
    model = Sequential([layers.Conv2D(4, 3, activation="relu", input_shape=(6, 6, 1)),
                        layers.Flatten(), layers.Dense(2, activation="softmax")])
    model.compile(optimizer=optimizers.Adam(learning_rate=0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x[:500], y[:500], epochs=20, batch_size=32, verbose=0)
    loss, accuracy = model.evaluate(x[500:], y[500:], verbose=0)
    assert accuracy > 0.85, (loss, accuracy)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_softmax_output_trains_from_logits_and_predicts_probabilities():
    model = small_model(dtype="float32")
    x = np.random.default_rng(3).standard_normal((5, 7, 6, 2)).astype(np.float32)
    probs = model.predict(x)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    assert isinstance(model._steps[-1], fusion.LogitsStep)  # trained on logits
    # a loss on extreme logits stays finite (the fused softmax + cross-entropy)
    model.layers[-1].params[0][...] *= 1e4
    assert np.isfinite(model.evaluate(x, [0, 1, 2, 0, 1], verbose=0))


def test_categorical_crossentropy_and_accuracy():
    fastdl.utils.set_random_seed(4)
    model = Sequential([layers.Dense(3, activation="softmax", input_shape=(4,))])
    model.compile("sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    x = np.eye(4, dtype=np.float32)[[0, 1, 2, 3]]
    y = np.eye(3)[[0, 1, 2, 0]]
    loss, acc = model.evaluate(x, y, verbose=0)
    sparse = Sequential([layers.Dense(3, activation="softmax", input_shape=(4,))])
    sparse.compile("sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    sparse.set_weights(model.get_weights())
    np.testing.assert_allclose([loss, acc], sparse.evaluate(x, [0, 1, 2, 0], verbose=0), rtol=1e-6)


def test_save_load_round_trip_and_atomic_failures(tmp_path):
    fastdl.utils.set_random_seed(5)
    model = small_model(dtype="float32")
    x = np.random.default_rng(5).standard_normal((3, 7, 6, 2)).astype(np.float32)
    path = tmp_path / "model.npz"
    model.save_weights(path)
    other = small_model(dtype="float32")
    other.load_weights(path)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind

    wrong = seed_cnn()
    wrong.compile("adam", "sparse_categorical_crossentropy")
    before = wrong.get_weights()
    with pytest.raises(ValueError, match="has 8 arrays|expects"):
        wrong.load_weights(path)
    for a, b in zip(wrong.get_weights(), before):
        np.testing.assert_array_equal(a, b)  # a failed load changes no weight

    (tmp_path / "torn.npz").write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="cannot read weights"):
        other.load_weights(tmp_path / "torn.npz")


def test_set_weights_checks_shapes_first():
    model = small_model()
    weights = model.get_weights()
    weights[2] = np.zeros((9, 9))
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"array 2 has shape \(9, 9\)"):
        model.set_weights(weights)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_bad_input_is_a_clear_error():
    model = seed_cnn()
    x = np.zeros((4, 32, 32, 3), np.float32)
    with pytest.raises(RuntimeError, match="You must compile your model before training"):
        model.fit(x, np.zeros(4, int), verbose=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"the model expects \(batch,\) \+ \(32, 32, 3\); got \(4, 28, 28, 1\)"):
        model.fit(np.zeros((4, 28, 28, 1)), np.zeros(4, int), verbose=0)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\) for 10 classes; got 10"):
        model.fit(x, np.full(4, 10), verbose=0)
    with pytest.raises(ValueError, match="same number of samples; got 4 and 3"):
        model.fit(x, np.zeros(3, int), verbose=0)
    with pytest.raises(ValueError, match="unknown optimizer 'adamx'"):
        model.compile("adamx", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="unknown loss 'cosine_proximity'"):
        model.compile("adam", "cosine_proximity")
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["f1"])
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        model.fit(x, np.zeros(4, int), batch_size=0, verbose=0)


def test_summary_lists_layers_and_totals():
    model = seed_cnn()
    out = io.StringIO()
    model.summary(print_fn=lambda line: print(line, file=out))
    text = out.getvalue()
    assert "(None, 30, 30, 32)" in text and "(None, 2304)" in text
    assert "Total params: 315,722" in text


def test_seeded_runs_are_reproducible():
    def run():
        fastdl.utils.set_random_seed(7)
        model = small_model(dtype="float32")
        model.compile(optimizers.Adam(), "sparse_categorical_crossentropy")
        rng = np.random.default_rng(7)
        model.fit(rng.standard_normal((40, 7, 6, 2)), rng.integers(0, 3, 40), epochs=2, batch_size=8, verbose=0)
        return model.get_weights()
    for a, b in zip(run(), run()):
        np.testing.assert_array_equal(a, b)


def test_callbacks(tmp_path):
    fastdl.utils.set_random_seed(8)
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((64, 7, 6, 2)), rng.integers(0, 3, 64)
    model = small_model(dtype="float32")
    model.compile(optimizers.SGD(learning_rate=0.1), "sparse_categorical_crossentropy", metrics=["accuracy"])
    seen_lr = []
    stopper = callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0)
    history = model.fit(
        x, y, epochs=6, batch_size=16, verbose=0, validation_split=0.25,
        callbacks=[stopper,
                   callbacks.LearningRateScheduler(lambda epoch, lr: seen_lr.append(lr) or lr * 0.5),
                   callbacks.CSVLogger(tmp_path / "log.csv"),
                   callbacks.ModelCheckpoint(str(tmp_path / "best.npz"), monitor="val_loss", save_best_only=True)])
    assert len(history.history["loss"]) == 2  # no epoch improves by 10: stops after the second
    assert set(history.history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}
    assert seen_lr == [0.1, 0.05]
    rows = (tmp_path / "log.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,") and len(rows) == 3
    assert (tmp_path / "best.npz").exists()

    model.layers[-1].params[0][...] = np.nan
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[callbacks.TerminateOnNaN()])
    assert len(history.history["loss"]) == 1


def test_progress_output_per_verbose(capsys):
    model = small_model(dtype="float32")
    x, y = np.zeros((10, 7, 6, 2)), np.zeros(10, int)
    model.fit(x, y, epochs=1, batch_size=5, verbose=0)
    assert capsys.readouterr().out == ""
    model.fit(x, y, epochs=2, batch_size=5, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Epoch 1/2" and lines[1].startswith("2/2 - ") and "loss:" in lines[1]


def test_fit_accepts_a_batch_iterator():
    class Batches:
        def __init__(self):
            self.rng = np.random.default_rng(9)

        def __len__(self):
            return 3

        def __iter__(self):
            return self

        def __next__(self):
            return self.rng.standard_normal((4, 7, 6, 2)), self.rng.integers(0, 3, 4)

    model = small_model(dtype="float32")
    history = model.fit(Batches(), epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2


def test_a_layer_between_conv_and_pooling_needs_no_knowledge_of_fusion(backend):
    """Fusion is the model's plan, not the layers' state: any layer placed between a
    Conv2D and its MaxPooling2D gives plain steps, and the gradient stays exact."""
    fastdl.utils.set_random_seed(4)
    model = Sequential([layers.Input(shape=(6, 6, 2)), layers.Conv2D(3, 3, activation="relu"),
                        layers.Activation("tanh"), layers.MaxPooling2D(2), layers.Flatten(),
                        layers.Dense(3, activation="softmax")], dtype="float64")
    model.compile(optimizer=optimizers.SGD(learning_rate=0.0), loss="sparse_categorical_crossentropy")
    model.build()
    assert [type(s).__name__ for s in model._steps] == ["LayerStep"] * 4 + ["LogitsStep"]
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((3, 6, 6, 2)), rng.integers(0, 3, 3)
    grad = model_gradient(model, x, y)
    expected = numerical_gradient(lambda: model.evaluate(x, y, batch_size=3, verbose=0), model.flat_params)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-8)
    for layer in model.layers:  # no neighbour flags left on the layers
        assert not {"pool_after", "through_relu", "pooled_by_previous", "skip_activation",
                    "relu_gradient_by_next"} & set(vars(layer))
