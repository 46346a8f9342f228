"""Losses for the layer API: each returns the per-sample loss and the gradient of the
batch mean with respect to the model's outputs (or logits)."""
import numpy as np

from fastdl import _device, ops


class Loss:
    name = "loss"
    sparse = True  # labels are class indices, not one-hot rows

    def __init__(self, from_logits=False):
        self.from_logits = bool(from_logits)

    def __call__(self, y_true, y_pred):
        """Mean loss over the batch (Keras's default reduction)."""
        return float(self.per_sample(y_true, y_pred, self.from_logits).mean())

    def get_config(self):
        return {"from_logits": self.from_logits}


class SparseCategoricalCrossentropy(Loss):
    """-log p[label], labels (N,) or (N, 1) integers."""

    name = "sparse_categorical_crossentropy"

    @staticmethod
    def per_sample(y_true, outputs, from_logits):
        return ops.sparse_categorical_crossentropy(y_true, outputs, from_logits)

    @staticmethod
    def gradient(y_true, outputs, from_logits):
        return ops.sparse_categorical_crossentropy_backward(y_true, outputs, from_logits)


class CategoricalCrossentropy(Loss):
    """-sum(y * log p), y (N, K) one-hot or soft labels. Computed with NumPy: on the GPU
    the outputs come to the host and the gradient goes back (N x K values each way)."""

    name = "categorical_crossentropy"
    sparse = False

    @staticmethod
    def _check(y_true, outputs):
        y_true = np.asarray(y_true, outputs.dtype)
        if y_true.shape != outputs.shape:
            raise ValueError(f"categorical labels must have the outputs' shape {outputs.shape}; "
                             f"got {y_true.shape} (use sparse_categorical_crossentropy for class indices)")
        return y_true

    @classmethod
    def per_sample(cls, y_true, outputs, from_logits):
        outputs = _device.to_host(outputs)
        y_true = cls._check(y_true, outputs)
        if from_logits:
            top = outputs.max(axis=1, keepdims=True)
            log_p = outputs - top - np.log(np.exp(outputs - top).sum(axis=1, keepdims=True))
        else:
            p = outputs / outputs.sum(axis=1, keepdims=True)
            log_p = np.log(np.clip(p, ops.losses.EPSILON, 1 - ops.losses.EPSILON))
        return -(y_true * log_p).sum(axis=1)

    @classmethod
    def gradient(cls, y_true, outputs, from_logits):
        if _device.is_device(outputs):
            return _device.to_device(cls.gradient(y_true, _device.to_host(outputs), from_logits))
        y_true = cls._check(y_true, outputs)
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


_BY_NAME = {"sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
            "categorical_crossentropy": CategoricalCrossentropy}


def get(identifier):
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    raise ValueError(f"unknown loss {identifier!r}; use one of {sorted(_BY_NAME)} or a Loss instance")
