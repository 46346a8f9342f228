"""CIFAR-10: 50,000 + 10,000 colour 32x32 images of 10 classes.

load_data() returns (x_train, y_train), (x_test, y_test): uint8 (50000, 32, 32, 3)
and uint8 labels (50000, 1), as Keras does. The batches are pickles; they are read
with an unpickler that loads only plain data.
"""
import hashlib
import os
import tarfile

import numpy as np

from fastdl.datasets import _sources

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
# md5 of each batch file of the python release (the files in its tarball)
BATCH_MD5 = {"data_batch_1": "c99cafc152244af753f735de768cd75f",
             "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
             "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
             "data_batch_4": "634d18415352ddfa80567beed471001a",
             "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
             "test_batch": "40351d587109b95175f43aff81a1287e"}
NAME = "CIFAR-10"


def _parse_batch(data, label):
    batch = _sources.load_plain_pickle(data)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        what = sorted(batch)[:4] if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"{label}: not a CIFAR-10 batch (keys {what})")
    images = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"])
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3072 or len(labels) != len(images):
        raise ValueError(f"{label}: expected uint8 (n, 3072) images and n labels; got "
                         f"{images.dtype} {images.shape} and {labels.shape}")
    # stored channel-first per image (1024 red, then green, then blue): to NHWC
    return images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.uint8)


def _batches_digest(raw):
    """The md5 of every batch, joined in BATCHES' order (one checksum for the set)."""
    return ",".join(hashlib.md5(raw[name]).hexdigest() for name in BATCHES)


PUBLISHED = {",".join(BATCH_MD5[name] for name in BATCHES)}


def _assemble(read, files, label):
    """read(name) -> bytes of one batch; returns Keras's arrays, verified (shapes, labels,
    and, once per set of files, the published checksums)."""
    raw = {name: read(name) for name in BATCHES}
    _sources.check_known(NAME, files, [(lambda: _batches_digest(raw), PUBLISHED)], label)
    parts = [_parse_batch(raw[name], name) for name in BATCHES]
    x_train = np.ascontiguousarray(np.concatenate([p[0] for p in parts[:5]]))
    y_train = np.concatenate([p[1] for p in parts[:5]]).reshape(-1, 1)
    x_test, y_test = np.ascontiguousarray(parts[5][0]), parts[5][1].reshape(-1, 1)
    return _sources.verify(NAME, ((x_train, y_train), (x_test, y_test)), (32, 32, 3), (50000, 10000), 10)


def from_folder(directory):
    """The six batch files in a directory (Keras's extracted layout)."""
    if not directory or not os.path.isdir(directory):
        raise FileNotFoundError(directory or "(not set)")
    for name in BATCHES:
        _sources.require_file(os.path.join(directory, name))

    def read(name):
        with open(os.path.join(directory, name), "rb") as f:
            return f.read()
    return _assemble(read, [os.path.join(directory, name) for name in BATCHES], directory)


def from_archive(path):
    """The batches straight from the release tarball (nothing extracted to disk)."""
    _sources.require_file(path)
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
            missing = [n for n in BATCHES if n not in members]
            if missing:
                raise ValueError(f"{path}: the archive lacks {missing}")
            return _assemble(lambda name: tar.extractfile(members[name]).read(), [path], path)
    except tarfile.TarError as exc:
        raise ValueError(f"{path}: corrupt archive ({exc})") from None


def from_path(path):
    path = os.fspath(path)
    if os.path.isdir(path):
        nested = os.path.join(path, FOLDER)
        return from_folder(nested if os.path.isdir(nested) else path)
    return from_archive(path)


def _download():
    target = os.path.join(_sources.keras_cache_dir(), ARCHIVE)
    _sources.download(URL, target, "sha256", SHA256)
    return from_archive(target)


def load_data(path=None):
    """CIFAR-10 from `path` (the batches' folder or the tarball), $FASTDL_DATA, the Keras
    cache (both Keras layouts, or the tarball), or a checked download of the tarball."""
    env = _sources.fastdl_data_dir()
    cache = _sources.keras_cache_dir()
    places = []
    if path is not None:
        places.append((f"path={os.fspath(path)!r}", lambda: from_path(path)))
    if env:
        places.append((f"$FASTDL_DATA/{FOLDER} ({env})", lambda: from_folder(os.path.join(env, FOLDER))))
        places.append((f"$FASTDL_DATA/{ARCHIVE} ({env})", lambda: from_archive(os.path.join(env, ARCHIVE))))
    for layout in (os.path.join(cache, FOLDER),                          # Keras 2
                   os.path.join(cache, FOLDER + "-target", FOLDER)):     # Keras 3
        places.append((f"Keras cache {layout}", lambda d=layout: from_folder(d)))
    archive = os.path.join(cache, ARCHIVE)
    places.append((f"Keras cache {archive}", lambda: from_archive(archive)))
    places.append((f"download from {URL}", _download))
    return _sources.search(NAME, places, f"download {URL} elsewhere and put it in {cache}/, "
                           "or pass its path to load_data(path=...)")
