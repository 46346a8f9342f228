"""ONNX export: a built model as an ONNX graph (opset 17 by default) that ONNX Runtime
runs with model.predict's outputs, the input NHWC as the model takes it.

ONNX's convolutions and pooling are NCHW: the graph transposes to NCHW before the first
of them and back to NHWC only where the layout shows (Flatten, a Dense on 4-D input, the
output), so a Conv / pool chain pays no transposes between its layers. Weights become
initializers in float32 (a float64 model is exported in float32); Dropout is the
identity, as at inference. Needs the onnx package (pip install 'fastdl[onnx]').

Recurrent layers become ONNX's RNN / LSTM / GRU nodes (time-major, so a Transpose on
each side), their weights reordered to ONNX's gates (LSTM i, o, f, c from Keras's i, f,
c, o; GRU z, r, h as Keras, with linear_before_reset for Keras 3's reset_after); a
Bidirectional layer is one bidirectional node, whose backward outputs ONNX already gives
in time order as Keras's merge wants them. A model whose input is token ids (an
Embedding first) takes int64 ids. Keras's masking (Embedding(mask_zero=True)), stateful
layers and return_state have no ONNX form here and are refused.
"""
import os

import numpy as np

from fastdl import _atomic, _device, layers as layers_module
from fastdl.ops._geometry import window

DEFAULT_OPSET = 17
_ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softmax": "Softmax"}
# Keras's gate blocks in the order ONNX's recurrent nodes want them
_GATE_ORDER = {"SimpleRNN": [0], "LSTM": [0, 3, 1, 2], "GRU": [0, 1, 2]}
_ONNX_CELL = {"SimpleRNN": "RNN", "LSTM": "LSTM", "GRU": "GRU"}


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'fastdl[onnx]' "
                          "(onnx, and onnxruntime to run the graph)") from None
    return onnx


class _Graph:
    """Nodes and initializers under construction; `layout` is that of the current 4-D
    tensor ('NHWC' as the model sees it, or 'NCHW' inside a convolution chain)."""

    def __init__(self, onnx, opset):
        self.onnx, self.opset, self.nodes, self.initializers = onnx, opset, [], []
        self.counter = 0

    def name(self, hint):
        self.counter += 1
        return f"{hint}_{self.counter}"

    def constant(self, hint, array):
        name = self.name(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, hint, **attributes):
        out = self.name(hint)
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=out, **attributes))
        return out


def _to(graph, tensor, layout, want):
    if layout == want:
        return tensor
    perm = [0, 3, 1, 2] if want == "NCHW" else [0, 2, 3, 1]
    return graph.node("Transpose", [tensor], f"to_{want.lower()}", perm=perm)


def _activation(graph, tensor, activation, rank, layout):
    if activation is None:
        return tensor
    if activation == "softmax":
        axis = 1 if rank == 4 and layout == "NCHW" else -1
        return graph.node("Softmax", [tensor], "softmax", axis=axis)
    return graph.node(_ACTIVATIONS[activation], [tensor], activation)


def _window_attributes(layer, shape, size, dilation=(1, 1)):
    g = window((1,) + tuple(shape), size, layer.strides, dilation, layer.padding)
    return dict(kernel_shape=list(size), strides=list(layer.strides), pads=[g.pt, g.pl, g.pb, g.pr])


