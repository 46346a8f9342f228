"""The backend contract, written once: every op a backend implements, its positional
parameters, which of them it fills, and the constants the compiled kernels share.

fastdl.ops validate and then call `backend.<op>(*params)`; each backend module
(reference, cython, numba_cpu, cuda) defines one function per op with exactly these
parameter names (tests/test_spec.py checks every backend against this table, and that
the C, Cython and Numba copies of the constants agree). 'auto' dispatches every op named
here, and Numba's warm-up must compile each of them.

Conventions of the parameters:
- `g` is a fastdl.ops._geometry.Window (sizes, strides, dilation, padding, output size);
  the kernels receive its first 14 fields in WINDOW_FIELDS order.
- Arrays are validated, C-contiguous and of one dtype by the time they arrive; `out`-like
  parameters are allocated by the op (or the caller's out=) and filled in place.
- Ops listed with `fills=()` return their results as new arrays.
"""
from typing import NamedTuple


class Op(NamedTuple):
    name: str
    params: tuple  # positional parameter names, in order
    fills: tuple = ()  # the parameters written (the rest are only read)
    optional: tuple = ()  # trailing parameters with a default of None


def _op(name, params, fills="", optional=""):
    return Op(name, tuple(params.split()), tuple(fills.split()), tuple(optional.split()))


OPS = (
    _op("conv2d", "x kernel bias out g activation", "out"),
    _op("conv2d_backward", "dy x kernel g dx", "dx"),  # returns (dx, dkernel, dbias)
    # the transposed convolution: out (N, g.h, g.w, g.c) = conv2d's input gradient for
    # geometry g, of x (N, g.oh, g.ow, F) with kernel (KH, KW, g.c, F), plus bias (g.c,)
    # or None (its backward is conv2d and conv2d_backward with the roles swapped)
    _op("conv2d_transpose", "x kernel bias out g", "out"),
    # depthwise: kernel (KH, KW, C, M), output channel c * M + m; the backward returns
    # (dx or None, dkernel, dbias), dx None when not wanted
    _op("depthwise_conv2d", "x kernel bias out g", "out"),
    _op("depthwise_conv2d_backward", "dy x kernel g dx", "dx"),
    _op("conv2d_max_pool", "x kernel bias conv_out out g activation ph pw argmax",
        "conv_out out argmax", "argmax"),
    _op("max_pool2d", "x out g argmax", "out argmax", "argmax"),
    _op("max_pool2d_backward", "dy x g dx through_relu argmax", "dx", "argmax"),
    _op("avg_pool2d", "x out g", "out"),
    _op("avg_pool2d_backward", "dy g dx", "dx"),
    _op("matmul", "a b out trans_a trans_b", "out"),
    _op("activation", "x out name", "out"),
    _op("activation_backward", "dy y name dz", "dz"),
    _op("dense", "x kernel bias activation out", "out"),
    _op("dense_backward", "dy x kernel activation output has_bias need_dx"),
    _op("add", "a b out", "out"),  # elementwise, flat arrays of one size
    _op("multiply", "a b out", "out"),
    _op("relu", "x out", "out"),
    _op("relu_backward", "dy x dx", "dx"),
    _op("softmax", "x out", "out"),
    _op("sparse_categorical_crossentropy", "labels outputs from_logits"),
    _op("sparse_categorical_crossentropy_backward", "labels outputs from_logits dloss"),
    # y_true, y_pred (N, R, K): per-sample loss (N,), its gradient (N, R, K) scaled by dloss
    _op("loss", "name y_true y_pred delta"),
    _op("loss_backward", "name y_true y_pred delta dloss"),
    _op("sgd_update", "p g buf lr momentum dampening l2 decay sign nesterov init keras", "p buf"),
    _op("adagrad_update", "p g acc lr eps l2 decay eps_inside", "p acc"),
    _op("rmsprop_update", "p g sq ga buf lr rho eps momentum l2 decay keras", "p sq ga buf"),
    _op("adam_update", "p g m v vmax step_size eps_hat beta1 beta2 l2 decay sign", "p m v vmax"),
    _op("affine_transform_batch", "images indices matrices out mode cval scale", "out"),
    # batch normalization over the rows of x (M, C), one statistic per column (channel):
    # the batch's mean and biased variance; y = (x - mean) / sqrt(var + eps) * gamma + beta;
    # the training-mode backward (the statistics are x's own) fills dx and returns
    # (dgamma, dbeta)
    _op("batch_norm_stats", "x mean var", "mean var"),
    _op("batch_norm", "x mean var gamma beta eps out", "out"),
    _op("batch_norm_backward", "dy x mean var gamma eps dx", "dx"),
    # layer normalization of each row of x (M, C): y = (x - mean) * rstd * gamma + beta,
    # filling the rows' mean and rstd = 1 / sqrt(var + eps) (M,); the backward fills dx
    # and returns (dgamma, dbeta)
    _op("layer_norm", "x gamma beta eps out mean rstd", "out mean rstd"),
    _op("layer_norm_backward", "dy x mean rstd gamma dx", "dx"),
    # recurrent cells through time, time-major (T steps, B samples, H units, G gates):
    # xp (T, B, G*H) the input projection x @ W of every step, bias (G*H,) added to it
    # in the gate pass (one pass over xp fewer); u (H, G*H); h, c
    # (T+1, B, H) with h[0], c[0] the initial states, filled with every step's states;
    # gates (T, B, GATE_SLOTS*H) what the backward needs; mask (T, B) uint8, 0 keeps the
    # previous states; bias, rbias (G*H,) (GRU only), mask, c (LSTM only), dh_seq and dinner
    # (GRU only) may be None. The backward fills dxp (T, B, G*H) and, for GRU, dinner (the
    # gradient of h @ U + rbias), and turns dh, dc (B, H) (the last states' gradients)
    # into the initial states'; dh_seq (T, B, H) is the gradient of h[1:]. rmask (B, G*H)
    # or None: recurrent dropout, gate g's GEMM reads h * rmask[:, g*H:(g+1)*H] (the
    # backward multiplies that GEMM's dh by it); the caller's dU reads the masked h too.
    _op("recurrent", "cell xp u bias rbias mask rmask activation recurrent_activation h c gates", "h c gates"),
    _op("recurrent_backward",
        "cell dh_seq u h c gates mask rmask activation recurrent_activation dh dc dxp dinner", "dh dc dxp dinner"),
    # table (V, D) rows gathered by indices (N,) intp into out (N, D); the backward adds
    # dy's rows into dtable (V, D), zeroed by the op, repeated indices summed
    _op("embedding", "indices table out", "out"),
    _op("embedding_backward", "indices dy dtable", "dtable"),
    # NHWC resampling: out is x placed at (top, left) in zeros; out is x's window at
    # (top, left); nearest upsampling by (sh, sw) and its block sums
    _op("pad2d", "x out top left", "out"),
    _op("crop2d", "x out top left", "out"),
    _op("upsample2d", "x out sh sw", "out"),
    _op("upsample2d_backward", "dy dx sh sw", "dx"),
)
NAMES = tuple(op.name for op in OPS)

