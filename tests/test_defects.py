"""Regression tests for the defects a reliability review found (issue #25), one section
per item. Kernel cases run through the `backend` fixture, whose kernels see arrays that
end at guard pages (support.guard_backend)."""
import gc
import json
import os
import subprocess
import sys
import textwrap
import threading
import tracemalloc

import numpy as np
import pytest

import fastdl
from fastdl import layers, ops, optimizers
from fastdl.backends import auto
from fastdl.models import Sequential

from support import ALL_BACKENDS, assert_close, reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code, timeout=120, env=None):
    """code in a fresh interpreter (from the repository root); a hang is a failure."""
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                              text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the child process hung for {timeout} s: {exc.stdout} {exc.stderr}")


# -- 1. pointwise convolutions with bottom/right padding -----------------------------------

POINTWISE_PADDINGS = [((0, 2), (0, 2)), ((0, 1), (0, 0)), ((0, 0), (0, 3)), ((1, 2), (0, 1))]


def test_the_reported_pointwise_case_gives_zeros_in_the_padding(backend):
    x = np.arange(1, 7, dtype=np.float32).reshape(1, 2, 3, 1)
    y = ops.conv2d(x, np.ones((1, 1, 1, 1), np.float32), padding=((0, 2), (0, 2)))
    expected = np.zeros((4, 5), np.float32)
    expected[:2, :3] = x[0, :, :, 0]
    np.testing.assert_array_equal(y[0, :, :, 0], expected)


@pytest.mark.parametrize("padding", POINTWISE_PADDINGS)
def test_pointwise_convolution_with_bottom_right_padding_matches_reference(backend, dtype, padding):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 4, 6)).astype(dtype)
    kernel = rng.standard_normal((1, 1, 6, 5)).astype(dtype)
    bias = rng.standard_normal(5).astype(dtype)
    y = ops.conv2d(x, kernel, bias, padding=padding, activation="relu")
    assert_close(y, reference(ops.conv2d, x, kernel, bias, padding=padding, activation="relu"), dtype, 3)
    dy = rng.standard_normal(y.shape).astype(dtype)
    for got, want in zip(ops.conv2d_backward(dy, x, kernel, padding=padding),
                         reference(ops.conv2d_backward, dy, x, kernel, padding=padding)):
        assert_close(got, want, dtype, 10)
    pooled = ops.conv2d_max_pool(x, kernel, bias, padding=padding, activation="relu")
    assert_close(pooled, reference(ops.conv2d_max_pool, x, kernel, bias, padding=padding,
                                   activation="relu"), dtype, 3)


# -- 3. NaN in max pooling -------------------------------------------------------------------

@pytest.mark.parametrize("where", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_max_pooling_keeps_a_nan_wherever_it_is_in_the_window(backend, dtype, where):
    x = np.ones((1, 2, 2, 3), dtype)
    x[0, where[0], where[1], 1] = np.nan
    argmax = np.empty((1, 1, 1, 3), np.uint8)
    y = ops.max_pool2d(x, 2, argmax_out=argmax)
    assert np.isnan(y[0, 0, 0, 1]) and y[0, 0, 0, 0] == 1 and y[0, 0, 0, 2] == 1
    assert argmax[0, 0, 0, 1] == where[0] * 2 + where[1]  # the gradient goes to the NaN
    dy = np.full((1, 1, 1, 3), 2.0, dtype)
    for dx in (ops.max_pool2d_backward(dy, x, 2), ops.max_pool2d_backward(dy, x.shape, 2, argmax=argmax)):
        assert dx[0, where[0], where[1], 1] == 2 and dx[..., 1].sum() == 2


def test_the_first_nan_of_a_window_is_its_maximum(backend):
    x = np.array([1, 5, np.nan, 7, np.nan, 9], np.float32).reshape(1, 1, 6, 1)
    argmax = np.empty((1, 1, 1, 1), np.uint8)
    assert np.isnan(ops.max_pool2d(x, (1, 6), argmax_out=argmax)).all()
    assert argmax.item() == 2
    np.testing.assert_array_equal(reference(ops.max_pool2d, x, (1, 6)), ops.max_pool2d(x, (1, 6)))


def test_nan_pooling_matches_reference_and_torch_on_random_windows(backend, torch):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 9, 8, 20)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan
    for args in (dict(pool_size=2), dict(pool_size=3, strides=2, padding="same"), dict(pool_size=(2, 3))):
        y = ops.max_pool2d(x, **args)
        np.testing.assert_array_equal(y, reference(ops.max_pool2d, x, **args))
    want = torch.nn.functional.max_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
    np.testing.assert_array_equal(np.isnan(ops.max_pool2d(x, 2)), np.isnan(want.numpy()))


