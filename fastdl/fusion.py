"""The steps a model runs: each layer alone, or neighbouring layers fused into one op.

A model plans its steps once its layers are built (and again when compile changes the
loss); the layers themselves know nothing of fusion, so any layer placed between two
others simply breaks the pattern. Each step has forward(x, training) and
backward(dy, need_dx), like a layer, and owns the buffers of what it fuses.

- ConvPoolStep: a Conv2D then a MaxPooling2D. After a ReLU the pooling's backward pass
  takes the ReLU's gradient too; when the pooling's strides are its size and its padding
  'valid' (the default), the convolution pools its output in the same pass
  (ops.conv2d_max_pool), and in training keeps where each window's maximum was (after a
  ReLU, also where it passes no gradient) instead of writing the convolution's output.
- LogitsStep: the last layer when it ends in softmax and the loss takes probabilities:
  the model trains on its logits (the fused softmax + cross-entropy is exact and
  stable) and applies softmax only to predictions.
"""
import numpy as np

from fastdl import ops
from fastdl.layers import Activation, BufferOwner, Conv2D, Dense, InputLayer, MaxPooling2D


class LayerStep:
    """One layer on its own."""

    def __init__(self, layer):
        self.layer = layer
        self.layers = (layer,)

    def forward(self, x, training):
        return self.layer.forward(x, training)

    def backward(self, dy, need_dx):
        return self.layer.backward(dy, need_dx)


class ConvPoolStep(BufferOwner):
    """Conv2D then MaxPooling2D as one step (see the module docstring)."""

    def __init__(self, conv, pool):
        super().__init__()
        self.conv, self.pool = conv, pool
        self.layers = (conv, pool)
        self.relu = conv.activation == "relu"
        self.pools_in_pass = pool.strides == pool.pool_size and pool.padding == "valid"

    def forward(self, x, training):
        conv, pool = self.conv, self.pool
        bias = conv.params[1] if conv.use_bias else None
        shape = (x.shape[0],) + conv.output_shape
        pooled = self._buffer("pooled", (x.shape[0],) + pool.output_shape, x)
        self._x = x
        if self.pools_in_pass:
            # only an activation other than ReLU needs the convolution's output to go back
            positions = training and conv.activation in (None, "relu")
            y = self._buffer("y", shape, x) if training and not positions else None
            argmax = self._buffer("argmax", pooled.shape, pooled, np.uint8) if positions else None
            ops.conv2d_max_pool(x, conv.params[0], bias, activation=conv.activation, pool_size=pool.pool_size,
                                conv_out=y, out=pooled, argmax_out=argmax, **conv._geometry())
        else:
            y = self._buffer("y", shape, x)
            ops.conv2d(x, conv.params[0], bias, activation=conv.activation, out=y, **conv._geometry())
            # positions do not record where a ReLU's gradient stops: then the backward
            # pass reads y instead
            positions = training and not self.relu
            argmax = self._buffer("argmax", pooled.shape, pooled, np.uint8) if positions else None
            ops.max_pool2d(y, pool.pool_size, pool.strides, pool.padding, out=pooled, argmax_out=argmax)
        self._y, self._argmax, self._shape = y, argmax, shape
        return pooled

    def backward(self, dy, need_dx):
        conv, pool = self.conv, self.pool
        dz = self._buffer("dz", self._shape, dy)
        if self._argmax is not None:  # after a ReLU, its zero gradients are marked in argmax
            ops.max_pool2d_backward(dy, self._shape, pool.pool_size, pool.strides, pool.padding,
                                    argmax=self._argmax, out=dz)
        else:
            ops.max_pool2d_backward(dy, self._y, pool.pool_size, pool.strides, pool.padding,
                                    through_relu=self.relu, out=dz)
        if conv.activation is not None and not self.relu:
            dz = ops.activation_backward(dz, self._y, conv.activation, out=self._buffer("da", dz.shape, dz))
        return conv.gradients(dz, self._x, need_dx)


class LogitsStep(LayerStep):
    """The last layer without its softmax: a Dense's logits, or an Activation passing
    its input through."""

    def forward(self, x, training):
        return x if isinstance(self.layer, Activation) else self.layer.forward(x, training, activation=None)

    def backward(self, dy, need_dx):
        return dy if isinstance(self.layer, Activation) else self.layer.backward(dy, need_dx)


def ends_in_softmax(layer):
    return isinstance(layer, (Dense, Activation)) and layer.activation == "softmax"


def chain(layers):
    """A stack of layers as graph nodes (Input layers pass data through and are left out)."""
    layers = [layer for layer in layers if not isinstance(layer, InputLayer)]
    return [(layer, [i - 1]) for i, layer in enumerate(layers)]


def plan(nodes, logits_last=False):
    """The steps for a graph of built layers: nodes [(layer, [input node indices])] in
    topological order, -1 the model's input, the last node the output. Each step gets
    `inputs`, the indices of the steps it reads (-1: the model's input). A Conv2D read
    only by a MaxPooling2D fuses with it; logits_last: the output layer, ending in
    softmax, gives its logits."""
    readers = {}
    for i, (_, inputs) in enumerate(nodes):
        for j in inputs:
            readers.setdefault(j, []).append(i)
    fused_into = {}  # a Conv2D's node -> the pooling node that takes it over
    for i, (layer, inputs) in enumerate(nodes):
        if (isinstance(layer, Conv2D) and len(readers.get(i, [])) == 1 and i != len(nodes) - 1
                and type(nodes[readers[i][0]][0]) is MaxPooling2D):
            fused_into[i] = readers[i][0]
    steps, step_of = [], {-1: -1}
    for i, (layer, inputs) in enumerate(nodes):
        if i in fused_into:
            continue
        conv = next((c for c, p in fused_into.items() if p == i), None)
        if conv is not None:
            step, inputs = ConvPoolStep(nodes[conv][0], layer), nodes[conv][1]
        elif logits_last and i == len(nodes) - 1 and ends_in_softmax(layer):
            step = LogitsStep(layer)
        else:
            step = LayerStep(layer)
        step.inputs = [step_of[j] for j in inputs]
        step_of[i] = len(steps)
        steps.append(step)
    return steps
