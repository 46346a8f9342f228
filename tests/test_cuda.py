"""The CUDA backend: the op table (tests/test_optable.py, with 'cuda' as the backend) and
the device-array tests in tests_cuda run under the CUDA simulator in a separate pytest
process (NUMBA_ENABLE_CUDASIM must be set before Numba is imported), and asking for it
without a GPU is a clear error."""
import importlib.util
import os
import subprocess
import sys

import pytest

import fastdl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_numba = pytest.mark.skipif(importlib.util.find_spec("numba") is None, reason="numba is not installed")
CUDA_TESTS = ["tests/test_optable.py", "tests_cuda"]


def run_cuda_tests(env, *extra):
    env = {**env, "FASTDL_TEST_BACKENDS": "cuda"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CUDA_TESTS, *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


@needs_numba
def test_cuda_kernels_under_the_simulator():
    proc = run_cuda_tests({**os.environ, "NUMBA_ENABLE_CUDASIM": "1"})
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout


@needs_numba
def test_asking_for_cuda_without_a_gpu_is_a_clear_error():
    if fastdl.cuda_available():
        pytest.skip("this machine has a GPU")
    code = "import fastdl; fastdl.set_backend('cuda')"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "the 'cuda' backend needs an NVIDIA GPU" in proc.stderr


def test_auto_never_picks_cuda():
    from fastdl.backends import auto

    assert "cuda" not in auto.candidates()
    assert fastdl.cuda_available() in (True, False)


@pytest.mark.gpu
@needs_numba
def test_cuda_kernels_on_a_real_gpu():
    if not fastdl.cuda_available():
        pytest.skip("no CUDA GPU here (the simulator run above covers the same tests)")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env["FASTDL_REAL_GPU"] = "1"
    proc = run_cuda_tests(env, "-k", "not simulator")
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
