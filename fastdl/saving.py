"""Whole-model files in Keras's formats: `.keras` (Keras 3's zip of config.json,
metadata.json and model.weights.h5) both ways, and legacy `.h5` full-model files
(tf.keras and Keras 3's legacy writer) for loading.

The configs are written as Keras 3 writes them (every argument of Keras's constructor,
initializers as their serialized dicts, dtypes as policies), so `keras.saving.load_model`
opens the file; reading takes Keras's configs apart into fastdl's arguments and refuses,
naming the layer and the option, whatever fastdl would compute differently. Optimizer
state goes under optimizer/vars in Keras's order (iteration, learning rate, then the
slots, per variable as each optimizer lays them out), so Adam, SGD, RMSprop and Adagrad
resume where the other left off. Writes are atomic (fastdl._atomic); a load reads and
checks everything before it builds the model, so a bad file loads nothing.
"""
import datetime
import io
import json
import os
import warnings
import zipfile

import numpy as np

from fastdl import _atomic, _device, _weights_io, layers as layers_module, optimizers

KERAS_FORMAT_VERSION = "3.6.0"  # the oldest Keras 3 whose format these files follow
CONFIG, METADATA, WEIGHTS = "config.json", "metadata.json", "model.weights.h5"


class FormatError(ValueError):
    """A model file fastdl cannot read: truncated, foreign, or using an option fastdl lacks."""


# -- configs: fastdl -> Keras -------------------------------------------------------------

_INITIALIZERS = {"zeros": "Zeros", "ones": "Ones", "glorot_uniform": "GlorotUniform",
                 "glorot_normal": "GlorotNormal", "he_uniform": "HeUniform", "he_normal": "HeNormal",
                 "random_normal": "RandomNormal", "random_uniform": "RandomUniform", "orthogonal": "Orthogonal"}
_INITIALIZER_CONFIGS = {"RandomNormal": {"seed": None, "mean": 0.0, "stddev": 0.05},
                        "RandomUniform": {"seed": None, "minval": -0.05, "maxval": 0.05},
                        "Orthogonal": {"seed": None, "gain": 1.0}, "Zeros": {}, "Ones": {}}


def _policy(dtype):
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": np.dtype(dtype).name},
            "registered_name": None}


def _initializer_config(fn, default):
    name = getattr(fn, "__name__", None)
    class_name = _INITIALIZERS.get(name, _INITIALIZERS[default])  # a custom callable: Keras's default
    config = _INITIALIZER_CONFIGS.get(class_name, {"seed": None})
    return {"module": "keras.initializers", "class_name": class_name, "config": dict(config),
            "registered_name": None}


def _no_extras(*names):
    return {name: None for name in names}


