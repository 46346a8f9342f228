"""One entry per op of the backend contract (fastdl/backends/_spec.py): how to call it
through fastdl.ops, samples to run, what the result must be, PyTorch's equivalent where
there is one, and arguments it must refuse. tests/test_optable.py runs every entry on
every backend and dtype; a new op gets those tests from its entry here (and
test_every_contract_op_has_an_entry fails until it has one).

samples(rng, dtype) -> [(args, kwargs)]: odd sizes, batch 1, strides, padding.
call(*args, **kwargs) -> the op's result(s) (ops.<name> unless given); ops that update
their arguments in place return those arguments.
torch(torch, *args, **kwargs) -> the expected results as numpy arrays, or None.
invalid: [(call, exception, message regex)].
grad(args, kwargs) -> [(name, analytic, numerical)]: the op's backward against central
differences of its forward, run in float64 on the entry's first (small) sample.
"""
from typing import Callable, NamedTuple, Optional

import numpy as np

import fastdl
from fastdl import ops
from fastdl.backends import _spec


class OpInfo(NamedTuple):
    name: str
    samples: Callable
    call: Optional[Callable] = None
    torch: Optional[Callable] = None
    invalid: tuple = ()
    scale: float = 1.0  # tolerance scale: sums of many terms
    grad: Optional[Callable] = None

    def run(self, *args, **kwargs):
        return (self.call or getattr(ops, self.name))(*args, **kwargs)


def normal(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _nchw(torch, x):
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)


def _nhwc(t):
    return t.permute(0, 2, 3, 1).detach().numpy()


CONV_GEOMETRIES = [dict(x=(1, 7, 5, 3), k=(3, 2, 3, 4), strides=1, padding="valid"),
                   dict(x=(2, 9, 8, 2), k=(3, 3, 2, 5), strides=2, padding="same"),
                   dict(x=(3, 4, 6, 1), k=(1, 1, 1, 3), strides=1, padding=((0, 2), (1, 0))),
                   dict(x=(2, 10, 10, 16), k=(3, 3, 16, 16), strides=1, padding="same"),
                   dict(x=(2, 6, 5, 2), k=(3, 2, 2, 3), strides=(2, 1), padding=((1, 0), (2, 1)),
                        dilation_rate=(1, 2), activation="relu")]


def conv_samples(rng, dtype):
    return [((normal(rng, g["x"], dtype), normal(rng, g["k"], dtype), normal(rng, g["k"][3], dtype)),
             {key: value for key, value in g.items() if key not in ("x", "k")}) for g in CONV_GEOMETRIES]


def conv_backward_samples(rng, dtype):
    out = []
    for (x, k, _), kw in conv_samples(rng, dtype):
        kw.pop("activation", None)  # the backward takes dy after the activation's own
        y = ops.conv2d(x, k, **kw)
        out.append(((normal(rng, y.shape, dtype), x, k), kw))
    return out


def torch_conv(torch, x, k, b, strides, padding, dilation_rate=1, activation=None):
    if not isinstance(padding, str) or dilation_rate != 1 or activation:
        return None
    t = torch.nn.functional.conv2d(_nchw(torch, x), torch.from_numpy(k).permute(3, 2, 0, 1),
                                   torch.from_numpy(b), stride=strides, padding=padding if strides == 1 else 0)
    return _nhwc(t) if padding == "valid" or strides == 1 else None


POOLS = [dict(pool_size=2), dict(pool_size=3, strides=2, padding="same"), dict(pool_size=(2, 3), strides=1)]


def pool_samples(rng, dtype):
    return [((normal(rng, shape, dtype),), kw) for shape, kw in zip([(1, 6, 7, 3), (2, 9, 8, 5), (3, 5, 6, 2)], POOLS)]


def pool_backward_samples(forward):
    def samples(rng, dtype):
        return [((normal(rng, forward(x, **kw).shape, dtype), x), kw) for (x,), kw in pool_samples(rng, dtype)]
    return samples


def max_pool_samples(rng, dtype):
    """pool_samples, and each again with argmax_out (the window offsets the fused
    convolution keeps for the backward)."""
    plain = pool_samples(rng, dtype)
    return plain + [((x,), dict(kw, argmax_out=np.empty(ops.max_pool2d(x, **kw).shape, np.uint8)))
                    for (x,), kw in plain]


def max_pool_call(x, **kwargs):
    y = ops.max_pool2d(x, **kwargs)
    return (y, kwargs["argmax_out"]) if "argmax_out" in kwargs else y


def max_pool_backward_samples(rng, dtype):
    """The backward from the input, and from its shape and the reference's argmax."""
    out = pool_backward_samples(ops.max_pool2d)(rng, dtype)
    for (dy, x), kw in list(out):
        argmax = np.empty(dy.shape, np.uint8)
        with fastdl.use_backend("reference"):
            ops.max_pool2d(x, **kw, argmax_out=argmax)
        out.append(((dy, x.shape), dict(kw, argmax=argmax)))
    return out


def torch_max_pool(torch, x, pool_size=2, strides=None, padding="valid", argmax_out=None):
    if padding != "valid":
        return None
    return _nhwc(torch.nn.functional.max_pool2d(_nchw(torch, x), pool_size, strides or pool_size))


def matmul_samples(rng, dtype):
    return [((normal(rng, (m, k), dtype), normal(rng, (k, n), dtype)), {}) for m, k, n in [(1, 5, 3), (17, 9, 33)]]


def dense_samples(rng, dtype):
    return [((normal(rng, (4, 6), dtype), normal(rng, (6, 5), dtype), normal(rng, 5, dtype)), dict(activation=a))
            for a in (None, "relu", "softmax")]


def dense_backward_samples(rng, dtype):
    out = []
    for (x, k, b), kw in dense_samples(rng, dtype):
        y = ops.dense(x, k, b, **kw)
        out.append(((normal(rng, y.shape, dtype), x, k), dict(activation=kw["activation"], output=y)))
    return out


def unary_samples(rng, dtype):
    return [((normal(rng, s, dtype),), {}) for s in [(1,), (7, 5), (2, 3, 4)]]


def binary_samples(rng, dtype):
    return [((normal(rng, s, dtype), normal(rng, s, dtype)), {}) for s in [(1,), (7, 5), (2, 3, 4)]]


def activation_samples(rng, dtype):
    return [((normal(rng, (5, 4), dtype), a), {}) for a in ("relu", "sigmoid", "tanh", "softmax", "linear")]


def activation_backward_samples(rng, dtype):
    return [((normal(rng, (5, 4), dtype), ops.activation(normal(rng, (5, 4), dtype), a), a), {})
            for a in ("relu", "sigmoid", "tanh", "softmax")]


def ce_samples(rng, dtype):
    return [((rng.integers(0, 4, 6), normal(rng, (6, 4), dtype)), dict(from_logits=True)),
            ((rng.integers(0, 4, 6), rng.uniform(0.1, 1, (6, 4)).astype(dtype)), dict(from_logits=False))]


