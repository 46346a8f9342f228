"""Keras-style layers. Each owns its hyper-parameters and weights and computes through
fastdl.ops only: `forward(x, training)` keeps what its `backward(dy)` needs, and
`backward` writes weight gradients into the layer's gradient arrays (views into the
model's flat gradient buffer) and returns the gradient with respect to its input.
"""
import re

import numpy as np

from fastdl import _config, _device, initializers, ops
from fastdl.ops import _checks
from fastdl.ops.resample import _margins
from fastdl.utils import new_generator

_counts = {}


def _unique_name(prefix):
    _counts[prefix] = _counts.get(prefix, 0) + 1
    n = _counts[prefix]
    return prefix if n == 1 else f"{prefix}_{n - 1}"


def _snake(name):
    """Conv2D -> conv2d, MaxPooling2D -> max_pooling2d, Conv2DTranspose -> conv2d_transpose:
    Keras's default layer names (and its weight files' group names), by Keras's rule: "_"
    before a capital that starts a word, and between a lower-case letter and a capital."""
    return re.sub("([a-z])([A-Z])", r"\1_\2", re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)).lower()


_OWN = object()  # Dense.forward's default: the layer's own activation


class BufferOwner:
    """Owns reusable output arrays (a layer, or a model's fused step)."""

    def __init__(self):
        self._buffers = {}

    def _buffer(self, key, shape, like, dtype=None):
        """A reusable output array shaped `shape`, of like's dtype (or `dtype`) and where
        like lives (host or device): steady-state training allocates no activations."""
        buf = self._buffers.get(key)
        device = _device.is_device(like)
        dtype = like.dtype if dtype is None else np.dtype(dtype)
        if buf is None or buf.shape != shape or buf.dtype != dtype or _device.is_device(buf) != device:
            buf = _device.empty(shape, dtype, device)
            self._buffers[key] = buf
        return buf


class Layer(BufferOwner):
    """Base layer: a name, an optional input_shape (without the batch axis), weights.

    Weights are declared by `weight_specs()` once built; the model gives each layer
    views of its flat parameter and gradient buffers (`attach`).
    """

    def __init__(self, name=None, input_shape=None, dtype="float32", trainable=True, **kwargs):
        if "batch_input_shape" in kwargs:
            input_shape = tuple(kwargs.pop("batch_input_shape"))[1:]
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected arguments: {sorted(kwargs)}")
        super().__init__()
        self.name = name or _unique_name(_snake(type(self).__name__))
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.dtype = np.dtype(dtype)
        self.trainable = trainable
        self.built = False
        self.params = []  # arrays, in weight_specs order
        self.grads = []
        self.states = []  # non-trainable weights (BatchNormalization's moving statistics)
        self.output_shape = None

    def _kernel_gradients(self, dkernel, dbias):
        """A kernel-and-bias layer's gradients into grads (the bias's when it has one)."""
        _device.copy_into(self.grads[0], dkernel)
        if getattr(self, "use_bias", False):
            _device.copy_into(self.grads[1], dbias)

    # -- building ------------------------------------------------------------------------

    def build(self, input_shape):
        """Fix the shapes from the input shape (batch axis excluded); returns the output shape."""
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(self.compute_output_shape(self.input_shape))
        self.built = True
        return self.output_shape

    def compute_output_shape(self, input_shape):
        return input_shape

    def weight_specs(self):
        """[(name, shape, initializer)] of this layer's weights, once built."""
        return []

    supports_masking = False  # whether a mask reaching the layer passes on to its output

    def compute_mask(self, x, mask=None):
        """The (batch, steps) mask of the output, given the input and its mask."""
        return mask if self.supports_masking else None

    def state_specs(self):
        """[(name, shape, initializer)] of the weights no optimizer updates (the layer does,
        in its forward pass), once built; after weight_specs' in the layer's weights."""
        return []

    def attach(self, params, grads, states=()):
        self.params, self.grads, self.states = params, grads, list(states)

    @property
    def weights(self):
        """Every weight, the trainable ones first (Keras's order)."""
        return list(self.params) + list(self.states)

    def count_params(self):
        return sum(int(np.prod(shape)) for _, shape, _ in self.weight_specs() + self.state_specs())

    def count_trainable_params(self):
        return sum(int(np.prod(shape)) for _, shape, _ in self.weight_specs()) if self.trainable else 0

    # -- computing -----------------------------------------------------------------------

    def forward(self, x, training=False):
        raise NotImplementedError

    def backward(self, dy, need_dx=True):
        raise NotImplementedError

    def __call__(self, x, training=False):
        """On a symbolic tensor (Input(...) or a layer's output) or a list of them: a node
        of a functional model, returning the symbolic output; on arrays: the forward pass."""
        if isinstance(x, KerasTensor) or (isinstance(x, (list, tuple)) and x
                                          and all(isinstance(t, KerasTensor) for t in x)):
            return self._call_symbolic(x)
        if not self.built or len(self.params) != len(self.weight_specs()):
            self._build_eagerly(x)
        return self.forward(x, training)

    def _build_eagerly(self, x):
        """Keras's first call on arrays: build on their shapes (the batch axis dropped),
        weights drawn from the initializers, gradients zeros."""
        arrays = list(x) if isinstance(x, (list, tuple)) else [x]
        shapes = [tuple(np.shape(a))[1:] for a in arrays]
        if not self.built:
            self.build(shapes if isinstance(x, (list, tuple)) else shapes[0])
        rng = np.random.default_rng()
        on_device = _config.backend_module().ARRAYS_ON_DEVICE

        def place(a):
            return _device.to_device(a) if on_device else a
        params = [place(init(shape, self.dtype, rng)) for _, shape, init in self.weight_specs()]
        states = [place(init(shape, self.dtype, rng)) for _, shape, init in self.state_specs()]
        self.attach(params, [_device.full(p.shape, self.dtype, 0, on_device) for p in params], states)

    def _call_symbolic(self, x):
        if getattr(self, "_inbound", None) is not None:
            raise ValueError(f"layer {self.name!r} is already called on a tensor: fastdl does not share a "
                             f"layer between several calls yet (make one layer per call)")
        inputs = list(x) if isinstance(x, (list, tuple)) else [x]
        shapes = [t.shape[1:] for t in inputs]
        self.build(shapes if isinstance(x, (list, tuple)) else shapes[0])
        self._inbound = inputs
        return KerasTensor(self.output_shape, self)

    def get_config(self):
        """The constructor's arguments: type(layer).from_config(config) makes a layer like
        this one (before its weights are built)."""
        config = {"name": self.name, "trainable": self.trainable}
        if self.dtype != np.float32:
            config["dtype"] = self.dtype.name
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class InputLayer(Layer):
    """Declares the model's input shape (without the batch axis); passes data through.
    batch_size: a fixed batch size, for the files of models with stateful recurrent layers
    (Keras needs it to build them); fastdl's layers take any batch."""

    def __init__(self, shape=None, batch_size=None, name=None, batch_shape=None, **kwargs):
        if shape is None and "input_shape" in kwargs:
            shape = kwargs.pop("input_shape")
        if shape is None and batch_shape is not None:
            batch_size, shape = batch_shape[0], tuple(batch_shape[1:])
        if shape is None:
            raise ValueError("Input needs shape=, the shape of one sample (e.g. (32, 32, 3))")
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                       or batch_size < 1):
            raise ValueError(f"batch_size must be a positive int or None; got {batch_size!r}")
        super().__init__(name=name, input_shape=shape, **kwargs)
        self.batch_size = None if batch_size is None else int(batch_size)

    def forward(self, x, training=False):
        return x

    def backward(self, dy, need_dx=True):
        return dy

    def get_config(self):
        return {**super().get_config(), "shape": self.input_shape, "batch_size": self.batch_size}


