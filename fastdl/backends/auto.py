"""The 'auto' backend: for each op and shape, the faster compiled backend on this machine.

The first call of an op on a new shape (and dtype, and geometry) times every available
compiled backend on one copy of the arguments (after a warm-up call, so JIT compilation
is not counted; arguments above MEASURE_MAX_BYTES are not measured but run on Cython)
and remembers the winner, in memory and in a per-machine JSON file
under the user's cache directory. Numba takes part once its kernels are compiled on
this machine (`fastdl.backends.numba_cpu.warmup()`, about a minute, once): before that,
measuring it would mean a first training step of some 25 s of JIT compilation, so new
shapes run on Cython, unrecorded, and are measured on a later run. The file belongs to
one build of the kernels: a rebuilt or upgraded fastdl measures afresh. `choices()` shows
what was picked; `prefer(op, name)` overrides an op. Results never depend on the choice beyond float32 rounding: every
backend is tested against the same reference.
"""
import hashlib
import importlib.util
import json
import os
import platform
import threading
import time

import numpy as np

from fastdl import _atomic, _config
from fastdl.backends import _spec
from fastdl.ops._geometry import Window

ARRAYS_ON_DEVICE = False  # NumPy arrays in, NumPy arrays out (_spec.py)

OPS = _spec.NAMES  # every op of the backend contract is dispatched

_lock = threading.Lock()
_choices = None  # key -> backend name, loaded lazily from the cache file
_preferred = {}  # op -> backend name, set by prefer()


_CANDIDATES = None


def candidates():
    """The compiled backends that can run here (Numba only when it is installed)."""
    global _CANDIDATES
    if _CANDIDATES is None:
        _CANDIDATES = ["cython"] + (["numba"] if importlib.util.find_spec("numba") is not None else [])
    return _CANDIDATES


_BUILD = None


def _build_id():
    """A short hash of the compiled kernels' files (names, sizes, times): measurements
    belong to one build, so a rebuilt or reinstalled package measures afresh instead of
    keeping picks made against kernels that have since changed."""
    global _BUILD
    if _BUILD is None:
        folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_kernels")
        digest = hashlib.sha1()
        for name in sorted(os.listdir(folder)):
            if name.endswith((".so", ".pyd")):
                stat = os.stat(os.path.join(folder, name))
                digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
        _BUILD = digest.hexdigest()[:10]
    return _BUILD


def cache_path():
    import fastdl

    machine = (f"{platform.machine()}-{os.cpu_count()}cpu-{_config.get_num_threads()}thr"
               f"-fastdl{fastdl.__version__}-{_build_id()}")
    return os.path.join(_config.user_cache_dir(), f"auto-{machine}.json")


def _numba_marker():
    """The file warmup() leaves once Numba's kernels are compiled and cached on disk."""
    from importlib.metadata import version

    from fastdl.backends.numba_cpu._runtime import _sources_digest

    return os.path.join(os.path.dirname(cache_path()), f"numba-{version('numba')}-{_sources_digest()}-compiled")


def numba_ready():
    """Whether measuring Numba costs no compilation: warmup() ran on this machine."""
    try:
        return os.path.exists(_numba_marker())
    except Exception:  # no metadata for numba: treat it as not compiled
        return False


def mark_numba_ready():
    try:
        os.makedirs(os.path.dirname(_numba_marker()), exist_ok=True)
        with open(_numba_marker(), "w"):
            pass
    except OSError:
        pass  # an unwritable cache: Numba is simply measured after the next warmup()


def _load():
    """Choices keyed by the repr of their key tuple (how the JSON file stores them)."""
    global _choices
    if _choices is None:
        try:
            with open(cache_path()) as f:
                loaded = json.load(f)
        except (OSError, ValueError):
            loaded = {}
        # anything but {key: backend name} (a file cut short, hand-edited, or JSON null,
        # 5, [1, 2]) is ignored and rewritten by the next measurement
        if not isinstance(loaded, dict):
            loaded = {}
        _choices = {k: v for k, v in loaded.items() if isinstance(k, str) and isinstance(v, str)}
    return _choices