def keras_layer_config(layer, dtype, batch=None):
    """{module, class_name, config, ...} of one layer, as Keras 3 serializes it; batch: the
    model's fixed batch size (its InputLayer's), or None."""
    kind = type(layer).__name__
    if isinstance(layer, layers_module.InputLayer):
        return {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
                "config": {"batch_shape": [layer.batch_size, *layer.input_shape], "dtype": np.dtype(dtype).name,
                           "sparse": False, "ragged": False, "name": layer.name, "optional": False}}
    config = {"name": layer.name, "trainable": layer.trainable, "dtype": _policy(dtype)}
    if kind == "Conv2D":
        config.update(filters=layer.filters, kernel_size=list(layer.kernel_size), strides=list(layer.strides),
                      padding=layer.padding, data_format="channels_last", dilation_rate=list(layer.dilation_rate),
                      groups=1, activation=layer.activation or "linear", use_bias=layer.use_bias,
                      kernel_initializer=_initializer_config(layer.kernel_initializer, "glorot_uniform"),
                      bias_initializer=_initializer_config(layer.bias_initializer, "zeros"),
                      **_no_extras("kernel_regularizer", "bias_regularizer", "activity_regularizer",
                                   "kernel_constraint", "bias_constraint"))
    elif kind == "Conv2DTranspose":
        config.update(filters=layer.filters, kernel_size=list(layer.kernel_size), strides=list(layer.strides),
                      padding=layer.padding,
                      output_padding=None if layer.output_padding is None else list(layer.output_padding),
                      data_format="channels_last", dilation_rate=list(layer.dilation_rate),
                      activation=layer.activation or "linear", use_bias=layer.use_bias,
                      kernel_initializer=_initializer_config(layer.kernel_initializer, "glorot_uniform"),
                      bias_initializer=_initializer_config(layer.bias_initializer, "zeros"),
                      **_no_extras("kernel_regularizer", "bias_regularizer", "activity_regularizer",
                                   "kernel_constraint", "bias_constraint"))
    elif kind in ("MaxPooling2D", "AveragePooling2D"):
        config.update(pool_size=list(layer.pool_size), padding=layer.padding, strides=list(layer.strides),
                      data_format="channels_last")
    elif kind == "Flatten":
        config.update(data_format="channels_last")
    elif kind == "Dense":
        config.update(units=layer.units, activation=layer.activation or "linear", use_bias=layer.use_bias,
                      kernel_initializer=_initializer_config(layer.kernel_initializer, "glorot_uniform"),
                      bias_initializer=_initializer_config(layer.bias_initializer, "zeros"),
                      **_no_extras("kernel_regularizer", "bias_regularizer", "kernel_constraint",
                                   "bias_constraint"))
    elif kind == "Dropout":
        config.update(rate=layer.rate, seed=layer.seed, noise_shape=None)
    elif kind == "Activation":
        config.update(activation=layer.activation or "linear")
    elif kind == "ReLU":
        config.update(max_value=None, negative_slope=0.0, threshold=0.0)
    elif kind == "Softmax":
        config.update(axis=-1)
    elif kind in ("Add", "Subtract", "Multiply", "Average", "Maximum"):
        pass
    elif kind == "Concatenate":
        config.update(axis=layer.axis)
    elif kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        config.update(data_format="channels_last", keepdims=layer.keepdims)
    elif kind == "Reshape":
        config.update(target_shape=list(layer.target_shape))
    elif kind == "Permute":
        config.update(dims=list(layer.dims))
    elif kind == "BatchNormalization":
        config.update(axis=-1, momentum=layer.momentum, epsilon=layer.epsilon, center=layer.center, scale=layer.scale,
                      beta_initializer=_initializer_config(layer.beta_initializer, "zeros"),
                      gamma_initializer=_initializer_config(layer.gamma_initializer, "ones"),
                      moving_mean_initializer=_initializer_config(layer.moving_mean_initializer, "zeros"),
                      moving_variance_initializer=_initializer_config(layer.moving_variance_initializer, "ones"),
                      **_no_extras("beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint"),
                      synchronized=False)
    elif kind in ("DepthwiseConv2D", "SeparableConv2D"):
        if kind == "SeparableConv2D":
            config["filters"] = layer.filters
        config.update(kernel_size=list(layer.kernel_size), strides=list(layer.strides), padding=layer.padding,
                      data_format="channels_last", dilation_rate=list(layer.dilation_rate),
                      depth_multiplier=layer.depth_multiplier, activation=layer.activation or "linear",
                      use_bias=layer.use_bias,
                      depthwise_initializer=_initializer_config(layer.depthwise_initializer, "glorot_uniform"),
                      bias_initializer=_initializer_config(layer.bias_initializer, "zeros"),
                      **_no_extras("depthwise_regularizer", "bias_regularizer", "activity_regularizer",
                                   "depthwise_constraint", "bias_constraint"))
        if kind == "SeparableConv2D":
            config.update(pointwise_initializer=_initializer_config(layer.pointwise_initializer, "glorot_uniform"),
                          **_no_extras("pointwise_regularizer", "pointwise_constraint"))
    elif kind == "LayerNormalization":
        config.update(axis=-1, epsilon=layer.epsilon, center=layer.center, scale=layer.scale, rms_scaling=False,
                      beta_initializer=_initializer_config(layer.beta_initializer, "zeros"),
                      gamma_initializer=_initializer_config(layer.gamma_initializer, "ones"),
                      **_no_extras("beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint"))
    elif kind == "ZeroPadding2D":
        config.update(padding=[list(p) for p in layer.padding], data_format="channels_last")
    elif kind == "Cropping2D":
        config.update(cropping=[list(p) for p in layer.cropping], data_format="channels_last")
    elif kind == "UpSampling2D":
        config.update(size=list(layer.size), data_format="channels_last", interpolation=layer.interpolation)
    elif kind == "Embedding":
        config.update(input_dim=layer.input_dim, output_dim=layer.output_dim, mask_zero=layer.mask_zero,
                      embeddings_initializer=_initializer_config(layer.embeddings_initializer, "random_uniform"),
                      **_no_extras("embeddings_regularizer", "activity_regularizer", "embeddings_constraint",
                                   "quantization_config"))
    elif kind in ("SimpleRNN", "LSTM", "GRU"):
        config.update(_recurrent_config(layer))
    elif kind == "Bidirectional":
        config.update(merge_mode=layer.merge_mode, layer=keras_layer_config(layer.forward_layer, dtype, batch),
                      backward_layer=keras_layer_config(layer.backward_layer, dtype, batch))
    elif kind == "TimeDistributed":
        config.update(layer=keras_layer_config(layer.layer, dtype, batch))
    else:
        raise ValueError(f"layer {layer.name!r}: {kind} has no Keras config in fastdl.saving")
    out = {"module": "keras.layers", "class_name": kind, "config": config, "registered_name": None}
    if layer.weights:
        out["build_config"] = {"input_shape": [batch, *layer.input_shape]}
    return out


