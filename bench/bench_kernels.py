"""Kernels of the reference CNN (conv, pool, dense) against PyTorch and NumPy."""
import pytest

from fastdl.benchmarks.suites import kernels

from bench_support import LIBS, params, run

CASES = kernels.cases(quick=True, batches=[32], libs=LIBS)


@pytest.mark.parametrize("case,label", **params(CASES))
def test_kernel(benchmark, case, label):
    run(benchmark, case, label)