def _away_from(rng, shape, low, high):
    """Magnitudes in [low, high) with random signs: differences clear of a loss's kinks."""
    return rng.uniform(low, high, shape) * rng.choice([-1.0, 1.0], shape)


def _loss_sample(rng, name, shape):
    """(y_true, y_pred, kwargs) for one loss, its values clear of kinks, clips and ties."""
    y = rng.uniform(0.2, 1.0, shape)
    if name in ("mean_squared_error", "log_cosh"):
        return rng.standard_normal(shape), rng.standard_normal(shape), {}
    if name in ("mean_absolute_error", "mean_absolute_percentage_error"):
        y = _away_from(rng, shape, 0.5, 2.0)
        return y, y + _away_from(rng, shape, 0.1, 0.8), {}
    if name == "mean_squared_logarithmic_error":
        return rng.uniform(0.1, 3, shape), rng.uniform(0.1, 3, shape), {}
    if name == "huber":  # both sides of delta = 0.5
        e = np.where(rng.random(shape) < 0.5, _away_from(rng, shape, 0.1, 0.4), _away_from(rng, shape, 0.6, 1.5))
        return y, y + e, dict(delta=0.5)
    if name == "binary_crossentropy":
        return rng.random(shape), rng.uniform(0.05, 0.95, shape), {}
    if name == "binary_crossentropy_from_logits":
        return rng.random(shape), 2 * rng.standard_normal(shape), {}
    if name == "poisson":
        return rng.integers(0, 5, shape).astype(float), rng.uniform(0.2, 3, shape), {}
    if name in ("hinge", "squared_hinge"):  # {0, 1} labels; margins clear of 1
        p = np.where(rng.random(shape) < 0.5, _away_from(rng, shape, 0.1, 0.8), _away_from(rng, shape, 1.2, 2))
        return rng.integers(0, 2, shape).astype(float), p, {}
    if name == "kl_divergence":
        softmax = lambda z: np.exp(z) / np.exp(z).sum(-1, keepdims=True)  # noqa: E731
        return softmax(rng.standard_normal(shape)), softmax(rng.standard_normal(shape)), {}
    onehot = np.eye(shape[-1])[rng.integers(0, shape[-1], shape[:-1])]  # categorical hinge
    return onehot, 1.5 * rng.standard_normal(shape), {}


LOSS_SHAPES = [(5, 3), (1, 4), (2, 3, 4), (6,)]


def loss_samples(rng, dtype):
    """Every loss on every shape (2-D, batch 1, 3-D, 1-D)."""
    out = []
    for shape in LOSS_SHAPES:
        for name in _spec.LOSSES:
            y, p, kwargs = _loss_sample(rng, name, shape)
            out.append(((name, y.astype(dtype), p.astype(dtype)), kwargs))
    return out


def loss_backward_samples(rng, dtype):
    out = loss_samples(rng, dtype)
    name, y, p = out[0][0]
    return out + [((name, y, p, rng.uniform(0.5, 2, len(p)).astype(dtype)), {})]


def torch_loss(torch, name, y, p, delta=1.0):
    """Each sample's loss as PyTorch computes it, for the losses PyTorch has."""
    F = torch.nn.functional
    k = p.shape[-1] if p.ndim > 1 else 1  # a 1-D prediction: one value a sample
    y, p = torch.from_numpy(y).reshape(len(p), -1, k), torch.from_numpy(p).reshape(len(p), -1, k)
    terms = {"mean_squared_error": lambda: F.mse_loss(p, y, reduction="none"),
             "mean_absolute_error": lambda: F.l1_loss(p, y, reduction="none"),
             "huber": lambda: F.huber_loss(p, y, reduction="none", delta=delta),
             "binary_crossentropy": lambda: F.binary_cross_entropy(p, y, reduction="none"),
             "binary_crossentropy_from_logits": lambda: F.binary_cross_entropy_with_logits(p, y, reduction="none"),
             "poisson": lambda: F.poisson_nll_loss(p, y, log_input=False, eps=1e-7, reduction="none"),
             "kl_divergence": lambda: F.kl_div(p.log(), y, reduction="none").sum(-1, keepdim=True)}
    if name not in terms:
        return None
    return terms[name]().reshape(len(p), -1).mean(1).numpy()


def loss_grad(args, kwargs):
    """Every loss's gradient on a (3, 2, 4) sample, against the mean loss's differences."""
    rng = np.random.default_rng(9)
    checks = []
    for name in _spec.LOSSES:
        y, p, kw = _loss_sample(rng, name, (3, 2, 4))
        mean = lambda: float(ops.loss(name, y, p, **kw).mean())  # noqa: E731
        checks.append((name, ops.loss_backward(name, y, p, **kw), _numerical(mean, p)))
    return checks


def optimizer_samples(make_state, *variants):
    """One sample per dict of hyper-parameters; make_state(p) -> (positional state
    arrays, keyword state arrays), fresh for each sample."""
    def samples(rng, dtype):
        out = []
        for hyper in variants:
            p, g = normal(rng, (33,), dtype), normal(rng, (33,), dtype)
            state, keyword_state = make_state(p)
            out.append(((p, g) + state, {**hyper, **{k: v for k, v in keyword_state.items() if k in hyper}}))
        return out
    return samples


def updated(op):
    """Run an in-place update and return the arrays it updated (positional ones first)."""
    def call(*args, **kwargs):
        op(*args, **kwargs)
        arrays = list(args) + [kwargs[k] for k in sorted(kwargs)]
        return tuple(a for a in arrays if isinstance(a, np.ndarray) and a.dtype.kind == "f")
    return call


def affine_samples(rng, dtype):
    images = rng.integers(0, 256, (3, 6, 5, 2)).astype(np.uint8)
    theta = 0.3
    matrix = np.array([[np.cos(theta), -np.sin(theta), 1.0], [np.sin(theta), np.cos(theta), -0.5]])
    return [((images, np.array([2, 0]), np.stack([matrix, np.eye(2, 3)])), dict(fill_mode=m, scale=1 / 255))
            for m in ("nearest", "constant", "reflect", "wrap")]


BN_SHAPES = [(5, 3), (1, 4), (2, 5, 4, 3), (64, 7)]


def bn_stats_samples(rng, dtype):
    """Rows of one or many samples, 2-D and NHWC, one set far from zero (a large mean)."""
    out = [((normal(rng, s, dtype),), {}) for s in BN_SHAPES]
    return out + [(((normal(rng, (40, 6), np.float64) * 0.5 + 300).astype(dtype),), {})]


def bn_samples(rng, dtype):
    out = []
    for i, shape in enumerate(BN_SHAPES):
        x = normal(rng, shape, dtype)
        c = shape[-1]
        mean, var = normal(rng, c, dtype), (rng.random(c) + 0.1).astype(dtype)
        gamma, beta = (normal(rng, c, dtype), normal(rng, c, dtype)) if i % 2 == 0 else (None, None)
        out.append(((x, mean, var, gamma, beta), dict(epsilon=1e-3 if i < 2 else 1e-5)))
    return out


