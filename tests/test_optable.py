"""Every op of the backend contract (and the ops composed of them), from its entry in tests/optable.py: every backend
against the reference on the entry's samples, PyTorch's equivalent where the entry gives
one, and the invalid arguments it must refuse (with the backend fixture's guard pages)."""
import copy
import os

import numpy as np
import pytest

from fastdl.backends import _spec

from optable import BY_NAME, TABLE
from support import assert_close, reference

NAMES = [info.name for info in TABLE]

# Under the CUDA simulator every thread is a Python call: the entries' samples of up to
# SIMULATED_MAX_SIZE elements an array, and no finite differences (thousands of launches;
# the reference backward they establish is what the simulated backend is matched against).
SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
SIMULATED_MAX_SIZE = 1000


def samples(info, rng, dtype):
    chosen = info.samples(rng, dtype)
    if SIMULATED:
        chosen = [(args, kwargs) for args, kwargs in chosen
                  if all(np.size(a) <= SIMULATED_MAX_SIZE for a in args if isinstance(a, np.ndarray))]
    assert chosen, f"{info.name}: no sample to run"
    return chosen


def results(value):
    """An op's result(s) as a list of arrays (None entries kept)."""
    if isinstance(value, tuple):
        return list(value)
    return [value]


# ops of fastdl.ops made of contract ops (on every backend through them), with entries too
COMPOSED = {"conv2d_transpose_backward"}


def test_every_contract_op_has_an_entry():
    assert sorted(set(NAMES) - COMPOSED) == sorted(_spec.NAMES) and len(set(NAMES)) == len(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_op_matches_the_reference(backend, dtype, name):
    info = BY_NAME[name]
    for args, kwargs in samples(info, np.random.default_rng(0), dtype):
        got = results(info.run(*copy.deepcopy(args), **copy.deepcopy(kwargs)))
        want = results(reference(info.run, *copy.deepcopy(args), **copy.deepcopy(kwargs)))
        assert len(got) == len(want)
        for g, w in zip(got, want):
            if w is None:
                assert g is None
            else:
                assert_close(np.asarray(g), np.asarray(w), np.asarray(w).dtype, info.scale)


@pytest.mark.parametrize("name", [info.name for info in TABLE if info.torch])
def test_the_op_matches_torch(backend, torch, name):
    info = BY_NAME[name]
    for args, kwargs in samples(info, np.random.default_rng(1), np.float64):
        want = info.torch(torch, *copy.deepcopy(args), **kwargs)
        if want is None:
            continue  # a case torch spells differently
        got = results(info.run(*copy.deepcopy(args), **kwargs))[0]
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * info.scale)


@pytest.mark.skipif(SIMULATED, reason="finite differences take thousands of simulated launches")
@pytest.mark.parametrize("name", [info.name for info in TABLE if info.grad])
def test_the_ops_backward_matches_finite_differences(backend, name):
    info = BY_NAME[name]
    args, kwargs = info.samples(np.random.default_rng(2), np.float64)[0]
    for what, analytic, numerical in info.grad(args, kwargs):
        np.testing.assert_allclose(analytic, numerical, rtol=1e-5, atol=1e-7, err_msg=f"{name}: {what}")


@pytest.mark.parametrize("name", [info.name for info in TABLE if info.invalid])
def test_the_op_refuses_invalid_arguments(backend, name):
    for call, error, message in BY_NAME[name].invalid:
        with pytest.raises(error, match=message):
            call()