class KerasTensor:
    """A symbolic tensor of a functional model: its shape (batch first, None) and the
    layer that makes it (fastdl.models.Model follows them back to the inputs)."""

    def __init__(self, shape, producer):
        self.shape = (None,) + tuple(shape)
        self.producer = producer

    @property
    def dtype(self):
        return self.producer.dtype.name

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, from {self.producer.name!r}>"


def Input(shape=None, name=None, **kwargs):
    """Keras's Input: a symbolic tensor of shape (None,) + shape, the start of a
    functional model (fastdl.models.Model) or the first entry of a Sequential one."""
    layer = InputLayer(shape=shape, name=name, **kwargs)
    layer.output_shape, layer._inbound = layer.input_shape, []
    return KerasTensor(layer.input_shape, layer)


def _activation(name):
    return _checks.activation_name(name)


class Conv2D(Layer):
    """2-D convolution on NHWC input with an HWIO kernel (kh, kw, in_channels, filters)."""

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", dilation_rate=(1, 1),
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or filters < 1:
            raise ValueError(f"filters must be a positive int; got {filters!r}")
        self.filters = int(filters)
        self.kernel_size = _checks.int_pair("kernel_size", kernel_size)
        self.strides = _checks.int_pair("strides", strides)
        self.dilation_rate = _checks.int_pair("dilation_rate", dilation_rate)
        self.padding = _checks.padding_spec(padding, allow_explicit=False)
        self.activation = _activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    def _geometry(self):
        return dict(strides=self.strides, padding=self.padding, dilation_rate=self.dilation_rate)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self.name}: Conv2D expects inputs (height, width, channels); got {input_shape}")
        from fastdl.ops._geometry import window

        g = window((1,) + tuple(input_shape), self.kernel_size, self.strides, self.dilation_rate, self.padding)
        return (g.oh, g.ow, self.filters)

    def weight_specs(self):
        specs = [("kernel", self.kernel_size + (self.input_shape[-1], self.filters), self.kernel_initializer)]
        if self.use_bias:
            specs.append(("bias", (self.filters,), self.bias_initializer))
        return specs

    def forward(self, x, training=False):
        bias = self.params[1] if self.use_bias else None
        y = self._buffer("y", (x.shape[0],) + self.output_shape, x)
        ops.conv2d(x, self.params[0], bias, activation=self.activation, out=y, **self._geometry())
        self._x, self._y = x, y
        return y

    def backward(self, dy, need_dx=True):
        if self.activation is not None:
            dy = ops.activation_backward(dy, self._y, self.activation,
                                         out=self._buffer("dz", dy.shape, dy))
        return self.gradients(dy, self._x, need_dx)

    def gradients(self, dz, x, need_dx=True):
        """The weights' gradients (into grads) and dx from dz, the gradient of the
        convolution's output before its activation, for the input x."""
        dx_out = self._buffer("dx", x.shape, x) if need_dx else None
        dx, dkernel, dbias = ops.conv2d_backward(dz, x, self.params[0], need_dx=need_dx,
                                                 dx_out=dx_out, **self._geometry())
        self._kernel_gradients(dkernel, dbias)
        return dx

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "dilation_rate": self.dilation_rate,
                "activation": self.activation, "use_bias": self.use_bias}


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}")
    return int(value)


