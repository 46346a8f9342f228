"""fastdl's models in JAX, as a training-step and inference baseline: the model's graph
(the seed CNN, ResNet-20) rebuilt from its layers in NHWC lax ops with fastdl's weights,
the training step (forward, backward, Adam as Keras writes it, BatchNormalization's
moving statistics) one jax.jit function whose buffers are donated and updated in place."""
import numpy as np

_ACTIVATIONS = {None: None, "linear": None, "relu": "relu", "softmax": "softmax"}


def _layer_fn(layer, jax):
    """(kind, apply(params, states, x, training) -> (y, new_states)) for one fastdl layer."""
    lax, jnp = jax.lax, jax.numpy
    kind = type(layer).__name__
    if _ACTIVATIONS.get(getattr(layer, "activation", None), "?") == "?":
        raise ValueError(f"no JAX equivalent of activation {layer.activation!r} here")
    if kind == "Conv2D":
        strides, dilation = tuple(layer.strides), tuple(layer.dilation_rate)
        padding = layer.padding.upper()  # lax's SAME pads as Keras: the odd pixel bottom/right

        def conv(params, states, x, training):
            y = lax.conv_general_dilated(x, params[0], strides, padding, rhs_dilation=dilation,
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
            return (y + params[1] if layer.use_bias else y), states
        return kind, conv
    if kind == "MaxPooling2D":
        window = (1,) + tuple(layer.pool_size) + (1,)
        strides = (1,) + tuple(layer.strides) + (1,)

        def pool(params, states, x, training):
            return lax.reduce_window(x, -jnp.inf, lax.max, window, strides, layer.padding.upper()), states
        return kind, pool
    if kind == "Flatten":
        return kind, lambda params, states, x, training: (x.reshape(x.shape[0], -1), states)
    if kind == "Dense":
        return kind, lambda params, states, x, training: (x @ params[0] + params[1], states)
    if kind == "GlobalAveragePooling2D":
        return kind, lambda params, states, x, training: (x.mean(axis=(1, 2)), states)
    if kind in ("Activation", "Add"):
        return kind, None  # the activation below; Add sums its inputs
    if kind == "BatchNormalization":
        if layer.axis not in (-1, len(layer.input_shape)) or not (layer.center and layer.scale):
            raise ValueError("the JAX baseline takes BatchNormalization over the last axis with gamma and beta")
        momentum, epsilon = layer.momentum, layer.epsilon

        def batch_norm(params, states, x, training):
            axes = tuple(range(x.ndim - 1))
            if training:
                mean = x.mean(axis=axes)
                variance = jnp.mean(jnp.square(x - mean), axis=axes)  # biased, as Keras
                states = [states[0] * momentum + mean * (1 - momentum),
                          states[1] * momentum + variance * (1 - momentum)]
            else:
                mean, variance = states
            return (x - mean) * lax.rsqrt(variance + epsilon) * params[0] + params[1], states
        return kind, batch_norm
    raise ValueError(f"no JAX equivalent of {kind} here")


class JaxModel:
    """A built fastdl model's graph in JAX with a copy of its weights and states.

    step(x, y): one training step (sparse categorical cross-entropy on the logits of the
    softmax output, Adam), returning the loss; predict(x): softmax probabilities."""

    def __init__(self, jax, model, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        jnp = jax.numpy
        nodes = model._graph_nodes()
        if getattr(nodes[-1][0], "activation", None) != "softmax":
            raise ValueError("the JAX baseline takes a classifier ending in softmax")
        self._jax = jax
        self._steps = [(_layer_fn(layer, jax), inputs, _ACTIVATIONS[getattr(layer, "activation", None)])
                       for layer, inputs in nodes]
        self.params = [[jnp.asarray(np.array(p)) for p in layer.params] for layer, _ in nodes]
        self.states = [[jnp.asarray(np.array(s)) for s in getattr(layer, "states", [])] for layer, _ in nodes]
        self.moments = [jax.tree_util.tree_map(jnp.zeros_like, self.params) for _ in range(2)]
        self.iteration = jnp.zeros((), jnp.float32)

        def logits(params, states, x, training):
            values, new_states = {-1: x}, []
            for i, ((kind, apply), inputs, activation) in enumerate(self._steps):
                given = [values[j] for j in inputs]
                if kind == "Add":
                    out, layer_states = sum(given[1:], given[0]), states[i]
                elif apply is None:
                    out, layer_states = given[0], states[i]
                else:
                    out, layer_states = apply(params[i], states[i], given[0], training)
                if activation == "relu":
                    out = jax.nn.relu(out)
                elif activation == "softmax" and i != len(self._steps) - 1:
                    out = jax.nn.softmax(out, axis=-1)
                values[i] = out
                new_states.append(layer_states)
            return values[len(self._steps) - 1], new_states

        def loss(params, states, x, y):
            out, new_states = logits(params, states, x, True)
            log_probabilities = jax.nn.log_softmax(out, axis=-1)
            return -jnp.take_along_axis(log_probabilities, y[:, None], axis=1).mean(), new_states

        def step(params, moments, iteration, states, x, y):
            (value, new_states), grads = jax.value_and_grad(loss, has_aux=True)(params, states, x, y)
            t = iteration + 1
            # Keras's Adam: the bias corrections folded into the step size, epsilon outside the root
            rate = learning_rate * jnp.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
            m = jax.tree_util.tree_map(lambda m, g: m + (g - m) * (1 - beta_1), moments[0], grads)
            v = jax.tree_util.tree_map(lambda v, g: v + (g * g - v) * (1 - beta_2), moments[1], grads)
            params = jax.tree_util.tree_map(lambda p, m, v: p - rate * m / (jnp.sqrt(v) + epsilon), params, m, v)
            return params, [m, v], t, new_states, value

        self._step = jax.jit(step, donate_argnums=(0, 1, 2, 3))
        self._predict = jax.jit(lambda params, states, x: jax.nn.softmax(logits(params, states, x, False)[0], -1))

    def step(self, x, y):
        self.params, self.moments, self.iteration, self.states, value = self._step(
            self.params, self.moments, self.iteration, self.states, x, y)
        return value.block_until_ready()

    def predict(self, x):
        return np.asarray(self._predict(self.params, self.states, x))