def bn_backward_samples(rng, dtype):
    out = []
    for (x, _, _, gamma, _), kw in bn_samples(rng, dtype):
        with fastdl.use_backend("reference"):
            mean, var = ops.batch_norm_stats(x)
        out.append(((normal(rng, x.shape, dtype), x, mean, var, gamma), kw))
    return out


def _rows(torch, a):
    return torch.from_numpy(np.ascontiguousarray(a).reshape(-1, a.shape[-1]))


def torch_bn_stats(torch, x):
    var, mean = torch.var_mean(_rows(torch, x), dim=0, unbiased=False)
    return mean.numpy()


def torch_bn(torch, x, mean, var, gamma, beta, epsilon):
    t = lambda a: None if a is None else torch.from_numpy(a)  # noqa: E731
    y = torch.nn.functional.batch_norm(_rows(torch, x), t(mean), t(var), t(gamma), t(beta), training=False, eps=epsilon)
    return y.numpy().reshape(x.shape)


def torch_bn_backward(torch, dy, x, mean, var, gamma, epsilon):
    """dx through torch's training-mode batch_norm (its statistics are the batch's)."""
    if np.prod(x.shape[:-1]) == 1:
        return None  # torch refuses a single value per channel in training
    rows = _rows(torch, x).requires_grad_()
    weight = None if gamma is None else torch.from_numpy(gamma)
    y = torch.nn.functional.batch_norm(rows, None, None, weight, None, training=True, eps=epsilon)
    y.backward(_rows(torch, dy))
    return rows.grad.numpy().reshape(x.shape)


def bn_grad(args, kwargs):
    """The training-mode backward against differences of batch_norm(x, stats(x)): the
    gradient through the batch's own statistics."""
    x, _, _, gamma, beta = args
    dy = np.random.default_rng(9).standard_normal(x.shape)

    def forward():
        return ops.batch_norm(x, *ops.batch_norm_stats(x), gamma, beta, **kwargs)
    dx, dgamma, dbeta = ops.batch_norm_backward(dy, x, *ops.batch_norm_stats(x), gamma, **kwargs)
    f = _weighted(forward, dy)
    return [("dx", dx, _numerical(f, x)), ("dgamma", dgamma, _numerical(f, gamma)),
            ("dbeta", dbeta, _numerical(f, beta))]


def _numerical(f, x):
    from support import numerical_gradient
    return numerical_gradient(f, x)


def _weighted(forward, dy):
    """The scalar sum(forward() * dy), whose gradient a backward pass computes from dy."""
    return lambda: float((forward() * dy).sum())


def conv_grad(args, kwargs):
    x, k, b = args
    y = ops.conv2d(x, k, b, **kwargs)
    dy = np.random.default_rng(5).standard_normal(y.shape)
    dx, dk, db = ops.conv2d_backward(dy, x, k, **kwargs)
    f = _weighted(lambda: ops.conv2d(x, k, b, **kwargs), dy)
    return [("dx", dx, _numerical(f, x)), ("dkernel", dk, _numerical(f, k)), ("dbias", db, _numerical(f, b))]


def pool_grad(forward, backward):
    def grad(args, kwargs):
        (x,) = args
        dy = np.random.default_rng(6).standard_normal(forward(x, **kwargs).shape)
        return [("dx", backward(dy, x, **kwargs), _numerical(_weighted(lambda: forward(x, **kwargs), dy), x))]
    return grad


def dense_grad(args, kwargs):
    x, k, b = args
    y = ops.dense(x, k, b, **kwargs)
    dy = np.random.default_rng(7).standard_normal(y.shape)
    dx, dk, db = ops.dense_backward(dy, x, k, activation=kwargs["activation"], output=y)
    f = _weighted(lambda: ops.dense(x, k, b, **kwargs), dy)
    return [("dx", dx, _numerical(f, x)), ("dkernel", dk, _numerical(f, k)), ("dbias", db, _numerical(f, b))]


def activation_grad(args, kwargs):
    x, name = args
    y = ops.activation(x, name)
    dy = np.random.default_rng(8).standard_normal(y.shape)
    analytic = ops.activation_backward(dy, y, name)
    return [("dx", analytic, _numerical(_weighted(lambda: ops.activation(x, name), dy), x))]


def ce_grad(args, kwargs):
    labels, outputs = args
    analytic = ops.sparse_categorical_crossentropy_backward(labels, outputs, **kwargs)
    mean = lambda: float(ops.sparse_categorical_crossentropy(labels, outputs, **kwargs).mean())  # noqa: E731
    return [("doutputs", analytic, _numerical(mean, outputs))]


X4 = np.zeros((1, 4, 4, 1), np.float32)

# -- recurrent cells and embeddings ------------------------------------------------------------

GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}
# (cell, steps, batch, units, activation, recurrent_activation, initial states, bias, mask,
#  recurrent dropout)
RECURRENT_CASES = [("lstm", 4, 3, 5, "tanh", "sigmoid", True, False, True, True),
                   ("simple_rnn", 3, 1, 4, "tanh", "sigmoid", False, False, False, False),
                   ("gru", 2, 2, 3, "tanh", "sigmoid", True, True, True, True),
                   ("lstm", 3, 2, 2, "relu", "tanh", False, False, False, False),
                   ("simple_rnn", 5, 3, 3, "relu", "sigmoid", True, False, True, True),
                   ("gru", 3, 2, 4, "linear", "sigmoid", False, False, False, False),
                   ("simple_rnn", 3, 2, 3, "tanh", "sigmoid", False, False, False, True),
                   ("lstm", 5, 40, 40, "tanh", "sigmoid", True, False, True, False),  # several threads
                   ("gru", 3, 40, 36, "tanh", "sigmoid", False, True, False, True),
                   ("lstm", 3, 37, 40, "tanh", "sigmoid", False, False, False, True)]


def recurrent_samples(rng, dtype, cases=RECURRENT_CASES):
    out = []
    for i, (cell, steps, batch, units, act, ract, states, bias, masked, dropout) in enumerate(cases):
        width = GATES[cell] * units
        kw = dict(activation=act, recurrent_activation=ract)
        if i % 2 == 0:
            kw["bias"] = normal(rng, width, dtype)
        if states:
            kw["h0"] = normal(rng, (batch, units), dtype)
            if cell == "lstm":
                kw["c0"] = normal(rng, (batch, units), dtype)
        if bias:
            kw["recurrent_bias"] = normal(rng, width, dtype)
        if masked:
            mask = rng.random((steps, batch)) < 0.7
            mask[0, 0] = False
            kw["mask"] = mask
        if dropout:  # Keras's masks: 0 or 1 / (1 - rate), rate 0.3
            kw["recurrent_dropout_mask"] = ((rng.random((batch, width)) >= 0.3) / 0.7).astype(dtype)
        u = (normal(rng, (units, width), dtype) / np.sqrt(units)).astype(dtype)
        out.append(((cell, normal(rng, (steps, batch, width), dtype), u), kw))
    return out


