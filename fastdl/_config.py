"""Which backend runs the ops, and how many threads the kernels use.

The backend is a process-wide default (`set_backend`) that a `use_backend` block can
override for the current thread or task. Backend modules are imported on first use, so
`import fastdl` stays cheap (the Cython backend pulls in SciPy's BLAS).
"""
import contextlib
import contextvars
import importlib
import importlib.util
import numbers
import os
import sys

BACKENDS = ("reference", "cython", "numba", "auto", "cuda")
_MODULES = {"reference": "reference", "cython": "cython", "numba": "numba_cpu", "auto": "auto", "cuda": "cuda"}

_default_backend = "auto"
_override = contextvars.ContextVar("fastdl_backend", default=None)
_modules = {}
_num_threads = None  # None: every core this process may run on
# a thread's own count, where one is set (threads_in_this_thread), over the process's
_thread_count = contextvars.ContextVar("fastdl_threads", default=None)
MAX_THREADS_PER_CORE = 8  # set_num_threads' ceiling: libgomp exits or crashes far above it

# Fork: libgomp's worker threads do not survive fork(), and a child that asks the parent's
# team for work waits for them for ever (Numba's OpenMP layer terminates the child
# instead). A child forked after fastdl's kernels were loaded therefore runs them on one
# thread (which never touches that team) and never on Numba. To use more threads in
# worker processes, start them with multiprocessing's 'spawn' or 'forkserver' method.
_forked_after_kernels = False


def _after_fork_in_child():
    global _forked_after_kernels
    if any(name.startswith("fastdl._kernels.") or name == "numba" for name in sys.modules):
        _forked_after_kernels = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def forked_after_kernels():
    """Whether this process was forked from one that had loaded fastdl's kernels."""
    return _forked_after_kernels


FORK_ADVICE = ("this process was forked after fastdl's compiled kernels were loaded, and OpenMP's "
               "threads do not survive fork(): start worker processes with multiprocessing's "
               "'spawn' or 'forkserver' method (multiprocessing.get_context('spawn')), or use "
               "one thread in the child")


def _check_backend_name(name):
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {name!r}")
    return name


def set_backend(name):
    """Make `name` the backend that fastdl.ops use from now on, in every thread."""
    global _default_backend
    _check_backend_name(name)
    backend_module(name)  # fail now, not at the first op, if it cannot load
    _default_backend = name


def get_backend():
    """The name of the backend that fastdl.ops use here and now."""
    return _override.get() or _default_backend


@contextlib.contextmanager
def use_backend(name):
    """Run the ops of a `with` block on backend `name` (this thread or task only)."""
    _check_backend_name(name)
    backend_module(name)
    token = _override.set(name)
    try:
        yield name
    finally:
        _override.reset(token)


def backend_module(name=None):
    """The module implementing backend `name` (default: the active one), imported once."""
    name = name or get_backend()
    if _forked_after_kernels and name == "numba":
        raise RuntimeError(f"the numba backend cannot run in this process (Numba's OpenMP layer "
                           f"terminates it): {FORK_ADVICE}")
    module = _modules.get(name)
    if module is None:
        module = importlib.import_module(f"fastdl.backends.{_MODULES[name]}")
        _modules[name] = module
        _configure_blas()  # the backend may have loaded a BLAS of its own
    return module


def user_cache_dir():
    """fastdl's per-user cache folder ($XDG_CACHE_HOME/fastdl, else ~/.cache/fastdl): auto's
    measurements, Numba's compiled kernels, the data sets already verified."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastdl")


def _available_cores():
    """The default thread count: OMP_NUM_THREADS when it is a positive int (as PyTorch and
    NumPy's BLAS read it), else the cores this process may run on."""
    requested = os.environ.get("OMP_NUM_THREADS", "").strip()
    if requested.isdigit() and int(requested) >= 1:
        return int(requested)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_num_threads(n):
    """Use `n` threads in every kernel: OpenMP regions and BLAS alike."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"set_num_threads: n must be an int >= 1; got {n!r}")
    ceiling = MAX_THREADS_PER_CORE * (os.cpu_count() or 1)
    if n > ceiling:
        raise ValueError(f"set_num_threads: n must be at most {ceiling} ({MAX_THREADS_PER_CORE} per "
                         f"CPU of this machine's {os.cpu_count()}); got {n}")
    if n > 1 and _forked_after_kernels:
        raise RuntimeError(f"set_num_threads({n}): {FORK_ADVICE}")
    _num_threads = int(n)
    _configure_blas()


def get_num_threads():
    """The number of threads kernels run with (one in a child forked after the kernels
    were loaded: see FORK_ADVICE)."""
    if _forked_after_kernels:
        return 1
    own = _thread_count.get()
    if own is not None:
        return own
    return _num_threads if _num_threads is not None else _available_cores()


@contextlib.contextmanager
def threads_in_this_thread(n):
    """Kernels called from the current thread (or task) use n threads inside the block;
    the other threads keep theirs. The prefetch thread runs its kernels on one: the
    training step it overlaps uses every core already, and two sets of OpenMP threads
    waiting at each other's barriers slow both (measured: an augmented epoch 25-35%
    slower prefetched with two threads than made in step, on two cores)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"threads_in_this_thread: n must be an int >= 1; got {n!r}")
    token = _thread_count.set(int(n))
    try:
        yield
    finally:
        _thread_count.reset(token)


def _is_kernel_blas(filepath):
    """Whether this BLAS library is SciPy's, the one the compiled kernels call."""
    spec = importlib.util.find_spec("scipy")
    if spec is None or not spec.submodule_search_locations:
        return False
    root = os.path.realpath(spec.submodule_search_locations[0])
    path = os.path.realpath(filepath)
    return path.startswith(root + os.sep) or path.startswith(root + ".libs" + os.sep)


def _configure_blas():
    """The kernels' BLAS runs one thread inside each of our OpenMP threads (its own
    threads would spin against ours between calls); any other BLAS loaded (NumPy's)
    gets the thread count set with set_num_threads, if one was set."""
    if "scipy" not in sys.modules and _num_threads is None:
        return  # nothing of ours to configure yet
    from threadpoolctl import ThreadpoolController

    for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
        if _is_kernel_blas(lib.filepath):
            lib.set_num_threads(1)
        elif _num_threads is not None:
            lib.set_num_threads(_num_threads)


def cuda_available():
    """True only with a real NVIDIA GPU and driver (never under the CUDA simulator)."""
    if importlib.util.find_spec("numba") is None or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False
    # numba.cuda directly: importing the backend package raises where there is no GPU
    from numba import cuda

    try:
        return bool(cuda.is_available())
    except Exception:
        return False
