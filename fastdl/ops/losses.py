"""The losses and their gradients: sparse categorical cross-entropy, and ops.loss for the
regression, binary, hinge and divergence losses of Keras (formulas in LOSS_FORMULAS)."""
import numpy as np

from fastdl import _device
from fastdl._config import backend_module
from fastdl.backends._spec import LOSSES
from fastdl.ops import _checks

EPSILON = 1e-7  # Keras's backend epsilon: probabilities are clipped to [eps, 1 - eps]


def _prepare(labels, outputs):
    outputs = _checks.float_array("outputs", outputs, 2, "(batch, classes)")
    labels = np.asarray(_device.to_host(labels))  # validated on the host; a batch's worth
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]  # Keras accepts (batch, 1), as CIFAR-10 ships its labels
    if labels.dtype.kind == "f":  # Keras casts class indices stored as floats
        if not np.all(np.isfinite(labels)) or np.any(labels != np.floor(labels)):
            bad = labels[~np.isfinite(labels) | (labels != np.floor(labels))].flat[0]
            raise ValueError(f"labels of dtype {labels.dtype} must hold whole numbers (class "
                             f"indices); got {bad}")
        labels = labels.astype(np.int64)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integers (or floats holding whole numbers); got dtype "
                        f"{labels.dtype}")
    if labels.shape != outputs.shape[:1]:
        raise ValueError(f"labels must have shape ({outputs.shape[0]},) or ({outputs.shape[0]}, 1) "
                         f"to match outputs {outputs.shape}; got {labels.shape}")
    low, high = labels.min(), labels.max()
    if low < 0 or high >= outputs.shape[1]:
        bad = low if low < 0 else high
        raise ValueError(f"labels must be in [0, {outputs.shape[1]}) for {outputs.shape[1]} classes; "
                         f"got {bad}")
    return _checks.contiguous("labels", labels, np.intp), outputs


def sparse_categorical_crossentropy(labels, outputs, from_logits=False):
    """Per-sample loss (N,): -log p[label], p = softmax(outputs) when from_logits,
    else outputs renormalised over classes and clipped to [1e-7, 1 - 1e-7] (Keras)."""
    labels, outputs = _prepare(labels, outputs)
    return backend_module().sparse_categorical_crossentropy(labels, outputs, bool(from_logits))


def sparse_categorical_crossentropy_backward(labels, outputs, from_logits=False, dloss=None):
    """d(loss)/d(outputs) (N, K), where dloss (N,) is the gradient of each sample's loss
    (default 1/N each: the gradient of the mean). From logits this is the fused
    (softmax - onehot) * dloss."""
    labels, outputs = _prepare(labels, outputs)
    return backend_module().sparse_categorical_crossentropy_backward(
        labels, outputs, bool(from_logits), _dloss(dloss, outputs))


def _dloss(dloss, outputs, outputs_name="outputs"):
    """The per-sample gradients (N,) of a backward pass: 1/N each by default (the mean's),
    else checked to have one value per sample in the outputs' dtype."""
    n = outputs.shape[0]
    if dloss is None:
        return _device.full((n,), outputs.dtype, 1.0 / n, _checks.on_device(outputs))
    dloss = _checks.float_array("dloss", dloss, 1, "(batch,)")
    _checks.same_dtype(**{outputs_name: outputs}, dloss=dloss)
    _checks.shape_is("dloss", dloss, (n,), "one value per sample")
    return dloss


# Each loss as Keras 3 defines it, y the target and p the prediction, eps = EPSILON; a
# sample's loss is the mean of its terms (the row losses: the mean of its rows' values).
LOSS_FORMULAS = {
    "mean_squared_error": "(p - y)^2",
    "mean_absolute_error": "|p - y|",
    "mean_absolute_percentage_error": "100 |y - p| / max(|y|, eps)",
    "mean_squared_logarithmic_error": "(log(max(p, eps) + 1) - log(max(y, eps) + 1))^2",
    "huber": "e^2 / 2 where |e| <= delta, else delta |e| - delta^2 / 2 (e = p - y)",
    "log_cosh": "log(cosh(p - y))",
    "binary_crossentropy": "-(y log q + (1 - y) log(1 - q)), q = p clipped to [eps, 1 - eps]",
    "binary_crossentropy_from_logits": "-(y log s + (1 - y) log(1 - s)), s = sigmoid(p)",
    "poisson": "p - y log(p + eps)",
    "hinge": "max(1 - y p, 0), labels {0, 1} read as {-1, 1}",
    "squared_hinge": "max(1 - y p, 0)^2, labels {0, 1} read as {-1, 1}",
    "kl_divergence": "per row: sum(y' log(y' / p')), y', p' clipped to [eps, 1]",
    "categorical_hinge": "per row: max(max((1 - y) p) - sum(y p) + 1, 0)",
}
_HINGES = ("hinge", "squared_hinge")


def _prepare_loss(name, y_true, y_pred, delta):
    """y_true and y_pred as (N, R, K) arrays of one dtype, delta as a float, and
    y_pred's own shape."""
    if not isinstance(name, str) or name not in LOSSES:
        raise ValueError(f"name must be one of {', '.join(LOSSES)}; got {name!r}")
    y_pred = _checks.float_array("y_pred", y_pred)
    if y_pred.ndim == 0:
        raise ValueError("y_pred must have a batch axis (at least 1-D); got a scalar")
    try:  # targets are cast to the prediction's dtype, as Keras does; a batch's worth
        y_true = np.asarray(_device.to_host(y_true), dtype=y_pred.dtype)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"y_true must be an array of numbers; got {type(y_true).__name__}: {exc}") from None
    # Keras squeezes or adds one trailing axis of size 1 so (N,) targets fit (N, 1) outputs
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    elif y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
        y_true = y_true[..., None]
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true must have the shape of y_pred {y_pred.shape} (give or take a "
                         f"trailing axis of size 1); got {y_true.shape}")
    if name in _HINGES and np.all((y_true == 0) | (y_true == 1)):
        y_true = 2 * y_true - 1
    delta = _checks.finite_number("delta", delta, minimum=0, inclusive=False)
    n = y_pred.shape[0]
    k = y_pred.shape[-1] if y_pred.ndim > 1 else 1
    return _checks.contiguous("y_true", y_true).reshape(n, -1, k), y_pred.reshape(n, -1, k), delta, y_pred.shape


def loss(name, y_true, y_pred, *, delta=1.0):
    """Per-sample loss (N,) of the Keras loss `name` (one of LOSSES, formulas in
    LOSS_FORMULAS): its terms over y_pred (N, ...) averaged over each sample; `delta` is
    Huber's threshold. y_true has y_pred's shape (or lacks/adds a trailing axis of 1)."""
    y_true, y_pred, delta, _ = _prepare_loss(name, y_true, y_pred, delta)
    return backend_module().loss(name, y_true, y_pred, delta)


def loss_backward(name, y_true, y_pred, dloss=None, *, delta=1.0):
    """d(loss)/d(y_pred), shaped as y_pred, where dloss (N,) is the gradient of each
    sample's loss (default 1/N each: the gradient of the mean). Where a clip of y_pred is
    active the gradient is zero, as the clip's own gradient is."""
    y_true, y_pred, delta, shape = _prepare_loss(name, y_true, y_pred, delta)
    return backend_module().loss_backward(name, y_true, y_pred, delta, _dloss(dloss, y_pred, "y_pred")).reshape(shape)