def _recurrent_config(layer):
    """SimpleRNN / LSTM / GRU arguments as Keras 3 writes them."""
    kind = type(layer).__name__
    config = dict(return_sequences=layer.return_sequences, return_state=layer.return_state,
                  go_backwards=layer.go_backwards, stateful=layer.stateful, unroll=layer.unroll,
                  zero_output_for_mask=layer.zero_output_for_mask, units=layer.units,
                  activation=layer.activation or "linear")
    if kind != "SimpleRNN":
        config["recurrent_activation"] = layer.recurrent_activation or "linear"
    config.update(use_bias=layer.use_bias,
                  kernel_initializer=_initializer_config(layer.kernel_initializer, "glorot_uniform"),
                  recurrent_initializer=_initializer_config(layer.recurrent_initializer, "orthogonal"),
                  bias_initializer=_initializer_config(layer.bias_initializer, "zeros"))
    if kind == "LSTM":
        config["unit_forget_bias"] = layer.unit_forget_bias
    config.update(**_no_extras("kernel_regularizer", "recurrent_regularizer", "bias_regularizer",
                               "activity_regularizer", "kernel_constraint", "recurrent_constraint",
                               "bias_constraint"),
                  dropout=layer.dropout, recurrent_dropout=layer.recurrent_dropout, seed=layer.seed)
    if kind == "GRU":
        config["reset_after"] = True
    return config


def model_config(model):
    """config.json's content for a built model: Keras's Sequential or Functional."""
    if type(model).__name__ != "Sequential":
        return _functional_config(model)
    first = model.layers[0]
    shape = [getattr(first, "batch_size", None), *first.input_shape]
    entries = list(model.layers)
    if not isinstance(entries[0], layers_module.InputLayer):
        entries.insert(0, layers_module.InputLayer(shape=shape[1:], batch_size=shape[0], name="input_layer"))
    config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
              "config": {"name": model.name, "trainable": True, "dtype": _policy(model.dtype),
                         "layers": [keras_layer_config(layer, model.dtype, shape[0]) for layer in entries],
                         "build_input_shape": shape},
              "build_config": {"input_shape": shape}}
    if model.compiled:
        config["compile_config"] = _compile_config(model)
    return config


def _functional_config(model):
    """A Functional config: every layer with its inbound node, the tensors it reads named
    by the layers that make them (keras_history), as Keras writes it."""
    nodes = model._graph_nodes()
    source = model.layers[0]
    batch = getattr(source, "batch_size", None)

    def tensor(j):
        producer = source if j < 0 else nodes[j][0]
        shape = producer.input_shape if j < 0 else producer.output_shape
        return {"class_name": "__keras_tensor__", "config": {"shape": [batch, *shape], "dtype": model.dtype.name,
                                                             "keras_history": [producer.name, 0, 0]}}
    entries = [{**keras_layer_config(source, model.dtype, batch), "name": source.name, "inbound_nodes": []}]
    for layer, inputs in nodes:
        read = [tensor(j) for j in inputs]
        entry = keras_layer_config(layer, model.dtype, batch)
        entry.update(name=layer.name, inbound_nodes=[{"args": [read] if len(read) > 1 else read, "kwargs": {}}])
        if len(read) > 1:
            entry["build_config"] = {"input_shape": [t["config"]["shape"] for t in read]}
        entries.append(entry)
    config = {"module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional",
              "config": {"name": model.name, "trainable": True, "layers": entries,
                         "input_layers": [source.name, 0, 0], "output_layers": [nodes[-1][0].name, 0, 0]},
              "build_config": {"input_shape": None}}
    if model.compiled:
        config["compile_config"] = _compile_config(model)
    return config


