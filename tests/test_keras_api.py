"""The Keras-shaped surface: the lazy top-level namespace, fastdl.losses and
fastdl.metrics (against Keras 3 itself where it is installed, KERAS_BACKEND=numpy),
callable models, weight files named for what they hold (and read by Keras), ModelCheckpoint,
and fastdl.utils."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastdl
from fastdl import callbacks, layers, losses, metrics, ops
from fastdl.backends._spec import LOSSES

from support import keras_or_skip

# -- the namespace ------------------------------------------------------------------------------

def test_import_fastdl_loads_no_submodule_until_it_is_used():
    code = ("import sys, fastdl; loaded = sorted(m for m in sys.modules if m.startswith('fastdl.')); "
            "print(loaded); fastdl.Sequential; fastdl.datasets.mnist; print('fastdl.models' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert not {"fastdl.models", "fastdl.layers", "fastdl.ops", "fastdl.datasets"} & set(eval(out[0]))
    assert out[1] == "True"


def test_every_public_name_resolves_and_unknown_ones_raise():
    for name in fastdl.__all__:
        assert getattr(fastdl, name) is not None
    assert fastdl.Sequential is fastdl.models.Sequential and fastdl.Input is layers.Input
    assert callable(fastdl.utils.to_categorical) and fastdl.datasets.fashion_mnist.load_data
    with pytest.raises(AttributeError, match="no attribute 'Modle'"):
        fastdl.Modle


# -- losses -------------------------------------------------------------------------------------

def test_every_loss_name_alias_and_class_resolves_to_its_kind():
    assert losses.get("mse").kind == losses.get("MSE").kind == "mean_squared_error"
    assert isinstance(losses.get("MeanAbsoluteError"), losses.MeanAbsoluteError)
    assert losses.get(losses.huber).kind == "huber" and losses.get(losses.Huber).delta == 1.0
    for alias, name in losses.ALIASES.items():
        assert losses.get(alias).name == name
    kinds = {losses.get(name).kind for name in LOSSES if name != "binary_crossentropy_from_logits"}
    assert kinds == set(LOSSES) - {"binary_crossentropy_from_logits"}
    with pytest.raises(ValueError, match="unknown loss 'cosine_similarity'; use one of"):
        losses.get("cosine_similarity")
    with pytest.raises(ValueError, match="delta"):
        losses.Huber(delta=-1)
    with pytest.raises(ValueError, match="reduction"):
        losses.MeanSquaredError(reduction="sum")


def test_loss_classes_and_functions_are_the_ops():
    rng = np.random.default_rng(0)
    y, p = rng.random((6, 4)), rng.uniform(0.1, 0.9, (6, 4))
    assert losses.MeanSquaredError()(y, p) == pytest.approx(float(((p - y) ** 2).mean()))
    np.testing.assert_allclose(losses.mae(y, p), np.abs(p - y).mean(axis=1))
    np.testing.assert_allclose(losses.Huber(delta=0.1).per_sample(y, p, False), ops.loss("huber", y, p, delta=0.1))
    smoothed = losses.BinaryCrossentropy(label_smoothing=0.2)(y, p)
    assert smoothed == pytest.approx(float(ops.loss("binary_crossentropy", y * 0.8 + 0.1, p).mean()))
    logits = losses.BinaryCrossentropy(from_logits=True)
    assert logits(y, p) == pytest.approx(float(ops.loss("binary_crossentropy_from_logits", y, p).mean()))
    weights = np.array([1, 0, 1, 0, 1, 0.0])
    assert losses.MeanSquaredError()(y, p, sample_weight=weights) == pytest.approx(
        float((((p - y) ** 2).mean(axis=1) * weights).sum() / 6))


def test_only_the_cross_entropies_train_a_softmax_model_on_its_logits():
    x = np.random.default_rng(1).standard_normal((8, 5)).astype(np.float32)
    y = fastdl.utils.to_categorical(np.arange(8) % 3, 3)
    for loss, fused in (("mse", False), ("categorical_crossentropy", True), ("kld", False)):
        model = fastdl.Sequential([layers.Input((5,)), layers.Dense(3, activation="softmax")])
        model.compile("sgd", loss)
        probabilities = model.predict(x, verbose=0)
        assert model._softmax_outputs is fused
        want = losses.get(loss)(y, probabilities)
        assert model.test_on_batch(x, y) == pytest.approx(want, rel=1e-5)  # loss of the probabilities


@pytest.mark.parametrize("name", ["MeanSquaredError", "MeanAbsoluteError", "MeanAbsolutePercentageError",
                                  "MeanSquaredLogarithmicError", "Huber", "LogCosh", "BinaryCrossentropy",
                                  "Poisson", "Hinge", "SquaredHinge", "KLDivergence", "CategoricalHinge",
                                  "CategoricalCrossentropy", "SparseCategoricalCrossentropy"])
def test_every_loss_matches_keras(name):
    keras = keras_or_skip()
    rng = np.random.default_rng(2)
    p = rng.uniform(0.05, 0.95, (7, 5)).astype(np.float32)
    y = rng.random((7, 5)).astype(np.float32)
    if name in ("Hinge", "SquaredHinge"):
        y = (y > 0.5).astype(np.float32)
    if name in ("KLDivergence", "CategoricalCrossentropy", "CategoricalHinge"):
        y = y / y.sum(axis=1, keepdims=True)
    if name == "SparseCategoricalCrossentropy":
        y = rng.integers(0, 5, 7)
    configs = [{}]
    if name == "Huber":
        configs = [{"delta": 0.2}, {"delta": 1.0}]
    if name in ("BinaryCrossentropy", "CategoricalCrossentropy"):
        configs = [{}, {"from_logits": True}, {"label_smoothing": 0.1}]
    for config in configs:
        want = float(getattr(keras.losses, name)(**config)(y, p))
        got = getattr(losses, name)(**config)(y, p)
        assert got == pytest.approx(want, rel=2e-5, abs=1e-6), config


# -- metrics ------------------------------------------------------------------------------------

def test_accuracy_is_chosen_from_the_shapes():
    p = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    assert metrics.accuracy(np.array([1, 1]), p).tolist() == [1, 0]  # sparse
    assert metrics.accuracy(np.array([[1], [0]]), p).tolist() == [1, 1]  # sparse, (N, 1)
    assert metrics.accuracy(np.eye(3)[[1, 1]], p).tolist() == [1, 0]  # one-hot
    assert metrics.accuracy(np.array([1, 0]), np.array([[0.8], [0.6]])).tolist() == [1, 0]  # binary


def test_metrics_match_keras():
    keras = keras_or_skip()
    rng = np.random.default_rng(3)
    p = rng.random((40, 6)).astype(np.float32)
    onehot = np.eye(6, dtype=np.float32)[rng.integers(0, 6, 40)]
    binary = (rng.random((40, 6)) > 0.5).astype(np.float32)
    cases = [("BinaryAccuracy", {}, binary), ("BinaryAccuracy", {"threshold": 0.7}, binary),
             ("CategoricalAccuracy", {}, onehot), ("SparseCategoricalAccuracy", {}, onehot.argmax(1)),
             ("TopKCategoricalAccuracy", {"k": 3}, onehot),
             ("SparseTopKCategoricalAccuracy", {"k": 2}, onehot.argmax(1)),
             ("Precision", {}, binary), ("Recall", {}, binary), ("Precision", {"thresholds": 0.3}, binary)]
    for name, config, y in cases:
        reference = getattr(keras.metrics, name)(**config)
        reference.update_state(y, p)
        assert getattr(metrics, name)(**config)(y, p) == pytest.approx(float(reference.result()), rel=1e-6), name


def test_precision_over_batches_is_the_precision_of_the_whole_set():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((37, 4)).astype(np.float32)
    y = (rng.random((37, 1)) > 0.5).astype(np.float32)
    model = fastdl.Sequential([layers.Input((4,)), layers.Dense(1, activation="sigmoid")])
    model.compile("sgd", "binary_crossentropy", metrics=["precision", metrics.Recall(), "accuracy", "mse"])
    logs = model.evaluate(x, y, batch_size=5, return_dict=True, verbose=0)
    predicted = model.predict(x, verbose=0) > 0.5
    assert logs["precision"] == pytest.approx((predicted & (y > 0.5)).sum() / predicted.sum())
    assert logs["recall"] == pytest.approx((predicted & (y > 0.5)).sum() / (y > 0.5).sum())
    assert logs["accuracy"] == pytest.approx(float((predicted == (y > 0.5)).mean()))
    assert logs["mse"] == pytest.approx(float(((model.predict(x, verbose=0) - y) ** 2).mean()), rel=1e-5)
    with pytest.raises(ValueError, match="unknown metric 'f1_score'"):
        metrics.get("f1_score")


# -- callable models ------------------------------------------------------------------------------

def test_a_model_called_on_a_batch_predicts_and_training_switches_dropout():
    fastdl.utils.set_random_seed(5)
    model = fastdl.Sequential([layers.Input((6,)), layers.Dense(20, activation="relu"), layers.Dropout(0.5),
                               layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(5).standard_normal((4, 6)).astype(np.float32)
    before = model.get_weights()
    np.testing.assert_array_equal(model(x), model.predict(x, verbose=0))
    assert not np.allclose(model(x, training=True), model(x))  # dropout is on
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="training must be"):
        model(x, training="yes")


# -- weight files ------------------------------------------------------------------------------

def small_cnn(keras_module, **names):
    k = keras_module
    return k.Sequential([k.Input((8, 7, 2)), k.layers.Conv2D(3, (3, 2), activation="relu", name=names.get("conv")),
                         k.layers.MaxPooling2D(), k.layers.Flatten(),
                         k.layers.Dense(4, activation="softmax", name=names.get("dense"))])


def test_weights_h5_round_trip_in_keras_layout_and_names_that_mean_what_they_say(tmp_path):
    h5py = pytest.importorskip("h5py")
    fastdl.utils.set_random_seed(6)
    model = small_cnn(fastdl)
    x = np.random.default_rng(6).random((3, 8, 7, 2)).astype(np.float32)
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)
    with h5py.File(path) as f:
        # as Keras: groups named by class within the model, not by the layers' own names
        assert sorted(f["layers"]) == ["conv2d", "dense", "flatten", "max_pooling2d"]
        assert f["layers/conv2d/vars/0"].shape == (3, 2, 2, 3) and f["layers/conv2d/vars/1"].shape == (3,)
        assert f["layers/conv2d/vars"].attrs["name"] == model.layers[1].name
    other = small_cnn(fastdl)  # its layers are named conv2d_1, ... this time
    other.load_weights(path)
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))
    for bad in ("m.h5", "m.keras", "weights.bin"):
        with pytest.raises(ValueError, match=r"must end in '.weights.h5'.*or '.npz'"):
            model.save_weights(tmp_path / bad)
    with pytest.raises(ValueError, match=r"holds 0 arrays at layers/dense_1/vars for layer"):
        fastdl.Sequential([layers.Input((3,)), layers.Dense(2), layers.Dense(2), layers.Dense(2)]).load_weights(path)


def test_weights_h5_without_h5py_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"need h5py \(pip install h5py\)"):
        small_cnn(fastdl).save_weights(tmp_path / "m.weights.h5")


def test_keras_and_fastdl_read_each_others_weights_files(tmp_path):
    keras = keras_or_skip()
    x = np.random.default_rng(7).random((5, 8, 7, 2)).astype(np.float32)
    theirs, ours = small_cnn(keras, conv="conv", dense="head"), small_cnn(fastdl)  # names play no part
    theirs.save_weights(tmp_path / "keras.weights.h5")
    ours.load_weights(tmp_path / "keras.weights.h5")
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    fastdl.utils.set_random_seed(8)
    ours = small_cnn(fastdl)
    ours.save_weights(tmp_path / "fastdl.weights.h5")
    theirs.load_weights(tmp_path / "fastdl.weights.h5")
    np.testing.assert_allclose(theirs.predict(x, verbose=0), ours.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_model_checkpoint_saves_what_its_file_name_says(tmp_path):
    with pytest.raises(ValueError, match="ending in '.keras'"):
        callbacks.ModelCheckpoint(tmp_path / "best.weights.h5", save_weights_only=False)
    with pytest.raises(ValueError, match="must end in"):
        callbacks.ModelCheckpoint(tmp_path / "best.keras", save_weights_only=True)
    with pytest.raises(ValueError, match="must end in"):
        callbacks.ModelCheckpoint(tmp_path / "best.bin", save_weights_only=True)
    x = np.random.default_rng(9).random((8, 8, 7, 2)).astype(np.float32)
    model = small_cnn(fastdl)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, np.arange(8) % 4, epochs=2, verbose=0,
              callbacks=[callbacks.ModelCheckpoint(str(tmp_path / "e{epoch}.npz"), monitor="loss")])
    assert sorted(os.listdir(tmp_path)) == ["e1.npz", "e2.npz"]
    model.fit(x, np.arange(8) % 4, epochs=1, verbose=0,
              callbacks=[callbacks.ModelCheckpoint(str(tmp_path / "m{epoch}.keras"), monitor="loss")])
    np.testing.assert_array_equal(fastdl.models.load_model(tmp_path / "m1.keras").predict(x), model.predict(x))


# -- utils ---------------------------------------------------------------------------------------

def test_to_categorical_and_normalize_match_keras():
    assert fastdl.utils.to_categorical([[1], [2], [0]]).tolist() == [[0, 1, 0], [0, 0, 1], [1, 0, 0]]
    assert fastdl.utils.to_categorical(np.array([[1, 2], [0, 1]]), 3).shape == (2, 2, 3)
    with pytest.raises(ValueError, match="< num_classes=2; got 2"):
        fastdl.utils.to_categorical([0, 2], 2)
    with pytest.raises(ValueError, match=">= 0"):
        fastdl.utils.to_categorical([-1, 0])
    with pytest.raises(ValueError, match="whole numbers"):
        fastdl.utils.to_categorical([0.5])
    np.testing.assert_allclose(fastdl.utils.normalize(np.array([[3.0, 4.0], [0, 0]])), [[0.6, 0.8], [0, 0]])
    keras = keras_or_skip()
    labels = np.random.default_rng(10).integers(0, 7, (9, 1))
    np.testing.assert_array_equal(fastdl.utils.to_categorical(labels, 7), keras.utils.to_categorical(labels, 7))
    x = np.random.default_rng(11).standard_normal((5, 4))
    np.testing.assert_allclose(fastdl.utils.normalize(x, order=1), keras.utils.normalize(x, order=1))
    np.testing.assert_allclose(fastdl.utils.normalize(x), keras.utils.normalize(x))
