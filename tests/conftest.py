"""Fixtures: the backends under test, the dtypes, and torch when it is installed."""
import pytest

import fastdl

try:  # tests/test_fuzz.py's example counts: bounded and the same on every run by default
    from hypothesis import settings

    settings.register_profile("ci", max_examples=60, derandomize=True, database=None)
    settings.register_profile("long", max_examples=2000)
    settings.load_profile("ci")  # --hypothesis-profile=long (applied after this) for deeper runs
except ImportError:
    pass

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
