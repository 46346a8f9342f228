"""Validation shared by every public op: each failure names the argument and the value.

Compiled kernels run without bounds checks, so nothing reaches them before these checks
pass: arrays are float32/float64 of the right rank, non-empty and C-contiguous (copied
only when they are not), and hyper-parameters are in range.

Device arrays (fastdl._device) pass the same checks under the 'cuda' backend; they are
never copied here, so a non-contiguous one is an error.
"""
import math
import numbers
import os

import numpy as np

from fastdl import _device

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
ACTIVATIONS = (None, "linear", "relu", "sigmoid", "tanh", "softmax")


def float_array(name, a, ndim=None, layout=""):
    """`a` as a C-contiguous float32/float64 array of rank `ndim` with no empty axis."""
    if _device.is_device(a):
        return device_contiguous(name, _float_checks(name, _device.adopt(name, a), ndim, layout))
    if not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be an array of floats; got {type(a).__name__}: {exc}") from None
    return contiguous(name, _float_checks(name, a, ndim, layout))


# A non-contiguous view is copied; one this large is first checked against the memory
# free, since a stride trick (as_strided, broadcast_to) makes a view of any size at no
# cost and its copy would otherwise end the process (the kernel's OOM killer), not raise.
COPY_CHECK_BYTES = 1 << 28


def contiguous(name, a, dtype=None):
    """a (or a converted to dtype) as a C-contiguous array, copied only when it is not;
    a copy larger than the free memory is a ValueError naming the argument."""
    if a.flags.c_contiguous and (dtype is None or a.dtype == dtype):
        return a
    nbytes = a.size * (np.dtype(dtype).itemsize if dtype is not None else a.itemsize)
    if nbytes > COPY_CHECK_BYTES and 2 * nbytes > _free_memory():  # the copy, and an output as large
        raise ValueError(f"{name} is a non-contiguous view of shape {a.shape} (strides {a.strides}) whose "
                         f"contiguous copy would take {nbytes / 2**30:.1f} GiB, more than half the "
                         f"{_free_memory() / 2**30:.1f} GiB free; pass a C-contiguous array")
    return np.ascontiguousarray(a, dtype=dtype)


