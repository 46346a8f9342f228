"""Metrics for compile(metrics=[...]): each maps (labels, outputs) to per-sample values."""
import numpy as np


def sparse_categorical_accuracy(y_true, outputs):
    labels = np.asarray(y_true).reshape(len(outputs), -1)[:, 0]
    return (outputs.argmax(axis=1) == labels).astype(np.float64)


def categorical_accuracy(y_true, outputs):
    return (outputs.argmax(axis=1) == np.asarray(y_true).argmax(axis=1)).astype(np.float64)


def get(identifier, sparse_labels):
    """(name, function): 'accuracy'/'acc' picks the variant that fits the loss's labels."""
    if callable(identifier):
        return getattr(identifier, "__name__", "metric"), identifier
    if identifier in ("accuracy", "acc"):
        return identifier, sparse_categorical_accuracy if sparse_labels else categorical_accuracy
    if identifier == "sparse_categorical_accuracy":
        return identifier, sparse_categorical_accuracy
    if identifier == "categorical_accuracy":
        return identifier, categorical_accuracy
    raise ValueError(f"unknown metric {identifier!r}; use 'accuracy', 'sparse_categorical_accuracy', "
                     "'categorical_accuracy' or a callable (y_true, y_pred) -> per-sample values")