def _export_layer(graph, layer, tensor, layout, shape):
    """(tensor, layout) after `layer`, whose input (without the batch axis) is `shape`."""
    kind = type(layer).__name__
    rank = len(shape) + 1
    params = [_device.host_copy(p).astype(np.float32) for p in layer.params]
    if isinstance(layer, (layers_module.InputLayer, layers_module.Dropout)):
        return tensor, layout
    if kind == "Conv2D":
        tensor = _to(graph, tensor, layout, "NCHW")
        inputs = [tensor, graph.constant(f"{layer.name}_kernel", params[0].transpose(3, 2, 0, 1))]
        if layer.use_bias:
            inputs.append(graph.constant(f"{layer.name}_bias", params[1]))
        attributes = _window_attributes(layer, shape, layer.kernel_size, layer.dilation_rate)
        tensor = graph.node("Conv", inputs, layer.name, dilations=list(layer.dilation_rate), **attributes)
        return _activation(graph, tensor, layer.activation, 4, "NCHW"), "NCHW"
    if kind == "Conv2DTranspose":  # ONNX's ConvTranspose: output row o = i * s + j * d - pads_begin, as ours
        from fastdl.ops.conv import _transpose_axis

        tensor = _to(graph, tensor, layout, "NCHW")
        inputs = [tensor, graph.constant(f"{layer.name}_kernel", params[0].transpose(3, 2, 0, 1))]
        if layer.use_bias:
            inputs.append(graph.constant(f"{layer.name}_bias", params[1]))
        begins, ends, extras = [], [], []
        for i in range(2):
            top, bottom, out = _transpose_axis(shape[i], layer.kernel_size[i], layer.strides[i],
                                               layer.dilation_rate[i], layer.padding,
                                               None if layer.output_padding is None else layer.output_padding[i])
            span = (layer.kernel_size[i] - 1) * layer.dilation_rate[i] + 1
            begins.append(top)
            ends.append(bottom)
            extras.append(out - ((shape[i] - 1) * layer.strides[i] + span - top - bottom))  # rows past the last read
        tensor = graph.node("ConvTranspose", inputs, layer.name, kernel_shape=list(layer.kernel_size),
                            strides=list(layer.strides), dilations=list(layer.dilation_rate), pads=begins + ends,
                            output_padding=extras)
        return _activation(graph, tensor, layer.activation, 4, "NCHW"), "NCHW"
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        tensor = _to(graph, tensor, layout, "NCHW")
        attributes = _window_attributes(layer, shape, layer.pool_size)
        if kind == "MaxPooling2D":
            return graph.node("MaxPool", [tensor], layer.name, **attributes), "NCHW"
        # padded positions are not counted, as in fastdl and Keras
        return graph.node("AveragePool", [tensor], layer.name, count_include_pad=0, **attributes), "NCHW"
    if kind == "Flatten":
        if rank == 4:
            tensor = _to(graph, tensor, layout, "NHWC")  # Keras flattens NHWC order
        return graph.node("Flatten", [tensor], layer.name, axis=1), "NHWC"
    if kind == "Dense":
        if rank == 4:
            tensor, layout = _to(graph, tensor, layout, "NHWC"), "NHWC"
        kernel = graph.constant(f"{layer.name}_kernel", params[0])
        if rank == 2:
            inputs = [tensor, kernel] + ([graph.constant(f"{layer.name}_bias", params[1])] if layer.use_bias else [])
            tensor = graph.node("Gemm", inputs, layer.name)
        else:
            tensor = graph.node("MatMul", [tensor, kernel], layer.name)
            if layer.use_bias:
                tensor = graph.node("Add", [tensor, graph.constant(f"{layer.name}_bias", params[1])], layer.name)
        return _activation(graph, tensor, layer.activation, rank, layout), layout
    if kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        tensor = _to(graph, tensor, layout, "NCHW")
        op = "GlobalAveragePool" if kind == "GlobalAveragePooling2D" else "GlobalMaxPool"
        tensor = graph.node(op, [tensor], layer.name)  # (N, C, 1, 1)
        if layer.keepdims:
            return tensor, "NCHW"
        return graph.node("Flatten", [tensor], f"{layer.name}_flatten", axis=1), "NHWC"
    if kind == "Reshape":
        if rank == 4:
            tensor = _to(graph, tensor, layout, "NHWC")  # Keras reshapes NHWC order
        target = graph.constant(f"{layer.name}_shape", np.array((0,) + layer.target_shape, np.int64))
        return graph.node("Reshape", [tensor, target], layer.name), "NHWC"
    if kind == "Permute":  # of the axes as the model sees them
        if rank == 4:
            tensor = _to(graph, tensor, layout, "NHWC")
        return graph.node("Transpose", [tensor], layer.name, perm=[0, *layer.dims]), "NHWC"
    if kind in ("DepthwiseConv2D", "SeparableConv2D"):  # a Conv with one group a channel (then a 1x1 Conv)
        tensor = _to(graph, tensor, layout, "NCHW")
        channels, multiplier = shape[-1], layer.depth_multiplier
        depthwise = params[0].transpose(2, 3, 0, 1).reshape(channels * multiplier, 1, *layer.kernel_size)
        inputs = [tensor, graph.constant(f"{layer.name}_depthwise", depthwise)]
        if kind == "DepthwiseConv2D" and layer.use_bias:
            inputs.append(graph.constant(f"{layer.name}_bias", params[1]))
        attributes = _window_attributes(layer, shape, layer.kernel_size, layer.dilation_rate)
        tensor = graph.node("Conv", inputs, f"{layer.name}_depthwise", group=channels,
                            dilations=list(layer.dilation_rate), **attributes)
        if kind == "SeparableConv2D":
            inputs = [tensor, graph.constant(f"{layer.name}_pointwise", params[1].transpose(3, 2, 0, 1))]
            if layer.use_bias:
                inputs.append(graph.constant(f"{layer.name}_bias", params[2]))
            tensor = graph.node("Conv", inputs, layer.name, kernel_shape=[1, 1])
        return _activation(graph, tensor, layer.activation, 4, "NCHW"), "NCHW"
    if kind == "LayerNormalization":  # ONNX's own (opset 17), over the last axis as the model sees it
        if rank == 4:
            tensor, layout = _to(graph, tensor, layout, "NHWC"), "NHWC"
        channels = shape[-1]
        gamma = params[0] if layer.scale else np.ones(channels, np.float32)
        beta = params[int(layer.scale)] if layer.center else np.zeros(channels, np.float32)
        inputs = [tensor, graph.constant(f"{layer.name}_gamma", gamma), graph.constant(f"{layer.name}_beta", beta)]
        return graph.node("LayerNormalization", inputs, layer.name, axis=-1, epsilon=layer.epsilon), layout
    if kind in ("ZeroPadding2D", "Cropping2D"):  # a Pad of zeros, or a Slice of the height and width
        tensor = _to(graph, tensor, layout, "NCHW")
        (top, bottom), (left, right) = layer.padding if kind == "ZeroPadding2D" else layer.cropping
        if kind == "ZeroPadding2D":
            pads = graph.constant(f"{layer.name}_pads", np.array([0, 0, top, left, 0, 0, bottom, right], np.int64))
            return graph.node("Pad", [tensor, pads], layer.name, mode="constant"), "NCHW"
        h, w = shape[0], shape[1]
        starts = graph.constant(f"{layer.name}_starts", np.array([top, left], np.int64))
        ends = graph.constant(f"{layer.name}_ends", np.array([h - bottom, w - right], np.int64))
        axes = graph.constant(f"{layer.name}_axes", np.array([2, 3], np.int64))
        return graph.node("Slice", [tensor, starts, ends, axes], layer.name), "NCHW"
    if kind == "UpSampling2D":  # nearest: output pixel (y, x) reads (floor(y / s0), floor(x / s1))
        tensor = _to(graph, tensor, layout, "NCHW")
        scales = graph.constant(f"{layer.name}_scales", np.array([1, 1, *layer.size], np.float32))
        return graph.node("Resize", [tensor, "", scales], layer.name, mode="nearest", nearest_mode="floor",
                          coordinate_transformation_mode="asymmetric"), "NCHW"
    if kind == "BatchNormalization":  # at inference: the moving statistics
        if rank not in (2, 4):
            raise ValueError(f"layer {layer.name!r}: BatchNormalization exports on 2-D or 4-D inputs; got rank {rank}")
        if rank == 4:
            tensor, layout = _to(graph, tensor, layout, "NCHW"), "NCHW"
        channels = shape[-1]
        gamma = params[0] if layer.scale else np.ones(channels, np.float32)
        beta = params[int(layer.scale)] if layer.center else np.zeros(channels, np.float32)
        mean, var = (_device.host_copy(s).astype(np.float32) for s in layer.states)
        inputs = [tensor] + [graph.constant(f"{layer.name}_{what}", value) for what, value in
                             (("gamma", gamma), ("beta", beta), ("moving_mean", mean), ("moving_variance", var))]
        return graph.node("BatchNormalization", inputs, layer.name, epsilon=layer.epsilon), layout
    if kind == "Embedding":
        if layer.mask_zero:
            raise ValueError(f"layer {layer.name!r}: Embedding(mask_zero=True) masks the layers after it, which an "
                             f"ONNX graph cannot express; export a model without mask_zero")
        return graph.node("Gather", [graph.constant(f"{layer.name}_embeddings", params[0]), tensor], layer.name), layout
    if kind in ("SimpleRNN", "LSTM", "GRU", "Bidirectional"):
        return _export_recurrent(graph, layer, tensor), layout
    if kind == "TimeDistributed" and type(layer.layer).__name__ == "Dense":  # a Dense on 3-D input
        return _export_layer(graph, layer.layer, tensor, layout, shape)
    if isinstance(layer, layers_module.Activation):  # ReLU and Softmax among them
        return _activation(graph, tensor, layer.activation, rank, layout), layout
    raise ValueError(f"layer {layer.name!r}: {kind} has no ONNX export yet")


