"""Sparse categorical cross-entropy and its gradient."""
import numpy as np

from fastdl import _device
from fastdl._config import backend_module
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
    return np.ascontiguousarray(labels, dtype=np.intp), outputs


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
    n = outputs.shape[0]
    if dloss is None:
        dloss = _device.full((n,), outputs.dtype, 1.0 / n, _checks.on_device(outputs))
    else:
        dloss = _checks.float_array("dloss", dloss, 1, "(batch,)")
        _checks.same_dtype(outputs=outputs, dloss=dloss)
        _checks.shape_is("dloss", dloss, (n,), "one value per sample")
    return backend_module().sparse_categorical_crossentropy_backward(
        labels, outputs, bool(from_logits), dloss)
