"""Recurrent layers: LSTM and GRU forward + backward (sequences out, the input's gradient
too) against torch.nn.LSTM / nn.GRU and Keras's layers on TensorFlow (the pass in a
tf.function, as Keras's own fit compiles it) with the same weights and threads; outputs
and input gradients are checked equal before timing. The overhead row times one step of eight
units at batch 1, where the kernels do almost nothing: what a call costs in Python and
dispatch, against what torch's costs."""
import numpy as np

from fastdl import layers
from fastdl.benchmarks.harness import Case

# (batch, steps, features, units): the shapes, MNIST read row by row and a long
# sequence of wide states
SHAPES = [(32, 28, 28, 128), (128, 28, 28, 128), (64, 100, 128, 256)]
OVERHEAD_SHAPE = (1, 1, 8, 8)
GATES = {"LSTM": 4, "GRU": 3}


def fastdl_layer(kind, features, units, steps, rng):
    """A built layer with random weights and its gradient arrays."""
    layer = getattr(layers, kind)(units, return_sequences=True)
    layer.build((steps, features))
    params = [(rng.standard_normal(shape) * 0.1).astype(np.float32) for _, shape, _ in layer.weight_specs()]
    layer.attach(params, [np.zeros_like(p) for p in params])
    return layer


def torch_layer(torch, kind, layer):
    """torch's module with the layer's weights (GRU: Keras's z, r, h are torch's r, z, n)."""
    kernel, recurrent, bias = layer.params
    units = layer.units
    if kind == "GRU":
        def order(a):
            return np.concatenate([a[..., units:2 * units], a[..., :units], a[..., 2 * units:]], axis=-1)
        weights = dict(weight_ih_l0=order(kernel).T, weight_hh_l0=order(recurrent).T, bias_ih_l0=order(bias[0]),
                       bias_hh_l0=order(bias[1]))
        module = torch.nn.GRU(kernel.shape[0], units, batch_first=True)
    else:
        weights = dict(weight_ih_l0=kernel.T, weight_hh_l0=recurrent.T, bias_ih_l0=bias,
                       bias_hh_l0=np.zeros_like(bias))
        module = torch.nn.LSTM(kernel.shape[0], units, batch_first=True)
    module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()})
    return module


def keras_pass(keras, kind, layer, x, dy):
    """Keras's layer with the same weights: forward and backward (dx and the weights'
    gradients) as one compiled function."""
    import tensorflow as tf

    theirs = getattr(keras.layers, kind)(layer.units, return_sequences=True)
    theirs.build((None,) + x.shape[1:])
    theirs.set_weights(layer.params)
    tx, tdy = tf.constant(x), tf.constant(dy)

    @tf.function
    def run():
        with tf.GradientTape() as tape:
            tape.watch(tx)
            out = theirs(tx, training=True)
        grads = tape.gradient(out, [tx] + theirs.trainable_weights, output_gradients=tdy)
        return out, grads[0]
    return run


def layer_case(kind, shape, libs, rng, name=None):
    batch, steps, features, units = shape
    x = rng.standard_normal((batch, steps, features)).astype(np.float32)
    dy = rng.standard_normal((batch, steps, units)).astype(np.float32)
    layer = fastdl_layer(kind, features, units, steps, rng)
    result = {}

    def ours():
        out = layer.forward(x, training=True)
        result["fastdl"] = (out, layer.backward(dy))
    candidates = {"fastdl": ours}
    torch = libs.get("torch")
    if torch is not None:
        module = torch_layer(torch, kind, layer)
        tx = torch.from_numpy(x).requires_grad_()
        tdy = torch.from_numpy(dy)

        def theirs():
            tx.grad = None
            module.zero_grad(set_to_none=True)
            out, _ = module(tx)
            out.backward(tdy)
            result["torch"] = (out.detach().numpy(), tx.grad.numpy())
        candidates["torch"] = theirs
    keras = libs.get("keras")
    if keras is not None:
        run = keras_pass(keras, kind, layer, x, dy)

        def keras_step():
            out, dx = run()
            result["keras"] = (out.numpy(), dx.numpy())
        candidates["keras"] = keras_step

    def check():
        for other in ("torch", "keras"):
            if other not in result:
                continue
            for what, ours_, theirs_ in zip(("outputs", "dx"), result["fastdl"], result[other]):
                if not np.allclose(ours_, theirs_, rtol=1e-3, atol=1e-4):
                    raise AssertionError(f"{kind} {what} disagree with {other}: {np.abs(ours_ - theirs_).max()}")

    flops = 3 * 2 * batch * steps * (features + units) * GATES[kind] * units  # forward, twice that backward
    return Case("recurrent", name or f"{kind} fwd+bwd b{batch} t{steps}", f"{features}->{units}", candidates,
                flops, "GFLOP/s", check, repeats=5 if steps * batch >= 6400 else None)


def cases(quick, batches, libs):
    rng = np.random.default_rng(0)
    shapes = SHAPES[:1] if quick else SHAPES
    out = [layer_case(kind, shape, libs, rng) for shape in shapes for kind in ("LSTM", "GRU")]
    out.append(layer_case("LSTM", OVERHEAD_SHAPE, libs, rng, name="LSTM overhead b1 t1"))
    return out
