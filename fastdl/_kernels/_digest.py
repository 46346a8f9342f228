"""The digest of the kernel sources (kernels/*.pyx, *.pxd, *.h) that a build compiles.

setup.py bakes it into the runtime extension (runtime.source_digest()), so that a source
tree without compiled kernels can tell whether an installed fastdl was built from the same
sources and borrow its extensions (see fastdl/_kernels/__init__.py). Plain Python with no
imports from fastdl: setup.py loads this file by its path.
"""
import hashlib
import os

SUFFIXES = (".pyx", ".pxd", ".h")


def kernels_digest(folder):
    """sha256 (hex, 16 digits) of the names and bytes of folder's kernel sources."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        if name.endswith(SUFFIXES):
            digest.update(name.encode() + b"\0")
            with open(os.path.join(folder, name), "rb") as f:
                digest.update(f.read() + b"\0")
    return digest.hexdigest()[:16]
