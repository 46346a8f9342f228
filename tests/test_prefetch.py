"""fit's background prefetching (fastdl._prefetch) and sample weights: the batches a
thread makes ahead train exactly as those made in step, the producer's errors reach fit,
no thread outlives fit however it ends, and weights weigh each sample's loss."""
import threading
import traceback

import numpy as np
import pytest

import fastdl
from fastdl import callbacks, layers, optimizers
from fastdl._prefetch import Prefetcher
from fastdl.models import Sequential
from fastdl.preprocessing.image import ImageDataGenerator


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "fastdl-prefetch"]


@pytest.fixture(autouse=True)
def no_thread_left_behind():
    yield
    assert prefetch_threads() == []


def model(optimizer=None):
    fastdl.utils.set_random_seed(3)
    net = Sequential([layers.Conv2D(4, 3, activation="relu", input_shape=(10, 10, 3)), layers.MaxPooling2D(2),
                      layers.Flatten(), layers.Dense(5, activation="softmax")], dtype="float64")
    net.compile(optimizer or optimizers.Adam(learning_rate=0.01), "sparse_categorical_crossentropy",
                metrics=["accuracy"])
    return net


def data(n=48):
    rng = np.random.default_rng(11)
    return rng.random((n, 10, 10, 3)), rng.integers(0, 5, n)


def augmenting_flow(x, y, **kwargs):
    generator = ImageDataGenerator(rotation_range=15, width_shift_range=0.1, horizontal_flip=True, zoom_range=0.1)
    return generator.flow(x, y, batch_size=8, seed=5, **kwargs)


def test_prefetched_batches_train_exactly_as_batches_made_in_step():
    x, y = data()
    weights = []
    for workers in (0, 1):
        net = model()
        history = net.fit(augmenting_flow(x, y), epochs=3, verbose=0, workers=workers)
        weights.append((net.flat_params.copy(), history.history["loss"]))
    np.testing.assert_array_equal(weights[0][0], weights[1][0])
    assert weights[0][1] == weights[1][1]


def test_the_producer_runs_its_kernels_on_one_thread_and_leaves_the_others_theirs():
    seen = []

    def batch():
        seen.append(fastdl.get_num_threads())
        return len(seen)

    before = fastdl.get_num_threads()
    with Prefetcher(batch, 3, 2) as prefetcher:
        assert [prefetcher.get() for _ in range(3)] == [1, 2, 3]
    assert seen == [1, 1, 1] and fastdl.get_num_threads() == before
    with fastdl._config.threads_in_this_thread(1):
        assert fastdl.get_num_threads() == 1
        other = []
        worker = threading.Thread(target=lambda: other.append(fastdl.get_num_threads()))
        worker.start()
        worker.join()
        assert other == [before]  # another thread keeps the process's count
    assert fastdl.get_num_threads() == before
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        with fastdl._config.threads_in_this_thread(0):
            pass


@pytest.mark.parametrize("max_queue_size", [1, 2, 50])
def test_every_queue_size_gives_every_batch_once_in_order(max_queue_size):
    source = iter(range(100))
    with Prefetcher(lambda: next(source), 30, max_queue_size) as prefetcher:
        got = [prefetcher.get() for _ in range(30)]
        with pytest.raises(StopIteration):
            prefetcher.get()
        with pytest.raises(StopIteration):  # and stays at the end
            prefetcher.get()
    assert got == list(range(30))


def test_the_producers_exception_reaches_fit_with_its_traceback():
    x, y = data()

    def batches():
        yield x[:8], y[:8]
        yield x[8:16], y[8:16]
        raise ZeroDivisionError("the loader broke")

    with pytest.raises(ZeroDivisionError, match="the loader broke") as raised:
        model().fit(batches(), steps_per_epoch=2, epochs=3, verbose=0)
    frames = [frame.name for frame in traceback.extract_tb(raised.value.__traceback__)]
    assert "batches" in frames  # the generator's own frame, where it raised


def test_a_bad_batch_from_the_thread_is_the_usual_clear_error():
    x, y = data()
    with pytest.raises(ValueError, match=r"\(x, y\) or \(x, y, sample_weight\)"):
        model().fit(iter([(x[:8],)] * 4), steps_per_epoch=2, epochs=2, verbose=0)


class StopAfter(callbacks.Callback):
    def __init__(self, batches, how):
        super().__init__()
        self.batches, self.how, self.seen = batches, how, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.batches:
            if self.how == "stop":
                self.model.stop_training = True
            else:
                raise KeyboardInterrupt


