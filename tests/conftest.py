"""Fixtures: the backends under test, the dtypes, and torch when it is installed."""
import pytest

import fastdl

from support import COMPILED_BACKENDS, DTYPES, guard_backend


@pytest.fixture(params=COMPILED_BACKENDS)
def backend(request, monkeypatch):
    """The name of a compiled backend, active for the whole test, its kernels run on
    arrays that end at guard pages (support.guard_backend): a stray read or write past
    an array crashes the test instead of passing unseen."""
    with fastdl.use_backend(request.param):
        guard_backend(fastdl._config.backend_module(request.param), monkeypatch)
        yield request.param


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(fastdl.get_num_threads())
    return torch
