"""Keras's recurrent layers: Embedding, SimpleRNN, LSTM, GRU, Bidirectional, TimeDistributed.

Inputs are batch-major (batch, steps, features) as in Keras; the kernels walk time-major
(fastdl.ops.recurrent), so a layer transposes its input once, makes the input
projection of every step as one GEMM (x @ kernel + bias), runs the recurrence in one
compiled call, and transposes the outputs back. Masks (from Embedding(mask_zero=True))
reach a layer through `input_mask`, set by the model for the step: a masked step keeps
the previous states and repeats the previous output, as Keras does.

Dropout follows Keras 3: a mask a sample, fixed for the whole sequence. With dropout
alone, one mask on the inputs (Keras's implementation 2). With recurrent_dropout, Keras
runs its implementation 1, and so does this: every gate has its own mask on the inputs
and its own on the recurrent state (the kernels' recurrent_dropout_mask).
"""
import numpy as np

from fastdl import _device, initializers, ops
from fastdl.backends._spec import CELL_GATES, CELLS, GATE_SLOTS
from fastdl.layers import Layer, _unique_name
from fastdl.ops import _checks
from fastdl.ops.recurrent import _activation
from fastdl.utils import new_generator


class Embedding(Layer):
    """Rows of a trainable (input_dim, output_dim) table looked up by integer indices
    (batch, ...) -> (batch, ..., output_dim); with mask_zero, index 0 is padding and
    the output carries a mask (indices != 0) to the layers after it."""

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", mask_zero=False,
                 input_length=None, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.mask_zero = bool(mask_zero)
        if input_length is not None and self.input_shape is None:
            self.input_shape = (int(input_length),)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def weight_specs(self):
        return [("embeddings", (self.input_dim, self.output_dim), self.embeddings_initializer)]

    def compute_mask(self, x, mask=None):
        return np.asarray(_device.to_host(x)) != 0 if self.mask_zero else None

    def forward(self, x, training=False):
        y = self._buffer("y", tuple(np.shape(x)) + (self.output_dim,), self.params[0])
        self._indices = x
        return ops.embedding(x, self.params[0], out=y)

    def backward(self, dy, need_dx=True):
        _device.copy_into(self.grads[0], ops.embedding_backward(self._indices, dy, self.input_dim))
        return None  # indices have no gradient

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim,
                "mask_zero": self.mask_zero}