@pytest.mark.parametrize("how", ["stop", "interrupt"])
def test_no_thread_outlives_a_fit_stopped_early_or_interrupted(how):
    x, y = data()
    net, stopper = model(), StopAfter(2, how)
    # a queue of 1 and an endless flow: the producer is blocked on a full queue when fit stops
    if how == "interrupt":
        with pytest.raises(KeyboardInterrupt):
            net.fit(augmenting_flow(x, y), epochs=5, verbose=0, callbacks=[stopper], max_queue_size=1)
    else:
        history = net.fit(augmenting_flow(x, y), epochs=5, verbose=0, callbacks=[stopper], max_queue_size=1)
        assert len(history.history["loss"]) == 1
    assert stopper.seen == 2
    assert prefetch_threads() == []


def test_a_slow_producer_is_waited_for_and_joined():
    x, y = data(16)
    ready = threading.Event()

    def batches():
        for _ in range(4):
            ready.wait(0.05)  # slower than the step
            yield x, y

    history = model().fit(batches(), steps_per_epoch=2, epochs=2, verbose=0, max_queue_size=1)
    assert len(history.history["loss"]) == 2


def test_zero_weights_train_as_the_weighted_samples_alone_with_the_rate_scaled():
    # Keras's reduction: the weighted losses summed and divided by the batch size, so weights
    # [1]*k + [0]*(n-k) give k/n times the mean gradient of the first k samples
    x, y = data(12)
    k, n = 5, 12
    weighted, alone = model(optimizers.SGD(0.1)), model(optimizers.SGD(0.1 * k / n))
    weighted.fit(x, y, batch_size=n, epochs=3, shuffle=False, verbose=0,
                 sample_weight=np.r_[np.ones(k), np.zeros(n - k)])
    alone.fit(x[:k], y[:k], batch_size=k, epochs=3, shuffle=False, verbose=0)
    np.testing.assert_allclose(weighted.flat_params, alone.flat_params, rtol=1e-10, atol=1e-12)


def test_a_flow_with_sample_weights_trains_as_the_arrays_with_them():
    x, y = data(16)
    w = np.random.default_rng(2).random(16)
    flowed, arrays = model(optimizers.SGD(0.05)), model(optimizers.SGD(0.05))
    # no augmentation and no shuffling: the flow's batches are the arrays'
    flowed.fit(ImageDataGenerator().flow(x, y, batch_size=8, shuffle=False, sample_weight=w), epochs=2, verbose=0)
    arrays.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, sample_weight=w)
    np.testing.assert_allclose(flowed.flat_params, arrays.flat_params, rtol=1e-6, atol=1e-8)


def test_weights_weigh_evaluate_and_train_on_batch():
    x, y = data(10)
    net = model()
    per_sample = [net.evaluate(x[i:i + 1], y[i:i + 1], verbose=0, return_dict=True)["loss"] for i in range(10)]
    w = np.arange(10.0)
    weighted = net.evaluate(x, y, batch_size=10, verbose=0, sample_weight=w, return_dict=True)["loss"]
    assert weighted == pytest.approx(np.dot(w, per_sample) / 10, rel=1e-9)
    logs = net.test_on_batch(x, y, sample_weight=w, return_dict=True)
    assert logs["loss"] == pytest.approx(weighted, rel=1e-9)
    # metrics stay unweighted, as Keras 3's `metrics` (its weighted_metrics are the others)
    assert logs["accuracy"] == net.evaluate(x, y, verbose=0, return_dict=True)["accuracy"]
    before = net.flat_params.copy()
    net.train_on_batch(x, y, sample_weight=np.zeros(10))  # weight 0 everywhere: Adam moves nothing
    np.testing.assert_array_equal(net.flat_params, before)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(workers=2), ValueError, "workers must be 0"),
    (dict(workers=True), ValueError, "workers must be 0"),
    (dict(workers=-1), ValueError, "workers must be 0"),
    (dict(max_queue_size=0), ValueError, "max_queue_size must be an int >= 1"),
    (dict(max_queue_size=2.5), ValueError, "max_queue_size must be an int >= 1"),
])
def test_bad_prefetch_settings_are_clear_errors(kwargs, error, match):
    x, y = data(16)
    with pytest.raises(error, match=match):
        model().fit(augmenting_flow(x, y), epochs=1, verbose=0, **kwargs)


@pytest.mark.parametrize("weights, error, match", [
    (np.ones(5), ValueError, r"one weight per sample, shape \(16,\)"),
    (np.ones((16, 2)), ValueError, "one weight per sample"),
    (np.r_[np.ones(15), np.nan], ValueError, "sample_weight must be finite"),
    (np.r_[np.ones(15), np.inf], ValueError, "sample_weight must be finite"),
    (["a"] * 16, TypeError, "sample_weight must be numbers"),
])
def test_bad_sample_weights_are_clear_errors(weights, error, match):
    x, y = data(16)
    with pytest.raises(error, match=match):
        model().fit(x, y, epochs=1, verbose=0, sample_weight=weights)


def test_sample_weights_with_an_iterator_are_refused():
    x, y = data(16)
    with pytest.raises(ValueError, match="an iterator yields"):
        model().fit(augmenting_flow(x, y), epochs=1, verbose=0, sample_weight=np.ones(16))