def recurrent_backward_samples(rng, dtype):
    out = []
    for (cell, xp, u), kw in recurrent_samples(rng, dtype):
        with fastdl.use_backend("reference"):
            h, c, gates = ops.recurrent(cell, xp, u, **kw)
        steps, batch, units = h.shape[0] - 1, h.shape[1], h.shape[2]
        back = {k: kw[k] for k in ("mask", "activation", "recurrent_activation", "recurrent_dropout_mask")
                if k in kw}
        if "h0" in kw:  # the last states' gradients too (return_state)
            back["dh_last"] = normal(rng, (batch, units), dtype)
            if cell == "lstm":
                back["dc_last"] = normal(rng, (batch, units), dtype)
        dh_seq = None if steps == 2 else normal(rng, (steps, batch, units), dtype)
        out.append(((cell, dh_seq, u, h, c, gates), back))
    return out


def torch_recurrent(torch, cell, xp, u, h0=None, c0=None, bias=None, recurrent_bias=None, mask=None,
                    activation="tanh", recurrent_activation="sigmoid", recurrent_dropout_mask=None):
    """torch's nn.RNN/LSTM/GRU fed xp through an identity input weight (Keras's gate order
    mapped to torch's: GRU's z, r, h are torch's r, z, n); torch has no recurrent dropout."""
    if mask is not None or recurrent_dropout_mask is not None or recurrent_activation != "sigmoid" or (
            activation not in ("tanh", "relu")) or (activation == "relu" and cell != "simple_rnn"):
        return None
    steps, batch, width = xp.shape
    units = u.shape[0]
    kind = {"simple_rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    extra = dict(nonlinearity=activation) if cell == "simple_rnn" else {}
    module = kind(width, units, **extra).double()
    perm = (lambda a: np.concatenate([a[..., units:2 * units], a[..., :units], a[..., 2 * units:]], axis=-1)) \
        if cell == "gru" else (lambda a: a)
    rbias = np.zeros(width) if recurrent_bias is None else recurrent_bias
    weights = dict(weight_ih_l0=perm(np.eye(width)).T, weight_hh_l0=perm(u).T,
                   bias_ih_l0=perm(np.zeros(width) if bias is None else bias),
                   bias_hh_l0=perm(rbias))
    module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v, np.float64)) for k, v in weights.items()})
    h0 = np.zeros((batch, units)) if h0 is None else h0
    state = torch.from_numpy(h0[None])
    if cell == "lstm":
        state = (state, torch.from_numpy((np.zeros((batch, units)) if c0 is None else c0)[None]))
    out, _ = module(torch.from_numpy(xp), state)
    return np.concatenate([h0[None], out.detach().numpy()])


def recurrent_grad(args, kwargs):
    """Every cell's backward (masks, initial states and the last states' gradients
    included) against differences of its forward."""
    rng = np.random.default_rng(11)
    checks = []
    for (cell, xp, u), kw in recurrent_samples(rng, np.float64, [c for c in RECURRENT_CASES[:7] if c[4] != "relu"]):
        h, c, gates = ops.recurrent(cell, xp, u, **kw)
        dy = rng.standard_normal(h[1:].shape)
        dh_last = rng.standard_normal(h[0].shape)
        dc_last = rng.standard_normal(h[0].shape) if cell == "lstm" else None

        def f():
            hh, cc, _ = ops.recurrent(cell, xp, u, **kw)
            total = (hh[1:] * dy).sum() + (hh[-1] * dh_last).sum()
            return float(total + ((cc[-1] * dc_last).sum() if cell == "lstm" else 0))
        dxp, du, drb, dh0, dc0 = ops.recurrent_backward(
            cell, dy, u, h, c, gates, mask=kw.get("mask"), activation=kw["activation"],
            recurrent_activation=kw["recurrent_activation"], dh_last=dh_last, dc_last=dc_last,
            recurrent_dropout_mask=kw.get("recurrent_dropout_mask"))
        checks += [(f"{cell} dxp", dxp, _numerical(f, xp)), (f"{cell} du", du, _numerical(f, u))]
        if "h0" in kw:
            checks.append((f"{cell} dh0", dh0, _numerical(f, kw["h0"])))
        if "c0" in kw:
            checks.append((f"{cell} dc0", dc0, _numerical(f, kw["c0"])))
        if "recurrent_bias" in kw:
            checks.append((f"{cell} drecurrent_bias", drb, _numerical(f, kw["recurrent_bias"])))
        if "bias" in kw:  # the input bias's gradient: dxp summed over steps and samples
            checks.append((f"{cell} dbias", dxp.sum(axis=(0, 1)), _numerical(f, kw["bias"])))
    return checks


def embedding_samples(rng, dtype):
    return [((rng.integers(0, 7, (3, 5)), normal(rng, (7, 4), dtype)), {}),
            ((np.array([2]), normal(rng, (3, 1), dtype)), {}),
            ((rng.integers(0, 50, 300).astype(np.int32), normal(rng, (50, 33), dtype)), {})]


def embedding_backward_samples(rng, dtype):
    # repeated indices: their rows must add up
    return [((indices, normal(rng, np.shape(indices) + (table.shape[1],), dtype), table.shape[0]), {})
            for (indices, table), _ in embedding_samples(rng, dtype)]


def torch_embedding_backward(torch, indices, dy, input_dim):
    table = torch.zeros((input_dim, dy.shape[-1]), dtype=torch.float64, requires_grad=True)
    torch.nn.functional.embedding(torch.from_numpy(np.asarray(indices, np.int64)), table).backward(torch.from_numpy(dy))
    return table.grad.numpy()


def embedding_grad(args, kwargs):
    indices, table = args
    dy = np.random.default_rng(12).standard_normal(np.shape(indices) + (table.shape[1],))
    f = _weighted(lambda: ops.embedding(indices, table), dy)
    return [("dtable", ops.embedding_backward(indices, dy, table.shape[0]), _numerical(f, table))]


# -- depthwise convolution -----------------------------------------------------------------------

DEPTHWISE_GEOMETRIES = [dict(x=(1, 7, 5, 3), k=(3, 2, 3, 1), strides=1, padding="valid"),
                        dict(x=(2, 9, 8, 2), k=(3, 3, 2, 2), strides=2, padding="same"),
                        dict(x=(3, 4, 6, 1), k=(1, 1, 1, 3), strides=1, padding=((0, 2), (1, 0))),
                        dict(x=(2, 10, 10, 16), k=(3, 3, 16, 1), strides=1, padding="same"),
                        dict(x=(2, 6, 5, 2), k=(3, 2, 2, 2), strides=(2, 1), padding=((1, 0), (2, 1)),
                             dilation_rate=(1, 2), activation="relu")]


