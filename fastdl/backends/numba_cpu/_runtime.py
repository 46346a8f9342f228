"""Numba set up before any kernel is compiled: a cache directory that always works, and
the OpenMP threading layer (shared with the Cython kernels, safe for several Python
threads at once, unlike 'workqueue')."""
import os
import tempfile


def cache_dir():
    """$NUMBA_CACHE_DIR, else a per-user cache that is writable even when site-packages
    is not (Numba's default writes beside the sources, and fails at import there)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    from fastdl._config import user_cache_dir

    user = os.getuid() if hasattr(os, "getuid") else "user"
    for candidate in (os.path.join(user_cache_dir(), "numba"),
                      os.path.join(tempfile.gettempdir(), f"fastdl-numba-{user}")):
        try:
            os.makedirs(candidate, exist_ok=True)
            if os.access(candidate, os.W_OK):
                return candidate
        except OSError:
            continue
    return tempfile.mkdtemp(prefix="fastdl-numba-")


def configure():
    import numba

    numba.config.CACHE_DIR = cache_dir()
    if not os.environ.get("NUMBA_THREADING_LAYER"):
        numba.config.THREADING_LAYER = "omp"
    return numba
