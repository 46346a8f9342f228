"""Backend selection, threads, show_config, and a light `import fastdl`."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastdl

from support import COMPILED_BACKENDS


def test_set_and_get_backend():
    assert fastdl.get_backend() == "auto"  # the default: per op and shape, the faster backend
    try:
        fastdl.set_backend("reference")
        assert fastdl.get_backend() == "reference"
    finally:
        fastdl.set_backend("auto")


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError,
                       match=r"backend must be one of .reference., .cython., .numba., .auto., .cuda.; got .tpu."):
        fastdl.set_backend("tpu")
    with pytest.raises(ValueError, match="got 'tpu'"):
        with fastdl.use_backend("tpu"):
            pass


def test_use_backend_is_scoped_to_the_block_and_thread():
    seen = {}

    def other_thread():
        seen["other"] = fastdl.get_backend()

    with fastdl.use_backend("reference"):
        assert fastdl.get_backend() == "reference"
        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
    assert fastdl.get_backend() == "auto"
    assert seen["other"] == "auto"


def test_set_num_threads_drives_kernels_and_blas():
    from threadpoolctl import threadpool_info

    before = fastdl.get_num_threads()
    try:
        fastdl.set_num_threads(1)
        assert fastdl.get_num_threads() == 1
        x = np.random.default_rng(0).standard_normal((3, 9, 9, 2))
        k = np.random.default_rng(1).standard_normal((3, 3, 2, 4))
        single = fastdl.ops.conv2d(x, k)
        assert all(lib["num_threads"] == 1 for lib in threadpool_info() if lib["user_api"] == "blas")
    finally:
        fastdl.set_num_threads(before)
    np.testing.assert_allclose(fastdl.ops.conv2d(x, k), single, rtol=1e-12)


@pytest.mark.parametrize("value, expected", [("1", 1), ("3", 3), ("0", None), ("two", None), ("", None)])
def test_omp_num_threads_sets_the_default_thread_count(value, expected):
    code = "import os, fastdl; print(fastdl.get_num_threads(), len(os.sched_getaffinity(0)))"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": value},
                         capture_output=True, text=True, check=True)
    threads, cores = map(int, out.stdout.split())
    assert threads == (expected if expected is not None else cores)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_set_num_threads_rejects_bad_values(bad):
    with pytest.raises(ValueError, match=r"n must be an int >= 1"):
        fastdl.set_num_threads(bad)


def test_show_config_reports_versions_and_backends(capsys):
    fastdl.show_config()
    text = capsys.readouterr().out
    for needle in ("fastdl: 0.1.0", "numpy:", "cython: available", "reference: available", "openmp:", "blas:"):
        assert needle in text


def test_import_is_light():
    """`import fastdl` loads neither Numba nor SciPy (whose BLAS the Cython backend loads on first use)."""
    code = ("import sys, fastdl; "
            "print(sorted(m for m in ('numba', 'scipy', 'torch', 'fastdl._kernels.conv') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", COMPILED_BACKENDS + ["auto"])
def test_two_python_threads_run_kernels_at_once(name):
    x = np.random.default_rng(0).standard_normal((8, 16, 16, 3)).astype(np.float32)
    k = np.random.default_rng(1).standard_normal((3, 3, 3, 8)).astype(np.float32)
    with fastdl.use_backend(name):
        expected = fastdl.ops.conv2d(x, k)
    results, errors = [], []

    def work():
        try:
            with fastdl.use_backend(name):
                for _ in range(20):
                    results.append(fastdl.ops.conv2d(x, k))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        np.testing.assert_array_equal(r, expected)


@pytest.mark.parametrize("shape,dtype", [((5,), np.float32), ((3, 0, 2), np.float64), ((), np.float32),
                                         (np.int64(7), np.uint8), ([2, 3], np.float64)])
def test_host_arrays_start_on_a_cache_line(shape, dtype):
    from fastdl import _device

    for _ in range(4):  # NumPy's own allocations start 16 bytes into a line, often
        a = _device.aligned_empty(shape, dtype)
        assert a.ctypes.data % _device.ALIGNMENT == 0 or a.size == 0  # (no data to align)
        assert a.shape == (tuple(shape) if np.iterable(shape) else (int(shape),)) and a.dtype == dtype
        assert a.flags.c_contiguous and a.flags.writeable
    full = _device.full((3, 4), np.float32, 2.5)
    assert full.ctypes.data % _device.ALIGNMENT == 0 and (full == 2.5).all()
