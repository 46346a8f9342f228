"""Jobs that tests/test_distributed.py runs under `mpirun -n 2`. Rank 0 prints the verdict."""
import sys

import numpy as np

import fastdl
from fastdl import distributed, layers, optimizers
from fastdl.models import Sequential
from fastdl.preprocessing.image import ImageDataGenerator


def small_model(seed=0):
    fastdl.utils.set_random_seed(seed)
    model = Sequential([layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)),
                        layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(3, activation="softmax")])
    model.compile(optimizers.Adam(learning_rate=0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def data():
    rng = np.random.default_rng(1)
    return rng.standard_normal((70, 8, 8, 1)).astype(np.float32), rng.integers(0, 3, 70)


def equivalence():
    """N steps on 2 ranks == N steps on 1 process (same seed, same global batches)."""
    x, y = data()
    model = small_model()
    history = model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0, distributed=True)
    weights = model.flat_params.copy()
    if distributed.rank() == 0:
        alone = small_model()
        alone_history = alone.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
        np.testing.assert_allclose(weights, alone.flat_params, rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(history.history["loss"], alone_history.history["loss"], rtol=1e-5)
    others = distributed.comm().gather(weights, root=0)
    if distributed.rank() == 0:
        np.testing.assert_array_equal(others[0], others[1])  # identical on every rank
        print("EQUIVALENT")


def shuffled_flow():
    """Training from a sharded ImageDataGenerator flow runs and keeps the ranks in step."""
    x, y = data()
    model = small_model()
    flow = ImageDataGenerator(horizontal_flip=True).flow(x, y, batch_size=16)
    model.fit(flow, epochs=2, verbose=0, distributed=True)
    ids = ImageDataGenerator().flow(x, np.arange(70), batch_size=16)
    ids.set_shard(distributed.rank(), distributed.size(), 7)
    seen = [int(label) for i in range(len(ids)) for label in ids[i][1]]
    everything = distributed.comm().gather(seen, root=0)
    weights = distributed.comm().gather(model.flat_params.copy(), root=0)
    if distributed.rank() == 0:
        assert sorted(everything[0] + everything[1]) == list(range(70))  # each sample once
        np.testing.assert_array_equal(weights[0], weights[1])
        print("SHARDED")


def fault():
    """Rank 1 fails mid-training: the job must end, not hang."""
    x, y = data()
    model = small_model()

    class Boom(fastdl.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if distributed.rank() == 1 and batch == 2:
                raise RuntimeError("simulated failure on rank 1")

    model.fit(x, y, batch_size=16, epochs=50, verbose=0, callbacks=[Boom()], distributed=True)


def short_last_batch():
    """33 samples, global batch 32: rank 1's share of the last batch is empty, and it
    still takes part in that step (zero gradient, zero samples)."""
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((33, 8, 8, 1)).astype(np.float32), rng.integers(0, 3, 33)
    model = small_model()
    flow = ImageDataGenerator().flow(x, y, batch_size=32, shuffle=False)
    history = model.fit(flow, epochs=2, verbose=0, distributed=True)
    weights = distributed.comm().gather(model.flat_params.copy(), root=0)
    if distributed.rank() == 0:
        np.testing.assert_array_equal(weights[0], weights[1])
        assert len(history.history["loss"]) == 2
        print("SHORT BATCH DONE")


def value_error_on_one_rank():
    """A ValueError on one rank mid-training (bad labels there only) aborts the job."""
    x, y = data()
    if distributed.rank() == 1:
        y = y.copy()
        y[41] = 99  # out of range for 3 classes: in rank 1's share (odd indices) of the third step
    model = small_model()
    model.fit(x, y, batch_size=16, epochs=50, shuffle=False, verbose=0, distributed=True)


def mismatch():
    """Ranks disagree on the batch size: every rank gets the same clear error."""
    x, y = data()
    model = small_model()
    try:
        model.fit(x, y, batch_size=16 + distributed.rank(), epochs=1, verbose=0, distributed=True)
    except ValueError as exc:
        print(f"rank {distributed.rank()}: {exc}", flush=True)
        sys.exit(3)


if __name__ == "__main__":
    distributed.init(required=True)
    fastdl.set_num_threads(1)  # two ranks share this machine's cores
    {"equivalence": equivalence, "shuffled_flow": shuffled_flow, "fault": fault, "mismatch": mismatch,
     "short_last_batch": short_last_batch, "value_error_on_one_rank": value_error_on_one_rank}[sys.argv[1]]()
