"""Compiled kernels, built from the Cython sources in kernels/ (see setup.py).

`python -m fastdl` run from the repository root imports this source tree ahead of an
installed fastdl; when its kernels were never built here, this package borrows the
installed package's compiled modules, provided they were built from the same kernel
sources (the runtime module's source_digest() is the digest of kernels/ here). Otherwise
the imports fail, and the command line says in one line what to build.
"""
import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def _built(folder):
    return os.path.isdir(folder) and any(name.startswith("runtime.") and name.endswith((".so", ".pyd"))
                                         for name in os.listdir(folder))


def _installed_folder():
    """The _kernels folder of an installed fastdl with compiled modules, other than this one
    (the tree's own egg-info, which a `pip install .` leaves, names this folder)."""
    import importlib.metadata

    for dist in importlib.metadata.distributions(name="fastdl"):
        folder = os.path.abspath(str(dist.locate_file(os.path.join("fastdl", "_kernels"))))
        if folder != _HERE and _built(folder):
            return folder
    return None


def _borrow_installed():
    """Add the installed fastdl's _kernels folder to __path__ when its build matches kernels/ here."""
    import importlib
    import sys

    from fastdl._kernels._digest import kernels_digest

    sources = os.path.join(os.path.dirname(os.path.dirname(_HERE)), "kernels")
    folder = _installed_folder() if os.path.isdir(sources) else None
    if folder is None:
        return
    __path__.append(folder)
    try:
        same = importlib.import_module(f"{__name__}.runtime").source_digest() == kernels_digest(sources)
    except (ImportError, AttributeError):
        same = False
    if not same:  # another version's kernels: build this tree's instead
        __path__.remove(folder)
        sys.modules.pop(f"{__name__}.runtime", None)


if not _built(_HERE):
    _borrow_installed()