class DepthwiseConv2D(Layer):
    """Each input channel convolved with its own depth_multiplier filters (Keras's
    DepthwiseConv2D): kernel (kh, kw, channels, depth_multiplier), output channel
    c * depth_multiplier + m, then bias and activation."""

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=(1, 1), activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        _channels_last(data_format, self.name)
        self.kernel_size = _checks.int_pair("kernel_size", kernel_size)
        self.strides = _checks.int_pair("strides", strides)
        self.dilation_rate = _checks.int_pair("dilation_rate", dilation_rate)
        self.padding = _checks.padding_spec(padding, allow_explicit=False)
        self.depth_multiplier = _positive_int("depth_multiplier", depth_multiplier)
        self.activation = _activation(activation)
        self.use_bias = bool(use_bias)
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    def _geometry(self):
        return dict(strides=self.strides, padding=self.padding, dilation_rate=self.dilation_rate)

    def compute_output_shape(self, input_shape):
        h, w, c = _image_shape(self, input_shape)
        from fastdl.ops._geometry import window

        g = window((1, h, w, c), self.kernel_size, self.strides, self.dilation_rate, self.padding)
        return (g.oh, g.ow, c * self.depth_multiplier)

    def weight_specs(self):
        c = self.input_shape[-1]
        specs = [("depthwise_kernel", self.kernel_size + (c, self.depth_multiplier), self.depthwise_initializer)]
        if self.use_bias:
            specs.append(("bias", (c * self.depth_multiplier,), self.bias_initializer))
        return specs

    def forward(self, x, training=False):
        y = self._buffer("y", (x.shape[0],) + self.output_shape, x)
        ops.depthwise_conv2d(x, self.params[0], self.params[1] if self.use_bias else None,
                             activation=self.activation, out=y, **self._geometry())
        self._x, self._y = x, y
        return y

    def backward(self, dy, need_dx=True):
        if self.activation is not None:
            dy = ops.activation_backward(dy, self._y, self.activation, out=self._buffer("dz", dy.shape, dy))
        dx, dkernel, dbias = ops.depthwise_conv2d_backward(
            dy, self._x, self.params[0], need_dx=need_dx,
            dx_out=self._buffer("dx", self._x.shape, self._x) if need_dx else None, **self._geometry())
        self._kernel_gradients(dkernel, dbias)
        return dx

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "strides": self.strides,
                "padding": self.padding, "depth_multiplier": self.depth_multiplier,
                "dilation_rate": self.dilation_rate, "activation": self.activation, "use_bias": self.use_bias}


class Conv2DTranspose(Layer):
    """Keras's Conv2DTranspose (a "deconvolution"): the transpose of a convolution,
    kernel (kh, kw, filters, in_channels), output sized as Keras 3 sizes it from strides,
    padding and output_padding (fastdl.ops.conv2d_transpose), then bias and activation."""

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", output_padding=None, data_format=None,
                 dilation_rate=(1, 1), activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        _channels_last(data_format, self.name)
        self.filters = _positive_int("filters", filters)
        self.kernel_size = _checks.int_pair("kernel_size", kernel_size)
        self.strides = _checks.int_pair("strides", strides)
        self.dilation_rate = _checks.int_pair("dilation_rate", dilation_rate)
        self.padding = _checks.padding_spec(padding, allow_explicit=False)
        self.output_padding = None if output_padding is None else _checks.int_pair("output_padding", output_padding,
                                                                                    minimum=0)
        if self.output_padding is not None and any(o >= s for o, s in zip(self.output_padding, self.strides)):
            raise ValueError(f"{self.name}: output_padding must be smaller than strides along each axis; got "
                             f"output_padding {output_padding!r} with strides {self.strides}")
        self.activation = _activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    def _geometry(self):
        return dict(strides=self.strides, padding=self.padding, output_padding=self.output_padding,
                    dilation_rate=self.dilation_rate)

    def compute_output_shape(self, input_shape):
        h, w, c = _image_shape(self, input_shape)
        from fastdl.ops.conv import _transpose_axis

        sizes = [_transpose_axis(size, self.kernel_size[i], self.strides[i], self.dilation_rate[i], self.padding,
                                 None if self.output_padding is None else self.output_padding[i])[2]
                 for i, size in enumerate((h, w))]
        return (sizes[0], sizes[1], self.filters)

    def weight_specs(self):
        specs = [("kernel", self.kernel_size + (self.filters, self.input_shape[-1]), self.kernel_initializer)]
        if self.use_bias:
            specs.append(("bias", (self.filters,), self.bias_initializer))
        return specs

    def forward(self, x, training=False):
        bias = self.params[1] if self.use_bias else None
        y = self._buffer("y", (x.shape[0],) + self.output_shape, x)
        ops.conv2d_transpose(x, self.params[0], bias, out=y, **self._geometry())
        if self.activation is not None:
            rows = y.reshape(-1, self.filters)
            ops.activation(rows, self.activation, out=rows)
        self._x, self._y = x, y
        return y

    def backward(self, dy, need_dx=True):
        if self.activation is not None:
            dy = ops.activation_backward(dy, self._y, self.activation, out=self._buffer("dz", dy.shape, dy))
        dx_out = self._buffer("dx", self._x.shape, self._x) if need_dx else None
        dx, dkernel, dbias = ops.conv2d_transpose_backward(dy, self._x, self.params[0], need_dx=need_dx,
                                                           dx_out=dx_out, **self._geometry())
        self._kernel_gradients(dkernel, dbias)
        return dx

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "output_padding": self.output_padding,
                "dilation_rate": self.dilation_rate, "activation": self.activation, "use_bias": self.use_bias}


