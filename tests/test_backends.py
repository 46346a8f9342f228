"""The Numba backend's runtime (cache directory, threads) and the 'auto' dispatcher."""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastdl
from fastdl import ops

from support import COMPILED_BACKENDS

needs_numba = pytest.mark.skipif("numba" not in COMPILED_BACKENDS, reason="numba is not installed")


@needs_numba
def test_unwritable_home_and_install_location_still_import_and_run(tmp_path):
    """No writable ~/.cache and no NUMBA_CACHE_DIR: kernels compile, cache elsewhere, run."""
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env["HOME"] = "/proc"  # nothing can be created there, not even by root
    code = ("import numpy as np, fastdl; from fastdl.backends.numba_cpu import _runtime;"
            "fastdl.set_backend('numba');"
            "print(fastdl.ops.relu(np.array([-1.0, 2.0]))[1], _runtime.cache_dir())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=os.getcwd())
    assert out.returncode == 0, out.stderr
    value, cache = out.stdout.split()
    assert value == "2.0" and not cache.startswith("/proc")


@needs_numba
def test_numba_threads_follow_set_num_threads():
    import numba

    before = fastdl.get_num_threads()
    try:
        fastdl.set_num_threads(1)
        with fastdl.use_backend("numba"):
            ops.relu(np.ones(10))
        assert numba.get_num_threads() == 1
    finally:
        fastdl.set_num_threads(before)


@pytest.fixture
def auto(tmp_path, monkeypatch):
    """The 'auto' dispatcher with no measurements, caching under a temporary directory."""
    from fastdl.backends import auto

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(auto, "_choices", None)
    monkeypatch.setattr(auto, "_memo", {})
    if "numba" in auto.candidates():
        auto.mark_numba_ready()  # as after warmup(): measurements include Numba
    return auto


@pytest.fixture
def counted_measures(auto, monkeypatch):
    """Measurements replaced by a record of the ops measured (always choosing cython)."""
    calls = []
    monkeypatch.setattr(auto, "_measure", lambda op, args: calls.append(op) or "cython")
    return calls


def test_auto_measures_once_caches_and_can_be_overridden(auto, counted_measures):
    calls = counted_measures
    x = np.random.default_rng(2).standard_normal((2, 6, 6, 3)).astype(np.float32)
    k = np.random.default_rng(3).standard_normal((3, 3, 3, 2)).astype(np.float32)
    with fastdl.use_backend("auto"):
        y = ops.conv2d(x, k)
        ops.conv2d(x, k)
    assert calls == ["conv2d"]  # measured once for this shape
    assert any(key.startswith("('conv2d',") for key in auto.choices())
    assert os.path.exists(auto.cache_path())
    np.testing.assert_allclose(y, ops.conv2d(x, k), rtol=1e-6)
    auto.prefer("conv2d", "cython")
    try:
        assert auto.choose("conv2d", ()) == "cython"
        with pytest.raises(ValueError, match="unknown op"):
            auto.prefer("conv3d", "cython")
    finally:
        auto.prefer("conv2d", None)


@needs_numba
def test_auto_measures_numba_only_once_it_is_compiled(tmp_path, monkeypatch):
    """Before warmup() a new shape runs on Cython at once, unrecorded (measuring Numba
    would mean compiling it in the middle of the first step); afterwards it is measured."""
    from fastdl.backends import auto

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(auto, "_choices", None)
    monkeypatch.setattr(auto, "_memo", {})
    calls = []
    monkeypatch.setattr(auto, "_measure", lambda op, args: calls.append(op) or "numba")
    x = np.ones((1, 4, 4, 1), np.float32)
    assert not auto.numba_ready()
    assert auto.choose("max_pool2d", (x,)) == "cython"
    assert calls == [] and auto.choices() == {}
    auto.mark_numba_ready()
    monkeypatch.setattr(auto, "_memo", {})
    assert auto.numba_ready()
    assert auto.choose("max_pool2d", (x,)) == "numba"
    assert calls == ["max_pool2d"] and len(auto.choices()) == 1


def test_auto_does_not_remeasure_when_only_real_valued_arguments_change(counted_measures):
    calls = counted_measures
    p, g = np.ones(100, np.float32), np.ones(100, np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    with fastdl.use_backend("auto"):
        for step in range(1, 6):  # the bias corrections change every step
            ops.adam_update(p, g, m, v, step=step, lr=0.1 / step)
    assert calls == ["adam_update"]


def test_auto_measurement_never_mutates_the_caller_arrays(auto):
    p = np.ones(1000, np.float32)
    m, v = np.zeros_like(p), np.zeros_like(p)
    reference = p.copy(), m.copy(), v.copy()
    with fastdl.use_backend("reference"):
        ops.adam_update(reference[0], np.ones_like(p), reference[1], reference[2], step=1, lr=0.1)
    with fastdl.use_backend("auto"):
        ops.adam_update(p, np.ones_like(p), m, v, step=1, lr=0.1)  # measured, then applied once
    np.testing.assert_allclose(p, reference[0], rtol=1e-6)
    np.testing.assert_allclose(v, reference[2], rtol=1e-6)


def test_portable_kernels_behind_the_avx512_ones_match_the_reference():
    """FASTDL_AVX512=0 turns off the hand-written AVX-512 GEMM, pooling windows and
    Winograd convolutions: the portable code they replace on this CPU must still be right
    (pooling's own loops, im2col with BLAS for every product), so its tests run once more
    in a process without them."""
    env = dict(os.environ, FASTDL_AVX512="0")
    tests = os.path.dirname(os.path.abspath(__file__))
    selected = ("(cython and float32) or (cython and writes_every) or (cython and winograd)"
                " or first_maximum or tile_edges")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-disable",
         "-k", selected, os.path.join(tests, "test_pool.py"), os.path.join(tests, "test_conv.py"),
         os.path.join(tests, "test_dense.py") + "::test_float32_matmul_across_the_gemm_kernels_tile_edges"],
        env=env, capture_output=True, text=True, cwd=os.getcwd())
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " passed" in out.stdout