class _RNN(Layer):
    """The shared machinery of SimpleRNN, LSTM and GRU (CELL names the cell)."""

    CELL = None
    supports_masking = True

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 dropout=0.0, recurrent_dropout=0.0, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, seed=None, zero_output_for_mask=False, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"units must be a positive int; got {units!r}")
        self.units = int(units)
        self.activation = _activation("activation", activation)
        self.recurrent_activation = _activation("recurrent_activation", recurrent_activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.dropout = _checks.finite_number("dropout", dropout, 0, 1)
        if self.dropout >= 1:
            raise ValueError(f"dropout must be in [0, 1); got {dropout!r}")
        self.recurrent_dropout = _checks.finite_number("recurrent_dropout", recurrent_dropout, 0, 1)
        if self.recurrent_dropout >= 1:
            raise ValueError(f"recurrent_dropout must be in [0, 1); got {recurrent_dropout!r}")
        # stateful: each call starts from the states the last one ended with, sample i of a
        # batch continuing sample i of the batch before (Keras's stateful=True); the batch
        # size is the first call's until reset_state(), and no gradient crosses batches
        self.stateful = bool(stateful)
        self.carried_states = None
        # masked steps output zeros (True; Bidirectional's layers with return_sequences) or
        # repeat the previous output (Keras's default)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.return_sequences, self.return_state = bool(return_sequences), bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.unroll = bool(unroll)  # the compiled loop is as fast as unrolling: accepted, no effect
        self.seed = seed
        self.rng = new_generator(seed)
        self.input_mask = None  # (batch, steps), set by the model when a mask reaches this layer

    @property
    def gates(self):
        return CELL_GATES[CELLS.index(self.CELL)]

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"{self.name}: {type(self).__name__} takes (batch, steps, features) inputs; got "
                             f"(batch,) + {tuple(input_shape)}")
        out = (input_shape[0], self.units) if self.return_sequences else (self.units,)
        return out

    def weight_specs(self):
        width = self.gates * self.units
        specs = [("kernel", (self.input_shape[-1], width), self.kernel_initializer),
                 ("recurrent_kernel", (self.units, width), self.recurrent_initializer)]
        if self.use_bias:
            specs.append(("bias", self._bias_shape(), self._bias_init()))
        return specs

    def _bias_shape(self):
        return (self.gates * self.units,)

    def _bias_init(self):
        return self.bias_initializer

    def compute_mask(self, x, mask=None):
        return mask if self.return_sequences else None

    def _input_bias(self):
        return self.params[2] if self.use_bias else None

    def _recurrent_bias(self):
        return None

    def _call_symbolic(self, x):
        if self.return_state:
            raise ValueError(f"{self.name}: return_state=True in a functional model is not supported yet (a layer "
                             f"with several outputs); call the layer on arrays, or use return_sequences")
        return super()._call_symbolic(x)

    def forward(self, x, training=False, initial_state=None):
        """x (B, T, F) -> (B, T, H) with return_sequences, else (B, H); with return_state
        a list [output, h] (LSTM: [output, h, c]). initial_state: [h0] or [h0, c0]."""
        x = _checks.float_array("x", x, 3, "(batch, steps, features)")
        batch, steps, features = x.shape
        mask = self.input_mask
        if mask is not None:
            mask = np.asarray(_device.to_host(mask)).astype(bool)
            if mask.shape != (batch, steps):
                raise ValueError(f"{self.name}: the mask must have shape (batch, steps) = {(batch, steps)}; "
                                 f"got {mask.shape}")
        self._dropout = self._gate_dropout = self._rmask = None
        per_gate = training and self.recurrent_dropout > 0  # Keras's implementation 1
        if training and self.dropout > 0 and not per_gate:  # one mask a sample for every step
            self._dropout = self._dropout_masks((batch, 1, features), self.dropout, x.dtype)
            x = x * self._dropout
        if self.go_backwards:
            x = x[:, ::-1]
            mask = None if mask is None else mask[:, ::-1]
        xt = self._time_major("xt", x).reshape(steps * batch, features)
        kernel, recurrent_kernel = self.params[0], self.params[1]
        width = kernel.shape[1]
        if per_gate and self.dropout > 0:
            self._gate_dropout = self._dropout_masks((self.gates, 1, batch, features), self.dropout, x.dtype)
            xp = self._gate_projection(xt, steps, batch)
        else:
            xp = ops.matmul(xt, kernel, out=self._buffer("xp", (steps * batch, width), xt))
        xp = xp.reshape(steps, batch, width)
        if per_gate:
            rmask = self._dropout_masks((batch, width), self.recurrent_dropout, x.dtype)
            self._rmask = _device.to_device(rmask) if _device.is_device(xp) else rmask
        if initial_state is None and self.carried_states is not None:
            initial_state = self.carried_states
            if initial_state[0].shape[0] != batch:
                raise ValueError(f"{self.name}: a stateful layer takes batches of the size it started with "
                                 f"({initial_state[0].shape[0]}, its states' batch); got {batch} (call "
                                 f"reset_state() to start over at another size)")
        h0, c0 = self._initial_states(initial_state, batch)
        self._mask = None if mask is None else np.ascontiguousarray(mask.T)
        states = (steps + 1, batch, self.units)
        out = (self._buffer("h", states, xt), self._buffer("c", states, xt) if self.CELL == "lstm" else None,
               self._buffer("gates", (steps, batch) + self._gate_slots(), xt))
        h, c, gates = ops.recurrent(self.CELL, xp, recurrent_kernel, h0=h0, c0=c0, bias=self._input_bias(),
                                    recurrent_bias=self._recurrent_bias(), mask=self._mask,
                                    activation=self.activation, recurrent_activation=self.recurrent_activation,
                                    recurrent_dropout_mask=self._rmask, out=out)
        self._xt, self._h, self._c, self._gates = xt, h, c, gates
        if self.stateful:  # copies: the buffers behind h and c are the next call's
            self.carried_states = [h[-1].copy()] + ([c[-1].copy()] if c is not None else [])
        output = self._time_major("output", h[1:]) if self.return_sequences else h[-1]
        self._zeroed = None
        if self.return_sequences and self.zero_output_for_mask and mask is not None:
            self._zeroed = mask[..., None].astype(output.dtype)  # in the outputs' (processing) order
            output *= self._zeroed
        if not self.return_state:
            return output
        # the states as copies: the buffers behind them are this layer's next call's
        return [output, h[-1].copy()] + ([c[-1].copy()] if c is not None else [])

    def reset_state(self):
        """A stateful layer's states back to zeros (the next call may take another batch size)."""
        self.carried_states = None

    reset_states = reset_state  # Keras 2's name

    def _dropout_masks(self, shape, rate, dtype):
        """0 or 1 / (1 - rate), as Keras's dropout of ones: fixed for the sequence."""
        keep = self.rng.random(shape, dtype=np.float32) >= rate
        return keep.astype(dtype) / np.dtype(dtype).type(1 - rate)

    def _gate_columns(self, g):
        return slice(g * self.units, (g + 1) * self.units)

    def _gate_inputs(self, xt, g, steps, batch):
        """xt (T*B, F) times gate g's input dropout mask (B, F), the same every step."""
        return (xt.reshape(steps, batch, -1) * self._gate_dropout[g]).reshape(steps * batch, -1)

    def _gate_projection(self, xt, steps, batch):
        """xp (T*B, G*H) with gate g's columns (x * mask_g) @ kernel_g (Keras's implementation 1)."""
        kernel = np.asarray(_device.to_host(self.params[0]))
        xp = self._buffer("xp", (steps * batch, kernel.shape[1]), xt)
        host = np.empty(xp.shape, xp.dtype)
        for g in range(self.gates):
            cols = self._gate_columns(g)
            host[:, cols] = _device.to_host(ops.matmul(self._gate_inputs(xt, g, steps, batch),
                                                       np.ascontiguousarray(kernel[:, cols])))
        _device.copy_into(xp, host)
        return xp

    def _gate_projection_backward(self, flat, steps, batch, need_dx):
        """The kernel's gradient into grads[0], and dx (T*B, F) when need_dx, through
        _gate_projection."""
        kernel = np.asarray(_device.to_host(self.params[0]))
        grads = np.asarray(_device.to_host(flat))
        dkernel, dxt = np.empty(kernel.shape, kernel.dtype), None
        for g in range(self.gates):
            cols = self._gate_columns(g)
            dxp_g = np.ascontiguousarray(grads[:, cols])
            dkernel[:, cols] = _device.to_host(ops.matmul(self._gate_inputs(self._xt, g, steps, batch).T, dxp_g))
            if need_dx:
                part = np.asarray(_device.to_host(ops.matmul(dxp_g, np.ascontiguousarray(kernel[:, cols].T))))
                part = (part.reshape(steps, batch, -1) * self._gate_dropout[g]).reshape(steps * batch, -1)
                dxt = part if dxt is None else dxt + part
        _device.copy_into(self.grads[0], dkernel)
        return dxt

    def _xp_shape(self):
        return (self._h.shape[0] - 1, self._h.shape[1], self.gates * self.units)

    def _gate_slots(self):
        return (GATE_SLOTS[CELLS.index(self.CELL)] * self.units,)

    def _time_major(self, key, a):
        """(B, T, ...) <-> (T, B, ...) into a reused buffer: no fresh pages every step."""
        out = self._buffer(key, (a.shape[1], a.shape[0]) + a.shape[2:], a)
        np.copyto(out, np.swapaxes(a, 0, 1))
        return out

    def _initial_states(self, initial_state, batch):
        if initial_state is None:
            return None, None
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        wanted = 2 if self.CELL == "lstm" else 1
        if len(states) != wanted:
            raise ValueError(f"{self.name}: initial_state must be {wanted} array(s) of shape (batch, units) "
                             f"= {(batch, self.units)}; got {len(states)}")
        return states[0], (states[1] if wanted == 2 else None)

    def backward(self, dy, need_dx=True):
        """dy: the output's gradient, or with return_state a list [doutput, dh(, dc)]
        (None for a part with no gradient). Returns dx (B, T, F)."""
        parts = list(dy) if self.return_state else [dy]
        dout = parts[0]
        dh_last = parts[1] if len(parts) > 1 else None
        dc_last = parts[2] if len(parts) > 2 else None
        if self.return_sequences:
            if dout is not None and self._zeroed is not None:
                dout = dout * self._zeroed
            dh_seq = None if dout is None else self._time_major("dh_seq", dout)
        else:
            dh_seq = None
            dh_last = dout if dh_last is None else (dout if dout is None else dout + dh_last)
        steps, batch = self._h.shape[0] - 1, self._h.shape[1]
        dxp, du, drb, _, _ = ops.recurrent_backward(
            self.CELL, dh_seq, self.params[1], self._h, self._c, self._gates, mask=self._mask,
            activation=self.activation, recurrent_activation=self.recurrent_activation,
            dh_last=dh_last, dc_last=dc_last, recurrent_dropout_mask=self._rmask,
            dxp_out=self._buffer("dxp", self._xp_shape(), self._h))
        flat = dxp.reshape(steps * batch, -1)
        _device.copy_into(self.grads[1], du)
        if self.use_bias:
            self._bias_gradient(flat.sum(axis=0), drb)
        if self._gate_dropout is not None:
            dxt = self._gate_projection_backward(flat, steps, batch, need_dx)
            if not need_dx:
                return None
        else:
            ops.matmul(self._xt.T, flat, out=self.grads[0])
            if not need_dx:
                return None
            dxt = ops.matmul(flat, self.params[0].T, out=self._buffer("dxt", self._xt.shape, flat))
        dx = self._time_major("dx", dxt.reshape(steps, batch, -1))
        if self.go_backwards:
            dx = np.ascontiguousarray(dx[:, ::-1])
        if self._dropout is not None:
            dx *= self._dropout
        return dx

    def _bias_gradient(self, dinput_bias, drecurrent_bias):
        _device.copy_into(self.grads[2], dinput_bias)

    def get_config(self):
        config = {**super().get_config(), "units": self.units, "activation": self.activation or "linear",
                  "use_bias": self.use_bias, "dropout": self.dropout, "recurrent_dropout": self.recurrent_dropout,
                  "return_sequences": self.return_sequences,
                  "return_state": self.return_state, "go_backwards": self.go_backwards, "stateful": self.stateful,
                  "seed": self.seed,
                  "zero_output_for_mask": self.zero_output_for_mask}
        return config