def _compile_config(model):
    loss = model.loss
    return {"optimizer": {"module": "keras.optimizers", "class_name": _OPTIMIZER_NAMES[type(model.optimizer)],
                          "config": _optimizer_config(model.optimizer), "registered_name": None},
            "loss": loss.name if not loss.from_logits else {
                "module": "keras.losses", "class_name": type(loss).__name__, "registered_name": None,
                "config": {**loss.get_config(), "reduction": "sum_over_batch_size"}},
            "loss_weights": None, "metrics": [metric.name for metric in model.metrics] or None,
            "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1, "jit_compile": False}


_OPTIMIZER_NAMES = {optimizers.SGD: "SGD", optimizers.Adam: "Adam", optimizers.AdamW: "AdamW",
                    optimizers.RMSprop: "RMSprop", optimizers.Adagrad: "Adagrad"}
_OPTIMIZER_CLASSES = {name: cls for cls, name in _OPTIMIZER_NAMES.items()}


def _optimizer_config(optimizer):
    if callable(optimizer.learning_rate):
        raise ValueError("a learning-rate schedule has no Keras config in fastdl.saving; save with a fixed "
                         "learning_rate or save_weights")
    config = optimizer.get_config()
    config.update(use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                  gradient_accumulation_steps=None)
    if type(optimizer) is optimizers.AdamW:
        config["weight_decay"] = optimizer.weight_decay
    return config


# Keras's optimizer variables after iteration and learning_rate: groups in order, each
# group interleaved per variable (Adam: m0 v0 m1 v1 ..., then every velocity_hat)
_KERAS_SLOTS = {
    optimizers.Adam: [("m", "v"), ("v_max",)], optimizers.AdamW: [("m", "v"), ("v_max",)],
    optimizers.SGD: [("velocity",)], optimizers.Adagrad: [("accumulator",)],
    optimizers.RMSprop: [("square_avg",), ("momentum_buffer",), ("grad_avg",)],
}


def _slot_order(optimizer):
    active = set(optimizer.active_slots())
    return [tuple(name for name in group if name in active) for group in _KERAS_SLOTS[type(optimizer)]]


def optimizer_variables(model):
    """(name, [iteration, learning_rate, slot arrays...]) in Keras's order; before the
    first step only the two scalars (Keras writes only those then; so does this)."""
    optimizer = model.optimizer
    name = optimizer.name if optimizer.name != type(optimizer).__name__.lower() else _snake_optimizer(optimizer)
    scalars = [np.array(optimizer.iterations, np.int64), np.array(optimizer.current_learning_rate(), np.float32)]
    state = optimizer.get_state()["slots"]
    if not state:
        return name, scalars
    flat = state[0]
    parts = {slot: _split(flat[slot], model) for slot in flat}
    arrays = []
    for group in _slot_order(optimizer):
        for i in range(len(model._sizes)):
            arrays += [parts[slot][i] for slot in group]
    return name, scalars + arrays


def _snake_optimizer(optimizer):
    return layers_module._snake(_OPTIMIZER_NAMES[type(optimizer)])


def _split(flat, model):
    """A flat slot into one array per weight, shaped as the weights (the model's own
    layout of its flat buffer: each layer's params are views at these offsets)."""
    shapes = [p.shape for layer in model.layers for p in layer.params]
    offsets = np.cumsum([0] + model._sizes)
    return [np.asarray(flat[start:start + size]).reshape(shape).copy()
            for shape, start, size in zip(shapes, offsets, model._sizes)]


# -- saving ----------------------------------------------------------------------------

def save_model(model, filepath):
    """model as a Keras 3 `.keras` file at filepath, atomically."""
    path = os.fspath(filepath)
    if not path.endswith(".keras"):
        raise ValueError(f"model.save writes Keras's .keras format: the file name must end in '.keras'; "
                         f"got {path!r} (weights alone: save_weights('....weights.h5'))")
    if not model.built:
        model.build()
    config = json.dumps(model_config(model))
    from fastdl import __version__

    metadata = json.dumps({"keras_version": KERAS_FORMAT_VERSION, "fastdl_version": __version__,
                           "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")})
    weights = io.BytesIO()
    _weights_io.write_h5(weights, model.name,
                         [(layer, [_device.host_copy(p) for p in layer.weights]) for layer in model.layers],
                         optimizer_variables(model) if model.compiled else None)

    def write(f):
        with zipfile.ZipFile(f, "w") as archive:  # stored, not compressed, as Keras writes it
            archive.writestr(METADATA, metadata)
            archive.writestr(CONFIG, config)
            archive.writestr(WEIGHTS, weights.getvalue())
    return _atomic.write(path, write)


# -- loading ---------------------------------------------------------------------------

def load_model(filepath, compile=True):
    """A Sequential model from a `.keras` file (Keras 3's or fastdl's) or a legacy `.h5`
    full-model file, with its weights, and compiled (with the optimizer's state) when the
    file says how and compile is true."""
    path = os.fspath(filepath)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no model file at {path!r}")
    if zipfile.is_zipfile(path):
        return _load_keras(path, compile)
    with open(path, "rb") as f:
        head = f.read(8)
    if head == b"\x89HDF\r\n\x1a\n":
        return _load_legacy_h5(path, compile)
    raise FormatError(f"{path!r} is neither a .keras zip nor an HDF5 model file (truncated, or another format)")