class SeparableConv2D(Layer):
    """A depthwise convolution (no bias) then a 1x1 convolution to `filters` with bias
    and activation (Keras's SeparableConv2D): weights depthwise_kernel (kh, kw, channels,
    depth_multiplier), pointwise_kernel (1, 1, channels * depth_multiplier, filters), bias."""

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        _channels_last(data_format, self.name)
        self.filters = _positive_int("filters", filters)
        self.kernel_size = _checks.int_pair("kernel_size", kernel_size)
        self.strides = _checks.int_pair("strides", strides)
        self.dilation_rate = _checks.int_pair("dilation_rate", dilation_rate)
        self.padding = _checks.padding_spec(padding, allow_explicit=False)
        self.depth_multiplier = _positive_int("depth_multiplier", depth_multiplier)
        self.activation = _activation(activation)
        self.use_bias = bool(use_bias)
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.pointwise_initializer = initializers.get(pointwise_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    def _geometry(self):
        return dict(strides=self.strides, padding=self.padding, dilation_rate=self.dilation_rate)

    def compute_output_shape(self, input_shape):
        h, w, c = _image_shape(self, input_shape)
        from fastdl.ops._geometry import window

        g = window((1, h, w, c), self.kernel_size, self.strides, self.dilation_rate, self.padding)
        return (g.oh, g.ow, self.filters)

    def weight_specs(self):
        c = self.input_shape[-1]
        specs = [("depthwise_kernel", self.kernel_size + (c, self.depth_multiplier), self.depthwise_initializer),
                 ("pointwise_kernel", (1, 1, c * self.depth_multiplier, self.filters), self.pointwise_initializer)]
        if self.use_bias:
            specs.append(("bias", (self.filters,), self.bias_initializer))
        return specs

    def forward(self, x, training=False):
        middle = self._buffer("depthwise", (x.shape[0],) + self.output_shape[:2]
                              + (x.shape[3] * self.depth_multiplier,), x)
        ops.depthwise_conv2d(x, self.params[0], out=middle, **self._geometry())
        y = self._buffer("y", (x.shape[0],) + self.output_shape, x)
        ops.conv2d(middle, self.params[1], self.params[2] if self.use_bias else None, activation=self.activation,
                   out=y)
        self._x, self._middle, self._y = x, middle, y
        return y

    def backward(self, dy, need_dx=True):
        if self.activation is not None:
            dy = ops.activation_backward(dy, self._y, self.activation, out=self._buffer("dz", dy.shape, dy))
        dmiddle, dpointwise, dbias = ops.conv2d_backward(dy, self._middle, self.params[1],
                                                         dx_out=self._buffer("dmiddle", self._middle.shape, dy))
        dx, ddepthwise, _ = ops.depthwise_conv2d_backward(
            dmiddle, self._x, self.params[0], need_dx=need_dx,
            dx_out=self._buffer("dx", self._x.shape, self._x) if need_dx else None, **self._geometry())
        _device.copy_into(self.grads[0], ddepthwise)
        _device.copy_into(self.grads[1], dpointwise)
        if self.use_bias:
            _device.copy_into(self.grads[2], dbias)
        return dx

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "dilation_rate": self.dilation_rate,
                "depth_multiplier": self.depth_multiplier, "activation": self.activation, "use_bias": self.use_bias}


class _Pooling2D(Layer):
    _forward = _backward = None

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _checks.int_pair("pool_size", pool_size)
        self.strides = self.pool_size if strides is None else _checks.int_pair("strides", strides)
        self.padding = _checks.padding_spec(padding, allow_explicit=False)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self.name}: pooling expects inputs (height, width, channels); got {input_shape}")
        from fastdl.ops._geometry import window

        g = window((1,) + tuple(input_shape), self.pool_size, self.strides, (1, 1), self.padding)
        return (g.oh, g.ow, input_shape[-1])

    def forward(self, x, training=False):
        y = self._buffer("y", (x.shape[0],) + self.output_shape, x)
        type(self)._forward(x, self.pool_size, self.strides, self.padding, out=y)
        self._x = x
        return y

    def backward(self, dy, need_dx=True):
        return type(self)._backward(dy, self._x, self.pool_size, self.strides, self.padding,
                                    out=self._buffer("dx", self._x.shape, self._x))

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding}


class MaxPooling2D(_Pooling2D):
    """Max pooling; in backward the first maximum of a window takes the gradient. In
    training it keeps where each window's maximum was (one byte per output), so that its
    backward pass never reads its input again. (After a Conv2D, a model runs both as one
    fused step: fastdl.fusion.)"""
    _forward = staticmethod(ops.max_pool2d)

    def forward(self, x, training=False):
        y = self._buffer("y", (x.shape[0],) + self.output_shape, x)
        self._argmax = self._buffer("argmax", y.shape, y, np.uint8) if training else None
        ops.max_pool2d(x, self.pool_size, self.strides, self.padding, out=y, argmax_out=self._argmax)
        self._x = x.shape if training else x
        return y

    def backward(self, dy, need_dx=True):
        if self._argmax is not None:
            return ops.max_pool2d_backward(dy, self._x, self.pool_size, self.strides, self.padding,
                                           argmax=self._argmax, out=self._buffer("dx", self._x, dy))
        return ops.max_pool2d_backward(dy, self._x, self.pool_size, self.strides, self.padding,
                                       out=self._buffer("dx", self._x.shape, self._x))


