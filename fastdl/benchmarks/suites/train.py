"""Training suite: the reference CNN's training step (forward, backward, Adam) and its
inference, fastdl against PyTorch (NCHW and channels_last, fused Adam) and Keras; ResNet-20's
(suites/resnet.py); and,
outside --quick, whole epochs of fit on 50,000 CIFAR-shaped images, with and without
ImageDataGenerator, each in a fresh process so that its peak memory is its own."""
import json
import os
import subprocess
import sys

import numpy as np

import fastdl
from fastdl.benchmarks.harness import Case


def fastdl_model(seed=0):
    from fastdl.train import seed_cnn

    fastdl.utils.set_random_seed(seed)
    model = seed_cnn((32, 32, 3))
    model.compile(optimizer=fastdl.optimizers.Adam(learning_rate=1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.build()
    return model


def torch_model(torch, weights, channels_last):
    """The same CNN in PyTorch, with fastdl's weights (Flatten's NHWC order carried over)."""
    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2304, 128), nn.ReLU(), nn.Linear(128, 10))
    k1, b1, k2, b2, w3, b3, w4, b4 = weights
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(k1.transpose(3, 2, 0, 1).copy()))
        net[0].bias.copy_(torch.from_numpy(b1))
        net[3].weight.copy_(torch.from_numpy(k2.transpose(3, 2, 0, 1).copy()))
        net[3].bias.copy_(torch.from_numpy(b2))
        # fastdl flattens (h, w, c); torch flattens (c, h, w)
        w3_chw = w3.reshape(6, 6, 64, 128).transpose(2, 0, 1, 3).reshape(2304, 128)
        net[7].weight.copy_(torch.from_numpy(w3_chw.T.copy()))
        net[7].bias.copy_(torch.from_numpy(b3))
        net[9].weight.copy_(torch.from_numpy(w4.T.copy()))
        net[9].bias.copy_(torch.from_numpy(b4))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net


def keras_model(keras, weights):
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.set_weights(weights)
    return model


def _torch_input(torch, x, channels_last):
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


