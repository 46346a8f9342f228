"""Where data sets are looked for, how files are read safely, and how they are downloaded.

Order (README's Data section): an explicit path, $FASTDL_DATA, the Keras cache ($KERAS_HOME or
~/.keras, then datasets/), system locations, and only then a download from the data
set's canonical address, checked against its checksum and moved into the cache
atomically. When everything fails, the error lists every place and why it failed.
"""
import gzip
import hashlib
import io
import json
import os
import pickle
import threading
import urllib.request

import numpy as np

from fastdl import _atomic
from fastdl._config import user_cache_dir

_verified_lock = threading.Lock()


class DatasetNotFoundError(FileNotFoundError):
    """No place held the data set: `tried` is [(place, what happened)] in the order tried,
    `how_to_get` the way to get it offline."""

    def __init__(self, name, tried, how_to_get):
        self.name, self.tried, self.how_to_get = name, list(tried), how_to_get
        places = "\n".join(f"  - {where}: {outcome}" for where, outcome in self.tried)
        super().__init__(f"could not load {name}. Looked in:\n{places}\nTo use it offline: {how_to_get}")

    def one_line(self):
        """The error in one line: the download's failure if one was tried, and the fix."""
        failed = [f"{where}: {outcome}" for where, outcome in self.tried if outcome.startswith("failed")]
        return (f"could not load {self.name} ({failed[-1] if failed else 'not found'}). "
                f"To use it offline: {self.how_to_get.rstrip('.')}.")


def keras_cache_dir():
    """Keras's data set cache: $KERAS_HOME/datasets, else ~/.keras/datasets."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "datasets")


def fastdl_data_dir():
    return os.environ.get("FASTDL_DATA")


def search(name, places, how_to_get):
    """Try each (description, loader) in turn; return the first result.

    A loader returns the data or raises FileNotFoundError (nothing there), another
    OSError (a download that failed: try on), or ValueError (something there but
    corrupt). Corrupt data stops the search with an error naming the place: it is
    never passed over in favour of another copy, nor returned short.
    """
    tried = []
    for where, loader in places:
        try:
            return loader()
        except FileNotFoundError as exc:
            tried.append((where, f"not found ({exc})"))
        except (ValueError, EOFError) as exc:
            raise ValueError(f"{name} at {where} is corrupt or unreadable: {exc}") from exc
        except OSError as exc:
            tried.append((where, f"failed ({type(exc).__name__}: {exc})"))
    raise DatasetNotFoundError(name, tried, how_to_get)


def require_file(path):
    if not path or not os.path.isfile(path):
        raise FileNotFoundError(path or "(not set)")
    return path


def file_digest(path, algorithm):
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def arrays_digest(arrays):
    """sha256 of the arrays' bytes in order: the same for the data whatever its container
    (IDX gzip-compressed or not, npz)."""
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


def _verified_path():
    return os.path.join(user_cache_dir(), "verified-data.json")


def _file_stats(paths):
    stats = []
    for p in paths:
        st = os.stat(p)
        stats.append([os.path.realpath(p), st.st_size, st.st_mtime_ns])
    return stats


def _load_verified():
    try:
        with open(_verified_path()) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def check_known(name, paths, digests, label):
    """Raise ValueError naming `label` unless one of `digests` (pairs of a function giving
    a checksum and the set of published checksums it may give) matches, or these very
    files (path, size, mtime) passed before."""
    from fastdl import datasets

    if not datasets.VERIFY_CHECKSUMS:
        return
    stats = _file_stats(paths)
    with _verified_lock:
        seen = _load_verified().get(name)
    if isinstance(seen, list) and stats in seen:
        return
    got = []
    for compute, accepted in digests:
        value = compute()
        if value in accepted:
            break
        got.append(value)
    else:
        raise ValueError(f"{label}: the content's checksum ({', '.join(got)}) is not that of the "
                         f"published {name}: a changed pixel, reordered labels, or another version "
                         f"of the data. Replace the files, or set "
                         f"fastdl.datasets.VERIFY_CHECKSUMS = False to load them anyway")
    with _verified_lock:
        data = _load_verified()
        entries = data.get(name) if isinstance(data.get(name), list) else []
        data[name] = [e for e in entries if e != stats][-15:] + [stats]
        text = json.dumps(data).encode()
        try:
            os.makedirs(os.path.dirname(_verified_path()), exist_ok=True)
            _atomic.write(_verified_path(), lambda f: f.write(text))
        except OSError:
            pass  # an unwritable cache only costs hashing again next time


def download(url, destination, algorithm, expected, timeout=60):
    """Fetch url into destination (atomically, fastdl._atomic) if its checksum matches;
    else raise ValueError and leave nothing behind."""
    os.makedirs(os.path.dirname(destination), exist_ok=True)

    def fetch(out):
        digest = hashlib.new(algorithm)
        with urllib.request.urlopen(url, timeout=timeout) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != expected:  # raised before the rename: nothing is kept
            raise ValueError(f"checksum mismatch for {url}: {algorithm} {digest.hexdigest()}, "
                             f"expected {expected}; the download was rejected")
    _atomic.write(destination, fetch)
    return destination


def read_idx(path):
    """An IDX file (the MNIST format), gzip-compressed or not, checked against its header."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: corrupt gzip data ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape))
    if len(raw) - header != size:
        raise ValueError(f"{path}: header promises {size} bytes of data for shape {shape}; "
                         f"the file has {len(raw) - header}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape).copy()


class _PlainDataUnpickler(pickle.Unpickler):
    """Loads dicts, lists, bytes, numbers and NumPy arrays, and nothing that runs code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"),
               ("_codecs", "encode")}  # how protocol-2 pickles from Python 3 spell bytes

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise ValueError(f"refusing to unpickle {module}.{name}: only plain data is loaded")


def load_plain_pickle(data):
    """Unpickle bytes with the restricted unpickler (Python 2 pickles as bytes keys)."""
    try:
        return _PlainDataUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError) as exc:
        raise ValueError(f"corrupt pickle ({type(exc).__name__}: {exc})") from None


def verify(name, arrays, image_shape, counts, classes):
    """Shapes, dtypes and label ranges of (x_train, y_train), (x_test, y_test)."""
    (x_train, y_train), (x_test, y_test) = arrays
    for split, x, y, n in (("train", x_train, y_train, counts[0]), ("test", x_test, y_test, counts[1])):
        if x.dtype != np.uint8 or x.shape != (n,) + image_shape:
            raise ValueError(f"{name} {split} images: expected uint8 {(n,) + image_shape}, got {x.dtype} {x.shape}")
        if len(y) != n:
            raise ValueError(f"{name} {split} labels: expected {n}, got {len(y)}")
        if y.size and (y.min() < 0 or y.max() >= classes):
            raise ValueError(f"{name} {split} labels outside [0, {classes}): {y.min()}..{y.max()}")
    return arrays