def _load_keras(path, compile):
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            missing = {CONFIG, WEIGHTS} - names
            if missing:
                raise FormatError(f"{path!r} lacks {sorted(missing)}: not a Keras 3 .keras file")
            config = json.loads(archive.read(CONFIG))
            weights_bytes = archive.read(WEIGHTS)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        if isinstance(exc, FormatError):
            raise
        raise FormatError(f"cannot read {path!r}: {exc} (a truncated or damaged file?)") from None
    model = _model_from_config(config, path)
    h5py = _weights_io._h5py()
    try:
        with h5py.File(io.BytesIO(weights_bytes), "r") as h5:
            weights = _weights_io.read_h5(h5, [(layer, len(layer.weights)) for layer in model.layers],
                                          f"{path!r} ({WEIGHTS})")
            optimizer_arrays = _optimizer_arrays(h5)
    except OSError as exc:
        raise FormatError(f"cannot read {WEIGHTS} in {path!r}: {exc}") from None
    model._assign(model._converted(weights, repr(path)))
    if compile and config.get("compile_config") and config["compile_config"].get("loss") is not None:
        _compile(model, config["compile_config"], path)
        _restore_optimizer(model, optimizer_arrays, path)
    return model


def _optimizer_arrays(h5):
    variables = h5.get("optimizer/vars")
    if variables is None:
        return []
    return [np.asarray(variables[str(i)]) for i in range(len(variables))]


def _load_legacy_h5(path, compile):
    h5py = _weights_io._h5py()
    try:
        with h5py.File(path, "r") as h5:
            raw = h5.attrs.get("model_config")
            if raw is None:
                raise FormatError(f"{path!r} has no model_config: a weights-only HDF5 file? "
                                  f"(load it with load_weights into a model of the same layers)")
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            model = _model_from_config(config, path)
            group = h5["model_weights"] if "model_weights" in h5 else h5
            weights = []
            for layer in model.layers:
                if not layer.weights:
                    continue
                if layer.name not in group:
                    raise FormatError(f"{path!r} has no weights for layer {layer.name!r}")
                entry = group[layer.name]
                names = [n.decode() if isinstance(n, bytes) else n for n in entry.attrs.get("weight_names", [])]
                if len(names) != len(layer.weights):
                    raise FormatError(f"{path!r} holds {len(names)} arrays for layer {layer.name!r}, which "
                                      f"has {len(layer.weights)}")
                weights += [np.asarray(entry[name]) for name in names]
            training = h5.attrs.get("training_config")
    except (OSError, KeyError) as exc:
        raise FormatError(f"cannot read {path!r}: {exc}") from None
    model._assign(model._converted(weights, repr(path)))
    if compile and training is not None and json.loads(training).get("loss") is not None:
        training = json.loads(training.decode() if isinstance(training, bytes) else training)
        _compile(model, {**training, "optimizer": training.get("optimizer_config")}, path)
    return model


def _model_from_config(config, path):
    """A built Sequential model from a Keras model config (Sequential, or a Functional
    one whose layers form a chain)."""
    from fastdl.models import Sequential

    if not isinstance(config, dict) or "class_name" not in config:
        raise FormatError(f"{path!r}: config.json is not a Keras model config")
    kind, body = config["class_name"], config.get("config", {})
    entries = body.get("layers")
    if not isinstance(entries, list) or not entries:
        raise FormatError(f"{path!r}: the model config lists no layers")
    if kind in ("Functional", "Model"):
        return _functional_from_config(entries, body, path)
    if kind != "Sequential":
        raise FormatError(f"{path!r}: a {kind} model; fastdl loads Sequential models and functional "
                          f"ones whose layers form a chain")
    dtype = _dtype(body.get("dtype"), f"{path!r}: the model") or "float32"
    built = [_layer_from_config(entry, path) for entry in entries]
    input_shape = None
    if not isinstance(built[0], layers_module.InputLayer):
        shape = body.get("build_input_shape") or config.get("build_config", {}).get("input_shape")
        if shape is None:
            shape = (entries[0].get("config", {}).get("batch_input_shape")
                     or entries[0].get("build_config", {}).get("input_shape"))
        if shape is None:
            raise FormatError(f"{path!r}: the model config does not say the input shape")
        input_shape = tuple(shape)
    dtypes = {layer.dtype for layer in built}
    if len(dtypes) == 1:
        dtype = dtypes.pop()
    model = Sequential(built, name=body.get("name"), dtype=dtype)
    try:
        model.build(input_shape)
    except ValueError as exc:
        raise FormatError(f"{path!r}: the layers do not fit together: {exc}") from None
    return model


