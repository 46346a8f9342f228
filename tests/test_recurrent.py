"""The recurrent layers (fastdl/recurrent.py): outputs equal to Keras 3's layers with the
same weights, gradients against finite differences and PyTorch, masking from Embedding,
Bidirectional, TimeDistributed, return_state, and bad input. The kernels themselves
are tested on every backend from their op-table entries (tests/optable.py)."""
import numpy as np
import pytest

import fastdl
from fastdl import Sequential, layers, optimizers

from support import keras_or_skip, numerical_gradient

CELLS = ["SimpleRNN", "LSTM", "GRU"]


def tokens(rng, batch, steps, vocab):
    """Token ids with zero padding at the end of some rows (lengths 1..steps)."""
    ids = rng.integers(1, vocab, (batch, steps))
    for row, length in enumerate(rng.integers(1, steps + 1, batch)):
        ids[row, length:] = 0
    return ids


def same_weights(ours, theirs):
    ours.build()
    ours.set_weights(theirs.get_weights())


def assert_outputs_equal(ours, theirs, x, rtol=2e-5):
    got, want = ours.predict(x, verbose=0), theirs.predict(x, verbose=0)
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("options", [{}, dict(return_sequences=True), dict(go_backwards=True),
                                     dict(return_sequences=True, go_backwards=True, activation="relu"),
                                     dict(use_bias=False, return_sequences=True)])
def test_each_cell_matches_keras(cell, options):
    keras = keras_or_skip()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 7, 5)).astype(np.float32)
    theirs = keras.Sequential([keras.Input((7, 5)), getattr(keras.layers, cell)(6, **options)])
    ours = Sequential([layers.InputLayer((7, 5)), getattr(layers, cell)(6, **options)])
    same_weights(ours, theirs)
    assert_outputs_equal(ours, theirs, x)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave"])
def test_masking_from_embedding_through_bidirectional_and_stacked_layers_matches_keras(merge_mode):
    keras = keras_or_skip()
    rng = np.random.default_rng(1)
    ids = tokens(rng, 5, 8, 20)

    def build(lib, inputs):
        return [inputs, lib.layers.Embedding(20, 6, mask_zero=True, embeddings_initializer="glorot_uniform"),
                lib.layers.Bidirectional(lib.layers.LSTM(5, return_sequences=True), merge_mode=merge_mode),
                lib.layers.TimeDistributed(lib.layers.Dense(4, activation="tanh")),
                lib.layers.GRU(3, return_sequences=True), lib.layers.SimpleRNN(4),
                lib.layers.Dense(2, activation="softmax")]
    theirs = keras.Sequential(build(keras, keras.Input((8,))))
    ours = Sequential(build(fastdl, layers.InputLayer((8,))))
    same_weights(ours, theirs)
    assert_outputs_equal(ours, theirs, ids)


@pytest.mark.parametrize("merge_mode", ["concat", "mul"])
def test_bidirectional_sequences_are_zero_where_masked_as_in_keras(merge_mode):
    keras = keras_or_skip()
    ids = tokens(np.random.default_rng(9), 4, 6, 12)

    def build(lib, inputs):
        return [inputs, lib.layers.Embedding(12, 3, mask_zero=True, embeddings_initializer="glorot_uniform"),
                lib.layers.Bidirectional(lib.layers.GRU(4, return_sequences=True), merge_mode=merge_mode)]
    theirs = keras.Sequential(build(keras, keras.Input((6,))))
    ours = Sequential(build(fastdl, layers.InputLayer((6,))))
    same_weights(ours, theirs)
    assert_outputs_equal(ours, theirs, ids)
    assert np.all(ours.predict(ids, verbose=0)[ids == 0] == 0)


def test_dense_on_sequences_matches_keras():
    keras = keras_or_skip()
    x = np.random.default_rng(2).standard_normal((2, 4, 3)).astype(np.float32)
    theirs = keras.Sequential([keras.Input((4, 3)), keras.layers.LSTM(5, return_sequences=True),
                               keras.layers.Dense(2)])
    ours = Sequential([layers.InputLayer((4, 3)), layers.LSTM(5, return_sequences=True), layers.Dense(2)])
    same_weights(ours, theirs)
    assert_outputs_equal(ours, theirs, x)


