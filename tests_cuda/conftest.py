"""The CUDA backend's tests run in their own pytest process with the simulator on
(tests/test_cuda.py starts it): NUMBA_ENABLE_CUDASIM=1 must be set before Numba loads."""
import os
import sys

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1" and not os.environ.get("FASTDL_REAL_GPU"):
    raise RuntimeError("run these tests through tests/test_cuda.py (or with NUMBA_ENABLE_CUDASIM=1 set)")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