def _recurrent_weights(layer):
    """W (G*H, F), R (G*H, H), B (2*G*H,) of one direction, ONNX's gate order."""
    kind, n = type(layer).__name__, layer.units
    params = [_device.host_copy(p).astype(np.float32) for p in layer.params]

    def gates(a):
        return np.concatenate([a[..., g * n:(g + 1) * n] for g in _GATE_ORDER[kind]], axis=-1)
    width = len(_GATE_ORDER[kind]) * n
    bias = np.zeros((2, width), np.float32)
    if layer.use_bias:
        bias = params[2].reshape(2, width) if kind == "GRU" else np.stack([params[2], np.zeros(width, np.float32)])
    return gates(params[0]).T, gates(params[1]).T, gates(bias).reshape(-1)


def _recurrent_activations(layer):
    kind = type(layer).__name__
    wanted = {"SimpleRNN": [layer.activation], "GRU": [layer.recurrent_activation, layer.activation],
              "LSTM": [layer.recurrent_activation, layer.activation, layer.activation]}[kind]
    for name in wanted:
        if name not in ("relu", "sigmoid", "tanh"):
            raise ValueError(f"layer {layer.name!r}: the activation {name or 'linear'!r} has no ONNX recurrent "
                             f"form here (relu, sigmoid and tanh do)")
    return [_ACTIVATIONS[name] for name in wanted]


