"""Fixtures: the backends under test, the dtypes, and torch when it is installed."""
import pytest

import fastdl

from support import COMPILED_BACKENDS, DTYPES


@pytest.fixture(params=COMPILED_BACKENDS)
def backend(request):
    """The name of a compiled backend, active for the whole test."""
    with fastdl.use_backend(request.param):
        yield request.param


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(fastdl.get_num_threads())
    return torch
