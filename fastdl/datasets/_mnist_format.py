"""MNIST-format data sets (MNIST, Fashion-MNIST): four IDX files, or Keras's mnist.npz."""
import os

import numpy as np

from fastdl.datasets import _sources

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
    return check(((x_train, y_train), (x_test, y_test)), name)


def from_npz(path, name):
    _sources.require_file(path)
    with np.load(path, allow_pickle=False) as f:
        arrays = ((f["x_train"], f["y_train"]), (f["x_test"], f["y_test"]))
    return check(arrays, name)


def check(arrays, name):
    return _sources.verify(name, arrays, (28, 28), (60000, 10000), 10)


def from_path(path, name):
    """An explicit path: an .npz file or a directory of IDX files."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return from_idx_dir(path, name)
    return from_npz(path, name)
