"""Inference plans: a built model's forward pass for one input shape as a fixed list of
backend calls, checked once.

Every op of fastdl.ops validates its arguments and picks its backend on each call,
15-40 microseconds an op, which at batch 1 costs more than the kernels themselves. A
plan does that work once, when it is made: it fixes each step's geometry and output
buffer, resolves the auto backend's choice for those arguments, and then runs the
kernels back to back on its own buffers. It calls exactly the kernels the model's own
forward pass would, with the same arguments, so its outputs are the same bits.

The plan reads the model's weights where they live (views of its flat parameter
buffer), so set_weights / load_weights / training need no new plan; building the model
again or re-planning its steps (compile) drops its plans. Models on the GPU and layers
without a plan here run the ordinary way.
"""
import numpy as np

from fastdl import _config
from fastdl.backends import auto
from fastdl.fusion import ConvPoolStep, LayerStep, LogitsStep
from fastdl.layers import (Activation, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten,
                           GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling2D, Reshape)
from fastdl.ops._geometry import window

MAX_PLANS = 8  # input shapes kept per model (predict's last, smaller batch among them)


class _NoPlan(Exception):
    """A step this module cannot plan: the model runs its ordinary forward pass."""


class InferencePlan:
    """model's prediction for inputs of `shape` (batch included): run(x) -> a new array."""

    def __init__(self, model, shape):
        self.shape, self.dtype = tuple(shape), model.dtype
        self.input = np.empty(self.shape, self.dtype)
        self._calls = []
        self._backend = _config.backend_module()
        x = self.input
        for i, step in enumerate(model._steps):
            if step.inputs != [i - 1]:
                raise _NoPlan("a graph with branches")  # planned as a chain only, for now
            x = self._plan_step(step, x)
        if getattr(model, "_softmax_outputs", False):  # trained on logits: predictions take softmax
            x = self._call("softmax", x.reshape(-1, x.shape[-1]), np.empty_like(x).reshape(-1, x.shape[-1]))
        self.output = x

    def _call(self, op, *args):
        """Append one kernel call; returns its output (the last array argument filled)."""
        fn = getattr(self._backend, op)
        if self._backend is auto:  # the choice the op would make for these arguments, made now
            fn = getattr(_config.backend_module(auto.choose(op, args)), op)
        self._calls.append((fn, args))
        return next(a for a in reversed(args) if isinstance(a, np.ndarray))

    def _plan_step(self, step, x):
        if isinstance(step, ConvPoolStep):
            return self._conv_pool(step.conv, step.pool, step.pools_in_pass, x)
        if not isinstance(step, LayerStep):
            raise _NoPlan(type(step).__name__)
        layer = step.layer
        logits = isinstance(step, LogitsStep)
        if isinstance(layer, Conv2D):
            return self._conv(layer, x)
        if isinstance(layer, (MaxPooling2D, AveragePooling2D)):
            g = window(x.shape, layer.pool_size, layer.strides, (1, 1), layer.padding)
            out = np.empty((g.n, g.oh, g.ow, g.c), self.dtype)
            if isinstance(layer, MaxPooling2D):
                return self._call("max_pool2d", x, out, g)
            return self._call("avg_pool2d", x, out, g)
        if isinstance(layer, Flatten):
            return x.reshape(x.shape[0], -1)
        if isinstance(layer, Reshape):
            return x.reshape((x.shape[0],) + layer.output_shape)
        if isinstance(layer, (GlobalAveragePooling2D, GlobalMaxPooling2D)):
            whole = tuple(x.shape[1:3])
            g = window(x.shape, whole, whole, (1, 1), "valid")
            out = np.empty((g.n, 1, 1, g.c), self.dtype)
            self._call("avg_pool2d" if isinstance(layer, GlobalAveragePooling2D) else "max_pool2d", x, out, g)
            return out if layer.keepdims else out.reshape(g.n, g.c)
        if isinstance(layer, Dropout):
            return x
        if isinstance(layer, Dense):
            rows = x.reshape(-1, x.shape[-1])
            out = np.empty((rows.shape[0], layer.units), self.dtype)
            bias = layer.params[1] if layer.use_bias else None
            self._call("dense", rows, layer.params[0], bias, None if logits else layer.activation, out)
            return out.reshape(x.shape[:-1] + (layer.units,))
        if isinstance(layer, BatchNormalization):  # the moving statistics, as at inference
            rows = x.reshape(-1, x.shape[-1])
            c = rows.shape[1]
            gamma = layer.params[0] if layer.scale else np.ones(c, self.dtype)
            beta = layer.params[int(layer.scale)] if layer.center else np.zeros(c, self.dtype)
            mean, var = layer.states
            return self._call("batch_norm", rows, mean, var, gamma, beta, layer.epsilon,
                              np.empty_like(rows)).reshape(x.shape)
        if isinstance(layer, Activation):  # ReLU and Softmax among them
            if logits or layer.activation is None:
                return x
            rows = x.reshape((-1, x.shape[-1]) if x.ndim > 1 else (1, -1))
            return self._call("activation", rows, np.empty_like(rows), layer.activation).reshape(x.shape)
        raise _NoPlan(type(layer).__name__)

    def _conv_geometry(self, conv, x):
        return window(x.shape, conv.kernel_size, conv.strides, conv.dilation_rate, conv.padding)

    def _conv(self, conv, x):
        g = self._conv_geometry(conv, x)
        out = np.empty((g.n, g.oh, g.ow, conv.filters), self.dtype)
        bias = conv.params[1] if conv.use_bias else None
        return self._call("conv2d", x, conv.params[0], bias, out, g, conv.activation)

    def _conv_pool(self, conv, pool, in_pass, x):
        if not in_pass:
            y = self._conv(conv, x)
            g = window(y.shape, pool.pool_size, pool.strides, (1, 1), pool.padding)
            return self._call("max_pool2d", y, np.empty((g.n, g.oh, g.ow, g.c), self.dtype), g)
        g = self._conv_geometry(conv, x)
        ph, pw = pool.pool_size
        out = np.empty((g.n, g.oh // ph, g.ow // pw, conv.filters), self.dtype)
        bias = conv.params[1] if conv.use_bias else None
        return self._call("conv2d_max_pool", x, conv.params[0], bias, None, out, g, conv.activation, ph, pw)

    def run(self, x):
        """The predictions for x (of the plan's shape; any real dtype, cast as predict does)."""
        np.copyto(self.input, x, casting="unsafe")
        for fn, args in self._calls:
            fn(*args)
        return self.output.copy()


def plan_for(model, shape):
    """model's plan for inputs of `shape`, made on first use; None where the model runs
    its ordinary forward pass (on the GPU, or a step without a plan)."""
    if model.on_device:
        return None
    plans = model.__dict__.setdefault("_inference_plans", {})
    key = (shape, _config.get_backend())  # a plan holds the backend's kernels it was made with
    plan = plans.get(key)
    if plan is None and key not in plans:
        try:
            plan = InferencePlan(model, shape)
        except _NoPlan:
            plan = None
        if len(plans) >= MAX_PLANS:
            plans.pop(next(iter(plans)))
        plans[key] = plan
    return plan


def forget(model):
    """Drop model's plans (its layers were built again or its steps re-planned)."""
    model.__dict__.pop("_inference_plans", None)