def _free_memory():
    """Bytes of memory available (MemAvailable on Linux), or infinity when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return math.inf


def _float_checks(name, a, ndim, layout):
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64; got {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        shape_hint = f" {layout}" if layout else ""
        raise ValueError(f"{name} must be {ndim}-D{shape_hint}; got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} must not be empty; got shape {a.shape}")
    return a


def device_contiguous(name, a):
    if not a.is_c_contiguous():
        raise ValueError(f"{name} must be C-contiguous on the device (it is not copied there); "
                         f"got strides {a.strides} for shape {a.shape}")
    return a


on_device = _device.on_device


def same_dtype(**arrays):
    """All arrays share one dtype; returns it."""
    dtypes = {name: a.dtype for name, a in arrays.items() if a is not None}
    if len(set(dtypes.values())) > 1:
        listing = ", ".join(f"{name} {dtype}" for name, dtype in dtypes.items())
        raise TypeError(f"arrays must share one dtype; got {listing}")
    return next(iter(dtypes.values()))


def shape_is(name, a, shape, what=""):
    if a.shape != tuple(shape):
        extra = f" ({what})" if what else ""
        raise ValueError(f"{name} must have shape {tuple(shape)}{extra}; got {a.shape}")


def shape_tuple(name, value, ndim):
    """A tuple of ndim positive ints (an array's shape standing in for the array)."""
    if len(value) != ndim or not all(_is_int(v) and v >= 1 for v in value):
        raise ValueError(f"{name} as a shape must be {ndim} positive ints; got {value!r}")
    return tuple(int(v) for v in value)


# The largest window size, stride, dilation or padding: the kernels' index arithmetic
# (products of two of them) stays far inside a 64-bit Py_ssize_t.
MAX_WINDOW_INT = 2 ** 31 - 1


def int_pair(name, value, minimum=1):
    """An int or a pair of ints, each in [minimum, MAX_WINDOW_INT], as a pair."""
    if type(value) is int and minimum <= value <= MAX_WINDOW_INT:  # the common case, on every call
        return value, value
    items = (value, value) if _is_int(value) else value
    try:
        items = tuple(items)
    except TypeError:
        raise TypeError(f"{name} must be an int or a pair of ints; got {value!r}") from None
    if len(items) != 2 or not all(_is_int(v) for v in items):
        raise TypeError(f"{name} must be an int or a pair of ints; got {value!r}")
    if any(v < minimum for v in items):
        raise ValueError(f"{name} must be >= {minimum}; got {value!r}")
    if any(v > MAX_WINDOW_INT for v in items):
        raise ValueError(f"{name} must be <= {MAX_WINDOW_INT}; got {value!r}")
    return int(items[0]), int(items[1])


def _is_int(v):
    return type(v) is int or (isinstance(v, numbers.Integral) and not isinstance(v, bool))


def padding_spec(value, allow_explicit=True):
    """'valid', 'same' (any case) or, when allowed, ((top, bottom), (left, right))."""
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in ("valid", "same"):
            return lowered
    elif allow_explicit:
        try:
            (top, bottom), (left, right) = value
        except (TypeError, ValueError):
            pass
        else:
            pads = (top, bottom, left, right)
            if all(_is_int(p) for p in pads):
                if any(p < 0 for p in pads):
                    raise ValueError(f"padding must be non-negative; got {value!r}")
                if any(p > MAX_WINDOW_INT for p in pads):
                    raise ValueError(f"padding must be <= {MAX_WINDOW_INT}; got {value!r}")
                return tuple(int(p) for p in pads)
    allowed = "'valid', 'same'" + (" or ((top, bottom), (left, right))" if allow_explicit else "")
    raise ValueError(f"padding must be {allowed}; got {value!r}")


def activation_name(value):
    if (value is not None and not isinstance(value, str)) or value not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}; got {value!r}")
    return None if value == "linear" else value


def output(name, out, shape, dtype, device=False):
    """A new array (on the device when `device`), or the caller's `out` when it fits
    exactly, wherever it lives."""
    if out is None:
        return _device.empty(shape, dtype, device)
    on_gpu = _device.is_device(out)
    if on_gpu:
        out = _device.adopt(name, out)
    elif not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray; got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}; got {out.dtype}")
    shape_is(name, out, shape)
    if on_gpu:
        return device_contiguous(name, out)
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{name} must be C-contiguous and writeable")
    return out


def distinct(out_name, out, **inputs):
    """`out` shares no memory with the inputs that a kernel reads after writing it."""
    for name, a in inputs.items():
        if a is not None and _device.may_share_memory(out, a):
            raise ValueError(f"{out_name} must not overlap {name}")


def exact_or_distinct(out_name, out, **inputs):
    """`out` is exactly one of the inputs (an op that works in place) or shares no
    memory with it: a partial overlap would read values the kernel already wrote."""
    for name, a in inputs.items():
        if a is not None and _device.may_share_memory(out, a) and not _device.same_memory(out, a):
            raise ValueError(f"{out_name} partly overlaps {name}: pass {name} itself (in place) or an "
                             f"array that shares no memory with it")


def finite_number(name, value, minimum=None, maximum=None, inclusive=True):
    """A real number, finite, within [minimum, maximum] (or open bounds)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value!r}")
    below = minimum is not None and (value < minimum if inclusive else value <= minimum)
    above = maximum is not None and (value > maximum if inclusive else value >= maximum)
    if below or above:
        lo = "-inf" if minimum is None else minimum
        hi = "inf" if maximum is None else maximum
        brackets = "[]" if inclusive else "()"
        raise ValueError(f"{name} must be in {brackets[0]}{lo}, {hi}{brackets[1]}; got {value!r}")
    return value
