"""Device arrays through fastdl.ops and models resident on the GPU (run under the
simulator): device in, device out; host arrays copied in; the same errors as on the CPU;
a model whose parameters, gradients, optimizer state and activations stay on the device
and match the same model trained on the CPU."""
import numpy as np
import pytest
from numba import cuda

import fastdl
from fastdl import _device, layers, ops
from fastdl.models import Sequential

from support import reference

RNG = np.random.default_rng(1)


@pytest.fixture(autouse=True)
def on_cuda():
    with fastdl.use_backend("cuda"):
        yield


def on_device(a):
    assert _device.is_device(a), f"expected a device array, got {type(a).__name__}"
    return a.copy_to_host()


def close(a, b, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def test_conv2d_max_pool_argmax_on_the_device():
    """The ReLU's zeros marked in a device argmax; the backward from it stays there."""
    x = RNG.standard_normal((2, 7, 6, 3)).astype(np.float32)
    k = RNG.standard_normal((3, 2, 3, 4)).astype(np.float32)
    b = (RNG.standard_normal(4) - 1).astype(np.float32)
    argmax = cuda.device_array((2, 2, 2, 4), np.uint8)
    pooled = ops.conv2d_max_pool(cuda.to_device(x), cuda.to_device(k), cuda.to_device(b), activation="relu",
                                 argmax_out=argmax)
    expected = np.empty((2, 2, 2, 4), np.uint8)
    close(on_device(pooled), reference(ops.conv2d_max_pool, x, k, b, activation="relu", argmax_out=expected),
          rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(argmax.copy_to_host(), expected)
    assert (expected == ops.ARGMAX_NONE).any()
    dy = RNG.standard_normal((2, 2, 2, 4)).astype(np.float32)
    dx = ops.max_pool2d_backward(cuda.to_device(dy), (2, 5, 5, 4), argmax=argmax)
    close(on_device(dx), reference(ops.max_pool2d_backward, dy, (2, 5, 5, 4), argmax=expected))


def test_conv_pool_dense_chain_stays_on_the_device():
    x = RNG.standard_normal((2, 7, 6, 3)).astype(np.float32)
    k = RNG.standard_normal((3, 2, 3, 4)).astype(np.float32)
    b = RNG.standard_normal(4).astype(np.float32)
    xd, kd, bd = cuda.to_device(x), cuda.to_device(k), cuda.to_device(b)
    y = ops.conv2d(xd, kd, bd, strides=(2, 1), padding="same")
    close(on_device(y), reference(ops.conv2d, x, k, b, strides=(2, 1), padding="same"), rtol=1e-4, atol=1e-5)
    p = ops.max_pool2d(y, 2, padding="same")
    close(on_device(p), reference(ops.max_pool2d, y.copy_to_host(), 2, padding="same"))
    dx, dk, db = ops.conv2d_backward(y, xd, kd, strides=(2, 1), padding="same")
    want = reference(ops.conv2d_backward, y.copy_to_host(), x, k, strides=(2, 1), padding="same")
    for got, expected in zip((dx, dk, db), want):
        close(on_device(got), expected, rtol=1e-4, atol=1e-4)
    flat = p.reshape(p.shape[0], -1)
    w = RNG.standard_normal((flat.shape[1], 5)).astype(np.float32)
    z = ops.dense(flat, cuda.to_device(w), None, "relu")
    close(on_device(z), np.maximum(flat.copy_to_host() @ w, 0), rtol=1e-4, atol=1e-5)
    dxd, dwd, dbd = ops.dense_backward(z, flat, cuda.to_device(w), activation="relu", output=z)
    on_device(dxd), on_device(dwd), on_device(dbd)


def test_host_inputs_give_host_results_and_mixed_inputs_give_device_results():
    a = RNG.standard_normal((5, 3))
    b = RNG.standard_normal((3, 4))
    assert isinstance(ops.matmul(a, b), np.ndarray)
    close(on_device(ops.matmul(cuda.to_device(a), b)), a @ b, rtol=1e-10)
    out = np.empty((5, 4))
    assert ops.matmul(cuda.to_device(a), cuda.to_device(b), out=out) is out  # a host out is filled
    close(out, a @ b, rtol=1e-10)
    dout = cuda.device_array((5, 4))
    ops.matmul(a, b, out=dout)
    close(dout.copy_to_host(), a @ b, rtol=1e-10)


def test_activations_losses_in_place_and_by_name():
    x = RNG.standard_normal((4, 6)).astype(np.float32)
    xd = cuda.to_device(x)
    keep = x.copy()
    s = ops.softmax(xd)
    close(on_device(s), reference(ops.softmax, x))
    close(xd.copy_to_host(), keep)  # the input is not touched
    ops.relu(xd, out=xd)
    close(xd.copy_to_host(), np.maximum(x, 0))
    dy = cuda.to_device(np.ones_like(x))
    close(on_device(ops.relu_backward(dy, xd)), (x > 0).astype(np.float32))
    close(on_device(ops.activation(xd, None)), np.maximum(x, 0))
    labels = RNG.integers(0, 6, 4)
    loss = ops.sparse_categorical_crossentropy(labels, cuda.to_device(x), from_logits=True)
    close(on_device(loss), reference(ops.sparse_categorical_crossentropy, labels, x, from_logits=True), rtol=1e-5)
    grad = ops.sparse_categorical_crossentropy_backward(cuda.to_device(labels), cuda.to_device(x), from_logits=True)
    close(on_device(grad), reference(ops.sparse_categorical_crossentropy_backward, labels, x, from_logits=True))


@pytest.mark.parametrize("amsgrad", [False, True])
def test_optimizer_updates_device_arrays_in_place(amsgrad):
    p = RNG.standard_normal(37)
    g = RNG.standard_normal(37)
    host = [p.copy(), np.zeros(37), np.zeros(37), np.zeros(37)]
    dev = [cuda.to_device(a) for a in host]
    gd = cuda.to_device(g)
    for step in (1, 2):
        ops.adam_update(dev[0], gd, dev[1], dev[2], step=step, lr=0.1, amsgrad=amsgrad, v_max=dev[3])
        with fastdl.use_backend("reference"):
            ops.adam_update(host[0], g, host[1], host[2], step=step, lr=0.1, amsgrad=amsgrad, v_max=host[3])
    for d, h in zip(dev, host):
        close(d.copy_to_host(), h, rtol=1e-12)


def test_augmentation_of_device_images():
    images = RNG.integers(0, 255, (3, 5, 4, 2)).astype(np.uint8)
    m = np.array([[[0.9, -0.3, 1.2], [0.4, 1.1, -0.8]]])
    got = ops.affine_transform_batch(cuda.to_device(images), [1], m, fill_mode="reflect")
    close(on_device(got), reference(ops.affine_transform_batch, images, [1], m, fill_mode="reflect"), atol=1e-3)


def test_device_arrays_are_refused_by_cpu_backends_naming_the_argument():
    xd = cuda.to_device(np.ones((1, 4, 4, 1), np.float32))
    with fastdl.use_backend("cython"):
        with pytest.raises(TypeError, match=r"x is a CUDA device array but the backend is 'cython'"):
            ops.max_pool2d(xd)
        with pytest.raises(TypeError, match=r"out is a CUDA device array"):
            ops.max_pool2d(np.ones((1, 4, 4, 1), np.float32), out=cuda.device_array((1, 2, 2, 1), np.float32))
        with pytest.raises(TypeError, match=r"param is a CUDA device array"):
            ops.sgd_update(cuda.to_device(np.ones(3)), np.ones(3), lr=0.1)


def test_bad_device_input_gets_the_cpu_errors():
    xd = cuda.to_device(np.ones((2, 4, 4, 3), np.float32))
    with pytest.raises(TypeError, match="arrays must share one dtype"):
        ops.conv2d(xd, cuda.to_device(np.ones((2, 2, 3, 1), np.float64)))
    with pytest.raises(ValueError, match=r"kernel in_channels \(2"):
        ops.conv2d(xd, cuda.to_device(np.ones((2, 2, 2, 1), np.float32)))
    with pytest.raises(ValueError, match="x must be 4-D"):
        ops.max_pool2d(cuda.to_device(np.ones((4, 4, 3), np.float32)))
    with pytest.raises(TypeError, match="must have dtype float32 or float64; got int64"):
        ops.relu(cuda.to_device(np.ones(3, np.int64)))
    with pytest.raises(ValueError, match="x must be C-contiguous on the device"):
        ops.relu(cuda.to_device(np.ones((4, 4), np.float32))[:, 1:])
    with pytest.raises(ValueError, match=r"out must have shape \(2, 2, 2, 3\)"):
        ops.max_pool2d(xd, out=cuda.device_array((2, 2, 2, 2), np.float32))
    with pytest.raises(ValueError, match="out must not overlap x"):
        ops.max_pool2d(xd, out=xd.reshape(-1)[:24].reshape(2, 2, 2, 3))
    m = cuda.to_device(np.zeros(4))
    with pytest.raises(ValueError, match="v must not share memory with m"):
        ops.adam_update(cuda.to_device(np.ones(4)), np.ones(4), m, m, step=1, lr=0.1)


def _tiny_model(dropout):
    fastdl.utils.set_random_seed(3)
    model = Sequential([layers.Conv2D(3, (3, 2), activation="relu", input_shape=(7, 6, 2)),
                        layers.MaxPooling2D(2), layers.Flatten()]
                       + ([layers.Dropout(0.3, seed=5)] if dropout else [])
                       + [layers.Dense(6, activation="relu"), layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_a_model_on_the_gpu_trains_like_the_same_model_on_the_cpu():
    x = RNG.standard_normal((6, 7, 6, 2)).astype(np.float32)
    y = RNG.integers(0, 3, 6)
    model = _tiny_model(dropout=True)
    history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    with fastdl.use_backend("reference"):
        cpu = _tiny_model(dropout=True)
        cpu_history = cpu.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert model.on_device and not cpu.on_device
    for name in ("loss", "accuracy"):
        close(history.history[name], cpu_history.history[name], rtol=1e-4)
    for got, want in zip(model.get_weights(), cpu.get_weights()):
        assert isinstance(got, np.ndarray)
        close(got, want, rtol=1e-4, atol=1e-5)
    close(model.predict(x, verbose=0), cpu.predict(x, verbose=0), rtol=1e-4, atol=1e-6)


def test_a_model_on_the_gpu_keeps_its_state_there_and_copies_back_only_losses_and_outputs(monkeypatch):
    x = RNG.standard_normal((8, 7, 6, 2)).astype(np.float32)
    y = RNG.integers(0, 3, 8)
    model = _tiny_model(dropout=False)
    model.train_on_batch(x, y)  # builds buffers and optimizer state
    slots = model.optimizer._slots[0]
    assert all(_device.is_device(a) for a in [model.flat_params, model.flat_grads, *slots.values()])
    assert all(_device.is_device(layer._buffers["y"]) for layer in model.layers if "y" in layer._buffers)
    to_host, to_device = [], []
    array_type = type(model.flat_params)
    real_to_host, real_to_device = array_type.copy_to_host, array_type.copy_to_device

    def counting_to_host(self, *args, **kwargs):
        to_host.append(self.size)
        return real_to_host(self, *args, **kwargs)

    def counting_to_device(self, src, *args, **kwargs):
        if not _device.is_device(src):
            to_device.append(np.size(src))
        return real_to_device(self, src, *args, **kwargs)

    real_cuda_to_device = cuda.to_device

    def counting_cuda_to_device(a, *args, **kwargs):
        to_device.append(np.size(a))
        return real_cuda_to_device(a, *args, **kwargs)

    monkeypatch.setattr(array_type, "copy_to_host", counting_to_host)
    monkeypatch.setattr(array_type, "copy_to_device", counting_to_device)
    monkeypatch.setattr(cuda, "to_device", counting_cuda_to_device)
    model.train_on_batch(x, (y + 1) % 3)  # new labels: the loss and its gradient share one copy
    # back: the 8 per-sample losses and the 8 x 3 outputs the accuracy is computed from
    assert sorted(to_host) == [8, 24]
    # in: the batch and its labels
    assert sorted(to_device) == [8, x.size]


def test_weights_and_optimizer_state_round_trip_through_the_host(tmp_path):
    x = RNG.standard_normal((3, 7, 6, 2)).astype(np.float32)
    y = RNG.integers(0, 3, 3)
    model = _tiny_model(dropout=False)
    model.fit(x, y, batch_size=3, epochs=1, verbose=0)
    model.save_weights(tmp_path / "w.npz")
    state = model.optimizer.get_state()
    assert all(isinstance(a, np.ndarray) for a in state["slots"][0].values())
    again = _tiny_model(dropout=False)
    again.build()
    again.load_weights(tmp_path / "w.npz")
    again.optimizer.set_state(state)
    for m in (model, again):
        m.train_on_batch(x, y)
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert all(_device.is_device(a) for a in again.optimizer._slots[0].values())


def test_fit_takes_host_data_only():
    model = _tiny_model(dropout=False)
    with pytest.raises(TypeError, match="x must be host data"):
        model.fit(cuda.to_device(np.ones((2, 7, 6, 2), np.float32)), np.zeros(2, int), verbose=0)
