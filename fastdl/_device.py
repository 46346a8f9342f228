"""Where an array lives: on the host (NumPy) or on a CUDA device (a Numba device array,
or any object with __cuda_array_interface__, such as a CuPy array or a torch CUDA tensor).

fastdl.ops and the layer API ask here; nothing imports Numba until a device array is
met or allocated. Device arrays are accepted only while the 'cuda' backend is selected.
"""
import numpy as np


def is_device(a):
    if type(a) is np.ndarray:  # the common case, asked several times per op: no getattr
        return False
    return not isinstance(a, np.ndarray) and (bool(getattr(a, "__cuda_ndarray__", False))
                                              or hasattr(a, "__cuda_array_interface__"))


def on_device(*arrays):
    """True when any of the arrays is a device array."""
    return any(is_device(a) for a in arrays if a is not None)


def _gpu():
    """The cuda backend, through which every device allocation and copy goes."""
    from fastdl.backends import cuda

    return cuda


def adopt(name, a):
    """The device array `a` as a Numba device array (no copy), once the backend is 'cuda'."""
    from fastdl._config import get_backend

    backend = get_backend()
    if backend != "cuda":
        raise TypeError(f"{name} is a CUDA device array but the backend is {backend!r}: call "
                        f"fastdl.set_backend('cuda'), or copy {name} to the host first")
    return _gpu().as_device_array(a)


def empty(shape, dtype, device=False):
    return _gpu().device_array(tuple(shape), np.dtype(dtype)) if device else aligned_empty(shape, dtype)


ALIGNMENT = 64  # bytes: a cache line, and one AVX-512 vector


def aligned_empty(shape, dtype):
    """np.empty whose data starts on a cache line (NumPy guarantees 16 bytes): vector
    loads and stores that never straddle two lines, and streaming stores that need
    whole aligned lines."""
    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in shape) if np.iterable(shape) else (int(shape),)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def full(shape, dtype, value, device=False):
    if device:
        return _gpu().full(tuple(shape), np.dtype(dtype), value)
    out = aligned_empty(shape, dtype)
    out.fill(value)
    return out


def full_like(a, value):
    """A new array of a's shape and dtype, filled with value, where a lives."""
    return full(a.shape, a.dtype, value, is_device(a))


def to_host(a):
    """A NumPy array: a itself on the host, a copy of a device array."""
    return _gpu().as_device_array(a).copy_to_host() if is_device(a) else a


def host_copy(a):
    """A new NumPy array holding a's values."""
    return a.copy_to_host() if is_device(a) else np.array(a, copy=True)


def to_device(a):
    return _gpu().to_device(np.ascontiguousarray(a))


def copy_into(dst, src):
    """dst[...] = src, wherever each lives (shapes of equal size)."""
    if is_device(dst):
        _gpu().copy(dst, src)
    elif is_device(src):
        dst[...] = src.copy_to_host().reshape(dst.shape)
    else:
        np.copyto(dst, src.reshape(dst.shape))


def may_share_memory(a, b):
    if type(a) is np.ndarray and type(b) is np.ndarray:
        return np.may_share_memory(a, b)
    if is_device(a) and is_device(b):
        return _gpu().may_share_memory(a, b)
    if is_device(a) or is_device(b):
        return False
    return np.may_share_memory(a, b)


def same_memory(a, b):
    """a and b cover exactly the same memory (one is a reshaped view of the other)."""
    if is_device(a) and is_device(b):
        return _gpu().same_memory(a, b)
    if is_device(a) or is_device(b):
        return False
    return a is b or (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
                      and a.nbytes == b.nbytes)