def step_case(batch, libs, rng):
    x = rng.random((batch, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    model = fastdl_model()
    weights = model.get_weights()
    candidates = {"fastdl": lambda: model.train_on_batch(x, y)}
    torch = libs.get("torch")
    if torch is not None:
        ty = torch.from_numpy(y)
        for label, cl in (("torch", False), ("torch-cl", True)):
            net = torch_model(torch, weights, cl)
            opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
            tx = _torch_input(torch, x, cl)

            def step(net=net, opt=opt, tx=tx):
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(net(tx), ty).backward()
                opt.step()
            candidates[label] = step
    keras = libs.get("keras")
    if keras is not None:
        kmodel = keras_model(keras, weights)
        candidates["keras"] = lambda: kmodel.train_on_batch(x, y)
    check = jax_step(model, libs, x, y, candidates)
    flops = 3 * 2.0 * batch * (30 * 30 * 32 * 27 + 13 * 13 * 64 * 288 + 2304 * 128 + 128 * 10)
    return Case("train", f"train step b{batch}", "seed CNN, Adam", candidates, flops, "GFLOP/s", check)


def jax_step(model, libs, x, y, candidates):
    """Add the JAX training step of `model` (from its weights now) to candidates; returns
    the check that both libraries' first two steps gave the same losses."""
    jax = libs.get("jax")
    if jax is None:
        return None
    from fastdl.benchmarks.jax_models import JaxModel

    jmodel = JaxModel(jax, model)
    check = same_losses(model, jmodel, x, y)
    jx, jy = jax.numpy.asarray(x), jax.numpy.asarray(y.astype(np.int32))
    candidates["jax"] = lambda: jmodel.step(jx, jy)
    return check


def same_losses(model, jmodel, x, y):
    """The check that fastdl's and JAX's copies of a model, stepped twice on (x, y), have
    the same losses: the first at the same weights (training mode, batch statistics), the
    second after one update, so the gradients and Adam's step agree too."""
    expected = [float(model.train_on_batch(x, y, return_dict=True)["loss"]) for _ in range(2)]
    got = [float(jmodel.step(x, y.astype(np.int32))) for _ in range(2)]

    def check():
        if not np.allclose(got, expected, rtol=1e-3, atol=1e-5):
            raise AssertionError(f"JAX's training losses {got} are not fastdl's {expected}")
    return check


def inference_case(batch, libs, rng):
    x = rng.random((batch, 32, 32, 3)).astype(np.float32)
    model = fastdl_model(1)
    weights = model.get_weights()
    result = {}
    candidates = {"fastdl": lambda: result.__setitem__("fastdl", model.predict_on_batch(x))}
    torch = libs.get("torch")
    if torch is not None:
        for label, cl in (("torch", False), ("torch-cl", True)):
            net = torch_model(torch, weights, cl).eval()
            tx = _torch_input(torch, x, cl)

            def infer(net=net, tx=tx, label=label):
                with torch.no_grad():
                    result[label] = torch.softmax(net(tx), dim=1).numpy()
            candidates[label] = infer
    keras = libs.get("keras")
    if keras is not None:
        kmodel = keras_model(keras, weights)
        candidates["keras"] = lambda: result.__setitem__("keras", np.asarray(kmodel.predict_on_batch(x)))
    jax_predict(model, libs, x, candidates, result)
    from fastdl.benchmarks import engines

    for label, run in engines.runners(model, libs, fastdl.get_num_threads()).items():
        candidates[label] = lambda run=run, label=label: result.__setitem__(label, np.asarray(run(x)))

    def check():
        for other in ("torch", "torch-cl", "keras", "jax", "onnxruntime", "openvino"):
            if other in result and not np.allclose(result["fastdl"], result[other], atol=1e-4):
                raise AssertionError(f"inference disagrees with {other}: "
                                     f"{np.abs(result['fastdl'] - result[other]).max()}")

    flops = 2.0 * batch * (30 * 30 * 32 * 27 + 13 * 13 * 64 * 288 + 2304 * 128 + 128 * 10)
    return Case("train", f"inference b{batch}", "seed CNN", candidates, flops, "GFLOP/s", check)


def jax_predict(model, libs, x, candidates, result):
    """Add JAX's inference of `model` (a jit function of its weights) to candidates."""
    jax = libs.get("jax")
    if jax is not None:
        from fastdl.benchmarks.jax_models import JaxModel

        jmodel, jx = JaxModel(jax, model), jax.numpy.asarray(x)
        candidates["jax"] = lambda: result.__setitem__("jax", jmodel.predict(jx))


EPOCH_SCRIPT = r"""
import json, resource, sys, time
import numpy as np
library, augment, threads, n = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
x = rng.random((n, 32, 32, 3), dtype=np.float32)  # no float64 copy to inflate the peak
y = rng.integers(0, 10, (n, 1))
settings = dict(rotation_range=10, width_shift_range=0.1, height_shift_range=0.1, horizontal_flip=True)
if library == "fastdl":
    import fastdl
    from fastdl.benchmarks.suites.train import fastdl_model
    from fastdl.preprocessing.image import ImageDataGenerator
    fastdl.set_num_threads(threads)
    model = fastdl_model()
    model.train_on_batch(x[:32], y[:32])
    start = time.perf_counter()
    if augment:
        model.fit(ImageDataGenerator(**settings).flow(x, y, batch_size=32), epochs=1, verbose=0)
    else:
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
elif library == "torch":
    import torch
    torch.set_num_threads(threads)
    from fastdl.benchmarks.suites.train import fastdl_model, torch_model
    from fastdl.preprocessing.image import ImageDataGenerator
    net = torch_model(torch, fastdl_model().get_weights(), channels_last=False)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    flow = ImageDataGenerator(**settings).flow(x, y, batch_size=32) if augment else None
    start = time.perf_counter()
    order = rng.permutation(n)
    for i in range(0, n, 32):
        if augment:
            xb, yb = next(flow)
        else:
            idx = order[i:i + 32]
            xb, yb = x[idx], y[idx]
        tx = torch.from_numpy(np.ascontiguousarray(xb.transpose(0, 3, 1, 2)))
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(tx), torch.from_numpy(yb[:, 0].astype(np.int64))).backward()
        opt.step()
else:
    import os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras
    from fastdl.benchmarks.suites.train import fastdl_model, keras_model
    model = keras_model(keras, fastdl_model().get_weights())
    model.train_on_batch(x[:32], y[:32])
    start = time.perf_counter()
    if augment:
        try:
            from keras.preprocessing.image import ImageDataGenerator
        except ImportError:  # Keras 3.x keeps it under legacy
            from keras.src.legacy.preprocessing.image import ImageDataGenerator
        model.fit(ImageDataGenerator(**settings).flow(x, y, batch_size=32), epochs=1, verbose=0)
    else:
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
seconds = time.perf_counter() - start
def peak_mb():
    # VmHWM is this process image's own high-water mark; ru_maxrss on Linux also counts
    # the parent this process was forked from (it survives exec), so a big parent's
    # footprint would be reported as ours
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mb": peak_mb()}))
"""


def epoch_case(augment, libs, threads, n=50000):
    labels = ["fastdl"] + [name for name in ("torch", "keras") if name in libs]
    notes = {}

    def measure():
        out = {}
        for label in labels:
            proc = subprocess.run([sys.executable, "-c", EPOCH_SCRIPT, label, "1" if augment else "0",
                                   str(threads), str(n)], capture_output=True, text=True,
                                  env={**os.environ, "PYTHONWARNINGS": "ignore"})
            if proc.returncode != 0:
                raise RuntimeError(f"epoch run of {label} failed:\n{proc.stderr[-2000:]}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            out[label] = [result["seconds"]]
            notes[label] = f"peak {result['peak_mb']:.0f} MB"
        return out

    name = "fit epoch" + (" + ImageDataGenerator" if augment else "")
    return Case("train", name, f"{n} CIFAR-shaped, b32", {label: None for label in labels},
                notes=notes, measure=measure)


def cases(quick, batches, libs):
    rng = np.random.default_rng(0)
    out = [step_case(b, libs, rng) for b in batches]
    out += [inference_case(b, libs, rng) for b in ((1, 32, 256) if not quick else (1, 256))]
    from fastdl.benchmarks.suites import resnet

    out += resnet.cases(quick, batches, libs)
    if not quick:
        threads = fastdl.get_num_threads()
        out += [epoch_case(False, libs, threads), epoch_case(True, libs, threads)]
    return out