def depthwise_samples(rng, dtype):
    return [((normal(rng, g["x"], dtype), normal(rng, g["k"], dtype), normal(rng, g["k"][2] * g["k"][3], dtype)),
             {key: value for key, value in g.items() if key not in ("x", "k")}) for g in DEPTHWISE_GEOMETRIES]


def depthwise_backward_samples(rng, dtype):
    out = []
    for (x, k, _), kw in depthwise_samples(rng, dtype):
        kw.pop("activation", None)
        y = ops.depthwise_conv2d(np.zeros(x.shape, dtype), k, **kw)
        out.append(((normal(rng, y.shape, dtype), x, k), kw))
    return out


def torch_depthwise(torch, x, k, b, strides, padding, dilation_rate=1, activation=None):
    if not isinstance(padding, str) or dilation_rate != 1 or activation or (padding == "same" and strides != 1):
        return None
    c, m = k.shape[2], k.shape[3]
    weight = torch.from_numpy(np.ascontiguousarray(k.transpose(2, 3, 0, 1).reshape(c * m, 1, *k.shape[:2])))
    t = torch.nn.functional.conv2d(_nchw(torch, x), weight, torch.from_numpy(b), stride=strides, padding=padding,
                                   groups=c)
    return _nhwc(t)


def depthwise_grad(args, kwargs):
    x, k, b = args
    kwargs = {key: value for key, value in kwargs.items() if key != "activation"}
    y = ops.depthwise_conv2d(x, k, b, **kwargs)
    dy = np.random.default_rng(15).standard_normal(y.shape)
    dx, dk, db = ops.depthwise_conv2d_backward(dy, x, k, **kwargs)
    f = _weighted(lambda: ops.depthwise_conv2d(x, k, b, **kwargs), dy)
    return [("dx", dx, _numerical(f, x)), ("dkernel", dk, _numerical(f, k)), ("dbias", db, _numerical(f, b))]


# -- transposed convolution ----------------------------------------------------------------

# kernels (KH, KW, filters, in_channels): k < s (rows with the bias alone), k == s, output
# padding, 'same' with odd and even kernels, dilation, Winograd's 3x3 stride 1 for dx
TRANSPOSE_GEOMETRIES = [dict(x=(2, 5, 4, 3), k=(3, 3, 4, 3)),
                        dict(x=(1, 4, 5, 2), k=(3, 2, 3, 2), strides=2, padding="same"),
                        dict(x=(2, 3, 3, 3), k=(2, 2, 2, 3), strides=2),
                        dict(x=(2, 3, 4, 2), k=(1, 1, 3, 2), strides=(2, 3)),
                        dict(x=(1, 4, 3, 2), k=(3, 3, 2, 2), strides=2, output_padding=1),
                        dict(x=(2, 3, 3, 1), k=(4, 3, 2, 1), strides=(2, 1), padding="same", output_padding=(1, 0)),
                        dict(x=(1, 5, 4, 2), k=(3, 3, 2, 2), padding="same", dilation_rate=2),
                        dict(x=(3, 6, 6, 8), k=(3, 3, 8, 8), padding="same"),
                        dict(x=(4, 8, 8, 16), k=(4, 4, 8, 16), strides=2, padding="same")]


def transpose_samples(rng, dtype):
    return [((normal(rng, g["x"], dtype), normal(rng, g["k"], dtype), normal(rng, g["k"][2], dtype)),
             {key: value for key, value in g.items() if key not in ("x", "k")}) for g in TRANSPOSE_GEOMETRIES]


def transpose_backward_samples(rng, dtype):
    out = []
    for (x, k, _), kw in transpose_samples(rng, dtype):
        y = ops.conv2d_transpose(x, k, **kw)
        out.append(((normal(rng, y.shape, dtype), x, k), kw))
    return out


def torch_transpose(torch, x, k, b, strides=1, padding="valid", output_padding=None, dilation_rate=1):
    """torch's conv_transpose2d with the same top padding on both sides and the output
    padding that gives Keras's size (None where torch cannot have it)."""
    from fastdl.ops.conv import _transpose_axis

    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
    s, d = pair(strides), pair(dilation_rate)
    extra = (None, None) if output_padding is None else pair(output_padding)
    pads, extras = [], []
    for i in range(2):
        top, _, out = _transpose_axis(x.shape[1 + i], k.shape[i], s[i], d[i], padding, extra[i])
        more = out - ((x.shape[1 + i] - 1) * s[i] - 2 * top + (k.shape[i] - 1) * d[i] + 1)
        if not 0 <= more < max(s[i], d[i]):
            return None
        pads.append(top)
        extras.append(more)
    weight = torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))
    t = torch.nn.functional.conv_transpose2d(_nchw(torch, x), weight, torch.from_numpy(b), stride=s, padding=pads,
                                             output_padding=extras, dilation=d)
    return _nhwc(t)


def transpose_grad(args, kwargs):
    x, k, b = args
    y = ops.conv2d_transpose(x, k, b, **kwargs)
    dy = np.random.default_rng(16).standard_normal(y.shape)
    dx, dk, db = ops.conv2d_transpose_backward(dy, x, k, **kwargs)
    f = _weighted(lambda: ops.conv2d_transpose(x, k, b, **kwargs), dy)
    return [("dx", dx, _numerical(f, x)), ("dkernel", dk, _numerical(f, k)), ("dbias", db, _numerical(f, b))]


# -- layer normalization ---------------------------------------------------------------------

LN_SHAPES = [(4, 7), (1, 5), (2, 3, 6), (3, 1), (2, 2, 3, 33), (200, 40)]


def ln_samples(rng, dtype):
    out = []
    for i, shape in enumerate(LN_SHAPES):
        c = shape[-1]
        affine = (normal(rng, c, dtype), normal(rng, c, dtype)) if i % 2 == 0 else (None, None)
        x = (normal(rng, shape, np.float64) * 2 + (5.0 if i == 2 else 0.0)).astype(dtype)
        out.append(((x,) + affine, dict(epsilon=1e-3 if i < 3 else 1e-5)))
    return out


def ln_call(x, gamma, beta, epsilon):
    return ops.layer_norm(x, gamma, beta, epsilon, return_statistics=True)


def ln_backward_samples(rng, dtype):
    out = []
    for (x, gamma, _), kw in ln_samples(rng, dtype):
        with fastdl.use_backend("reference"):
            _, mean, rstd = ops.layer_norm(x, gamma, None, kw["epsilon"], return_statistics=True)
        out.append(((normal(rng, x.shape, dtype), x, mean, rstd, gamma), {}))
    return out


def torch_ln(torch, x, gamma, beta, epsilon):
    t = lambda a: None if a is None else torch.from_numpy(a)  # noqa: E731
    return torch.nn.functional.layer_norm(torch.from_numpy(x), x.shape[-1:], t(gamma), t(beta), epsilon).numpy()


