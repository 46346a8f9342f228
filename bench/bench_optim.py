"""Fused optimizer updates against torch.optim (fused=True where it exists)."""
import pytest

from fastdl.benchmarks.suites import optim

from bench_support import LIBS, params, run

CASES = optim.cases(quick=True, batches=[32], libs=LIBS)


@pytest.mark.parametrize("case,label", **params(CASES))
def test_update(benchmark, case, label):
    if case.setup is not None:
        case.setup()
    run(benchmark, case, label)