def _export_recurrent(graph, layer, tensor):
    """One ONNX RNN/LSTM/GRU node (both directions for a Bidirectional), the input
    (B, T, F) made time-major and the outputs brought back to Keras's shapes."""
    pair = isinstance(layer, layers_module.Bidirectional)
    cells = [layer.forward_layer, layer.backward_layer] if pair else [layer]
    first = cells[0]
    for cell in cells:
        if cell.stateful or cell.return_state:
            raise ValueError(f"layer {cell.name!r}: stateful=True and return_state=True have no ONNX export (a "
                             f"graph keeps no states between runs and has one output here)")
    if pair:
        forward, backward = cells
        if (type(forward) is not type(backward) or forward.go_backwards or not backward.go_backwards
                or forward.units != backward.units or forward.use_bias != backward.use_bias):
            raise ValueError(f"layer {layer.name!r}: a Bidirectional exports when its two layers are one kind and "
                             f"size, the forward one reading forwards")
    kind, n = type(first).__name__, first.units
    weights = [_recurrent_weights(cell) for cell in cells]
    inputs = [graph.node("Transpose", [tensor], f"{layer.name}_time_major", perm=[1, 0, 2])]
    for i, what in enumerate(("W", "R", "B")):
        inputs.append(graph.constant(f"{layer.name}_{what}", np.stack([w[i] for w in weights])))
    activations = _recurrent_activations(first) * len(cells)
    attributes = dict(hidden_size=n, activations=activations,
                      direction="bidirectional" if pair else "reverse" if first.go_backwards else "forward")
    if kind == "GRU":
        attributes["linear_before_reset"] = 1  # Keras 3's reset_after
    outputs = [graph.name(f"{layer.name}_Y"), graph.name(f"{layer.name}_Y_h")]
    graph.nodes.append(graph.onnx.helper.make_node(_ONNX_CELL[kind], inputs, outputs, name=outputs[0],
                                                   **attributes))
    sequences = first.return_sequences
    if sequences:  # Y (T, D, B, H) -> (B, T, D, H)
        out = graph.node("Transpose", [outputs[0]], f"{layer.name}_batch_major", perm=[2, 0, 1, 3])
        if first.go_backwards and not pair:  # Keras gives them in the order it read them
            out = graph.node("Slice", [out] + [graph.constant(f"{layer.name}_{what}", np.array([v], np.int64))
                                               for what, v in (("starts", -1), ("ends", -(2 ** 63)), ("axes", 1),
                                                               ("steps", -1))], f"{layer.name}_reversed")
        axis = 2
    else:  # Y_h (D, B, H) -> (B, D, H)
        out = graph.node("Transpose", [outputs[1]], f"{layer.name}_batch_major", perm=[1, 0, 2])
        axis = 1
    if not pair or layer.merge_mode == "concat":  # the directions side by side, forward first
        shape = np.array([0, 0, len(cells) * n] if sequences else [0, len(cells) * n], np.int64)
        return graph.node("Reshape", [out, graph.constant(f"{layer.name}_shape", shape)], layer.name)
    reduce = {"sum": "ReduceSum", "mul": "ReduceProd", "ave": "ReduceMean"}[layer.merge_mode]
    if reduce == "ReduceSum" or graph.opset >= 18:  # axes an input (ReduceSum's from opset 13), else an attribute
        axes = graph.constant(f"{layer.name}_axes", np.array([axis], np.int64))
        return graph.node(reduce, [out, axes], layer.name, keepdims=0)
    return graph.node(reduce, [out], layer.name, axes=[axis], keepdims=0)


