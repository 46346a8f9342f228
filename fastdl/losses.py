"""Losses for compile(loss=...), as Keras 3 names them: classes (MeanSquaredError(),
Huber(delta=2.0), ...), per-sample functions (mean_squared_error(y_true, y_pred) -> (N,)),
and the strings get() accepts ('mse', 'binary_crossentropy', 'Huber', ...).

A model asks its loss for per_sample(y_true, outputs, from_logits) and for
gradient(y_true, outputs, from_logits), the gradient of the batch mean with respect to
the outputs; both run the compiled kernels of fastdl.ops. `fuses_softmax` marks the
losses that take probabilities from a softmax: a model ending in softmax trains those on
its logits (exact and stable) and still predicts probabilities.
"""
import numpy as np

from fastdl import _device, ops
from fastdl.ops import _checks


class Loss:
    """Mean of the per-sample losses over the batch (Keras's 'sum_over_batch_size')."""

    name = "loss"
    fuses_softmax = False

    def __init__(self, from_logits=False, name=None, reduction="sum_over_batch_size"):
        if reduction != "sum_over_batch_size":
            raise ValueError(f"reduction must be 'sum_over_batch_size' (the mean over the batch, "
                             f"Keras's default); got {reduction!r}")
        self.from_logits = bool(from_logits)
        if name is not None:
            self.name = name

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The mean loss over the batch, as a float."""
        values = _device.to_host(self.per_sample(y_true, y_pred, self.from_logits))
        if sample_weight is None:
            return float(values.mean())
        weights = np.broadcast_to(np.asarray(sample_weight, np.float64).reshape(-1), values.shape)
        return float((values * weights).sum() / len(values))

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class SparseCategoricalCrossentropy(Loss):
    """-log p[label], labels (N,) or (N, 1) integers."""

    name = "sparse_categorical_crossentropy"
    fuses_softmax = True

    @staticmethod
    def per_sample(y_true, outputs, from_logits):
        return ops.sparse_categorical_crossentropy(y_true, outputs, from_logits)

    @staticmethod
    def gradient(y_true, outputs, from_logits):
        return ops.sparse_categorical_crossentropy_backward(y_true, outputs, from_logits)


class CategoricalCrossentropy(Loss):
    """-sum(y * log p), y (N, K) one-hot or soft labels, smoothed towards 1/K by
    label_smoothing. Computed with NumPy: on the GPU the outputs come to the host and the
    gradient goes back (N x K values each way)."""

    name = "categorical_crossentropy"
    fuses_softmax = True

    def __init__(self, from_logits=False, label_smoothing=0.0, name=None, reduction="sum_over_batch_size"):
        super().__init__(from_logits, name, reduction)
        self.label_smoothing = _checks.finite_number("label_smoothing", label_smoothing, 0, 1)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}

    def _check(self, y_true, outputs):
        y_true = np.asarray(y_true, outputs.dtype)
        if y_true.shape != outputs.shape:
            raise ValueError(f"categorical labels must have the outputs' shape {outputs.shape}; "
                             f"got {y_true.shape} (use sparse_categorical_crossentropy for class indices)")
        if self.label_smoothing:
            y_true = y_true * (1 - self.label_smoothing) + self.label_smoothing / outputs.shape[-1]
        return y_true

    def per_sample(self, y_true, outputs, from_logits):
        outputs = _device.to_host(outputs)
        y_true = self._check(y_true, outputs)
        if from_logits:
            top = outputs.max(axis=1, keepdims=True)
            log_p = outputs - top - np.log(np.exp(outputs - top).sum(axis=1, keepdims=True))
        else:
            p = outputs / outputs.sum(axis=1, keepdims=True)
            log_p = np.log(np.clip(p, ops.losses.EPSILON, 1 - ops.losses.EPSILON))
        return -(y_true * log_p).sum(axis=1)

    def gradient(self, y_true, outputs, from_logits):
        if _device.is_device(outputs):
            return _device.to_device(self.gradient(y_true, _device.to_host(outputs), from_logits))
        y_true = self._check(y_true, outputs)
        n = outputs.shape[0]
        if from_logits:
            return ((ops.softmax(outputs) * y_true.sum(axis=1, keepdims=True) - y_true) / n).astype(outputs.dtype)
        total = outputs.sum(axis=1, keepdims=True)
        p = outputs / total
        inside = (p >= ops.losses.EPSILON) & (p <= 1 - ops.losses.EPSILON)
        # L = -sum_k y_k log(o_k / s) over unclipped k: dL/do_j = -y_j / o_j [j unclipped]
        # + (sum of y_k over unclipped k) / s
        kept = np.where(inside, y_true, 0)
        grad = -kept / np.where(inside, outputs, 1) + kept.sum(axis=1, keepdims=True) / total
        return (grad / n).astype(outputs.dtype)


class _OpLoss(Loss):
    """A loss of ops.loss (its formula in ops.losses.LOSS_FORMULAS), on every backend."""

    kind = None  # the ops.loss name

    def __init__(self, name=None, reduction="sum_over_batch_size"):
        super().__init__(False, name, reduction)

    def _kind(self, from_logits):
        return self.kind

    def _targets(self, y_true, outputs):
        return y_true

    def per_sample(self, y_true, outputs, from_logits):
        return ops.loss(self._kind(from_logits), self._targets(y_true, outputs), outputs, **self._extra())

    def gradient(self, y_true, outputs, from_logits):
        return ops.loss_backward(self._kind(from_logits), self._targets(y_true, outputs), outputs,
                                 **self._extra())

    def _extra(self):
        return {}

    def get_config(self):
        return {"name": self.name}


def _op_loss(class_name, kind, doc):
    return type(class_name, (_OpLoss,), {"name": kind, "kind": kind, "__doc__": doc})


MeanSquaredError = _op_loss("MeanSquaredError", "mean_squared_error", "mean((y_pred - y_true)^2)")
MeanAbsoluteError = _op_loss("MeanAbsoluteError", "mean_absolute_error", "mean(|y_pred - y_true|)")
MeanAbsolutePercentageError = _op_loss("MeanAbsolutePercentageError", "mean_absolute_percentage_error",
                                       "100 mean(|y_true - y_pred| / max(|y_true|, 1e-7))")
MeanSquaredLogarithmicError = _op_loss("MeanSquaredLogarithmicError", "mean_squared_logarithmic_error",
                                       "mean((log(y_pred + 1) - log(y_true + 1))^2), both clipped at 1e-7")
LogCosh = _op_loss("LogCosh", "log_cosh", "mean(log(cosh(y_pred - y_true)))")
Poisson = _op_loss("Poisson", "poisson", "mean(y_pred - y_true log(y_pred + 1e-7))")
Hinge = _op_loss("Hinge", "hinge", "mean(max(1 - y_true y_pred, 0)), labels -1/1 (0/1 are converted)")
SquaredHinge = _op_loss("SquaredHinge", "squared_hinge", "mean(max(1 - y_true y_pred, 0)^2), labels -1/1 or 0/1")
KLDivergence = _op_loss("KLDivergence", "kl_divergence",
                        "sum(y_true log(y_true / y_pred)) over the last axis, both clipped to [1e-7, 1]")
CategoricalHinge = _op_loss("CategoricalHinge", "categorical_hinge",
                            "max(max((1 - y_true) y_pred) - sum(y_true y_pred) + 1, 0) per row")


class Huber(_OpLoss):
    """mean(e^2 / 2) where |e| <= delta, delta (|e| - delta / 2) beyond (e = y_pred - y_true)."""

    name = kind = "huber"

    def __init__(self, delta=1.0, name=None, reduction="sum_over_batch_size"):
        Loss.__init__(self, False, name, reduction)
        self.delta = _checks.finite_number("delta", delta, minimum=0, inclusive=False)

    def _extra(self):
        return {"delta": self.delta}

    def get_config(self):
        return {"name": self.name, "delta": self.delta}


class BinaryCrossentropy(_OpLoss):
    """-mean(y log p + (1 - y) log(1 - p)), p = y_pred clipped to [1e-7, 1 - 1e-7], or
    sigmoid(y_pred) when from_logits; targets smoothed towards 1/2 by label_smoothing."""

    name = kind = "binary_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, name=None, reduction="sum_over_batch_size"):
        Loss.__init__(self, from_logits, name, reduction)
        self.label_smoothing = _checks.finite_number("label_smoothing", label_smoothing, 0, 1)

    def _kind(self, from_logits):
        return "binary_crossentropy_from_logits" if from_logits else "binary_crossentropy"

    def _targets(self, y_true, outputs):
        if not self.label_smoothing:
            return y_true
        return np.asarray(_device.to_host(y_true), np.float64) * (1 - self.label_smoothing) + 0.5 * self.label_smoothing

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


_CLASSES = (SparseCategoricalCrossentropy, CategoricalCrossentropy, MeanSquaredError, MeanAbsoluteError,
            MeanAbsolutePercentageError, MeanSquaredLogarithmicError, Huber, LogCosh, BinaryCrossentropy,
            Poisson, Hinge, SquaredHinge, KLDivergence, CategoricalHinge)
# Keras's short names for its functions
ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error", "mape": "mean_absolute_percentage_error",
           "msle": "mean_squared_logarithmic_error", "kld": "kl_divergence", "bce": "binary_crossentropy",
           "kullback_leibler_divergence": "kl_divergence", "logcosh": "log_cosh", "huber_loss": "huber"}
_BY_NAME = {cls.name: cls for cls in _CLASSES} | {cls.__name__: cls for cls in _CLASSES}


def _function(cls):
    def per_sample(y_true, y_pred, **kwargs):
        loss = cls(**kwargs)
        return _device.to_host(loss.per_sample(y_true, y_pred, loss.from_logits))
    per_sample.__name__ = per_sample.__qualname__ = cls.name
    per_sample.__doc__ = f"Per-sample loss (N,): {cls.__doc__}"
    per_sample.loss_class = cls
    return per_sample


sparse_categorical_crossentropy = _function(SparseCategoricalCrossentropy)
categorical_crossentropy = _function(CategoricalCrossentropy)
mean_squared_error = _function(MeanSquaredError)
mean_absolute_error = _function(MeanAbsoluteError)
mean_absolute_percentage_error = _function(MeanAbsolutePercentageError)
mean_squared_logarithmic_error = _function(MeanSquaredLogarithmicError)
huber = _function(Huber)
log_cosh = _function(LogCosh)
binary_crossentropy = _function(BinaryCrossentropy)
poisson = _function(Poisson)
hinge = _function(Hinge)
squared_hinge = _function(SquaredHinge)
kl_divergence = _function(KLDivergence)
categorical_hinge = _function(CategoricalHinge)
mse, mae, mape, msle, kld = (mean_squared_error, mean_absolute_error, mean_absolute_percentage_error,
                             mean_squared_logarithmic_error, kl_divergence)


def get(identifier):
    """A Loss from an instance, a class, one of this module's functions or a name."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier) and isinstance(getattr(identifier, "loss_class", None), type):
        return identifier.loss_class()
    if isinstance(identifier, str):
        name = ALIASES.get(identifier.lower(), identifier)
        if name in _BY_NAME:
            return _BY_NAME[name]()
    names = sorted({cls.name for cls in _CLASSES} | set(ALIASES))
    raise ValueError(f"unknown loss {identifier!r}; use one of {', '.join(names)}, a class or instance of "
                     f"fastdl.losses, or one of its functions")