def _functional_from_config(entries, body, path):
    """A built fastdl Model from a Functional config: each layer made and called on the
    tensors its inbound node names (one input, one output, each layer called once)."""
    from fastdl.models import Model

    tensors, merges = {}, (layers_module._Merge,)
    for entry in entries:
        layer = _layer_from_config(entry, path)
        name = entry.get("name") or entry.get("config", {}).get("name")
        if isinstance(layer, layers_module.InputLayer):
            layer.output_shape, layer._inbound = layer.input_shape, []
            tensors[name] = layers_module.KerasTensor(layer.input_shape, layer)
            continue
        nodes = entry.get("inbound_nodes") or []
        if len(nodes) != 1:
            raise FormatError(f"{path!r}: layer {name!r} is called {len(nodes)} times; fastdl calls each layer "
                              f"once (shared layers: not yet)")
        sources = _inbound_names(nodes)
        missing = [s for s in sources if s not in tensors]
        if missing or not sources:
            raise FormatError(f"{path!r}: layer {name!r} reads {missing or 'nothing'}, not made before it")
        given = [tensors[s] for s in sources]
        try:
            tensors[name] = layer(given if isinstance(layer, merges) else given[0])
        except ValueError as exc:
            raise FormatError(f"{path!r}: layer {name!r}: {exc}") from None
    ends = []
    for key in ("input_layers", "output_layers"):
        found = _inbound_names([{"args": [{"config": {"keras_history": h}} for h in _histories(body.get(key))]}])
        if len(found) != 1 or found[0] not in tensors:
            raise FormatError(f"{path!r}: fastdl loads models of one input and one output; {key} is "
                              f"{body.get(key)!r}")
        ends.append(tensors[found[0]])
    try:
        model = Model(ends[0], ends[1], name=body.get("name"), dtype=ends[0].producer.dtype.name)
        model.build()
    except ValueError as exc:
        raise FormatError(f"{path!r}: {exc}") from None
    return model


def _histories(value):
    """[name, node, tensor] triples from input_layers / output_layers (one, or a list of them)."""
    if isinstance(value, list) and value and isinstance(value[0], str):
        return [value]
    return list(value or [])


def _inbound_names(nodes):
    """The names of the layers feeding a layer, from Keras 3's or tf.keras's inbound_nodes."""
    names = []

    def walk(value):
        if isinstance(value, dict):
            history = value.get("config", {}).get("keras_history") if "config" in value else None
            if history:
                names.append(history[0])
                return
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            if len(value) >= 3 and isinstance(value[0], str) and isinstance(value[1], int):  # tf.keras
                names.append(value[0])
                return
            for v in value:
                walk(v)
    walk(nodes)
    return names


def _dtype(value, where):
    if value is None:
        return None
    name = value.get("config", {}).get("name") if isinstance(value, dict) else value
    if name not in ("float32", "float64"):
        raise FormatError(f"{where} computes in {name!r}; fastdl computes in float32 or float64")
    return name


# Keras options fastdl takes at these values only (anything else is refused by name);
# options not listed here are refused unless None
_FIXED = {"data_format": ("channels_last", None), "groups": (1,), "sparse": (False,), "ragged": (False,),
          "optional": (False,), "max_value": (None,), "negative_slope": (0, 0.0), "synchronized": (False,),
          "renorm": (False,), "rms_scaling": (False,),
          "threshold": (0, 0.0), "axis": (-1, [-1]), "noise_shape": (None,), "lora_rank": (None,),
          "lora_alpha": (None,), "quantization_config": (None,), "use_ema": (False,), "autocast": (True,)}