def _save():
    path = cache_path()
    text = json.dumps(_choices, indent=0, sort_keys=True).encode()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _atomic.write(path, lambda f: f.write(text))
    except OSError:
        pass  # a read-only home only costs re-measuring next time


def _describe(value):
    """What a choice depends on: shapes and dtypes of arrays, values of the discrete
    arguments (geometry, activation, flags), but not of real-valued ones (learning
    rates and bias corrections change every step and must not trigger a measurement);
    a tuple, cheap to hash on every call."""
    kind = type(value)  # exact types first: this runs for every argument of every call
    if kind is np.ndarray:
        return (value.dtype.char, value.shape)
    if kind is int or kind is str or value is None or kind is bool:
        return value
    if kind is Window:  # a geometry: ints only, by construction
        return tuple(value)
    if kind is tuple or isinstance(value, tuple):  # geometries are tuples of ints
        items = tuple(value)
        if all(type(v) is int for v in items):
            return items
        return tuple([_describe(v) for v in items])
    if isinstance(value, np.ndarray):
        return (value.dtype.char, value.shape)
    if isinstance(value, (bool, int, str, np.integer)):
        return value
    return type(value).__name__


def key(op, args):
    return (op,) + tuple(_describe(a) for a in args)


# Arguments of more than this many bytes are not measured: the call runs on Cython,
# unrecorded. Measuring copies the arguments once (an op may write any of them), so a
# 16 GB memory-mapped operand would otherwise be read into memory.
MEASURE_MAX_BYTES = 64 << 20


def _array_bytes(args):
    return sum(a.nbytes for a in args if isinstance(a, np.ndarray))


def _copies(args):
    return [a.copy() if isinstance(a, np.ndarray) else a for a in args]


def _measure(op, args):
    """The candidate with the smallest median of three timed calls, each on one shared
    copy of the arguments (made once: the caller's arrays are never written, and the
    extra memory is the arguments' size once)."""
    best, best_time = "cython", float("inf")
    trial = _copies(args)
    for name in candidates():
        fn = getattr(_config.backend_module(name), op)
        try:
            fn(*trial)  # warm-up: compilation, workspaces
            times = []
            for _ in range(3):
                start = time.perf_counter()
                fn(*trial)
                times.append(time.perf_counter() - start)
        except Exception:  # a backend that cannot run this case is simply not chosen
            continue
        median = sorted(times)[1]
        if median < best_time:
            best, best_time = name, median
    return best


_memo = {}  # key tuple -> backend name: the per-call lookup, no string building


def choose(op, args):
    if _config.forked_after_kernels():
        return "cython"  # on one thread; Numba cannot run after fork (see _config)
    if op in _preferred:
        return _preferred[op]
    if len(candidates()) == 1:
        return "cython"  # nothing to measure without Numba
    k = key(op, args)
    name = _memo.get(k)
    if name is not None:
        return name
    text = repr(k)
    with _lock:
        choices = _load()
        name = choices.get(text)
    if name is None or name not in candidates():
        if not numba_ready() or _array_bytes(args) > MEASURE_MAX_BYTES:
            _memo[k] = "cython"  # not recorded: measured once Numba is compiled / never
            return "cython"
        name = _measure(op, args)
        with _lock:
            choices[text] = name
            _save()
    _memo[k] = name
    return name


def prefer(op, backend):
    """Run `op` on `backend` whatever was measured (None forgets the preference)."""
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; ops: {', '.join(OPS)}")
    if backend is None:
        _preferred.pop(op, None)
        return
    if backend not in candidates():
        raise ValueError(f"backend must be one of {candidates()}; got {backend!r}")
    _preferred[op] = backend


def choices():
    """{'op|shapes': backend} measured so far, plus preferences as {'op': backend}."""
    with _lock:
        return {**dict(_load()), **{f"{op} (preferred)": b for op, b in _preferred.items()}}


def forget():
    """Drop every measurement (in memory and on disk)."""
    global _choices
    with _lock:
        _choices = {}
        _memo.clear()
        _save()


def _dispatcher(op):
    def run(*args):
        return getattr(_config.backend_module(choose(op, args)), op)(*args)
    run.__name__ = op
    run.__doc__ = f"{op} on the backend measured fastest for these arguments."
    return run


for _op in OPS:
    globals()[_op] = _dispatcher(_op)