def sequence_model(dtype="float64"):
    return Sequential([layers.InputLayer((6,)), layers.Embedding(9, 4, mask_zero=True),
                       layers.Bidirectional(layers.GRU(3, return_sequences=True), merge_mode="mul"),
                       layers.LSTM(4, return_sequences=True, go_backwards=True),
                       layers.TimeDistributed(layers.Dense(3, activation="tanh")),
                       layers.SimpleRNN(3), layers.Dense(3, activation="softmax")], dtype=dtype)


def zeroed_sequence_model(dtype="float64"):
    """Bidirectional sequences (zeros where masked) read by a layer that ignores the mask."""
    return Sequential([layers.InputLayer((6,)), layers.Embedding(9, 4, mask_zero=True),
                       layers.Bidirectional(layers.LSTM(3, return_sequences=True), merge_mode="concat"),
                       layers.Flatten(), layers.Dense(3, activation="softmax")], dtype=dtype)


@pytest.mark.parametrize("build", [sequence_model, zeroed_sequence_model])
def test_a_recurrent_models_gradient_matches_finite_differences(backend, build):
    fastdl.utils.set_random_seed(3)
    model = build()
    model.compile(optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(4)
    ids, y = tokens(rng, 4, 6, 9), np.array([0, 2, 1, 2])
    model.train_on_batch(ids, y)
    grad = model.flat_grads.copy()
    numerical = numerical_gradient(lambda: model.evaluate(ids, y, verbose=0), model.flat_params)
    np.testing.assert_allclose(grad, numerical, rtol=1e-5, atol=1e-8)
    # the padding token's embedding row gets no gradient: every step it appears in is masked
    embeddings = model.layers[1].grads[0]
    assert np.all(embeddings[0] == 0) and np.any(embeddings[1:] != 0)


@pytest.mark.parametrize("cell", ["LSTM", "GRU", "SimpleRNN"])
def test_a_layers_gradients_match_torch(torch, cell):
    rng = np.random.default_rng(5)
    batch, steps, features, units = 3, 6, 4, 5
    x = rng.standard_normal((batch, steps, features))
    layer = getattr(layers, cell)(units, return_sequences=True, dtype="float64")
    model = Sequential([layers.InputLayer((steps, features)), layer], dtype="float64")
    model.build()
    kernel, recurrent, bias = (layer.params[0], layer.params[1], layer.params[2])
    bias[...] = rng.standard_normal(bias.shape)
    out = model.predict(x, verbose=0)
    dy = rng.standard_normal(out.shape)
    model._forward(x, training=True)
    dx = model._steps[-1].backward(dy, need_dx=True)

    units3 = 3 * units
    gru = cell == "GRU"
    perm = (lambda a: np.concatenate([a[..., units:2 * units], a[..., :units], a[..., 2 * units:]], -1)) if gru \
        else (lambda a: a)
    module = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU, "SimpleRNN": torch.nn.RNN}[cell](
        features, units, batch_first=True).double()
    zeros = np.zeros(kernel.shape[1])
    state = dict(weight_ih_l0=perm(kernel).T, weight_hh_l0=perm(recurrent).T,
                 bias_ih_l0=perm(bias[0] if gru else bias), bias_hh_l0=perm(bias[1]) if gru else zeros)
    module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})
    tx = torch.from_numpy(x).requires_grad_()
    tout, _ = module(tx)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    tout.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.grads[0], perm(module.weight_ih_l0.grad.numpy().T), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.grads[1], perm(module.weight_hh_l0.grad.numpy().T), rtol=1e-10, atol=1e-12)
    if gru:
        assert units3 == bias.shape[1]
        np.testing.assert_allclose(layer.grads[2][0], perm(module.bias_ih_l0.grad.numpy()), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(layer.grads[2][1], perm(module.bias_hh_l0.grad.numpy()), rtol=1e-10, atol=1e-12)
    else:
        np.testing.assert_allclose(layer.grads[2], module.bias_ih_l0.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_return_state_and_initial_state_on_arrays():
    rng = np.random.default_rng(6)
    layer = layers.LSTM(4, return_sequences=True, return_state=True, dtype="float64")
    layer.build((5, 3))
    weights = [rng.standard_normal(shape) * 0.5 for _, shape, _ in layer.weight_specs()]
    layer.attach(weights, [np.zeros_like(w) for w in weights])
    x = rng.standard_normal((2, 5, 3))
    h0, c0 = rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    seq, h, c = layer.forward(x, initial_state=[h0, c0])
    np.testing.assert_array_equal(seq[:, -1], h)
    # the states continue a sequence: two halves, the second from the first's states
    first = layers.LSTM(4, return_sequences=True, return_state=True, dtype="float64")
    first.build((2, 3))
    first.attach(weights, [np.zeros_like(w) for w in weights])
    a, ha, ca = first.forward(x[:, :2], initial_state=[h0, c0])
    b, hb, cb = layer.forward(x[:, 2:], initial_state=[ha, ca])
    np.testing.assert_allclose(np.concatenate([a, b], axis=1), seq, rtol=1e-12)
    np.testing.assert_allclose(hb, h, rtol=1e-12)
    np.testing.assert_allclose(cb, c, rtol=1e-12)


def test_dropout_masks_inputs_only_while_training():
    layer_options = dict(dropout=0.5, seed=1, dtype="float64")
    model = Sequential([layers.InputLayer((4, 3)), layers.GRU(2, **layer_options)], dtype="float64")
    model.build()
    x = np.ones((5, 4, 3))
    np.testing.assert_array_equal(model.predict(x, verbose=0), model.predict(x, verbose=0))
    first = model._forward(x, training=True).copy()
    assert not np.allclose(first, model.predict(x, verbose=0))


def attached(layer, input_shape, rng):
    layer.build(input_shape)
    weights = [rng.standard_normal(shape) * 0.5 for _, shape, _ in layer.weight_specs()]
    layer.attach(weights, [np.zeros_like(w) for w in weights])
    return weights


@pytest.mark.parametrize("cell", CELLS)
def test_recurrent_dropout_matches_kerass_cell_with_the_same_masks(cell):
    """Keras's own cell (its implementation 1: a mask a gate on the inputs and on the
    state) stepped with the masks this layer drew."""
    keras = keras_or_skip()
    rng = np.random.default_rng(7)
    layer = getattr(layers, cell)(4, dropout=0.3, recurrent_dropout=0.4, return_sequences=True, seed=2,
                                  dtype="float64")
    weights = attached(layer, (6, 3), rng)
    x = rng.standard_normal((5, 6, 3))
    got = layer.forward(x, training=True)
    theirs = getattr(keras.layers, cell + "Cell")(4, dropout=0.3, recurrent_dropout=0.4, dtype="float64")
    theirs.build((None, 3))
    theirs.set_weights(weights)
    split = lambda a, axis: list(np.split(a, layer.gates, axis=axis))  # noqa: E731
    inputs, state = split(layer._gate_dropout[:, 0], 0), split(layer._rmask, 1)
    theirs._dropout_mask = [m[0] for m in inputs] if cell != "SimpleRNN" else inputs[0][0]
    theirs._recurrent_dropout_mask = state if cell != "SimpleRNN" else state[0]
    states = [np.zeros((5, 4))] * (2 if cell == "LSTM" else 1)
    want = []
    for t in range(6):
        out, states = theirs.call(x[:, t], states, training=True)
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        want.append(np.asarray(out))
    np.testing.assert_allclose(got, np.stack(want, axis=1), rtol=1e-5, atol=1e-6)  # Keras computes in float32
    # the masks are the dropout of ones at the rates asked for, and differ between gates
    assert set(np.unique(layer._rmask)) <= {0.0, 1 / 0.6} and set(np.unique(layer._gate_dropout)) <= {0.0, 1 / 0.7}
    # not training: no dropout at all
    plain = getattr(layers, cell)(4, return_sequences=True, dtype="float64")
    plain.build((6, 3))
    plain.attach(weights, [np.zeros_like(w) for w in weights])
    np.testing.assert_allclose(layer.forward(x), plain.forward(x), rtol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_recurrent_dropouts_gradients_match_finite_differences(backend, cell, dropout):
    """Training-mode gradients (the masks held fixed: the generator rewound before each
    forward) of the weights and the inputs."""
    rng = np.random.default_rng(8)
    layer = getattr(layers, cell)(3, dropout=dropout, recurrent_dropout=0.5, return_sequences=True,
                                  go_backwards=cell == "GRU", seed=4, dtype="float64")
    weights = attached(layer, (5, 2), rng)
    x, w = rng.standard_normal((4, 5, 2)), rng.standard_normal((4, 5, 3))
    start = layer.rng.bit_generator.state

    def loss():
        layer.rng.bit_generator.state = start
        return float((layer.forward(x, training=True) * w).sum())
    loss()
    dx = layer.backward(w)
    assert not np.all(layer._rmask != 0)  # some state units were dropped
    for weight, grad in zip(weights, layer.grads):
        np.testing.assert_allclose(grad, numerical_gradient(loss, weight), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dx, numerical_gradient(loss, x), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("cell", CELLS)
def test_a_stateful_layer_continues_its_sequences_across_calls_as_keras(cell, tmp_path):
    keras = keras_or_skip()
    x = np.random.default_rng(9).standard_normal((3, 8, 2)).astype(np.float32)
    options = dict(stateful=True, return_sequences=True, go_backwards=cell == "GRU")
    theirs = keras.Sequential([keras.Input(batch_shape=(3, 4, 2)), getattr(keras.layers, cell)(5, **options)])
    ours = Sequential([layers.InputLayer((4, 2), batch_size=3), getattr(layers, cell)(5, **options)])
    same_weights(ours, theirs)
    for chunk in (x[:, :4], x[:, 4:]):
        assert_outputs_equal(ours, theirs, chunk)
    ours.save(tmp_path / "stateful.keras")  # the fixed batch size Keras needs goes with it
    loaded = keras.saving.load_model(tmp_path / "stateful.keras")
    again = fastdl.models.load_model(tmp_path / "stateful.keras")
    assert loaded.layers[0].stateful and again.layers[-1].stateful
    for chunk in (x[:, :4], x[:, 4:]):  # both start from zeros
        assert_outputs_equal(again, loaded, chunk)
    ours.reset_states()
    halves = [ours.predict(x[:, :4], verbose=0), ours.predict(x[:, 4:], verbose=0)]
    options.update(stateful=False, go_backwards=False)
    whole = Sequential([layers.InputLayer((8, 2)), getattr(layers, cell)(5, **options)])
    whole.build()
    whole.set_weights(ours.get_weights())
    if cell != "GRU":  # the two calls are the sequence run at once
        np.testing.assert_allclose(np.concatenate(halves, axis=1), whole.predict(x, verbose=0), rtol=1e-5,
                                   atol=1e-6)
    with pytest.raises(ValueError, match="a stateful layer takes batches of the size it started with \\(3"):
        ours.predict(x[:2, :4], verbose=0)
    ours.reset_states()  # zeros again, and any batch size: the first call's outputs again
    np.testing.assert_allclose(ours.predict(x[:2, :4], verbose=0), halves[0][:2], rtol=1e-6, atol=1e-7)


def test_bad_input_gets_a_clear_error():
    with pytest.raises(ValueError, match="takes \\(batch, steps, features\\)"):
        Sequential([layers.InputLayer((5,)), layers.LSTM(3)]).build()
    with pytest.raises(ValueError, match=r"recurrent_dropout must be in \[0, 1\)"):
        layers.LSTM(3, recurrent_dropout=1.0)
    with pytest.raises(ValueError, match="reset_after=False"):
        layers.GRU(3, reset_after=False)
    with pytest.raises(ValueError, match="units must be a positive int"):
        layers.SimpleRNN(0)
    with pytest.raises(ValueError, match="activation must be one of"):
        layers.LSTM(3, activation="softmax")
    with pytest.raises(ValueError, match="merge_mode"):
        layers.Bidirectional(layers.LSTM(3), merge_mode=None)
    with pytest.raises(TypeError, match="SimpleRNN, LSTM or GRU"):
        layers.Bidirectional(layers.Dense(3))
    model = Sequential([layers.InputLayer((4,)), layers.Embedding(5, 2), layers.LSTM(3)])
    model.build()
    with pytest.raises(ValueError, match=r"indices must be in \[0, 5\)"):
        model.predict(np.array([[0, 1, 5, 2]]), verbose=0)
    with pytest.raises(ValueError, match="whole numbers"):
        model.predict(np.array([[0, 1, 2.5, 2]]), verbose=0)
    lstm = layers.LSTM(3)
    lstm.build((4, 2))
    lstm.attach([np.zeros(s, np.float32) for _, s, _ in lstm.weight_specs()],
                [np.zeros(s, np.float32) for _, s, _ in lstm.weight_specs()])
    with pytest.raises(ValueError, match="initial_state must be 2"):
        lstm.forward(np.zeros((1, 4, 2), np.float32), initial_state=[np.zeros((1, 3), np.float32)])
    with pytest.raises(ValueError, match=r"h0 must have shape \(1, 3\)"):
        lstm.forward(np.zeros((1, 4, 2), np.float32), initial_state=[np.zeros((2, 3), np.float32)] * 2)
    inputs = fastdl.Input((4, 2))
    with pytest.raises(ValueError, match="return_state=True in a functional model"):
        layers.LSTM(3, return_state=True)(inputs)


def test_a_recurrent_model_trains_on_every_backend(backend):
    """Loss goes down on a task that needs memory: the label is the first token."""
    fastdl.utils.set_random_seed(7)
    rng = np.random.default_rng(8)
    ids = rng.integers(1, 4, (256, 6))
    y = ids[:, 0] - 1
    model = Sequential([layers.InputLayer((6,)), layers.Embedding(4, 8), layers.LSTM(16),
                        layers.Dense(3, activation="softmax")])
    model.compile(optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(ids, y, batch_size=32, epochs=8, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.9


def test_recurrent_models_round_trip_through_keras_files_both_ways(tmp_path):
    keras = keras_or_skip()
    ids = tokens(np.random.default_rng(10), 4, 7, 15)

    def build(lib, inputs):
        return [inputs, lib.layers.Embedding(15, 4, mask_zero=True),
                lib.layers.Bidirectional(lib.layers.LSTM(3, return_sequences=True), merge_mode="sum"),
                lib.layers.TimeDistributed(lib.layers.Dense(5, activation="relu")),
                lib.layers.GRU(4, return_sequences=True, go_backwards=True, recurrent_dropout=0.2),
                lib.layers.SimpleRNN(3, activation="relu"),
                lib.layers.Dense(2, activation="softmax")]
    ours = Sequential(build(fastdl, layers.InputLayer((7,))))
    ours.compile(optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    ours.fit(ids, np.array([0, 1, 1, 0]), epochs=2, verbose=0)
    ours.save(tmp_path / "ours.keras")
    theirs = keras.saving.load_model(tmp_path / "ours.keras")
    assert_outputs_equal(ours, theirs, ids)
    again = fastdl.models.load_model(tmp_path / "ours.keras")
    np.testing.assert_array_equal(again.predict(ids, verbose=0), ours.predict(ids, verbose=0))
    theirs.save(tmp_path / "theirs.keras")
    back = fastdl.models.load_model(tmp_path / "theirs.keras")
    assert_outputs_equal(back, theirs, ids)
    assert [type(layer).__name__ for layer in back.layers][1:] == ["Embedding", "Bidirectional", "TimeDistributed",
                                                                  "GRU", "SimpleRNN", "Dense"]
    assert back.layers[4].recurrent_dropout == again.layers[4].recurrent_dropout == 0.2