_MERGES = {"Add": "Sum", "Subtract": "Sub", "Multiply": "Mul", "Average": "Mean", "Maximum": "Max",
           "Concatenate": "Concat"}
_NHWC_TO_NCHW_AXIS = {1: 2, 2: 3, 3: 1}


def _export_merge(graph, layer, given):
    """A merge layer's node: its inputs brought to one layout (NCHW for images, which keeps
    a convolution chain untransposed), then Sum / Sub / Mul / Mean / Max / Concat."""
    rank = len(given[0][2]) + 1
    layout = "NCHW" if rank == 4 else "NHWC"
    tensors = [_to(graph, tensor, have, layout) if rank == 4 else tensor for tensor, have, _ in given]
    kind = type(layer).__name__
    if kind == "Concatenate":
        axis = layer.axis % rank
        if layout == "NCHW":
            axis = _NHWC_TO_NCHW_AXIS[axis]
        return graph.node("Concat", tensors, layer.name, axis=axis), layout
    return graph.node(_MERGES[kind], tensors, layer.name), layout


def token_embedding(model):
    """The Embedding that reads a model's input (its ONNX input is then int64 ids), or None."""
    first = model._graph_nodes()[0][0]
    return first if isinstance(first, layers_module.Embedding) else None


def to_onnx(model, opset=DEFAULT_OPSET):
    """The model as an onnx.ModelProto: input 'input' (batch, *input_shape), output
    'output' (batch, *output_shape), the batch axis dynamic."""
    onnx = _onnx()
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 17:
        raise ValueError(f"opset must be an int >= 17; got {opset!r}")
    if not model.built:
        model.build()
    graph = _Graph(onnx, opset)
    values = {-1: ("input", "NHWC", tuple(model.layers[0].input_shape))}  # node -> (tensor, layout, shape)
    for i, (layer, inputs) in enumerate(model._graph_nodes()):
        given = [values[j] for j in inputs]
        if isinstance(layer, layers_module._Merge):
            tensor, layout = _export_merge(graph, layer, given)
        else:
            tensor, layout = _export_layer(graph, layer, *given[0])
        values[i] = (tensor, layout, tuple(layer.output_shape))
    tensor, layout, shape = values[len(model._graph_nodes()) - 1]
    if len(shape) == 3:
        tensor = _to(graph, tensor, layout, "NHWC")
    graph.nodes.append(onnx.helper.make_node("Identity", [tensor], ["output"], name="output"))
    float32 = onnx.TensorProto.FLOAT
    ids = token_embedding(model) is not None
    inputs = [onnx.helper.make_tensor_value_info("input", onnx.TensorProto.INT64 if ids else float32,
                                                 ["batch", *model.layers[0].input_shape])]
    outputs = [onnx.helper.make_tensor_value_info("output", float32, ["batch", *shape])]
    from fastdl import __version__

    proto = onnx.helper.make_model(
        onnx.helper.make_graph(graph.nodes, model.name, inputs, outputs, graph.initializers),
        opset_imports=[onnx.helper.make_opsetid("", opset)], producer_name="fastdl", producer_version=__version__)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export(model, filepath, opset=DEFAULT_OPSET):
    """Write the model's ONNX graph to filepath (atomically); returns the path."""
    path = os.fspath(filepath)
    data = to_onnx(model, opset).SerializeToString()
    return _atomic.write(path, lambda f: f.write(data))