_TAKEN = {
    "InputLayer": ("batch_shape", "batch_input_shape", "shape", "batch_size", "name", "dtype"),
    "Conv2D": ("name", "filters", "kernel_size", "strides", "padding", "dilation_rate", "activation", "use_bias",
               "kernel_initializer", "bias_initializer", "dtype", "batch_input_shape"),
    "Conv2DTranspose": ("name", "filters", "kernel_size", "strides", "padding", "output_padding", "dilation_rate",
                        "activation", "use_bias", "kernel_initializer", "bias_initializer", "dtype",
                        "batch_input_shape"),
    "MaxPooling2D": ("name", "pool_size", "strides", "padding", "dtype", "batch_input_shape"),
    "AveragePooling2D": ("name", "pool_size", "strides", "padding", "dtype", "batch_input_shape"),
    "Flatten": ("name", "dtype", "batch_input_shape"),
    "Dense": ("name", "units", "activation", "use_bias", "kernel_initializer", "bias_initializer", "dtype",
              "batch_input_shape"),
    "Dropout": ("name", "rate", "seed", "dtype", "batch_input_shape"),
    "Activation": ("name", "activation", "dtype", "batch_input_shape"),
    "ReLU": ("name", "dtype", "batch_input_shape"),
    "Softmax": ("name", "dtype", "batch_input_shape"),
    **{kind: ("name", "dtype", "batch_input_shape") for kind in ("Add", "Subtract", "Multiply", "Average", "Maximum")},
    "Concatenate": ("name", "axis", "dtype", "batch_input_shape"),
    "GlobalAveragePooling2D": ("name", "keepdims", "dtype", "batch_input_shape"),
    "GlobalMaxPooling2D": ("name", "keepdims", "dtype", "batch_input_shape"),
    "Reshape": ("name", "target_shape", "dtype", "batch_input_shape"),
    "Permute": ("name", "dims", "dtype", "batch_input_shape"),
    "BatchNormalization": ("name", "axis", "momentum", "epsilon", "center", "scale", "beta_initializer",
                           "gamma_initializer", "moving_mean_initializer", "moving_variance_initializer", "dtype",
                           "batch_input_shape"),
    "Embedding": ("name", "input_dim", "output_dim", "embeddings_initializer", "mask_zero", "input_length", "dtype",
                  "batch_input_shape"),
    **{kind: ("name", "units", "activation", "recurrent_activation", "use_bias", "kernel_initializer",
              "recurrent_initializer", "bias_initializer", "unit_forget_bias", "dropout", "recurrent_dropout",
              "return_sequences", "return_state", "go_backwards", "stateful", "unroll", "zero_output_for_mask",
              "reset_after", "seed", "dtype", "batch_input_shape") for kind in ("SimpleRNN", "LSTM", "GRU")},
    "Bidirectional": ("name", "layer", "backward_layer", "merge_mode", "dtype", "batch_input_shape"),
    "TimeDistributed": ("name", "layer", "dtype", "batch_input_shape"),
    **{kind: ("name", "filters", "kernel_size", "strides", "padding", "dilation_rate", "depth_multiplier",
              "activation", "use_bias", "depthwise_initializer", "pointwise_initializer", "bias_initializer", "dtype",
              "batch_input_shape") for kind in ("DepthwiseConv2D", "SeparableConv2D")},
    "LayerNormalization": ("name", "axis", "epsilon", "center", "scale", "beta_initializer", "gamma_initializer",
                           "dtype", "batch_input_shape"),
    "ZeroPadding2D": ("name", "padding", "dtype", "batch_input_shape"),
    "Cropping2D": ("name", "cropping", "dtype", "batch_input_shape"),
    "UpSampling2D": ("name", "size", "interpolation", "dtype", "batch_input_shape"),
}
_WRAPPED = ("layer", "backward_layer")  # a wrapper's layers: configs of their own
_IGNORED = ("renorm_momentum",)  # meaningless at the values _FIXED allows (renorm off)
_KERAS_INITIALIZERS = {v: k for k, v in _INITIALIZERS.items()}


def _layer_from_config(entry, path):
    kind, config = entry.get("class_name"), dict(entry.get("config", {}))
    where = f"{path!r}: layer {config.get('name')!r} ({kind})"
    if kind not in _TAKEN:
        raise FormatError(f"{where} is not a layer fastdl has (it has {', '.join(sorted(_TAKEN))})")
    args = {}
    trainable = bool(config.pop("trainable", True))
    for key, value in config.items():
        if key in _TAKEN[kind]:
            args[key] = value
        elif key in _IGNORED:
            continue
        elif key in _FIXED:
            if value not in _FIXED[key]:
                raise FormatError(f"{where}: {key}={value!r} is not supported (fastdl takes {_FIXED[key][0]!r})")
        elif value is not None:
            raise FormatError(f"{where}: option {key}={value!r} is not supported")
    for key in _WRAPPED:
        if isinstance(args.get(key), dict):
            args[key] = _layer_from_config(args[key], path)
    dtype = _dtype(args.pop("dtype", None), where)
    if dtype is not None and kind != "InputLayer":
        args["dtype"] = dtype
    for key in [key for key in args if key.endswith("_initializer")]:
        args[key] = _initializer_name(args[key], where, key)
    for key in ("activation", "recurrent_activation"):
        if key in args:
            args[key] = _activation_name(args[key], where)
    if kind == "InputLayer":
        shape = args.pop("batch_shape", None) or args.pop("batch_input_shape", None)
        batch = args.pop("batch_size", None)
        if shape is not None:
            batch, shape = shape[0], shape[1:]
        else:
            shape = args.pop("shape", None)
        return layers_module.InputLayer(shape=tuple(shape), batch_size=batch, name=args.get("name"))
    if "batch_input_shape" in args and args["batch_input_shape"] is None:
        args.pop("batch_input_shape")
    for key in ("kernel_size", "strides", "pool_size", "dilation_rate", "output_padding"):
        if isinstance(args.get(key), list):
            args[key] = tuple(args[key])
    try:
        layer = getattr(layers_module, kind)(**args)
    except (TypeError, ValueError) as exc:
        raise FormatError(f"{where}: {exc}") from None
    layer.trainable = trainable
    return layer