class AveragePooling2D(_Pooling2D):
    """Average pooling; padded positions are not counted ('same')."""
    _forward = staticmethod(ops.avg_pool2d)
    _backward = staticmethod(ops.avg_pool2d_backward)


def _image_shape(layer, input_shape):
    """(height, width, channels) of an NHWC input, or a ValueError naming the layer."""
    if len(input_shape) != 3:
        raise ValueError(f"{layer.name}: {type(layer).__name__} takes (batch, height, width, channels) inputs; "
                         f"got (batch,) + {tuple(input_shape)}")
    return input_shape


def _channels_last(data_format, name):
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{name}: data_format must be 'channels_last' (NHWC, fastdl's layout); got {data_format!r}")


class ZeroPadding2D(Layer):
    """Zero rows and columns around NHWC images: padding an int, (height, width) or
    ((top, bottom), (left, right)), as Keras's."""

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        _channels_last(data_format, self.name)
        top, bottom, left, right = _margins("padding", padding)
        self.padding = ((top, bottom), (left, right))

    def compute_output_shape(self, input_shape):
        (top, bottom), (left, right) = self.padding
        h, w, c = _image_shape(self, input_shape)
        return (h + top + bottom, w + left + right, c)

    def forward(self, x, training=False):
        return ops.pad2d(x, self.padding, out=self._buffer("y", (x.shape[0],) + self.output_shape, x))

    def backward(self, dy, need_dx=True):
        return ops.crop2d(dy, self.padding, out=self._buffer("dx", (dy.shape[0],) + self.input_shape, dy))

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


class Cropping2D(Layer):
    """NHWC images without `cropping` rows and columns at their edges (Keras's forms)."""

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        _channels_last(data_format, self.name)
        top, bottom, left, right = _margins("cropping", cropping)
        self.cropping = ((top, bottom), (left, right))

    def compute_output_shape(self, input_shape):
        (top, bottom), (left, right) = self.cropping
        h, w, c = _image_shape(self, input_shape)
        if top + bottom >= h or left + right >= w:
            raise ValueError(f"{self.name}: cropping {self.cropping} leaves nothing of {h}x{w} images")
        return (h - top - bottom, w - left - right, c)

    def forward(self, x, training=False):
        return ops.crop2d(x, self.cropping, out=self._buffer("y", (x.shape[0],) + self.output_shape, x))

    def backward(self, dy, need_dx=True):
        return ops.pad2d(dy, self.cropping, out=self._buffer("dx", (dy.shape[0],) + self.input_shape, dy))

    def get_config(self):
        return {**super().get_config(), "cropping": self.cropping}


class UpSampling2D(Layer):
    """Every pixel repeated size[0] times down and size[1] across (nearest neighbour)."""

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        _channels_last(data_format, self.name)
        if interpolation != "nearest":
            raise ValueError(f"{self.name}: interpolation={interpolation!r} is not supported (fastdl's "
                             f"UpSampling2D is 'nearest')")
        self.size = _checks.int_pair("size", size)
        self.interpolation = interpolation

    def compute_output_shape(self, input_shape):
        h, w, c = _image_shape(self, input_shape)
        return (h * self.size[0], w * self.size[1], c)

    def forward(self, x, training=False):
        return ops.upsample2d(x, self.size, out=self._buffer("y", (x.shape[0],) + self.output_shape, x))

    def backward(self, dy, need_dx=True):
        return ops.upsample2d_backward(dy, self.size, out=self._buffer("dx", (dy.shape[0],) + self.input_shape, dy))

    def get_config(self):
        return {**super().get_config(), "size": self.size, "interpolation": self.interpolation}


class Flatten(Layer):
    """(N, ...) -> (N, prod(...)), a view."""

    def compute_output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, training=False):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy, need_dx=True):
        return dy.reshape(self._shape)


class Dense(Layer):
    """activation(x @ kernel + bias) over the last axis; the activation fused in one pass."""

    supports_masking = True

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"units must be a positive int; got {units!r}")
        self.units = int(units)
        self.activation = _activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def weight_specs(self):
        specs = [("kernel", (self.input_shape[-1], self.units), self.kernel_initializer)]
        if self.use_bias:
            specs.append(("bias", (self.units,), self.bias_initializer))
        return specs

    def forward(self, x, training=False, activation=_OWN):
        """activation: the layer's own by default; a model training on logits passes None."""
        activation = self.activation if activation is _OWN else activation
        y = self._buffer("y", x.shape[:-1] + (self.units,), x)
        ops.dense(x, self.params[0], self.params[1] if self.use_bias else None, activation, out=y)
        self._x, self._y, self._applied = x, y, activation
        return y

    def backward(self, dy, need_dx=True):
        dx, dkernel, dbias = ops.dense_backward(dy, self._x, self.params[0], activation=self._applied,
                                                output=self._y, has_bias=self.use_bias, need_dx=need_dx)
        self._kernel_gradients(dkernel, dbias)
        return dx

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "use_bias": self.use_bias}


