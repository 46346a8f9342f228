"""Whole-model files (fastdl.saving): fastdl's .keras files opened by Keras 3 itself
(KERAS_BACKEND=numpy, no TensorFlow) and Keras's .keras and legacy .h5 files opened by
fastdl, with the same outputs; optimizer state both ways; atomic writes; clear errors."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

import fastdl
from fastdl import layers, optimizers
from fastdl.models import Sequential, load_model
from fastdl.saving import FormatError

from support import keras_or_skip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def every_layer(k, dtype="float32"):
    """One of each layer fastdl has, in Keras's or fastdl's namespace (k)."""
    return k.Sequential([
        k.Input((13, 11, 3)),
        k.layers.Conv2D(5, (3, 2), strides=(2, 1), padding="same", activation="relu"),
        k.layers.BatchNormalization(momentum=0.9),
        k.layers.MaxPooling2D((2, 2), strides=(1, 2), padding="same"),
        k.layers.Conv2D(4, 3, dilation_rate=2, activation="tanh", use_bias=False),
        k.layers.AveragePooling2D(2, padding="valid"),
        k.layers.Dropout(0.3),
        k.layers.Activation("sigmoid"),
        k.layers.Flatten(),
        k.layers.Dense(7),
        k.layers.ReLU(),
        k.layers.Dense(3, kernel_initializer="he_normal"),
        k.layers.Softmax(),
    ], **({"dtype": dtype} if k is fastdl else {}))


def images(n=6, seed=0):
    return np.random.default_rng(seed).random((n, 13, 11, 3)).astype(np.float32)


def labels(n=6):
    return np.arange(n) % 3


def trained(optimizer, steps=3, seed=1):
    fastdl.utils.set_random_seed(seed)
    model = every_layer(fastdl)
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    for _ in range(steps):
        model.train_on_batch(images(), labels())
    return model


def test_keras_opens_fastdl_files_and_predicts_the_same(tmp_path):
    keras = keras_or_skip()
    model = trained(optimizers.Adam(0.01))
    model.save(tmp_path / "m.keras")
    theirs = keras.saving.load_model(tmp_path / "m.keras")
    x = images(9, seed=3)
    np.testing.assert_allclose(np.asarray(theirs.predict(x, verbose=0)), model.predict(x), rtol=1e-5, atol=1e-5)
    assert [type(layer).__name__ for layer in theirs.layers] == [type(layer).__name__ for layer in model.layers[1:]]
    assert theirs.loss == "sparse_categorical_crossentropy"
    # the optimizer's state as Keras names it: iteration, learning rate, then m and v per variable
    assert int(theirs.optimizer.iterations) == 3
    ours = model.optimizer.get_state()["slots"][0]
    params = [p for layer in model.layers for p in layer.params]
    momentum = [np.asarray(v) for v in theirs.optimizer.variables if v.path.endswith("_momentum")]
    velocity = [np.asarray(v) for v in theirs.optimizer.variables if v.path.endswith("_velocity")]
    np.testing.assert_array_equal(np.concatenate([m.ravel() for m in momentum]), ours["m"])
    np.testing.assert_array_equal(np.concatenate([v.ravel() for v in velocity]), ours["v"])
    assert [m.shape for m in momentum] == [p.shape for p in params]


@pytest.mark.parametrize("optimizer, suffixes", [
    (lambda: optimizers.Adam(0.01, amsgrad=True), dict(m="_momentum", v="_velocity", v_max="_velocity_hat")),
    (lambda: optimizers.SGD(0.05, momentum=0.9), dict(velocity="_momentum")),
    (lambda: optimizers.RMSprop(0.01, momentum=0.5, centered=True),
     dict(square_avg="_velocity", momentum_buffer="_momentum", grad_avg="_average_gradient")),
    (lambda: optimizers.Adagrad(0.05), dict(accumulator="_accumulator")),
], ids=["amsgrad", "momentum", "rmsprop", "adagrad"])
def test_keras_reads_every_optimizers_state_under_its_own_names(tmp_path, optimizer, suffixes):
    keras = keras_or_skip()
    model = trained(optimizer())
    model.save(tmp_path / "m.keras")
    theirs = keras.saving.load_model(tmp_path / "m.keras")
    assert int(theirs.optimizer.iterations) == 3
    ours = model.optimizer.get_state()["slots"][0]
    assert set(ours) == set(suffixes)
    for slot, suffix in suffixes.items():
        found = [np.asarray(v).ravel() for v in theirs.optimizer.variables if v.path.endswith(suffix)]
        np.testing.assert_array_equal(np.concatenate(found), ours[slot], err_msg=slot)


def test_fastdl_opens_keras_files_and_predicts_the_same(tmp_path):
    keras = keras_or_skip()
    theirs = every_layer(keras)
    theirs.compile(keras.optimizers.RMSprop(0.002, momentum=0.5), "sparse_categorical_crossentropy",
                   metrics=["accuracy"])
    theirs.save(tmp_path / "k.keras")
    ours = load_model(tmp_path / "k.keras")
    x = images(9, seed=4)
    np.testing.assert_allclose(ours.predict(x), np.asarray(theirs.predict(x, verbose=0)), rtol=1e-5, atol=1e-5)
    assert isinstance(ours.optimizer, optimizers.RMSprop) and ours.optimizer.momentum == 0.5
    assert ours.optimizer.learning_rate == pytest.approx(0.002)
    assert [m.name for m in ours.metrics] == ["accuracy"]
    ours.fit(x, labels(9), epochs=1, verbose=0)  # and it trains on


def test_keras_optimizer_state_resumes_in_fastdl(tmp_path):
    keras = keras_or_skip()
    theirs = every_layer(keras)
    theirs.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    theirs.optimizer.build(theirs.trainable_variables)
    rng = np.random.default_rng(5)
    for v in theirs.optimizer.variables[2:]:
        v.assign(rng.random(v.shape).astype(np.float32))
    theirs.optimizer.iterations.assign(7)
    theirs.save(tmp_path / "k.keras")
    ours = load_model(tmp_path / "k.keras")
    state = ours.optimizer.get_state()
    assert state["iterations"] == 7
    momentum = [np.asarray(v).ravel() for v in theirs.optimizer.variables if v.path.endswith("_momentum")]
    np.testing.assert_array_equal(state["slots"][0]["m"], np.concatenate(momentum))


@pytest.mark.parametrize("optimizer", [
    lambda: optimizers.Adam(0.01), lambda: optimizers.Adam(0.01, amsgrad=True), lambda: optimizers.AdamW(0.01),
    lambda: optimizers.SGD(0.05, momentum=0.9, nesterov=True), lambda: optimizers.SGD(0.05),
    lambda: optimizers.RMSprop(0.01, momentum=0.5, centered=True), lambda: optimizers.Adagrad(0.05)],
    ids=["adam", "amsgrad", "adamw", "nesterov", "sgd", "rmsprop-centered-momentum", "adagrad"])
def test_training_resumes_bit_for_bit_from_a_saved_model(tmp_path, optimizer):
    model = trained(optimizer())
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    for net in (model, loaded):  # the same dropout masks from here on
        net.layers[6].rng = np.random.default_rng(0)
    for _ in range(2):
        model.train_on_batch(images(seed=8), labels())
        loaded.train_on_batch(images(seed=8), labels())
    np.testing.assert_array_equal(loaded.flat_params, model.flat_params)
    assert loaded.optimizer.iterations == model.optimizer.iterations == 5


def test_a_float64_model_and_an_uncompiled_one_round_trip(tmp_path):
    model = every_layer(fastdl, dtype="float64")
    model.build()
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert loaded.dtype == np.float64 and not loaded.compiled
    np.testing.assert_array_equal(loaded.predict(images()), model.predict(images()))


def test_a_model_without_an_input_layer_saves_with_one(tmp_path):
    keras = keras_or_skip()
    model = Sequential([layers.Dense(4, activation="relu", input_shape=(6,)), layers.Dense(2)])
    model.build()
    model.save(tmp_path / "m.keras")
    x = np.random.default_rng(0).random((3, 6)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(keras.saving.load_model(tmp_path / "m.keras").predict(x, verbose=0)),
                               model.predict(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(load_model(tmp_path / "m.keras").predict(x), model.predict(x))


def test_fastdl_opens_a_keras_functional_chain(tmp_path):
    keras = keras_or_skip()
    inputs = keras.Input((13, 11, 3))
    hidden = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    hidden = keras.layers.MaxPooling2D()(hidden)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(hidden))
    theirs = keras.Model(inputs, outputs)
    theirs.save(tmp_path / "f.keras")
    x = images(4)
    np.testing.assert_allclose(load_model(tmp_path / "f.keras").predict(x), np.asarray(theirs.predict(x, verbose=0)),
                               rtol=1e-5, atol=1e-6)


def test_functional_graphs_with_branches_go_both_ways_and_shared_layers_are_refused(tmp_path):
    keras = keras_or_skip()
    inputs = keras.Input((6,))
    left, right = keras.layers.Dense(3, activation="relu")(inputs), keras.layers.Dense(3)(inputs)
    outputs = keras.layers.Concatenate()([keras.layers.Add()([left, right]), keras.layers.Maximum()([left, right])])
    theirs = keras.Model(inputs, outputs)
    theirs.save(tmp_path / "branch.keras")
    x = np.random.default_rng(1).standard_normal((4, 6)).astype(np.float32)
    ours = load_model(tmp_path / "branch.keras")
    np.testing.assert_allclose(ours.predict(x), np.asarray(theirs.predict(x, verbose=0)), rtol=1e-5, atol=1e-6)
    ours.save(tmp_path / "back.keras")
    again = keras.saving.load_model(tmp_path / "back.keras")
    np.testing.assert_allclose(np.asarray(again.predict(x, verbose=0)), ours.predict(x), rtol=1e-5, atol=1e-6)
    shared = keras.layers.Dense(6)
    keras.Model(inputs, shared(shared(inputs))).save(tmp_path / "shared.keras")
    with pytest.raises(FormatError, match=r"shared.keras.*called 2 times"):
        load_model(tmp_path / "shared.keras")


def test_fastdl_opens_legacy_h5_model_files(tmp_path):
    keras = keras_or_skip()
    theirs = every_layer(keras)
    theirs.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    theirs.save(tmp_path / "legacy.h5")
    ours = load_model(tmp_path / "legacy.h5")
    x = images(5, seed=2)
    np.testing.assert_allclose(ours.predict(x), np.asarray(theirs.predict(x, verbose=0)), rtol=1e-5, atol=1e-5)
    assert isinstance(ours.optimizer, optimizers.Adam)


def test_the_file_holds_what_keras_writes(tmp_path):
    model = trained(optimizers.SGD(0.1, momentum=0.9))
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as archive:
        assert sorted(archive.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        config = json.loads(archive.read("config.json"))
        metadata = json.loads(archive.read("metadata.json"))
    assert config["class_name"] == "Sequential" and metadata["keras_version"].startswith("3.")
    conv = config["config"]["layers"][1]
    assert conv["class_name"] == "Conv2D" and conv["config"]["kernel_size"] == [3, 2]
    assert conv["config"]["kernel_initializer"]["class_name"] == "GlorotUniform"
    assert config["compile_config"]["optimizer"]["config"]["momentum"] == 0.9


@pytest.mark.parametrize("name", ["m.h5", "m.weights.h5", "m", "m.zip"])
def test_save_refuses_names_that_are_not_keras_files(tmp_path, name):
    with pytest.raises(ValueError, match="must end in '.keras'"):
        trained(optimizers.SGD()).save(tmp_path / name)
    assert os.listdir(tmp_path) == []


def test_truncated_foreign_and_missing_files_are_clear_errors(tmp_path):
    model = trained(optimizers.Adam())
    model.save(tmp_path / "m.keras")
    data = (tmp_path / "m.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"cut.keras"):
        load_model(tmp_path / "cut.keras")
    (tmp_path / "text.keras").write_text("not a model")
    with pytest.raises(FormatError, match=r"text.keras.*neither a .keras zip nor an HDF5"):
        load_model(tmp_path / "text.keras")
    with zipfile.ZipFile(tmp_path / "other.keras", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(FormatError, match=r"other.keras.*lacks \['config.json', 'model.weights.h5'\]"):
        load_model(tmp_path / "other.keras")
    with pytest.raises(FileNotFoundError, match="no model file"):
        load_model(tmp_path / "absent.keras")


def rewrite_config(src, dst, change):
    with zipfile.ZipFile(src) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(parts["config.json"])
    change(config)
    parts["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(dst, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)


@pytest.mark.parametrize("change, match", [
    (lambda c: c["config"]["layers"][1].update(class_name="GroupNormalization"),
     r"layer 'conv2d\w*' \(GroupNormalization\) is not a layer fastdl has"),
    (lambda c: c["config"]["layers"][2]["config"].update(renorm=True), r"renorm=True is not supported"),
    (lambda c: c["config"]["layers"][1]["config"].update(kernel_regularizer={"class_name": "L2"}),
     r"\(Conv2D\): option kernel_regularizer=.* is not supported"),
    (lambda c: c["config"]["layers"][1]["config"].update(data_format="channels_first"),
     r"data_format='channels_first' is not supported"),
    (lambda c: c["config"]["layers"][1]["config"].update(activation="gelu"), r"activation 'gelu' is not one"),
    (lambda c: c["config"]["layers"][9]["config"].update(units=9), r"holds 2 arrays|shape|do not fit"),
    (lambda c: c["config"]["layers"][1]["config"].update(dtype="mixed_float16"), r"computes in 'mixed_float16'"),
    (lambda c: c.update(class_name="Mystery"), r"a Mystery model"),
    (lambda c: c["compile_config"]["optimizer"].update(class_name="Lion"), r"optimizer 'Lion' is not one"),
])
def test_options_fastdl_lacks_are_refused_by_layer_and_name(tmp_path, change, match):
    trained(optimizers.Adam()).save(tmp_path / "m.keras")
    rewrite_config(tmp_path / "m.keras", tmp_path / "bad.keras", change)
    with pytest.raises((FormatError, ValueError), match=match):
        load_model(tmp_path / "bad.keras")


def test_a_killed_save_leaves_the_old_model_file_intact(tmp_path):
    path = tmp_path / "big.keras"
    # about 64 MB of weights: the writer is killed while it writes
    code = textwrap.dedent(f"""
        import sys
        from fastdl import layers
        from fastdl.models import Sequential
        model = Sequential([layers.Dense(4096, input_shape=(4096,)), layers.Dense(2)])
        model.build()
        model.save({str(path)!r})
        print("saved", flush=True)
        for _ in range(1000):
            model.save({str(path)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "saved"
        old = load_model(path).get_weights()
        deadline = time.time() + 60
        while not [n for n in os.listdir(tmp_path) if n.startswith(".fastdl-tmp-")]:  # a save under way
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    for a, b in zip(load_model(path).get_weights(), old):
        np.testing.assert_array_equal(a, b)


def test_a_frozen_batch_norm_and_its_moving_statistics_round_trip(tmp_path):
    keras = keras_or_skip()
    model = trained(optimizers.Adam(0.01))
    bn = model.layers[2]
    assert type(bn).__name__ == "BatchNormalization" and not np.allclose(bn.states[0], 0)  # trained: it moved
    bn.trainable = False
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert loaded.layers[2].trainable is False
    np.testing.assert_array_equal(loaded.layers[2].states[0], bn.states[0])
    theirs = keras.saving.load_model(tmp_path / "m.keras")
    assert theirs.layers[1].trainable is False
    np.testing.assert_allclose(np.asarray(theirs.layers[1].moving_variance), bn.states[1], rtol=1e-6)
