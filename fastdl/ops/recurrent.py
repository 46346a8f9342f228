"""Recurrent cells through time (SimpleRNN, LSTM, GRU) and embedding lookups.

The recurrent ops are time-major, as the kernels walk them: T steps of B samples of H
units. The input projection of every step, xp = x @ W (T, B, G*H), is one GEMM the
caller makes beforehand (G gates in Keras's order: LSTM i, f, c, o; GRU z, r, h); the
op runs the recurrence h_t = cell(xp_t + b + h_{t-1} @ U), one GEMM and one fused pass
over the gates a step (which adds the bias b, so that xp needs no pass of its own).
`h` (T+1, B, H) holds the initial state and then every step's, so that h[:T] are the
states each step read (the backward's one GEMM for dU reads them so). GRU follows
Keras 3's reset_after=True: h~ = act(x_h + b_h + r * (h @ U_h + rb_h)), with its
recurrent bias `recurrent_bias` (3H,) beside the input bias.

Recurrent dropout (Keras's recurrent_dropout, its implementation 1) is a mask
`recurrent_dropout_mask` (B, G*H), fixed for the sequence: gate g's recurrent product
reads h_{t-1} * mask[:, g*H:(g+1)*H], its own mask for each gate; the state itself (GRU's
z * h_{t-1} term, the next step's h) is never masked.
"""
import numpy as np

from fastdl import _device
from fastdl._config import backend_module
from fastdl.backends._spec import CELL_GATES, CELLS, GATE_SLOTS, GRU, LSTM, RECURRENT_ACTIVATIONS
from fastdl.ops import _checks


def _cell(cell):
    if not isinstance(cell, str) or cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}; got {cell!r}")
    return CELLS.index(cell)


def _activation(name, value):
    value = None if value == "linear" else value
    if (value is not None and not isinstance(value, str)) or value not in RECURRENT_ACTIVATIONS:
        raise ValueError(f"{name} must be one of {('linear',) + RECURRENT_ACTIVATIONS[1:]} for a recurrent "
                         f"cell; got {value!r}")
    return value


