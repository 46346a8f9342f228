"""Fashion-MNIST: 60,000 + 10,000 grayscale 28x28 images of 10 clothing classes.

load_data() returns (x_train, y_train), (x_test, y_test): uint8 (60000, 28, 28) and
(60000,) labels, as Keras does.
"""
import os

from fastdl.datasets import _mnist_format, _sources

BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"  # Zalando's release
MD5 = {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
       "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
       "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
       "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}
SYSTEM_DIRS = ("/usr/share/datasets/fashion-mnist",)  # Debian: dataset-fashion-mnist
NAME = "Fashion-MNIST"


def _download():
    directory = os.path.join(_sources.keras_cache_dir(), "fashion-mnist")
    for fname in _mnist_format.IDX_FILES:
        target = os.path.join(directory, fname)
        if not os.path.isfile(target):
            _sources.download(BASE_URL + fname, target, "md5", MD5[fname])
    return _mnist_format.from_idx_dir(directory, NAME)


def load_data(path=None):
    """Fashion-MNIST from `path` (a directory of the four IDX files), $FASTDL_DATA,
    the Keras cache, /usr/share/datasets/fashion-mnist, or a checked download."""
    env = _sources.fastdl_data_dir()
    places = []
    if path is not None:
        places.append((f"path={os.fspath(path)!r}", lambda: _mnist_format.from_path(path, NAME)))
    if env:
        places.append((f"$FASTDL_DATA/fashion-mnist ({env})",
                       lambda: _mnist_format.from_idx_dir(os.path.join(env, "fashion-mnist"), NAME)))
    cache = os.path.join(_sources.keras_cache_dir(), "fashion-mnist")
    places.append((f"Keras cache {cache}", lambda: _mnist_format.from_idx_dir(cache, NAME)))
    for d in SYSTEM_DIRS:
        places.append((d, lambda d=d: _mnist_format.from_idx_dir(d, NAME)))
    places.append((f"download from {BASE_URL} into {cache}", _download))
    return _sources.search(NAME, places, "apt-get install dataset-fashion-mnist (Debian), or put the "
                           "four IDX .gz files in ~/.keras/datasets/fashion-mnist/")
