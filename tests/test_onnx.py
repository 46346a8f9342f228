"""ONNX export (fastdl.onnx): the graphs pass onnx's full checker and ONNX Runtime runs
them with model.predict's outputs, for every layer, layout and padding."""
import os
import sys

import numpy as np
import pytest

import fastdl
from fastdl import layers, train
from fastdl.models import Sequential

onnx = pytest.importorskip("onnx") if not os.environ.get("CI") else __import__("onnx")
onnxruntime = pytest.importorskip("onnxruntime") if not os.environ.get("CI") else __import__("onnxruntime")

from fastdl import onnx as fastdl_onnx  # noqa: E402


def run_onnx(proto, x):
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def assert_runs_as_predict(model, batch=5, seed=0, atol=1e-5):
    model.build()
    x = np.random.default_rng(seed).standard_normal((batch,) + model.input_shape).astype(np.float32)
    proto = fastdl_onnx.to_onnx(model)
    np.testing.assert_allclose(run_onnx(proto, x), model.predict(x), rtol=1e-5, atol=atol)
    return proto


def test_the_seed_cnn_runs_in_onnxruntime_at_every_batch_size():
    fastdl.utils.set_random_seed(0)
    model = train.seed_cnn((32, 32, 3))
    for batch in (1, 7, 64):
        proto = assert_runs_as_predict(model, batch=batch, seed=batch)
    assert proto.opset_import[0].version == 17
    transposes = [node for node in proto.graph.node if node.op_type == "Transpose"]
    assert len(transposes) == 2  # into NCHW before the first convolution, back before Flatten


def test_every_layer_and_padding_runs_as_predict():
    fastdl.utils.set_random_seed(1)
    model = Sequential([
        layers.Input((13, 11, 3)),
        layers.Conv2D(5, (3, 2), strides=(2, 1), padding="same", activation="relu"),
        layers.BatchNormalization(),
        layers.MaxPooling2D((3, 2), strides=(1, 2), padding="same"),
        layers.Conv2D(4, 3, dilation_rate=2, activation="tanh", use_bias=False),
        layers.AveragePooling2D(2, strides=1, padding="same"),  # padded positions not counted
        layers.Conv2D(3, 1, activation="sigmoid"),
        layers.Dropout(0.4),
        layers.Activation("softmax"),  # over the channels, in NCHW
        layers.Flatten(),
        layers.Dense(7),
        layers.BatchNormalization(center=False),
        layers.ReLU(),
        layers.Dense(3, activation="softmax"),
    ])
    assert_runs_as_predict(model)


def test_padding_cropping_and_upsampling_run_as_predict():
    fastdl.utils.set_random_seed(3)
    model = Sequential([layers.Input((5, 7, 2)), layers.ZeroPadding2D(((1, 2), (0, 3))), layers.Conv2D(3, 3),
                        layers.UpSampling2D((2, 3)), layers.Cropping2D(((1, 0), (2, 1))), layers.ZeroPadding2D(1)])
    assert_runs_as_predict(model)


def test_depthwise_and_separable_convolutions_run_as_predict():
    fastdl.utils.set_random_seed(5)
    model = Sequential([layers.Input((9, 8, 3)), layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2),
                        layers.SeparableConv2D(4, (3, 2), strides=2, activation="relu"),
                        layers.DepthwiseConv2D(2, dilation_rate=(1, 2), activation="tanh", use_bias=False)])
    assert_runs_as_predict(model)


def test_layer_normalization_on_images_and_vectors_runs_as_predict():
    fastdl.utils.set_random_seed(4)
    model = Sequential([layers.Input((5, 6, 2)), layers.Conv2D(4, 3), layers.LayerNormalization(),
                        layers.Conv2D(3, 1), layers.Flatten(), layers.Dense(5), layers.LayerNormalization(center=False),
                        layers.Dense(2, activation="softmax")])
    assert_runs_as_predict(model)


def test_dense_on_images_and_an_image_output_keep_nhwc():
    fastdl.utils.set_random_seed(2)
    model = Sequential([layers.Input((6, 5, 2)), layers.Conv2D(4, 3, padding="same"),
                        layers.Dense(3, activation="relu"), layers.Conv2D(2, 2, strides=2), layers.Softmax()])
    proto = assert_runs_as_predict(model)
    assert [d.dim_param or d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim] == ["batch", 3, 2, 2]


def test_a_dense_only_model_and_a_float64_one():
    fastdl.utils.set_random_seed(3)
    assert_runs_as_predict(Sequential([layers.Input((9,)), layers.Dense(4, activation="tanh"), layers.Dense(2)]))
    model = Sequential([layers.Input((8, 8, 1)), layers.Conv2D(3, 3), layers.Flatten(), layers.Dense(2)],
                       dtype="float64")
    assert_runs_as_predict(model, atol=1e-5)  # exported in float32


