"""LSTM and GRU forward + backward against torch.nn.LSTM / nn.GRU."""
import pytest

from fastdl.benchmarks.suites import recurrent

from bench_support import LIBS, params, run

CASES = recurrent.cases(quick=True, batches=None, libs=LIBS)


@pytest.mark.parametrize("case,label", **params(CASES))
def test_recurrent(benchmark, case, label):
    run(benchmark, case, label)
