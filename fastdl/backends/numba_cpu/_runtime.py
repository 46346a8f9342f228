"""Numba set up before any kernel is compiled: a cache directory that always works, and
the OpenMP threading layer (shared with the Cython kernels, safe for several Python
threads at once, unlike 'workqueue')."""
import hashlib
import os
import tempfile

# Files whose functions the kernels compile in (inlined or called): Numba's cache checks
# only the file of the function it caches, so a change to these would reuse stale
# machine code. The cache folder is named for their contents instead.
_COMPILED_IN = ("_element_losses.py", "_element_updates.py", "_spec.py")


def _sources_digest():
    digest = hashlib.sha1()
    folder = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in _COMPILED_IN:
        with open(os.path.join(folder, name), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:10]


def cache_dir():
    """$NUMBA_CACHE_DIR, else a per-user cache that is writable even when site-packages
    is not (Numba's default writes beside the sources, and fails at import there), one
    folder per version of the files in _COMPILED_IN."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    from fastdl._config import user_cache_dir

    user = os.getuid() if hasattr(os, "getuid") else "user"
    digest = _sources_digest()
    for candidate in (os.path.join(user_cache_dir(), f"numba-{digest}"),
                      os.path.join(tempfile.gettempdir(), f"fastdl-numba-{user}-{digest}")):
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