class Dropout(Layer):
    """Zeroes a fraction `rate` of inputs while training, scaling the rest by 1/(1 - rate).

    The mask is drawn on the host, so a seed gives the same mask on every backend; on
    the device, ops.multiply copies it there in the forward and the backward pass."""

    supports_masking = True

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = _checks.finite_number("rate", rate, 0, 1, inclusive=True)
        if self.rate >= 1:
            raise ValueError(f"rate must be in [0, 1); got {rate!r}")
        self.seed = seed
        self.rng = new_generator(seed)

    def forward(self, x, training=False):
        if not training or self.rate == 0:
            self._mask = None
            return x
        keep = self.rng.random(x.shape, dtype=np.float32) >= self.rate
        self._mask = keep.astype(x.dtype) / x.dtype.type(1 - self.rate)
        return ops.multiply(x, self._mask, out=self._buffer("y", x.shape, x))

    def backward(self, dy, need_dx=True):
        if self._mask is None:
            return dy
        return ops.multiply(dy, self._mask, out=self._buffer("dx", dy.shape, dy))

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "noise_shape": None, "seed": self.seed}


class Activation(Layer):
    """An activation by name as its own layer."""

    supports_masking = True

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = _activation(activation)

    def forward(self, x, training=False):
        if self.activation is None:
            self._y = None
            return x
        self._y = ops.activation(x, self.activation)
        return self._y

    def backward(self, dy, need_dx=True):
        return dy if self._y is None else ops.activation_backward(dy, self._y, self.activation)

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


class ReLU(Activation):
    def __init__(self, **kwargs):
        super().__init__("relu", **kwargs)

    def get_config(self):
        return {k: v for k, v in super().get_config().items() if k != "activation"}


class Softmax(Activation):
    def __init__(self, axis=-1, **kwargs):
        if axis != -1:
            raise ValueError(f"Softmax supports axis=-1 (the last axis); got {axis!r}")
        super().__init__("softmax", **kwargs)

    def get_config(self):
        return {**{k: v for k, v in super().get_config().items() if k != "activation"}, "axis": -1}


class BatchNormalization(Layer):
    """Keras's BatchNormalization over the channels (the last axis): in training the
    batch's mean and (biased) variance normalise it and move the moving statistics by
    1 - momentum; at inference the moving statistics normalise it. gamma and beta are
    trained; moving_mean and moving_variance are non-trainable weights. A layer with
    trainable=False runs in inference mode, as in Keras."""

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)) and len(axis) == 1:
            axis = axis[0]
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"axis must be an int (the channels axis); got {axis!r}")
        self.axis = int(axis)
        self.momentum = _checks.finite_number("momentum", momentum, 0, 1)
        self.epsilon = _checks.finite_number("epsilon", epsilon, 0, inclusive=False)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)

    def compute_output_shape(self, input_shape):
        rank = len(input_shape) + 1
        if self.axis not in (-1, rank - 1):
            raise ValueError(f"{self.name}: BatchNormalization normalises the last axis (channels, NHWC): "
                             f"axis must be -1 or {rank - 1} for inputs of shape (batch,) + "
                             f"{tuple(input_shape)}; got {self.axis}")
        return input_shape

    def weight_specs(self):
        c = (self.input_shape[-1],)
        return ([("gamma", c, self.gamma_initializer)] if self.scale else []) + (
            [("beta", c, self.beta_initializer)] if self.center else [])

    def state_specs(self):
        c = (self.input_shape[-1],)
        return [("moving_mean", c, self.moving_mean_initializer),
                ("moving_variance", c, self.moving_variance_initializer)]

    def _gamma_beta(self):
        gamma = self.params[0] if self.scale else None
        beta = self.params[int(self.scale)] if self.center else None
        return gamma, beta

    def forward(self, x, training=False):
        gamma, beta = self._gamma_beta()
        y = self._buffer("y", x.shape, x)
        moving_mean, moving_variance = self.states
        self._training = training and self.trainable
        if not self._training:
            self._x = None
            return ops.batch_norm(x, moving_mean, moving_variance, gamma, beta, self.epsilon, out=y)
        mean, var = ops.batch_norm_stats(x)
        ops.batch_norm(x, mean, var, gamma, beta, self.epsilon, out=y)
        self._x, self._mean, self._var = x, mean, var
        for moving, batch in ((moving_mean, mean), (moving_variance, var)):
            if _device.is_device(moving):  # C values: moved through the host
                updated = _device.host_copy(moving) * self.momentum + _device.host_copy(batch) * (1 - self.momentum)
                _device.copy_into(moving, updated.astype(moving.dtype))
            else:  # in place, no copies on the training step's path
                moving *= self.momentum
                moving += batch * (1 - self.momentum)
        return y

    def backward(self, dy, need_dx=True):
        gamma, _ = self._gamma_beta()
        if not self._training:  # the moving statistics are constants: dx = dy * gamma / sqrt(var + eps)
            raise RuntimeError(f"{self.name}: backward after a forward pass in inference mode")
        dx, dgamma, dbeta = ops.batch_norm_backward(dy, self._x, self._mean, self._var, gamma, self.epsilon,
                                                    dx_out=self._buffer("dx", dy.shape, dy))
        grads = ([dgamma] if self.scale else []) + ([dbeta] if self.center else [])
        for target, g in zip(self.grads, grads):
            _device.copy_into(target, g)
        return dx

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale}