def _state(name, a, shape, dtype, device):
    """A (B, H) state of the given dtype; None is zeros."""
    if a is None:
        return None
    a = _checks.float_array(name, a, 2, "(batch, units)")
    if a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype} (xp's); got {a.dtype}")
    _checks.shape_is(name, a, shape, "(batch, units)")
    return a


def _mask(mask, steps, batch):
    """None, or a (T, B) uint8 array of 0/1 (any bool-like array of that shape)."""
    if mask is None:
        return None
    mask = np.asarray(_device.to_host(mask))
    if mask.shape != (steps, batch):
        raise ValueError(f"mask must have shape (steps, batch) = {(steps, batch)}; got {mask.shape}")
    if mask.dtype != np.bool_ and mask.dtype.kind not in "iuf":
        raise TypeError(f"mask must be booleans (or 0/1 numbers); got dtype {mask.dtype}")
    return _checks.contiguous("mask", mask != 0).view(np.uint8)


def _dropout_mask(rmask, batch, width, dtype, device):
    """None, or the (B, G*H) recurrent dropout mask (0 or 1 / (1 - rate) a unit and gate)."""
    if rmask is None:
        return None
    rmask = _checks.float_array("recurrent_dropout_mask", rmask, 2, "(batch, gates * units)")
    if rmask.dtype != dtype:
        raise TypeError(f"recurrent_dropout_mask must have dtype {dtype} (xp's); got {rmask.dtype}")
    _checks.shape_is("recurrent_dropout_mask", rmask, (batch, width), "(batch, gates * units)")
    if _checks.on_device(rmask) != device:
        raise ValueError("recurrent_dropout_mask must be on the device the other arrays are on")
    return rmask


def _recurrent_kernel(u, cell, dtype):
    u = _checks.float_array("recurrent_kernel", u, 2, "(units, gates * units)")
    if u.dtype != dtype:
        raise TypeError(f"recurrent_kernel must have dtype {dtype} (xp's); got {u.dtype}")
    units = u.shape[0]
    if u.shape[1] != CELL_GATES[cell] * units:
        raise ValueError(f"recurrent_kernel must have shape (units, {CELL_GATES[cell]} * units) for "
                         f"{CELLS[cell]}; got {u.shape}")
    return u, units


def _bias(bias, width, dtype, device):
    if bias is None:
        return _device.full((width,), dtype, 0.0, device)
    bias = _checks.float_array("bias", bias, 1, "(gates * units,)")
    if bias.dtype != dtype:
        raise TypeError(f"bias must have dtype {dtype} (xp's); got {bias.dtype}")
    _checks.shape_is("bias", bias, (width,), "gates * units")
    return bias


def _recurrent_bias(rbias, cell, width, dtype, device):
    if cell != GRU:
        if rbias is not None:
            raise ValueError(f"recurrent_bias is GRU's alone (reset_after=True); {CELLS[cell]} adds its bias "
                             f"in xp")
        return None
    if rbias is None:
        return _device.full((width,), dtype, 0.0, device)
    rbias = _checks.float_array("recurrent_bias", rbias, 1, "(3 * units,)")
    if rbias.dtype != dtype:
        raise TypeError(f"recurrent_bias must have dtype {dtype} (xp's); got {rbias.dtype}")
    _checks.shape_is("recurrent_bias", rbias, (width,), "3 * units")
    return rbias


def recurrent(cell, xp, recurrent_kernel, h0=None, c0=None, bias=None, recurrent_bias=None, mask=None,
              activation="tanh", recurrent_activation="sigmoid", recurrent_dropout_mask=None, *, out=None):
    """Run `cell` over T steps: returns (h, c, gates), h and c (T+1, B, H) with h[0] = h0
    (zeros when None) and h[t+1] the state after step t (c: LSTM's cell states, None for
    the others), gates (T, B, slots * H) what recurrent_backward needs.

    xp (T, B, G*H): x @ W for every step; bias (G*H,): added to it (None: zeros);
    recurrent_kernel U (H, G*H); mask (T, B): where 0, the step keeps the previous
    states (Keras's masking); recurrent_dropout_mask (B, G*H): see the module's
    docstring. out: (h, c, gates) arrays to fill (reused between calls), c None but for
    LSTM."""
    code = _cell(cell)
    xp = _checks.float_array("xp", xp, 3, "(steps, batch, gates * units)")
    u, units = _recurrent_kernel(recurrent_kernel, code, xp.dtype)
    steps, batch, width = xp.shape
    if width != CELL_GATES[code] * units:
        raise ValueError(f"xp's last axis must be {CELL_GATES[code]} * units = {CELL_GATES[code] * units} "
                         f"(recurrent_kernel {u.shape}); got xp {xp.shape}")
    device = _checks.on_device(xp, u)
    h0 = _state("h0", h0, (batch, units), xp.dtype, device)
    c0 = _state("c0", c0, (batch, units), xp.dtype, device)
    if c0 is not None and code != LSTM:
        raise ValueError(f"c0 is LSTM's cell state; {cell} has none")
    bias = _bias(bias, width, xp.dtype, device)
    rbias = _recurrent_bias(recurrent_bias, code, width, xp.dtype, device)
    mask = _mask(mask, steps, batch)
    rmask = _dropout_mask(recurrent_dropout_mask, batch, width, xp.dtype, device)
    activation = _activation("activation", activation)
    recurrent_activation = _activation("recurrent_activation", recurrent_activation)
    h_out, c_out, gates_out = (None, None, None) if out is None else out
    states = (steps + 1, batch, units)
    h = _checks.output("out[0] (h)", h_out, states, xp.dtype, device)
    c = _checks.output("out[1] (c)", c_out, states, xp.dtype, device) if code == LSTM else None
    gates = _checks.output("out[2] (gates)", gates_out, (steps, batch, GATE_SLOTS[code] * units), xp.dtype, device)
    for name, a in (("out[0] (h)", h), ("out[1] (c)", c), ("out[2] (gates)", gates)):
        if a is not None:
            _checks.distinct(name, a, xp=xp, recurrent_kernel=u, h0=h0, c0=c0, bias=bias, recurrent_bias=rbias,
                             recurrent_dropout_mask=rmask)
    zeros = np.zeros((batch, units), xp.dtype)
    _device.copy_into(h[0], h0 if h0 is not None else zeros)
    if c is not None:
        _device.copy_into(c[0], c0 if c0 is not None else zeros)
    backend_module().recurrent(code, xp, u, bias, rbias, mask, rmask, activation, recurrent_activation, h, c, gates)
    return h, c, gates


def recurrent_backward(cell, dh_seq, recurrent_kernel, h, c, gates, mask=None, activation="tanh",
                       recurrent_activation="sigmoid", dh_last=None, dc_last=None, recurrent_dropout_mask=None, *,
                       dxp_out=None):
    """Backward through time of `recurrent`: returns (dxp (T, B, G*H), drecurrent_kernel
    (H, G*H), drecurrent_bias (G*H,) for GRU else None, dh0 (B, H), dc0 (B, H) for LSTM
    else None).

    dh_seq (T, B, H): the gradient of every step's output h[1:] (None: zeros, when only
    the last state is used); dh_last, dc_last (B, H): the gradients of the last states
    (return_state), added to the last step's; h, c, gates and recurrent_dropout_mask as
    `recurrent` had them.
    dxp_out: an array to fill with dxp (reused between calls). The input bias's gradient
    is dxp summed over steps and samples."""
    code = _cell(cell)
    h = _checks.float_array("h", h, 3, "(steps + 1, batch, units)")
    dtype = h.dtype
    u, units = _recurrent_kernel(recurrent_kernel, code, dtype)
    steps, batch = h.shape[0] - 1, h.shape[1]
    if steps < 1 or h.shape[2] != units:
        raise ValueError(f"h must have shape (steps + 1, batch, {units}) with steps >= 1 (recurrent's h); "
                         f"got {h.shape}")
    device = _checks.on_device(h, u)
    gates = _checks.float_array("gates", gates, 3, "(steps, batch, slots * units)")
    _checks.same_dtype(h=h, gates=gates)
    _checks.shape_is("gates", gates, (steps, batch, GATE_SLOTS[code] * units), f"recurrent's gates for {cell}")
    if code == LSTM:
        if c is None:
            raise ValueError("c is needed for lstm (recurrent's cell states)")
        c = _checks.float_array("c", c, 3, "(steps + 1, batch, units)")
        _checks.same_dtype(h=h, c=c)
        _checks.shape_is("c", c, h.shape, "the shape of h")
    elif c is not None:
        raise ValueError(f"c is LSTM's cell states; {cell} has none")
    if dh_seq is not None:
        dh_seq = _checks.float_array("dh_seq", dh_seq, 3, "(steps, batch, units)")
        _checks.same_dtype(h=h, dh_seq=dh_seq)
        _checks.shape_is("dh_seq", dh_seq, (steps, batch, units), "the gradient of h[1:]")
    mask = _mask(mask, steps, batch)
    width = CELL_GATES[code] * units
    rmask = _dropout_mask(recurrent_dropout_mask, batch, width, dtype, device)
    activation = _activation("activation", activation)
    recurrent_activation = _activation("recurrent_activation", recurrent_activation)
    dh_last = _state("dh_last", dh_last, (batch, units), dtype, device)
    dc_last = _state("dc_last", dc_last, (batch, units), dtype, device)
    if dc_last is not None and code != LSTM:
        raise ValueError(f"dc_last is LSTM's; {cell} has no cell state")
    zeros = np.zeros((batch, units), dtype)
    dh = _device.empty((batch, units), dtype, device)
    _device.copy_into(dh, dh_last if dh_last is not None else zeros)
    dc = None
    if code == LSTM:
        dc = _device.empty((batch, units), dtype, device)
        _device.copy_into(dc, dc_last if dc_last is not None else zeros)
    dxp = _checks.output("dxp_out", dxp_out, (steps, batch, width), dtype, device)
    _checks.distinct("dxp_out", dxp, dh_seq=dh_seq, recurrent_kernel=u, h=h, c=c, gates=gates)
    dinner = _device.empty((steps, batch, width), dtype, device) if code == GRU else None
    backend = backend_module()
    backend.recurrent_backward(code, dh_seq, u, h, c, gates, mask, rmask, activation, recurrent_activation,
                               dh, dc, dxp, dinner)
    inner = (dinner if dinner is not None else dxp).reshape(steps * batch, width)
    du = _device.empty((units, width), dtype, device)
    if rmask is None:
        backend.matmul(h[:steps].reshape(steps * batch, units), inner, du, True, False)
    else:
        _masked_recurrent_gradient(backend, h, rmask, inner, du, units)
    drbias = None
    if code == GRU:
        drbias = _device.to_device(_device.to_host(inner).sum(axis=0)) if device else inner.sum(axis=0)
    return dxp, du, drbias, dh, dc


def _masked_recurrent_gradient(backend, h, rmask, inner, du, units):
    """dU's gate g columns = sum over steps of (h_t * rmask_g)^T @ inner_g: one GEMM a
    gate, on contiguous host copies (on a device too: recurrent dropout is a training
    regulariser, its cost is these copies)."""
    host = np.asarray(_device.to_host(h))[:-1]
    mask, grads = np.asarray(_device.to_host(rmask)), np.asarray(_device.to_host(inner))
    out = np.empty(du.shape, du.dtype)
    with_cpu = backend if not _device.is_device(du) else None
    for g in range(mask.shape[1] // units):
        cols = slice(g * units, (g + 1) * units)
        masked = np.ascontiguousarray((host * mask[:, cols]).reshape(-1, units))
        part = np.empty((units, units), du.dtype)
        if with_cpu is not None:
            with_cpu.matmul(masked, np.ascontiguousarray(grads[:, cols]), part, True, False)
        else:
            np.matmul(masked.T, grads[:, cols], out=part)
        out[:, cols] = part
    _device.copy_into(du, _device.to_device(out) if with_cpu is None else out)


# -- embedding lookups ----------------------------------------------------------------------

def _indices(indices, rows):
    """Integer indices in [0, rows) as a flat intp array (validated on the host)."""
    host = np.asarray(_device.to_host(indices))
    if host.dtype.kind == "f":  # Keras casts float token ids
        if not np.all(np.isfinite(host)) or np.any(host != np.floor(host)):
            raise ValueError("indices of a float dtype must hold whole numbers")
    elif host.dtype.kind not in "iu":
        raise TypeError(f"indices must be integers; got dtype {host.dtype}")
    if host.size == 0:
        raise ValueError(f"indices must not be empty; got shape {host.shape}")
    low, high = host.min(), host.max()
    if low < 0 or high >= rows:
        bad = low if low < 0 else high
        raise ValueError(f"indices must be in [0, {rows}) (the table's rows, input_dim); got {bad}")
    return host.shape, _checks.contiguous("indices", host.reshape(-1), np.intp)


def embedding(indices, table, *, out=None):
    """table[indices]: (..., D) rows of table (V, D) for integer indices (...) in [0, V)."""
    table = _checks.float_array("table", table, 2, "(input_dim, output_dim)")
    shape, flat = _indices(indices, table.shape[0])
    y = _checks.output("out", out, shape + (table.shape[1],), table.dtype, _checks.on_device(table))
    _checks.distinct("out", y, table=table)
    backend_module().embedding(flat, table, y.reshape(flat.size, table.shape[1]))
    return y


def embedding_backward(indices, dy, input_dim):
    """The gradient of embedding's table (input_dim, D): dy's rows (..., D) added into
    the rows their indices name (a scatter-add; repeated indices sum)."""
    if isinstance(input_dim, bool) or not isinstance(input_dim, (int, np.integer)) or input_dim < 1:
        raise ValueError(f"input_dim must be a positive int; got {input_dim!r}")
    shape, flat = _indices(indices, int(input_dim))
    dy = _checks.float_array("dy", dy)
    if dy.shape != shape + dy.shape[-1:] or dy.ndim != len(shape) + 1:
        raise ValueError(f"dy must have shape indices.shape + (output_dim,) = {shape} + (D,); got {dy.shape}")
    dtable = _device.full((int(input_dim), dy.shape[-1]), dy.dtype, 0.0, _checks.on_device(dy))
    backend_module().embedding_backward(flat, dy.reshape(flat.size, dy.shape[-1]), dtable)
    return dtable