def test_export_writes_a_file_that_onnx_loads(tmp_path):
    model = train.seed_cnn((28, 28, 1))
    model.build()
    path = fastdl_onnx.export(model, tmp_path / "m.onnx")
    loaded = onnx.load(path)
    onnx.checker.check_model(loaded, full_check=True)
    x = np.random.default_rng(4).random((3, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(loaded, x), model.predict(x), rtol=1e-5, atol=1e-6)


def test_the_export_command_checks_the_graph_against_predict(tmp_path, capsys):
    from fastdl.__main__ import main

    model = train.seed_cnn((16, 16, 3))
    model.build()
    model.save(tmp_path / "m.keras")
    assert main(["export", str(tmp_path / "m.keras"), str(tmp_path / "m.onnx"), "--check"]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "largest difference from predict" in out
    assert os.path.getsize(tmp_path / "m.onnx") > 4 * model.count_params()


def test_bad_opsets_and_a_missing_onnx_are_clear_errors(monkeypatch):
    model = Sequential([layers.Input((3,)), layers.Dense(2)])
    for opset in (13, 16.0, True):
        with pytest.raises(ValueError, match="opset must be an int >= 17"):
            fastdl_onnx.to_onnx(model, opset=opset)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'fastdl\[onnx\]'"):
        fastdl_onnx.to_onnx(model)


@pytest.mark.parametrize("merge", ["Add", "Subtract", "Multiply", "Average", "Maximum", "Concatenate"])
def test_graphs_with_every_merge_on_images_and_on_vectors_run_as_predict(merge):
    from fastdl.models import Model

    fastdl.utils.set_random_seed(5)
    inputs = fastdl.Input((6, 5, 3))
    a = layers.Conv2D(4, 3, padding="same")(inputs)
    b = layers.Conv2D(4 if merge != "Concatenate" else 2, 1)(inputs)
    images = getattr(layers, merge)()([a, b])  # in NCHW between the convolutions
    c = layers.Dense(3)(layers.Flatten()(images))
    d = layers.Dense(3)(layers.GlobalAveragePooling2D()(a))
    assert_runs_as_predict(Model(inputs, getattr(layers, merge)()([c, d])))


def test_resnet20_runs_in_onnxruntime():
    from fastdl.applications import resnet_v1

    fastdl.utils.set_random_seed(6)
    assert_runs_as_predict(resnet_v1((32, 32, 3), depth=20), batch=3, atol=1e-4)


def assert_ids_run_as_predict(model, steps, vocab, batch=4):
    model.build()
    ids = np.random.default_rng(7).integers(0, vocab, (batch, steps))
    proto = fastdl_onnx.to_onnx(model)
    np.testing.assert_allclose(run_onnx(proto, ids.astype(np.int64)), model.predict(ids, verbose=0), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU"])
@pytest.mark.parametrize("options", [{}, dict(return_sequences=True), dict(go_backwards=True),
                                     dict(return_sequences=True, go_backwards=True, use_bias=False),
                                     dict(activation="relu", recurrent_activation="tanh")])
def test_recurrent_layers_run_as_predict(cell, options):
    fastdl.utils.set_random_seed(8)
    if cell == "SimpleRNN":
        options = {k: v for k, v in options.items() if k != "recurrent_activation"}
    tail = [layers.Dense(3, activation="softmax")] if not options.get("return_sequences") else \
        [layers.TimeDistributed(layers.Dense(3)), layers.Flatten()]
    model = Sequential([layers.Input((7, 5)), getattr(layers, cell)(6, **options), *tail])
    # weights away from the initializers' (GRU's recurrent bias, LSTM's forget bias) so every one shows
    model.set_weights([w + np.random.default_rng(9).normal(0, 0.3, w.shape) for w in model.get_weights()])
    assert_runs_as_predict(model)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave"])
@pytest.mark.parametrize("sequences", [False, True])
def test_bidirectional_layers_on_embeddings_run_as_predict(merge_mode, sequences):
    fastdl.utils.set_random_seed(10)
    model = Sequential([layers.InputLayer((6,)), layers.Embedding(11, 4),
                        layers.Bidirectional(layers.LSTM(5, return_sequences=sequences), merge_mode=merge_mode),
                        *([layers.GRU(3)] if sequences else []), layers.Dense(2)])
    assert_ids_run_as_predict(model, 6, 11)
    graph = fastdl_onnx.to_onnx(model).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert [node.op_type for node in graph.node].count("LSTM") == 1  # both directions in one node


def test_recurrent_models_onnx_cannot_express_are_clear_errors():
    masked = Sequential([layers.InputLayer((6,)), layers.Embedding(11, 4, mask_zero=True), layers.LSTM(3)])
    with pytest.raises(ValueError, match="mask_zero=True"):
        fastdl_onnx.to_onnx(masked)
    stateful = Sequential([layers.Input((6, 2)), layers.GRU(3, stateful=True)])
    with pytest.raises(ValueError, match="stateful=True"):
        fastdl_onnx.to_onnx(stateful)
    linear = Sequential([layers.Input((6, 2)), layers.SimpleRNN(3, activation="linear")])
    with pytest.raises(ValueError, match="'linear' has no ONNX recurrent form"):
        fastdl_onnx.to_onnx(linear)


def test_the_export_command_takes_a_text_model_from_its_keras_file(tmp_path, capsys):
    from fastdl.__main__ import main

    model = Sequential([layers.InputLayer((9,)), layers.Embedding(20, 4),
                        layers.Bidirectional(layers.GRU(3)), layers.Dense(2, activation="softmax")])
    model.build()
    model.save(tmp_path / "text.keras")
    assert main(["export", str(tmp_path / "text.keras"), str(tmp_path / "text.onnx"), "--check"]) == 0
    assert "largest difference from predict" in capsys.readouterr().out


def test_permute_on_images_and_sequences_runs_as_predict():
    fastdl.utils.set_random_seed(12)
    model = Sequential([layers.Input((5, 6, 2)), layers.Conv2D(3, 2), layers.Permute((3, 1, 2)),
                        layers.Reshape((3, 20)), layers.Permute((2, 1)), layers.Dense(4)])
    assert_runs_as_predict(model)