# Where each backend keeps the arrays its ops return: a model built under a backend with
# ARRAYS_ON_DEVICE = True keeps its parameters, gradients and activations there (every
# backend module sets the flag; tests/test_spec.py checks it).
BY_NAME = {op.name: op for op in OPS}

# -- constants shared with the compiled kernels ---------------------------------------------

# activation codes: kernels/activations.pyx (DEF RELU ...), the Numba and CUDA kernels
LINEAR, RELU, SIGMOID, TANH, SOFTMAX = 0, 1, 2, 3, 4
ACTIVATION_CODES = {None: LINEAR, "relu": RELU, "sigmoid": SIGMOID, "tanh": TANH, "softmax": SOFTMAX}

# the losses of ops.loss, by index: kernels/losses.pyx (DEF MSE ...) and the formulas of
# _element_losses.py. Each is a sum of per-element terms averaged over a sample's
# elements, except the ROW_LOSSES: a value per row of the last axis, averaged over rows.
LOSSES = ("mean_squared_error", "mean_absolute_error", "mean_absolute_percentage_error",
          "mean_squared_logarithmic_error", "huber", "log_cosh", "binary_crossentropy",
          "binary_crossentropy_from_logits", "poisson", "hinge", "squared_hinge", "kl_divergence",
          "categorical_hinge")
(MSE, MAE, MAPE, MSLE, HUBER, LOG_COSH, BCE, BCE_LOGITS, POISSON, HINGE, SQUARED_HINGE, KLD,
 CATEGORICAL_HINGE) = range(len(LOSSES))
LOSS_CODES = {name: code for code, name in enumerate(LOSSES)}
ROW_LOSSES = (KLD, CATEGORICAL_HINGE)

# recurrent cells, by index: kernels/recurrent.pyx (DEF SIMPLE_RNN ...); their gate
# count G (Keras's kernel width is G * units, in Keras's gate order) and the
# (T, B, slots * H) values each saves for the backward pass: SimpleRNN its activation,
# LSTM its activated i, f, c~, o; GRU its z, r, h~ and the recurrent part of h~ (h @ U_h
# + b_h, reset_after=True)
CELLS = ("simple_rnn", "lstm", "gru")
SIMPLE_RNN, LSTM, GRU = range(3)
CELL_GATES = (1, 4, 3)
GATE_SLOTS = (1, 4, 4)
# the activations a recurrent cell may use (the kernels' formulas, by ACTIVATION_CODES)
RECURRENT_ACTIVATIONS = (None, "relu", "sigmoid", "tanh")

# augmentation fill modes, by index: kernels/augment.pyx (DEF NEAREST ...)
FILL_MODES = ("nearest", "constant", "reflect", "wrap")
NEAREST, CONSTANT, REFLECT, WRAP = range(4)
# source coordinates are clamped to +-COORD_LIMIT before they become indices (far outside
# any image; a double beyond int64 must never be converted): kernels/augment.pyx
COORD_LIMIT = 2.0 ** 31

# a saved max-pooling position that names no element (no gradient): pool_window.h
ARGMAX_NONE = 255

# the fields of a window geometry, in the order of the kernels' Window struct
# (kernels/_geometry.pxd) and of the Numba/CUDA kernels' unpacking of it
WINDOW_FIELDS = ("n", "h", "w", "c", "kh", "kw", "sh", "sw", "dh", "dw", "pt", "pl", "oh", "ow")
