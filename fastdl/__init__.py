"""fastdl: compiled deep-learning kernels for NumPy arrays, under a thin Keras-style API.

    import fastdl
    y = fastdl.ops.conv2d(x, kernel, bias, padding="same")   # NHWC, HWIO

    import fastdl as keras                                   # Keras 3's names
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])

Backends: 'auto' (the default: per op and shape, the faster of 'cython' and 'numba' as
measured on this machine), 'cython' (compiled OpenMP kernels), 'numba' (the same, JIT),
'cuda' (numba.cuda on an NVIDIA GPU) and 'reference' (plain NumPy, the test oracle).

Submodules and the Keras-shaped names are imported on first use, so `import fastdl`
loads only the configuration.
"""
import importlib

from fastdl._config import (
    BACKENDS,
    cuda_available,
    get_backend,
    get_num_threads,
    set_backend,
    set_num_threads,
    use_backend,
)

__version__ = "0.1.0"

_SUBMODULES = ("applications", "callbacks", "datasets", "initializers", "layers", "losses", "metrics", "models", "ops",
               "optimizers", "preprocessing", "saving", "utils")
# Keras 3's top-level names: where each lives in fastdl
_NAMES = {"Sequential": "fastdl.models", "Model": "fastdl.models", "Input": "fastdl.layers",
          "show_config": "fastdl._info"}

__all__ = ["BACKENDS", "cuda_available", "get_backend", "get_num_threads", "set_backend", "set_num_threads",
           "use_backend", *_SUBMODULES, *_NAMES]


def __getattr__(name):
    if name in _SUBMODULES:
        module = importlib.import_module(f"fastdl.{name}")
    elif name in _NAMES:
        module = getattr(importlib.import_module(_NAMES[name]), name)
    else:
        raise AttributeError(f"module 'fastdl' has no attribute {name!r}")
    globals()[name] = module  # found directly from now on
    return module


def __dir__():
    return sorted(set(globals()) | set(__all__))
