"""Ops and models from several Python threads at once: the same results as one after
another (the kernels release the GIL; their buffers, the auto backend's dispatch cache
and each model's state are shared or kept apart as they must be)."""
import threading

import numpy as np
import pytest

import fastdl
from fastdl import layers, ops, optimizers
from fastdl.models import Sequential


def run_in_threads(jobs):
    """Run every job (a callable) in its own thread, all started together; their results."""
    results, errors = [None] * len(jobs), []
    start = threading.Barrier(len(jobs))

    def work(i):
        try:
            start.wait()
            results[i] = jobs[i]()
        except Exception as exc:  # reported below
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


def op_cases(rng):
    """(name, call) pairs of ops on several shapes: some shared, some each their own."""
    cases = []
    for i, shape in enumerate([(2, 9, 9, 3), (2, 9, 9, 3), (1, 12, 7, 5), (3, 6, 6, 2)]):
        x = rng.standard_normal(shape).astype(np.float32)
        kernel = rng.standard_normal((3, 3, shape[3], 4)).astype(np.float32)
        dense_x = rng.standard_normal((shape[0] * 5, 33)).astype(np.float32)
        dense_k = rng.standard_normal((33, 17)).astype(np.float32)
        cases += [
            (f"conv{i}", lambda x=x, k=kernel: ops.conv2d(x, k, padding="same", activation="relu")),
            (f"conv_backward{i}", lambda x=x, k=kernel: ops.conv2d_backward(ops.conv2d(x, k), x, k)),
            (f"pool{i}", lambda x=x: ops.max_pool2d(x, 2, padding="same")),
            (f"dense{i}", lambda x=dense_x, k=dense_k: ops.dense(x, k, None, "tanh")),
            (f"warp{i}", lambda x=x: ops.affine_transform_batch(x, np.arange(len(x)),
                                                                 np.tile([[1.0, 0.2, -1], [0.1, 0.9, 2]],
                                                                         (len(x), 1, 1)))),
        ]
    return cases


@pytest.mark.parametrize("backend_name", ["cython", "auto"])
def test_ops_from_many_threads_give_the_serial_results(backend_name):
    cases = op_cases(np.random.default_rng(0))
    with fastdl.use_backend(backend_name):
        serial = {name: call() for name, call in cases}

        def all_cases(order):
            return {name: call() for name, call in (cases[i] for i in order)}
        rng = np.random.default_rng(1)
        # eight threads, each through every case in its own order, three times over
        results = run_in_threads([lambda order=rng.permutation(len(cases)): [all_cases(order) for _ in range(3)]
                                  for _ in range(8)])
    for per_thread in results:
        for round_results in per_thread:
            for name, got in round_results.items():
                want = serial[name]
                for g, w in zip(as_tuple(got), as_tuple(want)):
                    np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-5, err_msg=name)


def small_model(seed):
    fastdl.utils.set_random_seed(seed)
    model = Sequential([layers.Conv2D(6, 3, activation="relu", input_shape=(10, 10, 3)), layers.MaxPooling2D(2),
                        layers.Flatten(), layers.Dense(16, activation="relu"), layers.Dense(4, activation="softmax")])
    model.compile(optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.build()
    return model


def train(model, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.random((96, 10, 10, 3)).astype(np.float32), rng.integers(0, 4, 96)
    with fastdl.use_backend("cython"):  # one backend: bit-for-bit comparisons
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    return model.flat_params.copy(), history.history["loss"]


def test_two_models_trained_at_once_each_train_as_alone():
    alone = [train(small_model(seed), seed) for seed in (1, 2)]
    models = [small_model(1), small_model(2)]
    together = run_in_threads([lambda: train(models[0], 1), lambda: train(models[1], 2)])
    for (params_alone, loss_alone), (params_together, loss_together) in zip(alone, together):
        np.testing.assert_array_equal(params_together, params_alone)
        assert loss_together == loss_alone
