"""Batched augmentation against the per-image SciPy loop Keras runs."""
import pytest

from fastdl.benchmarks.suites import augment

from bench_support import LIBS, params, run

CASES = augment.cases(quick=True, batches=[32], libs=LIBS)


@pytest.mark.parametrize("case,label", **params(CASES))
def test_augment(benchmark, case, label):
    run(benchmark, case, label)