class LayerNormalization(Layer):
    """Keras's LayerNormalization over the last axis: each sample (each step of a
    sequence) normalised by its own mean and variance, then scaled by gamma and shifted
    by beta (trained); the same in training and at inference."""

    supports_masking = True

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)) and len(axis) == 1:
            axis = axis[0]
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"axis must be an int (the last axis); got {axis!r}")
        self.axis = int(axis)
        self.epsilon = _checks.finite_number("epsilon", epsilon, 0, inclusive=False)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)

    def compute_output_shape(self, input_shape):
        rank = len(input_shape) + 1
        if self.axis not in (-1, rank - 1):
            raise ValueError(f"{self.name}: LayerNormalization normalises the last axis: axis must be -1 or "
                             f"{rank - 1} for inputs of shape (batch,) + {tuple(input_shape)}; got {self.axis}")
        return input_shape

    def weight_specs(self):
        c = (self.input_shape[-1],)
        return ([("gamma", c, self.gamma_initializer)] if self.scale else []) + (
            [("beta", c, self.beta_initializer)] if self.center else [])

    def _gamma_beta(self):
        return (self.params[0] if self.scale else None), (self.params[int(self.scale)] if self.center else None)

    def forward(self, x, training=False):
        gamma, beta = self._gamma_beta()
        y, self._mean, self._rstd = ops.layer_norm(x, gamma, beta, self.epsilon, out=self._buffer("y", x.shape, x),
                                                   return_statistics=True)
        self._x = x
        return y

    def backward(self, dy, need_dx=True):
        gamma, _ = self._gamma_beta()
        dx, dgamma, dbeta = ops.layer_norm_backward(dy, self._x, self._mean, self._rstd, gamma,
                                                    dx_out=self._buffer("dx", dy.shape, dy))
        for target, g in zip(self.grads, ([dgamma] if self.scale else []) + ([dbeta] if self.center else [])):
            _device.copy_into(target, g)
        return dx

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon, "center": self.center,
                "scale": self.scale}


# -- merge layers: several inputs of one shape (Concatenate: along an axis) into one -------

class _Merge(Layer):
    """Takes a list of two or more inputs; backward returns one gradient per input. The
    gradients returned may be one array for several inputs: read, never written."""

    def build(self, input_shape):
        if not isinstance(input_shape, list) or len(input_shape) < 2:
            raise ValueError(f"{self.name}: {type(self).__name__} takes a list of at least 2 inputs; "
                             f"got {input_shape!r}")
        return super().build([tuple(s) for s in input_shape])

    def compute_output_shape(self, input_shape):
        if len(set(input_shape)) != 1:
            raise ValueError(f"{self.name}: {type(self).__name__} needs inputs of one shape; got {input_shape}")
        return input_shape[0]

    def forward(self, xs, training=False):
        if not isinstance(xs, (list, tuple)) or len(xs) != len(self.input_shape):
            raise ValueError(f"{self.name}: expects a list of {len(self.input_shape)} arrays")
        self._xs = [np.asarray(_device.to_host(x)) for x in xs]
        y = self._buffer("y", self._xs[0].shape, self._xs[0])
        self._combine(self._xs, y)
        return y

    def backward(self, dy, need_dx=True):
        return self._split(np.asarray(dy))


class Add(_Merge):
    def _combine(self, xs, y):
        np.add(xs[0], xs[1], out=y)
        for x in xs[2:]:
            y += x

    def _split(self, dy):
        return [dy] * len(self._xs)


class Subtract(_Merge):
    def build(self, input_shape):
        if isinstance(input_shape, list) and len(input_shape) != 2:
            raise ValueError(f"{self.name}: Subtract takes exactly 2 inputs; got {len(input_shape)}")
        return super().build(input_shape)

    def _combine(self, xs, y):
        np.subtract(xs[0], xs[1], out=y)

    def _split(self, dy):
        return [dy, -dy]


class Multiply(_Merge):
    def _combine(self, xs, y):
        np.multiply(xs[0], xs[1], out=y)
        for x in xs[2:]:
            y *= x

    def _split(self, dy):
        out = []
        for i in range(len(self._xs)):
            others = dy.copy()
            for j, x in enumerate(self._xs):
                if j != i:
                    others *= x
            out.append(others)
        return out


class Average(_Merge):
    def _combine(self, xs, y):
        np.add(xs[0], xs[1], out=y)
        for x in xs[2:]:
            y += x
        y *= y.dtype.type(1.0 / len(xs))

    def _split(self, dy):
        share = dy * dy.dtype.type(1.0 / len(self._xs))
        return [share] * len(self._xs)


class Maximum(_Merge):
    """The elementwise maximum; the gradient goes to the first input holding it (as
    Keras's pairwise maximum from the left). A NaN anywhere gives NaN, as np.maximum."""

    def _combine(self, xs, y):
        np.maximum(xs[0], xs[1], out=y)
        for x in xs[2:]:
            np.maximum(y, x, out=y)

    def _split(self, dy):
        y = self._buffers["y"]
        taken = np.zeros(dy.shape, bool)
        out = []
        for x in self._xs:
            mine = (x == y) & ~taken
            taken |= mine
            out.append(np.where(mine, dy, dy.dtype.type(0)))
        return out