def torch_ln_backward(torch, dy, x, mean, rstd, gamma):
    """dx through torch's layer_norm, its epsilon recovered from the statistics."""
    var = (x - mean[..., None]) ** 2
    epsilon = float(np.mean(1 / rstd ** 2 - var.mean(axis=-1)))
    tx = torch.from_numpy(x).requires_grad_()
    weight = None if gamma is None else torch.from_numpy(gamma)
    torch.nn.functional.layer_norm(tx, x.shape[-1:], weight, None, epsilon).backward(torch.from_numpy(dy))
    return tx.grad.numpy()


def ln_grad(args, kwargs):
    x, gamma, beta = args
    dy = np.random.default_rng(14).standard_normal(x.shape)
    _, mean, rstd = ops.layer_norm(x, gamma, beta, return_statistics=True, **kwargs)
    dx, dgamma, dbeta = ops.layer_norm_backward(dy, x, mean, rstd, gamma)
    f = _weighted(lambda: ops.layer_norm(x, gamma, beta, **kwargs), dy)
    return [("dx", dx, _numerical(f, x)), ("dgamma", dgamma, _numerical(f, gamma)),
            ("dbeta", dbeta, _numerical(f, beta))]


# -- resampling ----------------------------------------------------------------------------------

PADDINGS = [(((1, 0), (2, 3)), (1, 5, 4, 3)), (1, (2, 3, 3, 2)), ((2, 0), (3, 4, 5, 1)),
            (((0, 0), (0, 1)), (2, 1, 1, 4)), (((2, 1), (1, 2)), (2, 9, 8, 16))]


def pad_samples(rng, dtype):
    return [((normal(rng, shape, dtype), padding), {}) for padding, shape in PADDINGS]


def crop_samples(rng, dtype):
    # each padding as a cropping of an image padded by it: what pad2d's backward receives
    return [((normal(rng, ops.pad2d(np.zeros(shape), padding).shape, dtype), padding), {})
            for padding, shape in PADDINGS]


def torch_pad(torch, x, padding):
    top, bottom, left, right = ops.resample._margins("padding", padding)
    t = torch.nn.functional.pad(_nchw(torch, x), (left, right, top, bottom))
    return _nhwc(t)


def resample_grad(forward, backward):
    def grad(args, kwargs):
        x, size = args
        y = forward(x, size)
        dy = np.random.default_rng(13).standard_normal(y.shape)
        return [("dx", backward(dy, size), _numerical(_weighted(lambda: forward(x, size), dy), x))]
    return grad


UPSAMPLES = [(2, (1, 3, 2, 3)), ((2, 3), (2, 4, 3, 1)), ((1, 2), (3, 2, 5, 2)), ((3, 1), (1, 5, 7, 16))]


def upsample_samples(rng, dtype):
    return [((normal(rng, shape, dtype), size), {}) for size, shape in UPSAMPLES]


def upsample_backward_samples(rng, dtype):
    return [((normal(rng, ops.upsample2d(np.zeros(shape), size).shape, dtype), size), {}) for size, shape in UPSAMPLES]


def torch_upsample(torch, x, size):
    sh, sw = (size, size) if isinstance(size, int) else size
    return _nhwc(torch.nn.functional.interpolate(_nchw(torch, x), scale_factor=(sh, sw), mode="nearest"))