def _initializer_name(value, where, key):
    if isinstance(value, str):
        return value
    class_name = value.get("class_name") if isinstance(value, dict) else None
    if class_name in _KERAS_INITIALIZERS:
        return _KERAS_INITIALIZERS[class_name]
    # an initializer only matters for a fresh build; the file's weights replace it
    return {"kernel_initializer": "glorot_uniform", "gamma_initializer": "ones", "recurrent_initializer": "orthogonal",
            "embeddings_initializer": "uniform", "moving_variance_initializer": "ones"}.get(key, "zeros")


def _activation_name(value, where):
    if isinstance(value, dict):  # Keras 3 writes builtins as strings; older files as a dict
        value = value.get("config") if isinstance(value.get("config"), str) else value.get("config", {}).get("name")
    if value not in layers_module._checks.ACTIVATIONS:
        raise FormatError(f"{where}: activation {value!r} is not one fastdl has "
                          f"({', '.join(a for a in layers_module._checks.ACTIVATIONS if a)})")
    return value


def _compile(model, compile_config, path):
    optimizer = compile_config.get("optimizer")
    if isinstance(optimizer, dict):
        kind, config = optimizer.get("class_name"), dict(optimizer.get("config", {}))
        if kind not in _OPTIMIZER_CLASSES:
            raise FormatError(f"{path!r}: the optimizer {kind!r} is not one fastdl has "
                              f"({', '.join(sorted(_OPTIMIZER_CLASSES))})")
        if config.pop("use_ema", False):
            raise FormatError(f"{path!r}: the optimizer uses an exponential moving average (use_ema), "
                              f"which fastdl does not have")
        for key in ("ema_momentum", "ema_overwrite_frequency", "loss_scale_factor", "gradient_accumulation_steps",
                    "is_legacy_optimizer", "decay", "jit_compile"):
            value = config.pop(key, None)
            if key in ("loss_scale_factor", "gradient_accumulation_steps") and value is not None:
                raise FormatError(f"{path!r}: optimizer option {key}={value!r} is not supported")
        if isinstance(config.get("learning_rate"), dict):
            raise FormatError(f"{path!r}: the learning rate is a schedule "
                              f"({config['learning_rate'].get('class_name')}); fastdl loads fixed rates")
        try:
            optimizer = _OPTIMIZER_CLASSES[kind](**config)
        except (TypeError, ValueError) as exc:
            raise FormatError(f"{path!r}: optimizer {kind}: {exc}") from None
    loss = compile_config.get("loss")
    if isinstance(loss, dict):
        from fastdl import losses

        loss = losses.get(loss.get("config", {}).get("name") or layers_module._snake(loss["class_name"]))
    metrics = compile_config.get("metrics") or None
    if isinstance(metrics, list):
        metrics = [m if isinstance(m, str) else m.get("config", {}).get("name") for m in metrics]
    try:
        model.compile(optimizer=optimizer or "rmsprop", loss=loss, metrics=metrics)
    except (TypeError, ValueError) as exc:
        raise FormatError(f"{path!r}: cannot compile as the file says: {exc}") from None


def _restore_optimizer(model, arrays, path):
    """Keras-ordered optimizer variables back into the optimizer's flat slots (all of them
    checked first); nothing when the file holds only the scalars."""
    optimizer = model.optimizer
    if len(arrays) < 2:
        return
    iterations = int(arrays[0])
    count = len(model._sizes)
    order = _slot_order(optimizer)
    expected = 2 + count * sum(len(group) for group in order)
    if len(arrays) == 2 and expected > 2:  # Keras writes only its scalars before the first step
        if iterations:
            warnings.warn(f"{path!r} holds the optimizer's step count but not its state: the "
                          f"optimizer starts afresh", stacklevel=3)
        return
    if len(arrays) != expected:
        raise FormatError(f"{path!r} holds {len(arrays) - 2} optimizer slot arrays; this model's "
                          f"{type(optimizer).__name__} has {expected - 2}")
    parts, i = {}, 2
    for group in order:
        for _ in range(count):
            for slot in group:
                parts.setdefault(slot, []).append(arrays[i])
                i += 1
    shapes = [p.shape for layer in model.layers for p in layer.params]
    flat = {}
    for slot, pieces in parts.items():
        for piece, shape in zip(pieces, shapes):
            if piece.shape != shape:
                raise FormatError(f"{path!r}: optimizer slot {slot!r} has an array of shape {piece.shape} "
                                  f"for a weight of shape {shape}")
        flat[slot] = np.concatenate([np.asarray(p, model.dtype).reshape(-1) for p in pieces])
    optimizer.set_state({"iterations": iterations, "slots": [flat]})