class Concatenate(_Merge):
    """Inputs of one shape but along `axis`, joined along it."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"axis must be an int; got {axis!r}")
        self.axis = int(axis)

    def compute_output_shape(self, input_shape):
        rank = len(input_shape[0]) + 1
        if not -rank <= self.axis < rank or self.axis % rank == 0:
            raise ValueError(f"{self.name}: axis {self.axis} is not a feature axis of inputs of rank {rank}")
        axis = self.axis % rank - 1
        rest = {tuple(s[:axis]) + tuple(s[axis + 1:]) for s in input_shape}
        if len(rest) != 1 or len({len(s) for s in input_shape}) != 1:
            raise ValueError(f"{self.name}: Concatenate needs inputs that differ only along axis {self.axis}; "
                             f"got {input_shape}")
        out = list(input_shape[0])
        out[axis] = sum(s[axis] for s in input_shape)
        return tuple(out)

    def forward(self, xs, training=False):
        self._xs = [np.asarray(_device.to_host(x)) for x in xs]
        y = self._buffer("y", (self._xs[0].shape[0],) + self.output_shape, self._xs[0])
        np.concatenate(self._xs, axis=self.axis, out=y)
        return y

    def _split(self, dy):
        bounds = np.cumsum([x.shape[self.axis] for x in self._xs])[:-1]
        return [np.ascontiguousarray(part) for part in np.split(dy, bounds, axis=self.axis)]

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


# -- global pooling and reshaping -----------------------------------------------------------

class _GlobalPooling2D(Layer):
    """The whole image as one pooling window: (N, H, W, C) -> (N, C) (or (N, 1, 1, C)
    with keepdims), on the pooling ops of every backend."""
    _forward = _backward = None

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(f"data_format must be 'channels_last' (NHWC); got {data_format!r}")
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self.name}: global pooling expects inputs (height, width, channels); "
                             f"got {input_shape}")
        return (1, 1, input_shape[-1]) if self.keepdims else (input_shape[-1],)

    def forward(self, x, training=False):
        window = tuple(x.shape[1:3])
        y = self._buffer("y", (x.shape[0], 1, 1, x.shape[3]), x)
        type(self)._forward(x, window, None, "valid", out=y)
        self._x = x
        return y if self.keepdims else y.reshape(x.shape[0], x.shape[3])

    def backward(self, dy, need_dx=True):
        x = self._x
        return type(self)._backward(dy.reshape(x.shape[0], 1, 1, x.shape[3]), x, tuple(x.shape[1:3]), None,
                                    "valid", out=self._buffer("dx", x.shape, x))

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling2D):
    _forward = staticmethod(ops.avg_pool2d)
    _backward = staticmethod(ops.avg_pool2d_backward)


class GlobalMaxPooling2D(_GlobalPooling2D):
    """The gradient goes to each channel's first maximum (read again from the input: a
    whole image is too large a window for the saved one-byte positions)."""
    _forward = staticmethod(ops.max_pool2d)
    _backward = staticmethod(ops.max_pool2d_backward)


class Reshape(Layer):
    """(N, ...) -> (N, *target_shape), a view; one entry of target_shape may be -1."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        try:
            self.target_shape = tuple(int(d) for d in target_shape)
        except (TypeError, ValueError):
            raise TypeError(f"target_shape must be a tuple of ints; got {target_shape!r}") from None
        if any(d < 1 and d != -1 for d in self.target_shape) or self.target_shape.count(-1) > 1:
            raise ValueError(f"target_shape must hold positive ints and at most one -1; got {target_shape!r}")

    def compute_output_shape(self, input_shape):
        size = int(np.prod(input_shape))
        known = int(np.prod([d for d in self.target_shape if d != -1]))
        shape = tuple(size // known if d == -1 else d for d in self.target_shape)
        if int(np.prod(shape)) != size:
            raise ValueError(f"{self.name}: cannot reshape inputs of shape {tuple(input_shape)} ({size} values) "
                             f"to {self.target_shape}")
        return shape

    def forward(self, x, training=False):
        self._shape = x.shape
        return x.reshape((x.shape[0],) + self.output_shape)

    def backward(self, dy, need_dx=True):
        return dy.reshape(self._shape)

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}


class Permute(Layer):
    """Keras's Permute: the axes after the batch reordered, dims a permutation of 1..rank
    (dims (2, 1) swaps a sequence's steps and features); the output a contiguous copy."""

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        try:
            self.dims = tuple(int(d) for d in dims)
        except (TypeError, ValueError):
            raise TypeError(f"dims must be a tuple of ints; got {dims!r}") from None
        if sorted(self.dims) != list(range(1, len(self.dims) + 1)):
            raise ValueError(f"dims must be a permutation of 1..{len(self.dims)} (the axes after the batch, from 1); "
                             f"got {dims!r}")

    def compute_output_shape(self, input_shape):
        if len(input_shape) != len(self.dims):
            raise ValueError(f"{self.name}: dims {self.dims} permutes {len(self.dims)} axes; the input has "
                             f"{len(input_shape)} after the batch ({tuple(input_shape)})")
        return tuple(input_shape[d - 1] for d in self.dims)

    @staticmethod
    def _moved(a, axes, out):
        if _device.is_device(out):  # a device array is permuted on the host
            _device.copy_into(out, np.ascontiguousarray(np.transpose(_device.to_host(a), axes)))
        else:
            np.copyto(out, np.transpose(a, axes))
        return out

    def forward(self, x, training=False):
        return self._moved(x, (0,) + self.dims, self._buffer("y", (x.shape[0],) + self.output_shape, x))

    def backward(self, dy, need_dx=True):
        inverse = (0,) + tuple(int(i) + 1 for i in np.argsort(self.dims))
        return self._moved(dy, inverse, self._buffer("dx", (dy.shape[0],) + tuple(self.input_shape), dy))

    def get_config(self):
        return {**super().get_config(), "dims": self.dims}


# the recurrent layers live in their own module and are Keras's layers all the same
from fastdl.recurrent import (  # noqa: E402,F401  (they subclass Layer, defined above)
    GRU, LSTM, Bidirectional, Embedding, SimpleRNN, TimeDistributed)