TABLE = [
    OpInfo("conv2d", conv_samples, torch=torch_conv, scale=6, grad=conv_grad,
           invalid=((lambda: ops.conv2d(X4, np.zeros((2, 2, 3, 1), np.float32)), ValueError, "kernel"),
                    (lambda: ops.conv2d(X4, np.zeros((2, 2, 1, 1), np.float32), strides=0), ValueError,
                     "strides must be >= 1"))),
    OpInfo("conv2d_backward", conv_backward_samples, scale=30,
           invalid=((lambda: ops.conv2d_backward(np.zeros((1, 2, 2, 1), np.float32), X4,
                                                 np.zeros((2, 2, 1, 1), np.float32)), ValueError, "dy"),)),
    OpInfo("conv2d_max_pool", lambda rng, dtype: [((x, k, b), dict(kw, activation="relu", pool_size=2))
                                                  for (x, k, b), kw in conv_samples(rng, dtype)[1:2]
                                                  + conv_samples(rng, dtype)[3:4]], scale=6),
    OpInfo("max_pool2d", max_pool_samples, call=max_pool_call, torch=torch_max_pool,
           grad=pool_grad(ops.max_pool2d, ops.max_pool2d_backward),
           invalid=((lambda: ops.max_pool2d(X4, 5), ValueError, "larger than the padded input"),)),
    OpInfo("max_pool2d_backward", max_pool_backward_samples),
    OpInfo("avg_pool2d", pool_samples, grad=pool_grad(ops.avg_pool2d, ops.avg_pool2d_backward)),
    OpInfo("avg_pool2d_backward", pool_backward_samples(ops.avg_pool2d)),
    OpInfo("matmul", matmul_samples, torch=lambda torch, a, b: (torch.from_numpy(a) @ torch.from_numpy(b)).numpy(),
           scale=4, invalid=((lambda: ops.matmul(np.ones((2, 3)), np.ones((2, 3))), ValueError, "b"),)),
    OpInfo("activation", activation_samples, grad=activation_grad,
           invalid=((lambda: ops.activation(X4, "gelu"), ValueError, "activation must be one of"),)),
    OpInfo("activation_backward", activation_backward_samples),
    OpInfo("dense", dense_samples, scale=3, grad=dense_grad),
    OpInfo("dense_backward", dense_backward_samples, scale=3),
    OpInfo("add", binary_samples, torch=lambda torch, a, b: (torch.from_numpy(a) + torch.from_numpy(b)).numpy(),
           invalid=((lambda: ops.add(np.ones(3), np.ones(4)), ValueError, "b must have shape"),)),
    OpInfo("multiply", binary_samples, torch=lambda torch, a, b: (torch.from_numpy(a) * torch.from_numpy(b)).numpy(),
           invalid=((lambda: ops.multiply(np.ones(3), np.ones(3, np.float32)), TypeError, "share one dtype"),)),
    OpInfo("relu", unary_samples, torch=lambda torch, x: torch.relu(torch.from_numpy(x)).numpy(),
           invalid=((lambda: ops.relu(np.ones(3, np.int32)), TypeError, "float32 or float64"),)),
    OpInfo("relu_backward", binary_samples),
    OpInfo("softmax", unary_samples, torch=lambda torch, x: torch.softmax(torch.from_numpy(x), -1).numpy()),
    OpInfo("sparse_categorical_crossentropy", ce_samples, grad=ce_grad,
           invalid=((lambda: ops.sparse_categorical_crossentropy([0, 5], np.zeros((2, 3))), ValueError, "got 5"),)),
    OpInfo("sparse_categorical_crossentropy_backward", ce_samples),
    OpInfo("loss", loss_samples, torch=torch_loss, scale=3, grad=loss_grad,
           invalid=((lambda: ops.loss("mse", np.zeros(2), np.zeros(2)), ValueError, "name must be one of"),
                    (lambda: ops.loss("huber", np.zeros(3), np.zeros(2)), ValueError, r"y_true must have the shape"),
                    (lambda: ops.loss("huber", np.zeros(2), np.zeros(2), delta=0), ValueError, "delta"),
                    (lambda: ops.loss("poisson", np.zeros(2), np.zeros(2, int)), TypeError, "y_pred"),
                    (lambda: ops.loss("poisson", ["a"], np.zeros(1)), TypeError, "y_true"))),
    OpInfo("loss_backward", loss_backward_samples, scale=3,
           invalid=((lambda: ops.loss_backward("hinge", np.zeros(2), np.zeros(2), np.ones(3)), ValueError, "dloss"),
                    (lambda: ops.loss_backward("hinge", np.zeros(2), np.zeros(2), np.ones(2, np.float32)),
                     TypeError, "dtype"))),
    OpInfo("sgd_update", optimizer_samples(lambda p: ((), dict(velocity=np.full_like(p, 0.2))),
                                           dict(lr=0.1), dict(lr=0.1, momentum=0.9, velocity=None, step=2),
                                           dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01,
                                                velocity=None)),
           call=updated(ops.sgd_update),
           invalid=((lambda: ops.sgd_update(np.ones(3), np.ones(3), lr=-1), ValueError, "lr"),)),
    OpInfo("adagrad_update", optimizer_samples(lambda p: ((np.full_like(p, 0.1),), {}), dict(lr=0.1, step=3),
                                              dict(lr=0.1, step=1, convention="keras")),
           call=updated(ops.adagrad_update)),
    OpInfo("rmsprop_update", optimizer_samples(
        lambda p: ((np.full_like(p, 0.3),), dict(grad_avg=np.full_like(p, 0.1), momentum_buffer=np.full_like(p, 0.2))),
        dict(lr=0.01), dict(lr=0.01, centered=True, grad_avg=None, momentum=0.5, momentum_buffer=None),
        dict(lr=0.01, convention="keras")),
        call=updated(ops.rmsprop_update)),
    OpInfo("adam_update", optimizer_samples(
        lambda p: ((np.full_like(p, 0.1), np.full_like(p, 0.2)), dict(v_max=np.full_like(p, 0.3))),
        dict(step=1, lr=0.01), dict(step=3, lr=0.01, amsgrad=True, v_max=None, weight_decay=0.01),
        dict(step=2, lr=0.01, convention="keras"),
        dict(step=2, lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
        call=updated(ops.adam_update)),
    OpInfo("batch_norm_stats", bn_stats_samples, torch=torch_bn_stats,
           invalid=((lambda: ops.batch_norm_stats(np.ones(4, np.float32)), ValueError, "at least 2-D"),
                    (lambda: ops.batch_norm_stats(np.ones((3, 0))), ValueError, "x must not be empty"))),
    OpInfo("batch_norm", bn_samples, torch=torch_bn, grad=bn_grad,
           invalid=((lambda: ops.batch_norm(np.ones((2, 3)), np.zeros(3), -np.ones(3)), ValueError, "var must be >= 0"),
                    (lambda: ops.batch_norm(np.ones((2, 3)), np.zeros(3), np.ones(3), np.ones(2)), ValueError,
                     "gamma must have shape"),
                    (lambda: ops.batch_norm(np.ones((2, 3)), np.zeros(3), np.ones(3), epsilon=0), ValueError,
                     "epsilon"),
                    (lambda: ops.batch_norm(np.ones((2, 3)), np.zeros(3, np.float32), np.ones(3)), TypeError,
                     "share one dtype"))),
    OpInfo("batch_norm_backward", bn_backward_samples, torch=torch_bn_backward, scale=3,
           invalid=((lambda: ops.batch_norm_backward(np.ones((2, 2)), np.ones((2, 3)), np.zeros(3), np.ones(3)),
                     ValueError, "dy must have shape"),)),
    OpInfo("affine_transform_batch", affine_samples,
           invalid=((lambda: ops.affine_transform_batch(np.zeros((1, 4, 4, 1), np.uint8), [1], np.zeros((1, 2, 3))),
                     ValueError, "indices must be in"),)),
    OpInfo("recurrent", recurrent_samples, torch=torch_recurrent, grad=recurrent_grad, scale=3,
           invalid=((lambda: ops.recurrent("rnn", np.ones((2, 1, 4)), np.ones((4, 4))), ValueError, "cell must be"),
                    (lambda: ops.recurrent("lstm", np.ones((2, 1, 4)), np.ones((4, 4))), ValueError,
                     r"recurrent_kernel must have shape \(units, 4 \* units\)"),
                    (lambda: ops.recurrent("lstm", np.ones((2, 1, 8)), np.ones((1, 4))), ValueError, "xp's last axis"),
                    (lambda: ops.recurrent("gru", np.ones((2, 1, 3)), np.ones((1, 3)), h0=np.ones((2, 1))),
                     ValueError, r"h0 must have shape \(1, 1\)"),
                    (lambda: ops.recurrent("gru", np.ones((2, 1, 3)), np.ones((1, 3)), c0=np.ones((1, 1))),
                     ValueError, "c0 is LSTM's"),
                    (lambda: ops.recurrent("lstm", np.ones((2, 1, 4)), np.ones((1, 4)), mask=np.ones((1, 2))),
                     ValueError, r"mask must have shape \(steps, batch\)"),
                    (lambda: ops.recurrent("lstm", np.ones((2, 1, 4)), np.ones((1, 4), np.float32)), TypeError,
                     "recurrent_kernel must have dtype float64"),
                    (lambda: ops.recurrent("lstm", np.ones((2, 1, 4)), np.ones((1, 4)), activation="softmax"),
                     ValueError, "activation must be one of"),
                    (lambda: ops.recurrent("lstm", np.ones((2, 1, 4)), np.ones((1, 4)), recurrent_bias=np.ones(4)),
                     ValueError, "GRU's alone"),
                    (lambda: ops.recurrent("lstm", np.ones((2, 1, 4), int), np.ones((1, 4))), TypeError, "xp"),
                    (lambda: ops.recurrent("gru", np.ones((2, 2, 3)), np.ones((1, 3)),
                                           recurrent_dropout_mask=np.ones((2, 1))), ValueError,
                     r"recurrent_dropout_mask must have shape \(2, 3\)"),
                    (lambda: ops.recurrent("gru", np.ones((2, 2, 3)), np.ones((1, 3)),
                                           recurrent_dropout_mask=np.ones((2, 3), np.float32)), TypeError,
                     "recurrent_dropout_mask must have dtype float64"))),
    OpInfo("recurrent_backward", recurrent_backward_samples, scale=3,
           invalid=((lambda: ops.recurrent_backward("lstm", None, np.ones((1, 4)), np.ones((3, 1, 1)), None,
                                                    np.ones((2, 1, 4))), ValueError, "c is needed"),
                    (lambda: ops.recurrent_backward("gru", np.ones((3, 1, 1)), np.ones((1, 3)), np.ones((3, 1, 1)),
                                                    None, np.ones((2, 1, 4))), ValueError, "dh_seq must have shape"),
                    (lambda: ops.recurrent_backward("gru", None, np.ones((1, 3)), np.ones((3, 1, 1)), None,
                                                    np.ones((2, 1, 3))), ValueError, "gates must have shape"))),
    OpInfo("embedding", embedding_samples, grad=embedding_grad,
           torch=lambda torch, i, t: torch.nn.functional.embedding(torch.from_numpy(np.asarray(i, np.int64)),
                                                                   torch.from_numpy(t)).numpy(),
           invalid=((lambda: ops.embedding([0, 3], np.ones((3, 2))), ValueError, r"indices must be in \[0, 3\)"),
                    (lambda: ops.embedding([-1], np.ones((3, 2))), ValueError, "got -1"),
                    (lambda: ops.embedding([0.5], np.ones((3, 2))), ValueError, "whole numbers"),
                    (lambda: ops.embedding(["a"], np.ones((3, 2))), TypeError, "indices must be integers"),
                    (lambda: ops.embedding([0], np.ones(3)), ValueError, "table must be 2-D"))),
    OpInfo("embedding_backward", embedding_backward_samples, torch=torch_embedding_backward,
           invalid=((lambda: ops.embedding_backward([0, 1], np.ones((3, 2)), 2), ValueError, "dy must have shape"),
                    (lambda: ops.embedding_backward([0, 2], np.ones((2, 2)), 2), ValueError, "indices must be in"),
                    (lambda: ops.embedding_backward([0], np.ones((1, 2)), 0), ValueError, "input_dim"))),
    OpInfo("depthwise_conv2d", depthwise_samples, torch=torch_depthwise, grad=depthwise_grad, scale=3,
           invalid=((lambda: ops.depthwise_conv2d(X4, np.ones((2, 2, 2, 1), np.float32)), ValueError,
                     "kernel channels"),
                    (lambda: ops.depthwise_conv2d(X4, np.ones((2, 2, 1, 2), np.float32), np.ones(3, np.float32)),
                     ValueError, "bias must have shape"),
                    (lambda: ops.depthwise_conv2d(X4, np.ones((5, 2, 1, 1), np.float32)), ValueError,
                     "larger than"))),
    OpInfo("depthwise_conv2d_backward", depthwise_backward_samples, scale=3,
           invalid=((lambda: ops.depthwise_conv2d_backward(np.ones((1, 3, 3, 1), np.float32), X4,
                                                           np.ones((2, 2, 1, 2), np.float32)), ValueError, "dy"),)),
    OpInfo("conv2d_transpose", transpose_samples, torch=torch_transpose, grad=transpose_grad, scale=6,
           invalid=((lambda: ops.conv2d_transpose(X4, np.ones((2, 2, 3, 2), np.float32)), ValueError,
                     "kernel in_channels"),
                    (lambda: ops.conv2d_transpose(X4, np.ones((2, 2, 3, 1), np.float32), strides=2,
                                                  output_padding=2), ValueError, "output_padding must be smaller"),
                    (lambda: ops.conv2d_transpose(X4, np.ones((2, 2, 3, 1), np.float32), padding=((1, 1), (0, 0))),
                     ValueError, "padding must be 'valid', 'same'"),
                    (lambda: ops.conv2d_transpose(X4, np.ones((2, 2, 3, 1), np.float32), np.ones(2, np.float32)),
                     ValueError, "bias must have shape"),
                    (lambda: ops.conv2d_transpose(X4, np.ones((2, 2, 3, 1))), TypeError, "dtype"))),
    OpInfo("conv2d_transpose_backward", transpose_backward_samples, scale=30,
           invalid=((lambda: ops.conv2d_transpose_backward(np.ones((1, 4, 4, 3), np.float32), X4,
                                                           np.ones((2, 2, 3, 1), np.float32)), ValueError,
                     "dy must have shape"),)),
    OpInfo("layer_norm", ln_samples, call=ln_call, torch=torch_ln, grad=ln_grad, scale=3,
           invalid=((lambda: ops.layer_norm(np.ones(3)), ValueError, "at least 2-D"),
                    (lambda: ops.layer_norm(np.ones((2, 3)), np.ones(2)), ValueError, "gamma must have shape"),
                    (lambda: ops.layer_norm(np.ones((2, 3)), epsilon=-1), ValueError, "epsilon"),
                    (lambda: ops.layer_norm(np.ones((2, 3)), beta=np.ones(3, np.float32)), TypeError,
                     "share one dtype"))),
    OpInfo("layer_norm_backward", ln_backward_samples, torch=torch_ln_backward, scale=3,
           invalid=((lambda: ops.layer_norm_backward(np.ones((2, 3)), np.ones((2, 3)), np.zeros(3), np.ones(2)),
                     ValueError, "mean must have shape"),
                    (lambda: ops.layer_norm_backward(np.ones((2, 3)), np.ones((2, 3)), np.zeros(2), np.zeros(2)),
                     ValueError, "rstd must be > 0"))),
    OpInfo("pad2d", pad_samples, torch=torch_pad, grad=resample_grad(ops.pad2d, ops.crop2d),
           invalid=((lambda: ops.pad2d(X4, -1), ValueError, "padding must be >= 0"),
                    (lambda: ops.pad2d(X4, (1, 2, 3)), TypeError, "padding must be an int"),
                    (lambda: ops.pad2d(X4, 1.5), TypeError, "padding must be"),
                    (lambda: ops.pad2d(np.ones((2, 3)), 1), ValueError, "x must be 4-D"))),
    OpInfo("crop2d", crop_samples, grad=resample_grad(ops.crop2d, ops.pad2d),
           invalid=((lambda: ops.crop2d(np.ones((1, 4, 4, 1)), ((2, 2), (0, 0))), ValueError, "leaves nothing"),
                    (lambda: ops.crop2d(np.ones((1, 4, 4, 1)), (True, 1)), TypeError, "cropping must be"))),
    OpInfo("upsample2d", upsample_samples, torch=torch_upsample, grad=resample_grad(ops.upsample2d,
                                                                                   ops.upsample2d_backward),
           invalid=((lambda: ops.upsample2d(X4, 0), ValueError, "size must be >= 1"),
                    (lambda: ops.upsample2d(X4, (2, 2, 2)), TypeError, "size must be an int or a pair"))),
    OpInfo("upsample2d_backward", upsample_backward_samples,
           invalid=((lambda: ops.upsample2d_backward(np.ones((1, 5, 4, 1)), 2), ValueError, "multiples of size"),)),
]
BY_NAME = {info.name: info for info in TABLE}
