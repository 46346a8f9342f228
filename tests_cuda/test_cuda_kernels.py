"""What the op table (tests/optable.py, run on 'cuda' by tests/test_cuda.py) does not
cover: the tiled matmul on sizes that are not multiples of the tile and on Fortran-order
operands, and a model training end to end on the backend."""
import numpy as np
import pytest

import fastdl
from fastdl import ops

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def on_cuda():
    with fastdl.use_backend("cuda"):
        yield


def close(a, b, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (17, 19, 23), (16, 32, 16), (33, 5, 2)])
@pytest.mark.parametrize("order", ["CC", "FC", "CF"])
def test_tiled_matmul_any_size(m, k, n, order):
    a = np.asarray(RNG.standard_normal((m, k)), order=order[0])
    b = np.asarray(RNG.standard_normal((k, n)), order=order[1])
    close(ops.matmul(a, b), a @ b, rtol=1e-10, atol=1e-10)


def test_a_tiny_model_trains_on_cuda():
    from fastdl import layers
    from fastdl.models import Sequential

    fastdl.utils.set_random_seed(0)
    x = RNG.standard_normal((16, 6, 6, 1)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(int)
    model = Sequential([layers.Conv2D(2, 3, activation="relu", input_shape=(6, 6, 1)),
                        layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    assert model.evaluate(x, y, verbose=0) < first


def test_cuda_available_is_false_under_the_simulator():
    assert fastdl.cuda_available() is False
