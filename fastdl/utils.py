"""Randomness: every object draws from its own np.random.Generator, never the global RNG.

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
