"""Keras's utilities: to_categorical, normalize, set_random_seed.

Randomness: every object draws from its own np.random.Generator, never the global RNG.
Generators are spawned from one root seed sequence, so `set_random_seed(s)` before
building a model makes initialisation, dropout and shuffling reproducible.
"""
import numpy as np

_root = np.random.SeedSequence()


def set_random_seed(seed):
    """Seed every generator fastdl creates from now on (Keras: keras.utils.set_random_seed)."""
    global _root
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    _root = np.random.SeedSequence(int(seed))


def new_generator(seed=None):
    """A private Generator: from `seed` when given, else the next child of the root seed."""
    if seed is not None:
        return np.random.default_rng(seed)
    return np.random.Generator(np.random.PCG64(_root.spawn(1)[0]))


def to_categorical(y, num_classes=None):
    """One-hot rows (..., num_classes) of float64 (as Keras 3) for integer labels y; a
    trailing axis of size 1 is dropped first ((N, 1) labels give (N, num_classes))."""
    labels = np.asarray(y)
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ValueError("to_categorical: y must hold whole numbers (class indices)")
    elif labels.dtype.kind not in "iub":
        raise TypeError(f"to_categorical: y must be integer labels; got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    shape = labels.shape[:-1] if labels.ndim > 1 and labels.shape[-1] == 1 else labels.shape
    labels = labels.reshape(-1)
    if labels.size and labels.min() < 0:
        raise ValueError(f"to_categorical: labels must be >= 0; got {labels.min()}")
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"to_categorical: num_classes must be a positive int; got {num_classes!r}")
    if labels.size and labels.max() >= num_classes:
        raise ValueError(f"to_categorical: labels must be < num_classes={num_classes}; got {labels.max()}")
    onehot = np.zeros((labels.size, int(num_classes)))
    onehot[np.arange(labels.size), labels] = 1
    return onehot.reshape(shape + (int(num_classes),))


def normalize(x, axis=-1, order=2):
    """x divided by its `order`-norm along axis (rows of norm 0 stay 0), as Keras."""
    x = np.asarray(x)
    norm = np.linalg.norm(x, ord=order, axis=axis, keepdims=True)
    return x / np.where(norm == 0, 1, norm)