class SimpleRNN(_RNN):
    """h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias)."""

    CELL = "simple_rnn"

    def __init__(self, units, activation="tanh", **kwargs):
        super().__init__(units, activation=activation, recurrent_activation="sigmoid", **kwargs)


class LSTM(_RNN):
    """Keras's LSTM: gates i, f, c, o in the kernels' columns; unit_forget_bias starts the
    forget gate's bias at 1."""

    CELL = "lstm"

    def __init__(self, units, unit_forget_bias=True, **kwargs):
        super().__init__(units, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    def _bias_init(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        init, n = self.bias_initializer, self.units

        def bias(shape, dtype, rng):
            b = np.asarray(init(shape, dtype, rng)).copy()
            b[n:2 * n] = 1
            return b
        return bias

    def get_config(self):
        return {**super().get_config(), "recurrent_activation": self.recurrent_activation,
                "unit_forget_bias": self.unit_forget_bias}


class GRU(_RNN):
    """Keras 3's GRU (reset_after=True): gates z, r, h; bias (2, 3 * units), the input
    bias and the recurrent bias, r applied to h @ U_h + b_h."""

    CELL = "gru"

    def __init__(self, units, reset_after=True, **kwargs):
        if not reset_after:
            raise ValueError("reset_after=False (the Keras 1 GRU) is not supported: fastdl's GRU is Keras 3's "
                             "default, reset_after=True")
        super().__init__(units, **kwargs)
        self.reset_after = True

    def _bias_shape(self):
        return (2, 3 * self.units)

    def _input_bias(self):
        return self.params[2][0] if self.use_bias else None

    def _recurrent_bias(self):
        return self.params[2][1] if self.use_bias else None

    def _bias_gradient(self, dinput_bias, drecurrent_bias):
        _device.copy_into(self.grads[2][0], dinput_bias)
        _device.copy_into(self.grads[2][1], drecurrent_bias)

    def get_config(self):
        return {**super().get_config(), "recurrent_activation": self.recurrent_activation, "reset_after": True}


class Bidirectional(Layer):
    """A recurrent layer run forwards and a copy of it backwards, the outputs merged
    (merge_mode 'concat', 'sum', 'mul' or 'ave'); with return_sequences the backward
    layer's outputs are put back in time order first, as Keras does."""

    MERGES = ("concat", "sum", "mul", "ave")
    supports_masking = True

    def __init__(self, layer, merge_mode="concat", backward_layer=None, **kwargs):
        if not isinstance(layer, _RNN):
            raise TypeError(f"layer must be a SimpleRNN, LSTM or GRU; got {type(layer).__name__}")
        if merge_mode not in self.MERGES:
            raise ValueError(f"merge_mode must be one of {self.MERGES} (None, a list of outputs, is not "
                             f"supported); got {merge_mode!r}")
        if layer.return_state:
            raise ValueError("a Bidirectional layer with return_state=True is not supported yet")
        kwargs.setdefault("name", _unique_name("bidirectional"))
        super().__init__(**kwargs)
        self.merge_mode = merge_mode
        config = layer.get_config()
        if backward_layer is None:
            config.update(name=f"backward_{layer.name.removeprefix('forward_')}", go_backwards=not layer.go_backwards)
            backward_layer = type(layer)(**config)
        elif backward_layer.return_sequences != layer.return_sequences:
            raise ValueError("backward_layer must have the forward layer's return_sequences")
        if not layer.name.startswith("forward_"):
            layer.name = f"forward_{layer.name}"
        self.forward_layer, self.backward_layer = layer, backward_layer
        self.return_sequences = layer.return_sequences
        # as Keras: with sequences out, masked steps are zeros in both directions
        layer.zero_output_for_mask = backward_layer.zero_output_for_mask = self.return_sequences

    @property
    def input_mask(self):
        return self.forward_layer.input_mask

    @input_mask.setter
    def input_mask(self, mask):
        self.forward_layer.input_mask = self.backward_layer.input_mask = mask

    def build(self, input_shape):
        self.forward_layer.build(input_shape)
        self.backward_layer.build(input_shape)
        return super().build(input_shape)

    def compute_output_shape(self, input_shape):
        shape = self.forward_layer.compute_output_shape(input_shape)
        return shape[:-1] + (2 * shape[-1],) if self.merge_mode == "concat" else shape

    def compute_mask(self, x, mask=None):
        return mask if self.return_sequences else None

    def reset_state(self):
        self.forward_layer.reset_state()
        self.backward_layer.reset_state()

    reset_states = reset_state

    def weight_specs(self):
        return self.forward_layer.weight_specs() + self.backward_layer.weight_specs()

    def attach(self, params, grads, states=()):
        super().attach(params, grads, states)
        k = len(self.forward_layer.weight_specs())
        self.forward_layer.attach(params[:k], grads[:k])
        self.backward_layer.attach(params[k:], grads[k:])

    def forward(self, x, training=False):
        yf = self.forward_layer.forward(x, training)
        yb = self.backward_layer.forward(x, training)
        if self.return_sequences:
            yb = yb[:, ::-1]
        self._outputs = (yf, yb)
        if self.merge_mode == "concat":
            return np.concatenate([yf, yb], axis=-1)
        if self.merge_mode == "sum":
            return yf + yb
        if self.merge_mode == "mul":
            return yf * yb
        return (yf + yb) * yf.dtype.type(0.5)

    def backward(self, dy, need_dx=True):
        yf, yb = self._outputs
        if self.merge_mode == "concat":
            n = yf.shape[-1]
            dyf, dyb = dy[..., :n], dy[..., n:]
        elif self.merge_mode == "sum":
            dyf = dyb = dy
        elif self.merge_mode == "mul":
            dyf, dyb = dy * yb, dy * yf
        else:
            dyf = dyb = dy * dy.dtype.type(0.5)
        if self.return_sequences:
            dyb = dyb[:, ::-1]
        dxf = self.forward_layer.backward(np.ascontiguousarray(dyf), need_dx)
        dxb = self.backward_layer.backward(np.ascontiguousarray(dyb), need_dx)
        return None if not need_dx else dxf + dxb

    def get_config(self):
        return {**super().get_config(), "merge_mode": self.merge_mode}


class TimeDistributed(Layer):
    """Applies a layer to every step: (batch, steps, ...) run as (batch * steps, ...)."""

    supports_masking = True

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise TypeError(f"layer must be a fastdl layer; got {type(layer).__name__}")
        super().__init__(**kwargs)
        self.layer = layer

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"{self.name}: TimeDistributed takes (batch, steps, ...) inputs; got (batch,) + "
                             f"{tuple(input_shape)}")
        self.layer.build(tuple(input_shape[1:]))
        return super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(self.layer.output_shape)

    def compute_mask(self, x, mask=None):
        return mask

    def weight_specs(self):
        return self.layer.weight_specs()

    def state_specs(self):
        return self.layer.state_specs()

    def attach(self, params, grads, states=()):
        super().attach(params, grads, states)
        self.layer.attach(params, grads, states)

    def forward(self, x, training=False):
        batch, steps = x.shape[:2]
        y = self.layer.forward(x.reshape((batch * steps,) + x.shape[2:]), training)
        return y.reshape((batch, steps) + y.shape[1:])

    def backward(self, dy, need_dx=True):
        batch, steps = dy.shape[:2]
        dx = self.layer.backward(dy.reshape((batch * steps,) + dy.shape[2:]), need_dx)
        return None if dx is None else dx.reshape((batch, steps) + dx.shape[1:])