def test_the_fused_convolution_and_pooling_keep_a_nan_pixel(backend):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 10, 10, 16)).astype(np.float32)  # Winograd-sized, then im2col
    x[1, 4, 5, 3] = np.nan
    kernel = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    y = ops.conv2d_max_pool(x, kernel, np.zeros(16, np.float32), activation="relu")
    assert not np.isnan(y[0]).any() and np.isnan(y[1]).any()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(reference(
        ops.conv2d_max_pool, x, kernel, np.zeros(16, np.float32), activation="relu")))


def test_one_nan_pixel_makes_the_logged_loss_nan_and_terminate_on_nan_fires(backend):
    """A 1x1 convolution puts the NaN in one conv output, not first in its pooling window:
    the first step's loss must be NaN already (one step an epoch), not only the next's."""
    fastdl.utils.set_random_seed(0)
    model = Sequential([layers.Conv2D(4, 1, activation="relu", input_shape=(8, 8, 1)), layers.MaxPooling2D(2),
                        layers.Flatten(), layers.Dense(3, activation="softmax")])
    model.compile(optimizers.Adam(), "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).standard_normal((64, 8, 8, 1)).astype(np.float32)
    x[0, 2, 3, 0] = np.nan  # position (0, 1) of its 2x2 window
    history = model.fit(x, np.zeros(64, np.int64), batch_size=64, epochs=3, shuffle=False, verbose=0,
                        callbacks=[fastdl.callbacks.TerminateOnNaN()])
    assert np.isnan(history.history["loss"][0]) and len(history.history["loss"]) == 1


# -- 4. softmax along another axis -----------------------------------------------------------

@pytest.mark.parametrize("name", ALL_BACKENDS)
@pytest.mark.parametrize("shape,axis", [((3, 1), 0), ((2, 3, 4), 1), ((4, 1, 1), 0), ((5, 2), -2)])
def test_softmax_along_another_axis_leaves_x_as_it_was(name, shape, axis):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    before = x.copy()
    with fastdl.use_backend(name):
        y = ops.softmax(x, axis=axis)
    np.testing.assert_array_equal(x, before)
    e = np.exp(before - before.max(axis=axis, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(axis=axis, keepdims=True), rtol=1e-6)


# -- 5. 64-bit sizes ---------------------------------------------------------------------------

def test_a_depth_beyond_32_bits_is_summed_whole():
    """K = 2**32 + 1 on zero pages (np.zeros maps nothing until written): 1 + 1 = 2."""
    k = 2 ** 32 + 1
    try:
        a, b = np.zeros((1, k), np.float32), np.zeros((k, 1), np.float32)
    except MemoryError:
        pytest.skip("this machine refuses 16 GB of address space")
    a[0, 0] = a[0, -1] = b[0, 0] = b[-1, 0] = 1
    with fastdl.use_backend("cython"):
        assert ops.matmul(a, b)[0, 0] == 2.0


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("shape", [(23, 19, 31), (1, 40, 9), (50, 1, 3), (9, 9, 0)])
def test_blas_in_int_sized_pieces_matches_numpy(trans_a, trans_b, shape):
    """Every size and leading dimension above the limit, which the test lowers to 7 so
    that the splitting of M, N, K and of leading dimensions runs on small arrays."""
    from fastdl._kernels import linalg

    m, n, k = shape
    rng = np.random.default_rng(1)
    a = rng.standard_normal((k, m) if trans_a else (m, k))
    b = rng.standard_normal((n, k) if trans_b else (k, n))
    out = np.full((m, n), np.nan)
    previous = linalg.blas_int_max_for_tests(7)
    try:
        linalg.matmul(a, b, out, trans_a, trans_b, 2)
    finally:
        linalg.blas_int_max_for_tests(previous)
    np.testing.assert_allclose(out, (a.T if trans_a else a) @ (b.T if trans_b else b), rtol=1e-12, atol=1e-12)


# -- 6. threads share a model ------------------------------------------------------------------

def seed_like_model():
    fastdl.utils.set_random_seed(1)
    model = Sequential([layers.Conv2D(8, 3, activation="relu", input_shape=(12, 12, 3)), layers.MaxPooling2D(2),
                        layers.Flatten(), layers.Dense(10, activation="softmax")])
    model.compile(optimizers.Adam(), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_predict_and_evaluate_from_many_threads_give_the_single_thread_answers():
    model = seed_like_model()
    rng = np.random.default_rng(2)
    inputs = [rng.standard_normal((int(rng.integers(1, 40)), 12, 12, 3)).astype(np.float32) for _ in range(40)]
    labels = [rng.integers(0, 10, len(x)) for x in inputs]
    expected = [model.predict(x, batch_size=16) for x in inputs]
    expected_eval = [model.evaluate(x, y, return_dict=True) for x, y in zip(inputs, labels)]
    wrong, errors = [], []

    def work(i):
        try:
            if not np.array_equal(model.predict(inputs[i], batch_size=16), expected[i]):
                wrong.append(i)
            if model.evaluate(inputs[i], labels[i], return_dict=True) != expected_eval[i]:
                wrong.append(-i)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not wrong


def test_a_second_fit_of_one_model_at_once_is_refused():
    model = seed_like_model()
    x = np.random.default_rng(3).standard_normal((64, 12, 12, 3)).astype(np.float32)
    y = np.zeros(64, np.int64)
    inside, release, seen = threading.Event(), threading.Event(), []

    class Pause(fastdl.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            inside.set()
            release.wait(30)
    runner = threading.Thread(target=lambda: model.fit(x, y, epochs=1, verbose=0, callbacks=[Pause()]))
    runner.start()
    assert inside.wait(30)
    try:
        with pytest.raises(RuntimeError, match="already training in another fit"):
            model.fit(x, y, epochs=1, verbose=0)
        seen.append(model.predict(x[:4]))  # predicting meanwhile is fine
    finally:
        release.set()
        runner.join()
    assert seen[0].shape == (4, 10)
    model.fit(x, y, epochs=1, verbose=0)  # and once it is done, fit again


# -- 7. fork after a kernel ran ---------------------------------------------------------------

FORK_CHILD = """
    import multiprocessing, os, sys
    import numpy as np
    import fastdl
    from fastdl import ops
    fastdl.set_backend({backend!r})
    fastdl.set_num_threads(2)
    x = np.random.default_rng(0).standard_normal((64, 16, 16, 8)).astype(np.float32)
    k = np.ones((3, 3, 8, 8), np.float32)
    want = ops.conv2d(x, k)  # the parent's OpenMP team exists now

    def child_work(i):
        return float(np.abs(ops.conv2d(x, k) - want).max())

    pid = os.fork()
    if pid == 0:
        # one thread blocks the work differently: float32 rounding apart
        ok = np.allclose(ops.conv2d(x, k), want, rtol=1e-5, atol=1e-5) and fastdl.get_num_threads() == 1
        try:
            fastdl.set_num_threads(2)
            ok = False
        except RuntimeError as exc:
            ok = ok and "spawn" in str(exc) and "forkserver" in str(exc)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    print("CHILD", os.waitstatus_to_exitcode(status))
    with multiprocessing.get_context("fork").Pool(2) as pool:
        print("POOL", "OK" if max(pool.map(child_work, range(4))) < 1e-4 else "WRONG")
"""


@pytest.mark.parametrize("name", ["cython", "auto"])
def test_a_child_forked_after_kernels_ran_works_single_threaded(name):
    proc = run_python(FORK_CHILD.format(backend=name), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "CHILD 0" in proc.stdout and "POOL OK" in proc.stdout, proc.stdout + proc.stderr


def test_numba_after_fork_is_a_clear_error_not_a_dead_child():
    pytest.importorskip("numba")
    proc = run_python("""
        import os
        import numpy as np
        import fastdl
        from fastdl import ops
        fastdl.set_backend("numba")
        x = np.ones((4, 8, 8, 2), np.float32)
        ops.relu(x)
        pid = os.fork()
        if pid == 0:
            try:
                ops.relu(x)
            except RuntimeError as exc:
                os._exit(7 if "spawn" in str(exc) else 1)
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        print("CHILD", os.waitstatus_to_exitcode(status))
    """, timeout=300)
    assert "CHILD 7" in proc.stdout, proc.stdout + proc.stderr


# -- 8. read-only inputs -------------------------------------------------------------------------

def read_only(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


def test_read_only_inputs_work_for_every_op(backend, dtype):
    rng = np.random.default_rng(6)
    x = read_only(rng.standard_normal((5, 7)).astype(dtype))
    kernel = read_only(rng.standard_normal((7, 3)).astype(dtype))
    bias, dy = read_only(np.ones(3, dtype)), read_only(rng.standard_normal((5, 3)).astype(dtype))
    assert_close(ops.matmul(x, kernel), reference(ops.matmul, x, kernel), dtype, 3)
    assert_close(ops.dense(x, kernel, bias, activation="relu"),
                 reference(ops.dense, x, kernel, bias, activation="relu"), dtype, 3)
    for got, want in zip(ops.dense_backward(dy, x, kernel), reference(ops.dense_backward, dy, x, kernel)):
        assert_close(got, want, dtype, 3)
    images = read_only(rng.standard_normal((2, 6, 6, 3)).astype(dtype))
    conv_kernel = read_only(rng.standard_normal((3, 3, 3, 4)).astype(dtype))
    assert_close(ops.conv2d(images, conv_kernel), reference(ops.conv2d, images, conv_kernel), dtype, 6)
    assert_close(ops.max_pool2d(images, 2), reference(ops.max_pool2d, images, 2), dtype)
    assert_close(ops.softmax(x), reference(ops.softmax, x), dtype)


def test_predict_on_a_read_only_buffer_for_a_dense_first_model():
    fastdl.utils.set_random_seed(0)
    model = Sequential([layers.Dense(4, activation="relu", input_shape=(6,)), layers.Dense(2)])
    data = np.random.default_rng(0).standard_normal((9, 6)).astype(np.float32)
    frozen = np.frombuffer(data.tobytes(), np.float32).reshape(9, 6)
    assert not frozen.flags.writeable
    np.testing.assert_array_equal(model.predict(frozen), model.predict(data))


# -- 9. auto's measurements copy the arguments once, and only small ones -------------------------

@pytest.fixture
def measuring_auto(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(auto, "_choices", None)
    monkeypatch.setattr(auto, "_memo", {})
    monkeypatch.setattr(auto, "numba_ready", lambda: True)
    monkeypatch.setattr(auto, "_CANDIDATES", ["cython", "cython"])  # two to time, no JIT
    return auto


def peak_bytes_of_relu_on_auto(x, out):
    """ops.relu(x, out=out) on 'auto': the most memory allocated while it ran (the
    backends imported first: their modules are not the measurement's)."""
    for name in ("auto", "cython"):
        fastdl._config.backend_module(name)
    gc.collect()
    tracemalloc.start()
    try:
        with fastdl.use_backend("auto"):
            ops.relu(x, out=out)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_large_arguments_are_never_copied_to_be_timed(measuring_auto, monkeypatch):
    calls = []
    monkeypatch.setattr(auto, "_measure", lambda op, args: calls.append(op) or "cython")
    x = np.ones(auto.MEASURE_MAX_BYTES // 4 + 1, np.float32)
    peak = peak_bytes_of_relu_on_auto(x, x)
    assert calls == [] and peak < x.nbytes // 8
    with fastdl.use_backend("auto"):
        ops.relu(np.ones(1000, np.float32))
    assert calls == ["relu"]


def test_a_measurement_copies_the_arguments_once_and_leaves_them_alone(measuring_auto):
    x = np.random.default_rng(0).standard_normal(2 ** 22).astype(np.float32)  # 16 MB
    out = np.zeros_like(x)
    before = x.copy()
    peak = peak_bytes_of_relu_on_auto(x, out)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(out, np.maximum(before, 0))
    assert peak < 1.25 * (x.nbytes + out.nbytes)  # one copy of (x, out), not one per call
    assert len(auto.choices()) == 1


# -- 10. fit on a Sequence or a list, several epochs -------------------------------------------

class Batches:
    """A Keras-style Sequence: len, indexing, on_epoch_end."""

    def __init__(self, x, y, size):
        self.x, self.y, self.size, self.epochs_ended = x, y, size, 0

    def __len__(self):
        return -(-len(self.x) // self.size)

    def __getitem__(self, i):
        return self.x[i * self.size:(i + 1) * self.size], self.y[i * self.size:(i + 1) * self.size]

    def on_epoch_end(self):
        self.epochs_ended += 1


class CountSteps(fastdl.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1


def small_data(n=40):
    rng = np.random.default_rng(7)
    return rng.standard_normal((n, 12, 12, 3)).astype(np.float32), rng.integers(0, 10, n)


def test_fit_on_a_sequence_runs_every_epoch():
    x, y = small_data()
    sequence, counter = Batches(x, y, 16), CountSteps()
    history = seed_like_model().fit(sequence, epochs=3, verbose=0, callbacks=[counter])
    assert len(history.history["loss"]) == 3 and counter.steps == 9 and sequence.epochs_ended == 3


def test_fit_on_a_list_of_batches_runs_every_epoch():
    x, y = small_data()
    batches, counter = [(x[:20], y[:20]), (x[20:], y[20:])], CountSteps()
    history = seed_like_model().fit(batches, epochs=4, verbose=0, callbacks=[counter])
    assert len(history.history["loss"]) == 4 and counter.steps == 8


def test_a_generator_that_runs_dry_stops_training_with_a_warning():
    x, y = small_data()
    generator = ((x[i:i + 10], y[i:i + 10]) for i in range(0, 40, 10))
    with pytest.warns(UserWarning, match="ran out of data"):
        history = seed_like_model().fit(generator, steps_per_epoch=3, epochs=5, verbose=0)
    assert len(history.history["loss"]) == 2  # 3 batches, then the last one and the end


# -- 12. persistence ---------------------------------------------------------------------------------

def built_model():
    model = seed_like_model()
    model.build()
    return model


def test_load_weights_checks_every_array_before_assigning_any(tmp_path):
    model = built_model()
    before = model.get_weights()
    bad = [w + 1 for w in before]
    bad[-1] = bad[-1].astype(np.complex64)
    np.savez(tmp_path / "w.npz", **{f"{i:04d}": w for i, w in enumerate(bad)})
    with pytest.raises(TypeError, match="array 3 has dtype complex64"):
        model.load_weights(tmp_path / "w.npz")
    with pytest.raises(TypeError, match="complex"):
        model.set_weights(bad)
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)


def test_saving_keeps_the_mode_and_replaces_a_symlinks_target(tmp_path):
    model = built_model()
    target, link = tmp_path / "real.npz", tmp_path / "link.npz"
    model.save_weights(target)
    os.chmod(target, 0o640)
    os.symlink(target, link)
    model.save_weights(link)
    assert os.path.islink(link) and os.readlink(link) == str(target)
    assert os.stat(target).st_mode & 0o777 == 0o640
    umask = os.umask(0o022)
    try:
        model.save_weights(tmp_path / "new.npz")
    finally:
        os.umask(umask)
    assert os.stat(tmp_path / "new.npz").st_mode & 0o777 == 0o644


def test_a_killed_save_leaves_the_old_file_and_its_temporary_is_cleaned_later(tmp_path):
    model = built_model()
    path = tmp_path / "w.npz"
    model.save_weights(path)
    old = path.read_bytes()
    proc = run_python(f"""
        import os, numpy as np
        from fastdl import _atomic

        def die_midway(f):
            f.write(b"half a file")
            f.flush()
            os._exit(9)  # killed mid-save
        _atomic.write({str(path)!r}, die_midway)
    """)
    assert proc.returncode == 9
    leftovers = [n for n in os.listdir(tmp_path) if n.startswith(".fastdl-tmp-")]
    assert len(leftovers) == 1 and path.read_bytes() == old
    model.save_weights(path)  # the next save into the folder removes it
    assert [n for n in os.listdir(tmp_path) if n.startswith(".fastdl-")] == []


def test_optimizer_state_is_checked_for_sizes_and_dtypes():
    model = built_model()
    x, y = small_data(8)
    model.fit(x, y, epochs=1, verbose=0)
    state = model.optimizer.get_state()
    wrong_size = {"iterations": 3, "slots": [{k: v[:-1] for k, v in s.items()} for s in state["slots"]]}
    with pytest.raises(ValueError, match="this optimizer's is float32"):
        model.optimizer.set_state(wrong_size)
    wrong_dtype = {"iterations": 3, "slots": [{k: v.astype(np.int32) for k, v in s.items()} for s in state["slots"]]}
    with pytest.raises(TypeError, match="must be float32 or float64; got int32"):
        model.optimizer.set_state(wrong_dtype)
    with pytest.raises(ValueError, match="iterations"):
        model.optimizer.set_state({"iterations": -1, "slots": state["slots"]})
    assert model.optimizer.iterations == state["iterations"]  # nothing changed
    model.optimizer.set_state(state)


# -- 13. the smaller ones --------------------------------------------------------------------------

@pytest.mark.parametrize("n", [2000, 100000, 2 ** 70])
def test_set_num_threads_has_a_ceiling(n):
    with pytest.raises(ValueError, match="set_num_threads: n must be at most"):
        fastdl.set_num_threads(n)


@pytest.mark.parametrize("content", ["null", "5", "[1, 2]", '{"a": 3}', "{not json"])
def test_a_corrupt_auto_cache_file_is_ignored_and_rewritten(measuring_auto, content):
    path = auto.cache_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(content)
    with fastdl.use_backend("auto"):
        np.testing.assert_array_equal(ops.relu(np.array([-1.0, 2.0], np.float32)), [0, 2])
    with open(path) as f:
        assert all(v == "cython" for v in json.load(f).values())


PARTIAL = {
    "relu": lambda buf, out: ops.relu(buf[:-1], out=out),
    "relu_backward": lambda buf, out: ops.relu_backward(buf[:-1], np.ones(4, buf.dtype), out=out),
    "activation": lambda buf, out: ops.activation(buf[:-1], "tanh", out=out),
    "activation_backward": lambda buf, out: ops.activation_backward(buf[:-1], np.ones(4, buf.dtype), "sigmoid",
                                                                    out=out),
    "softmax": lambda buf, out: ops.softmax(buf[:-1].reshape(2, 2), out=out.reshape(2, 2)),
}


@pytest.mark.parametrize("op", sorted(PARTIAL))
def test_a_partly_overlapping_out_is_refused(backend, op):
    buf = np.arange(5, dtype=np.float32)
    with pytest.raises(ValueError, match="partly overlaps"):
        PARTIAL[op](buf, buf[1:])


def test_exact_aliasing_stays_allowed_and_exact(backend):
    x = np.random.default_rng(8).standard_normal((6, 5)).astype(np.float32)
    for fn in (lambda a: ops.relu(a, out=a), lambda a: ops.softmax(a, out=a),
               lambda a: ops.activation(a, "sigmoid", out=a), lambda a: ops.relu_backward(a, x, out=a),
               lambda a: ops.activation_backward(a, np.abs(x) + 0.5, "tanh", out=a)):
        a = x.copy()
        want = reference(fn, x.copy())
        np.testing.assert_allclose(fn(a), want, rtol=1e-6)
        np.testing.assert_allclose(a, want, rtol=1e-6)


def test_winograd_keeps_infinities_as_the_direct_sum_does(backend, torch):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 9, 9, 16)).astype(np.float32)
    x[0, 4, 4, 2], x[1, 0, 8, 5] = np.inf, -np.inf
    kernel = np.abs(rng.standard_normal((3, 3, 16, 16))).astype(np.float32)
    y = ops.conv2d(x, kernel)
    want = torch.nn.functional.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2),
                                      torch.from_numpy(kernel).permute(3, 2, 0, 1)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(np.isinf(y), np.isinf(want))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    assert np.isinf(y).any() and not np.isnan(y).any()


@pytest.mark.parametrize("mode", ["nearest", "constant", "reflect", "wrap"])
def test_augmentation_with_enormous_coordinates_is_defined_and_agrees(backend, mode):
    rng = np.random.default_rng(10)
    images = rng.integers(0, 256, (3, 5, 6, 2)).astype(np.uint8)
    matrices = np.array([[[1e300, 0, 0], [0, 1, 0]], [[1, 0, -1e19], [0, 1, 9e18]],
                         [[0, 1e200, 0], [-1e200, 0, 0]]])
    got = ops.affine_transform_batch(images, np.arange(3), matrices, fill_mode=mode, cval=7.0)
    want = reference(ops.affine_transform_batch, images, np.arange(3), matrices, fill_mode=mode, cval=7.0)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("value", [2 ** 63, 2 ** 64 + 1, (1, 2 ** 63)])
def test_enormous_strides_and_pool_sizes_are_value_errors(value):
    x = np.ones((1, 4, 4, 1), np.float32)
    with pytest.raises(ValueError, match="strides must be <= 2147483647"):
        ops.conv2d(x, np.ones((1, 1, 1, 1), np.float32), strides=value)
    with pytest.raises(ValueError, match="pool_size must be <= 2147483647"):
        ops.max_pool2d(x, value)
    with pytest.raises(ValueError, match="padding must be <= 2147483647"):
        ops.conv2d(x, np.ones((1, 1, 1, 1), np.float32), padding=((0, 2 ** 63), (0, 0)))


def test_integral_float_labels_train_like_integers():
    x, y = small_data(32)
    as_int = seed_like_model().fit(x, y, epochs=1, shuffle=False, verbose=0).history["loss"]
    as_float = seed_like_model().fit(x, y.astype(np.float32), epochs=1, shuffle=False, verbose=0).history["loss"]
    assert as_int == as_float
    with pytest.raises(ValueError, match="must hold whole numbers"):
        seed_like_model().fit(x, y + 0.5, epochs=1, verbose=0)


def test_steps_per_epoch_limits_the_epochs_of_arrays():
    x, y = small_data(40)
    counter = CountSteps()
    history = seed_like_model().fit(x, y, batch_size=8, steps_per_epoch=2, epochs=3, verbose=0, callbacks=[counter])
    assert counter.steps == 6 and len(history.history["loss"]) == 3
    counter = CountSteps()
    seed_like_model().fit(x, y, batch_size=8, steps_per_epoch=7, epochs=1, verbose=0, callbacks=[counter])
    assert counter.steps == 7  # on into a second pass over the data


def test_early_stopping_on_a_missing_metric_warns_as_keras_does():
    x, y = small_data(16)
    with pytest.warns(UserWarning, match="Early stopping conditioned on metric `val_accuracy` which is not "
                                         "available. Available metrics are: accuracy,loss"):
        seed_like_model().fit(x, y, epochs=1, verbose=0,
                              callbacks=[fastdl.callbacks.EarlyStopping(monitor="val_accuracy")])


def test_guarded_arrays_sit_against_inaccessible_pages():
    """The helper itself: a write one element past the end (or before the start) of a
    guarded array kills the process."""
    for start in (False, True):
        proc = run_python(f"""
            import sys
            sys.path.insert(0, "tests")
            import numpy as np
            from support import guarded
            a = guarded(np.ones(1000, np.float32), start_at_guard={start})
            print("placed", flush=True)
            edge = np.lib.stride_tricks.as_strided(a[{0 if start else 999}:], shape=(2,),
                                                   strides=({-4 if start else 4},))
            edge[1] = 1
            print("not caught")
        """, timeout=60)
        assert "placed" in proc.stdout and "not caught" not in proc.stdout and proc.returncode == -11
