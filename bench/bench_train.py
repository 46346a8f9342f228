"""The reference CNN's training step and inference against PyTorch (and Keras)."""
import pytest

from fastdl.benchmarks.suites import train

from bench_support import LIBS, params, run

CASES = train.cases(quick=True, batches=[32], libs=LIBS)


@pytest.mark.parametrize("case,label", **params(CASES))
def test_train(benchmark, case, label):
    run(benchmark, case, label)
