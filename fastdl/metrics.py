"""Metrics for compile(metrics=[...]), as Keras 3 names them.

A metric adds each batch to a numerator and a denominator, and reports their ratio over
all batches seen: a mean metric adds the sum of its per-sample values and the number of
samples (accuracy, mae, ...), Precision adds true positives and predicted positives.
Metrics see the model's predictions (after its final softmax) on the host.
"""
import numpy as np

from fastdl import losses as losses_module
from fastdl.ops import _checks


def _per_row(values, n):
    """Per-sample means of an (N, ...) array of values."""
    return np.asarray(values, np.float64).reshape(n, -1).mean(axis=1)


def _labels(y_true, n):
    return np.asarray(y_true).reshape(n, -1)[:, 0]


def sparse_categorical_accuracy(y_true, y_pred):
    """1 where the top-scoring class is the label (labels (N,) or (N, 1) integers)."""
    return (y_pred.argmax(axis=-1) == _labels(y_true, len(y_pred))).astype(np.float64)


def categorical_accuracy(y_true, y_pred):
    """1 where the top-scoring class is the one-hot label's."""
    return (y_pred.argmax(axis=-1) == np.asarray(y_true).argmax(axis=-1)).astype(np.float64)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """Share of a sample's outputs on the label's side of threshold (labels 0/1)."""
    y_true = np.asarray(y_true).reshape(y_pred.shape)
    return _per_row((y_pred > threshold) == (y_true > 0.5), len(y_pred))


def _in_top_k(scores, labels, k):
    # the label is in the top k when fewer than k classes score strictly higher
    mine = np.take_along_axis(scores, labels[:, None].astype(np.intp), axis=1)
    return ((scores > mine).sum(axis=1) < k).astype(np.float64)


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1 where the one-hot label's class is among the k top-scoring ones."""
    return _in_top_k(y_pred, np.asarray(y_true).argmax(axis=-1), k)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1 where the label (an integer) is among the k top-scoring classes."""
    return _in_top_k(y_pred, _labels(y_true, len(y_pred)), k)


def accuracy(y_true, y_pred):
    """Keras's 'accuracy' string, chosen from the shapes: binary for one output a sample,
    sparse for labels of lower rank (or one label a sample), categorical otherwise."""
    y_true = np.asarray(y_true)
    if y_pred.shape[-1] == 1:
        return binary_accuracy(y_true, y_pred)
    if y_true.ndim < y_pred.ndim or y_true.shape[-1] == 1:
        return sparse_categorical_accuracy(y_true, y_pred)
    return categorical_accuracy(y_true, y_pred)


class Metric:
    """name, and totals(y_true, y_pred) -> (numerator, denominator) for one batch."""

    name = "metric"

    def totals(self, y_true, y_pred):
        raise NotImplementedError

    def __call__(self, y_true, y_pred):
        """The metric over one batch."""
        num, den = self.totals(y_true, np.asarray(y_pred))
        return num / den if den else 0.0


class MeanMetricWrapper(Metric):
    """The mean over samples of fn(y_true, y_pred, **kwargs) -> per-sample values (N,)."""

    def __init__(self, fn, name=None, **kwargs):
        self.fn, self.kwargs = fn, kwargs
        self.name = name or getattr(fn, "__name__", "metric")

    def totals(self, y_true, y_pred):
        values = np.asarray(self.fn(y_true, y_pred, **self.kwargs), np.float64)
        return float(values.sum()), float(values.size)


def _wrapper(class_name, fn, default_name, **defaults):
    def __init__(self, name=default_name, **kwargs):
        MeanMetricWrapper.__init__(self, fn, name, **{**defaults, **kwargs})
    return type(class_name, (MeanMetricWrapper,), {"__init__": __init__, "__doc__": fn.__doc__})


Accuracy = _wrapper("Accuracy", accuracy, "accuracy")
BinaryAccuracy = _wrapper("BinaryAccuracy", binary_accuracy, "binary_accuracy")
CategoricalAccuracy = _wrapper("CategoricalAccuracy", categorical_accuracy, "categorical_accuracy")
SparseCategoricalAccuracy = _wrapper("SparseCategoricalAccuracy", sparse_categorical_accuracy,
                                     "sparse_categorical_accuracy")
TopKCategoricalAccuracy = _wrapper("TopKCategoricalAccuracy", top_k_categorical_accuracy,
                                   "top_k_categorical_accuracy")
SparseTopKCategoricalAccuracy = _wrapper("SparseTopKCategoricalAccuracy", sparse_top_k_categorical_accuracy,
                                         "sparse_top_k_categorical_accuracy")


class _Confusion(Metric):
    """Counts of thresholded predictions against 0/1 labels, over every output."""

    def __init__(self, thresholds=0.5, name=None):
        self.threshold = _checks.finite_number("thresholds", thresholds, 0, 1)
        if name is not None:
            self.name = name

    def _counts(self, y_true, y_pred):
        predicted = np.asarray(y_pred) > self.threshold
        actual = np.asarray(y_true).reshape(predicted.shape) > 0.5
        return float((predicted & actual).sum()), float(predicted.sum()), float(actual.sum())


class Precision(_Confusion):
    """True positives / predicted positives (0 when nothing is predicted positive)."""

    name = "precision"

    def totals(self, y_true, y_pred):
        hits, predicted, _ = self._counts(y_true, y_pred)
        return hits, predicted


class Recall(_Confusion):
    """True positives / actual positives (0 when there are none)."""

    name = "recall"

    def totals(self, y_true, y_pred):
        hits, _, actual = self._counts(y_true, y_pred)
        return hits, actual


def _loss_metric(loss_name):
    """A loss of fastdl.losses averaged as a metric (metrics=['mae'] logs 'mae')."""
    loss = losses_module.get(loss_name)
    return lambda y_true, y_pred: loss.per_sample(y_true, y_pred, loss.from_logits)


_FUNCTIONS = {fn.__name__: fn for fn in (accuracy, binary_accuracy, categorical_accuracy,
                                          sparse_categorical_accuracy, top_k_categorical_accuracy,
                                          sparse_top_k_categorical_accuracy)}
_CLASSES = {"precision": Precision, "recall": Recall}


def get(identifier):
    """A Metric from an instance, a class, a function of (y_true, y_pred) -> per-sample
    values, or a name: Keras's metric names and every loss name of fastdl.losses."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, str):
        name = "accuracy" if identifier == "acc" else identifier
        if name in _FUNCTIONS:
            return MeanMetricWrapper(_FUNCTIONS[name], identifier)
        if name.lower() in _CLASSES:
            return _CLASSES[name.lower()]()
        try:
            return MeanMetricWrapper(_loss_metric(name), identifier)
        except ValueError:
            pass
        raise ValueError(f"unknown metric {identifier!r}; use one of {', '.join(sorted(_FUNCTIONS))}, "
                         f"precision, recall, a loss name (mse, mae, ...), a fastdl.metrics.Metric or a "
                         f"callable (y_true, y_pred) -> per-sample values")
    if callable(identifier):  # fastdl.losses.mse and the like among them
        return MeanMetricWrapper(identifier)
    raise TypeError(f"a metric must be a name, a Metric or a callable; got {type(identifier).__name__}")
