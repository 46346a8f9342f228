"""ResNet-20 suite: the training step at batch 32 and 128 and inference at 256 of the
Keras CIFAR-10 ResNet v1 (fastdl.applications.resnet_v1, 32x32x3), against the same
network in PyTorch (NCHW and channels_last, fused Adam) with fastdl's weights, and in
Keras where TensorFlow is installed; the engines (ONNX Runtime, OpenVINO) run fastdl's
ONNX export at inference. Outputs are checked equal before timing."""
import numpy as np

import fastdl
from fastdl.benchmarks.harness import Case
from fastdl.benchmarks.suites.train import _torch_input, jax_predict, jax_step
from fastdl.ops._geometry import window

SHAPE = (32, 32, 3)


def fastdl_resnet(seed=0):
    from fastdl.applications import resnet_v1

    fastdl.utils.set_random_seed(seed)
    model = resnet_v1(SHAPE, depth=20)
    model.compile(optimizer=fastdl.optimizers.Adam(learning_rate=1e-3), loss="sparse_categorical_crossentropy")
    model.build()
    return model


def torch_resnet(torch, model, channels_last):
    """fastdl's graph as a torch module: one torch layer per fastdl layer, its weights
    copied, 'same' padding as Keras places it (the odd pixel bottom/right)."""
    nn, functional = torch.nn, torch.nn.functional

    class Graph(nn.Module):
        def __init__(self):
            super().__init__()
            self.steps, self.convs = [], nn.ModuleList()
            shapes = {-1: model.input_shape}
            for i, (layer, inputs) in enumerate(model._graph_nodes()):
                kind = type(layer).__name__
                module = None
                if kind == "Conv2D":
                    g = window((1,) + shapes[inputs[0]], layer.kernel_size, layer.strides, (1, 1), layer.padding)
                    module = nn.Conv2d(layer.input_shape[-1], layer.filters, layer.kernel_size, layer.strides,
                                       bias=layer.use_bias)
                    with torch.no_grad():
                        module.weight.copy_(torch.from_numpy(layer.params[0].transpose(3, 2, 0, 1).copy()))
                        if layer.use_bias:
                            module.bias.copy_(torch.from_numpy(layer.params[1].copy()))
                    pads = (g.pl, g.pr, g.pt, g.pb)
                elif kind == "BatchNormalization":
                    module = nn.BatchNorm2d(layer.input_shape[-1], eps=layer.epsilon, momentum=1 - layer.momentum)
                    with torch.no_grad():
                        module.weight.copy_(torch.from_numpy(layer.params[0].copy()))
                        module.bias.copy_(torch.from_numpy(layer.params[1].copy()))
                        module.running_mean.copy_(torch.from_numpy(layer.states[0].copy()))
                        module.running_var.copy_(torch.from_numpy(layer.states[1].copy()))
                elif kind == "Dense":
                    module = nn.Linear(layer.input_shape[-1], layer.units)
                    with torch.no_grad():
                        module.weight.copy_(torch.from_numpy(layer.params[0].T.copy()))
                        module.bias.copy_(torch.from_numpy(layer.params[1].copy()))
                if module is not None:
                    self.convs.append(module)
                self.steps.append((kind, inputs, module, pads if kind == "Conv2D" else None,
                                   getattr(layer, "activation", None)))
                shapes[i] = layer.output_shape

        def forward(self, x):
            values = {-1: x}
            for i, (kind, inputs, module, pads, activation) in enumerate(self.steps):
                given = [values[j] for j in inputs]
                if kind == "Conv2D":
                    out = module(functional.pad(given[0], pads) if any(pads) else given[0])
                elif kind == "Add":
                    out = given[0] + given[1]
                elif kind == "GlobalAveragePooling2D":
                    out = given[0].mean(dim=(2, 3))
                elif kind in ("BatchNormalization", "Dense"):
                    out = module(given[0])
                elif kind == "Activation":
                    out = given[0]
                else:
                    raise ValueError(f"no torch equivalent of {kind} here")
                if activation == "relu":
                    out = torch.relu(out)
                values[i] = out
            return values[len(self.steps) - 1]  # logits: the loss takes them, softmax for predictions

    net = Graph()
    return net.to(memory_format=torch.channels_last) if channels_last else net


FLOPS_PER_IMAGE = 2 * 40.55e6  # multiply-adds of ResNet-20 at 32x32 (forward), times two


def step_case(batch, libs, rng):
    x = rng.random((batch,) + SHAPE).astype(np.float32)
    y = rng.integers(0, 10, batch)
    model = fastdl_resnet()
    candidates = {"fastdl": lambda: model.train_on_batch(x, y)}
    torch = libs.get("torch")
    if torch is not None:
        ty = torch.from_numpy(y)
        for label, cl in (("torch", False), ("torch-cl", True)):
            net = torch_resnet(torch, model, cl).train()
            opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
            tx = _torch_input(torch, x, cl)

            def step(net=net, opt=opt, tx=tx):
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(net(tx), ty).backward()
                opt.step()
            candidates[label] = step
    check = jax_step(model, libs, x, y, candidates)
    return Case("train", f"resnet20 train step b{batch}", "32x32x3, Adam", candidates,
                3 * FLOPS_PER_IMAGE * batch, "GFLOP/s", check, repeats=5 if batch > 32 else None)


def inference_case(batch, libs, rng):
    x = rng.random((batch,) + SHAPE).astype(np.float32)
    model = fastdl_resnet(1)
    result = {}
    candidates = {"fastdl": lambda: result.__setitem__("fastdl", model.predict_on_batch(x))}
    torch = libs.get("torch")
    if torch is not None:
        for label, cl in (("torch", False), ("torch-cl", True)):
            net = torch_resnet(torch, model, cl).eval()
            tx = _torch_input(torch, x, cl)

            def infer(net=net, tx=tx, label=label):
                with torch.no_grad():
                    result[label] = torch.softmax(net(tx), dim=1).numpy()
            candidates[label] = infer
    jax_predict(model, libs, x, candidates, result)
    from fastdl.benchmarks import engines

    for label, run in engines.runners(model, libs, fastdl.get_num_threads()).items():
        candidates[label] = lambda run=run, label=label: result.__setitem__(label, np.asarray(run(x)))

    def check():
        for other in ("torch", "torch-cl", "jax", "onnxruntime", "openvino"):
            if other in result and not np.allclose(result["fastdl"], result[other], atol=1e-4):
                raise AssertionError(f"resnet20 inference disagrees with {other}: "
                                     f"{np.abs(result['fastdl'] - result[other]).max()}")

    return Case("train", f"resnet20 inference b{batch}", "32x32x3", candidates, FLOPS_PER_IMAGE * batch,
                "GFLOP/s", check, repeats=5)


def cases(quick, batches, libs):
    rng = np.random.default_rng(0)
    return [step_case(b, libs, rng) for b in batches] + [inference_case(64 if quick else 256, libs, rng)]
