"""fastdl: compiled deep-learning kernels for NumPy arrays, under a thin Keras-style API.

    import fastdl
    y = fastdl.ops.conv2d(x, kernel, bias, padding="same")   # NHWC, HWIO

Backends: 'auto' (the default: per op and shape, the faster of 'cython' and 'numba' as
measured on this machine), 'cython' (compiled OpenMP kernels), 'numba' (the same, JIT),
'cuda' (numba.cuda on an NVIDIA GPU) and 'reference' (plain NumPy, the test oracle).
"""
from fastdl import ops
from fastdl import callbacks, initializers, layers, losses, metrics, models, optimizers, utils
from fastdl._config import (
    BACKENDS,
    cuda_available,
    get_backend,
    get_num_threads,
    set_backend,
    set_num_threads,
    use_backend,
)
from fastdl._info import show_config

__version__ = "0.1.0"

__all__ = [
    "BACKENDS", "callbacks", "cuda_available", "get_backend", "get_num_threads", "initializers", "layers",
    "losses", "metrics", "models", "ops", "optimizers", "set_backend", "set_num_threads",
    "show_config", "use_backend", "utils",
]
