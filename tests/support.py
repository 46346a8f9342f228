"""Helpers shared by the tests: tolerances, the reference oracle, finite differences."""
import ctypes
import importlib.util
import mmap
import os

import numpy as np

import fastdl

# Every compiled backend is checked against the 'reference' backend (the oracle).
# FASTDL_TEST_BACKENDS names others instead: tests/test_cuda.py runs the op table with
# "cuda" under the simulator, in a process of its own.
COMPILED_BACKENDS = (os.environ["FASTDL_TEST_BACKENDS"].split(",") if os.environ.get("FASTDL_TEST_BACKENDS")
                     else ["cython"] + (["numba"] if importlib.util.find_spec("numba") else []))
ALL_BACKENDS = ["reference"] + COMPILED_BACKENDS
DTYPES = [np.float32, np.float64]


def keras_or_skip(module="keras"):
    """Keras 3 (or one of its modules) on its NumPy backend, no TensorFlow needed; set for
    the whole process, as the backend is fixed at Keras's first import. A skip where it
    is not installed, an error in CI (which installs it)."""
    os.environ.setdefault("KERAS_BACKEND", "numpy")
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            raise
        import pytest

        pytest.skip("keras is not installed")


def tolerance(dtype):
    """(rtol, atol) for comparing two backends' results of unit-scale data."""
    return (2e-4, 2e-5) if np.dtype(dtype) == np.float32 else (1e-10, 1e-12)


def assert_close(actual, expected, dtype, scale=1.0):
    rtol, atol = tolerance(dtype)
    assert actual.dtype == np.dtype(dtype)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale)


def reference(fn, *args, **kwargs):
    with fastdl.use_backend("reference"):
        return fn(*args, **kwargs)


def numerical_gradient(f, x, eps=1e-6, at=None):
    """Central differences of the scalar f() with respect to every element of x (float64),
    or only at the flat indices `at` (the others left 0)."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size) if at is None else at:
        saved = flat[i]
        flat[i] = saved + eps
        up = f()
        flat[i] = saved - eps
        down = f()
        flat[i] = saved
        gflat[i] = (up - down) / (2 * eps)
    return grad


# -- guard pages: arrays that end (or start) at memory the process may not touch --------

_PAGE = mmap.PAGESIZE
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


def guarded(a, start_at_guard=False):
    """A copy of `a` (C order) in fresh pages between two inaccessible (PROT_NONE) pages:
    by default its last byte is the last before the upper guard, so a kernel that reads
    or writes one element past its end is killed by SIGSEGV instead of passing; with
    start_at_guard its first byte follows the lower guard (reads before the start)."""
    a = np.asarray(a)
    pages = -(-max(a.nbytes, 1) // _PAGE)
    buf = mmap.mmap(-1, (pages + 2) * _PAGE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    for page in (0, pages + 1):
        if _libc.mprotect(base + page * _PAGE, _PAGE, 0) != 0:
            raise OSError(ctypes.get_errno(), "mprotect failed")
    offset = _PAGE if start_at_guard else _PAGE + pages * _PAGE - a.nbytes
    out = np.frombuffer(buf, a.dtype, count=a.size, offset=offset).reshape(a.shape)
    out[...] = a
    if not a.flags.writeable:
        out.flags.writeable = False
    return out


def guard_backend(module, monkeypatch):
    """Every op of a backend module called on guarded copies of its array arguments (each
    ending at a guard page, every other call starting at one instead); what the kernel
    wrote is copied back to the caller's arrays. Arguments that share memory (an op run
    in place) are passed as they are, so the aliasing the op relies on stays."""
    from fastdl.backends.auto import OPS

    calls = [0]

    def wrap(fn):
        def run(*args):
            arrays = [i for i, a in enumerate(args) if type(a) is np.ndarray and a.size]
            shared = {i for i in arrays for j in arrays
                      if i != j and np.may_share_memory(args[i], args[j])}
            calls[0] += 1
            copies = {i: guarded(args[i], start_at_guard=calls[0] % 2 == 0)
                      for i in arrays if i not in shared and args[i].flags.c_contiguous}
            result = fn(*[copies.get(i, a) for i, a in enumerate(args)])
            originals = {id(copy): args[i] for i, copy in copies.items()}
            for i, copy in copies.items():
                if args[i].flags.writeable:
                    args[i][...] = copy
            if isinstance(result, tuple):  # an argument handed back stands for itself
                return tuple(originals.get(id(r), r) for r in result)
            return originals.get(id(result), result)
        run.__name__ = fn.__name__
        return run

    for op in OPS:
        if hasattr(module, op):
            monkeypatch.setattr(module, op, wrap(getattr(module, op)))
