"""Kernel suite: conv2d and pooling of the reference CNN's layers (plus DeepBench-style
shapes), forward and forward+backward; matmul and dense. fastdl (NHWC) against PyTorch
in NCHW and channels_last, and against a plain NumPy im2col (fastdl's reference backend)."""
import numpy as np

import fastdl
from fastdl import ops
from fastdl.benchmarks.harness import Case

# (name, height, width, in channels, filters, kernel, stride, symmetric padding)
SEED_CONVS = [("conv1 3->32", 32, 32, 3, 32, 3, 1, 0),
              ("conv2 32->64", 15, 15, 32, 64, 3, 1, 0)]
DEEPBENCH_CONVS = [("resnet 64->64", 28, 28, 64, 64, 3, 1, 1),
                   ("stride2 64->128", 28, 28, 64, 128, 3, 2, 1),
                   ("pointwise 128->128", 14, 14, 128, 128, 1, 1, 0)]
SEED_POOLS = [("pool1", 30, 30, 32), ("pool2", 13, 13, 64)]


def _reference(fn):
    def call():
        with fastdl.use_backend("reference"):
            return fn()
    return call


def _close(got, want, what, rtol=2e-3, atol=2e-3):
    want = np.asarray(want)
    scale = max(1.0, float(np.abs(want).max()))
    if got.shape != want.shape or not np.allclose(got, want, rtol=rtol, atol=atol * scale):
        raise AssertionError(f"{what}: fastdl and the baseline disagree "
                             f"(max |diff| {np.abs(got - want).max() if got.shape == want.shape else 'shape'})")


def _torch_nchw(torch, a, channels_last):
    t = torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t.contiguous()


def conv_case(name, batch, h, w, c, f, k, stride, pad, backward, libs, rng):
    x = rng.standard_normal((batch, h, w, c)).astype(np.float32)
    kernel = (rng.standard_normal((k, k, c, f)) / np.sqrt(k * k * c)).astype(np.float32)
    bias = rng.standard_normal(f).astype(np.float32)
    geometry = dict(strides=stride, padding=((pad, pad), (pad, pad)) if pad else "valid")
    y = ops.conv2d(x, kernel, bias, **geometry)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    flops = 2.0 * y.size * k * k * c * (3 if backward else 1)
    result = {}

    if backward:
        def run():
            result.pop("fastdl", None)  # free the last gradients first, as PyTorch's run does
            ops.conv2d(x, kernel, bias, out=y, **geometry)
            result["fastdl"] = ops.conv2d_backward(dy, x, kernel, **geometry)
    else:
        def run():
            result["fastdl"] = ops.conv2d(x, kernel, bias, out=y, **geometry)
    candidates = {"fastdl": run}
    if "numpy" in libs:
        candidates["numpy"] = _reference(
            (lambda: ops.conv2d_backward(dy, x, kernel, **geometry)) if backward
            else (lambda: ops.conv2d(x, kernel, bias, **geometry)))
    torch = libs.get("torch")
    if torch is not None:
        tk = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        tb = torch.from_numpy(bias)
        for label, channels_last in (("torch", False), ("torch-cl", True)):
            candidates[label] = _torch_conv(torch, x, tk, tb, dy, stride, pad, backward,
                                            channels_last, result, label)

    def check():
        if "torch" not in result:
            return
        if backward:
            ty, (tdx, tdk, tdb) = result["torch"]
            _close(result["fastdl"][0], tdx, f"{name} dx")
            _close(result["fastdl"][1], tdk, f"{name} dkernel")
        else:
            _close(result["fastdl"], result["torch"], f"{name} forward")

    kind = "fwd+bwd" if backward else "fwd"
    return Case("kernels", f"{name} {kind}", f"b{batch} {h}x{w}x{c} k{k} s{stride} p{pad}",
                candidates, flops, "GFLOP/s", check)


def _torch_conv(torch, x, tk, tb, dy, stride, pad, backward, channels_last, result, label):
    import torch.nn.functional as F

    tx = _torch_nchw(torch, x, channels_last)
    tdy = _torch_nchw(torch, dy, channels_last)
    # each candidate owns its leaf tensors (their .grad must not be shared)
    tk = tk.detach().clone(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    tb = tb.detach().clone()
    if not backward:
        def run():
            with torch.no_grad():
                out = F.conv2d(tx, tk, tb, stride=stride, padding=pad)
            result[label] = out.permute(0, 2, 3, 1).numpy()
        return run
    tx.requires_grad_(True)
    tk.requires_grad_(True)
    tb.requires_grad_(True)

    def run():
        tx.grad = tk.grad = tb.grad = None
        out = F.conv2d(tx, tk, tb, stride=stride, padding=pad)
        out.backward(tdy)
        result[label] = (None, (tx.grad.permute(0, 2, 3, 1).numpy(),
                                tk.grad.permute(2, 3, 1, 0).numpy(), tb.grad.numpy()))
    return run


def pool_case(name, batch, h, w, c, backward, libs, rng):
    x = rng.standard_normal((batch, h, w, c)).astype(np.float32)
    y = ops.max_pool2d(x, 2)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    result = {}

    if backward:  # as in training: the forward saves where the maxima are (PyTorch too)
        argmax = np.empty(y.shape, np.uint8)
        moved = 4.0 * (2 * x.size + y.size + dy.size) + 2.0 * argmax.size

        def run():
            result.pop("fastdl", None)  # free the last dx first, as PyTorch's run does
            ops.max_pool2d(x, 2, out=y, argmax_out=argmax)
            result["fastdl"] = ops.max_pool2d_backward(dy, x.shape, 2, argmax=argmax)
    else:
        moved = 4.0 * (x.size + y.size)

        def run():
            result["fastdl"] = ops.max_pool2d(x, 2, out=y)
    candidates = {"fastdl": run}
    if "numpy" in libs:
        candidates["numpy"] = _reference((lambda: ops.max_pool2d_backward(dy, x, 2)) if backward
                                         else (lambda: ops.max_pool2d(x, 2)))
    torch = libs.get("torch")
    if torch is not None:
        import torch.nn.functional as F

        for label, channels_last in (("torch", False), ("torch-cl", True)):
            tx = _torch_nchw(torch, x, channels_last)
            tdy = _torch_nchw(torch, dy, channels_last)
            if backward:
                tx.requires_grad_(True)

                def run_torch(tx=tx, tdy=tdy, label=label):
                    tx.grad = None
                    F.max_pool2d(tx, 2).backward(tdy)
                    result[label] = tx.grad.permute(0, 2, 3, 1).numpy()
            else:
                def run_torch(tx=tx, label=label):
                    with torch.no_grad():
                        result[label] = F.max_pool2d(tx, 2).permute(0, 2, 3, 1).numpy()
            candidates[label] = run_torch

    def check():
        if "torch" in result:
            _close(result["fastdl"], result["torch"], f"{name} max-pool", rtol=0, atol=0)

    kind = "fwd+bwd" if backward else "fwd"
    return Case("kernels", f"max-pool {name} {kind}", f"b{batch} {h}x{w}x{c} 2x2",
                candidates, moved, "GB/s", check)


def matmul_case(m, k, n, libs, rng, activation=None, label=None):
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    out = np.empty((m, n), np.float32)
    result = {}
    if activation is None:
        candidates = {"fastdl": lambda: result.__setitem__("fastdl", ops.matmul(a, b, out=out))}
        if "numpy" in libs:
            candidates["numpy"] = lambda: result.__setitem__("numpy", np.matmul(a, b))
    else:
        bias = np.zeros(n, np.float32)
        candidates = {"fastdl": lambda: result.__setitem__(
            "fastdl", ops.dense(a, b, bias, activation, out=out))}
        if "numpy" in libs:
            candidates["numpy"] = lambda: result.__setitem__(
                "numpy", np.maximum(a @ b + bias, 0))
    torch = libs.get("torch")
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)

        def run_torch():
            with torch.no_grad():
                r = ta @ tb
                result["torch"] = (torch.relu(r) if activation else r).numpy()
        candidates["torch"] = run_torch

    def check():
        for other in ("torch", "numpy"):
            if other in result:
                _close(result["fastdl"], result[other], f"matmul {m}x{k}x{n} vs {other}")

    name = label or f"matmul {m}x{k}x{n}"
    return Case("kernels", name, f"{m}x{k} @ {k}x{n}", candidates, 2.0 * m * k * n, "GFLOP/s", check)


def layout_case(batch, libs, rng):
    """What feeding NHWC data to PyTorch in NCHW costs: its own row."""
    torch = libs.get("torch")
    if torch is None:
        return None
    x = rng.standard_normal((batch, 32, 32, 3)).astype(np.float32)
    tx = torch.from_numpy(x)
    return Case("kernels", "layout NHWC->NCHW (torch)", f"b{batch} 32x32x3",
                {"torch": lambda: tx.permute(0, 3, 1, 2).contiguous()},
                8.0 * x.size, "GB/s")


# losses of ops.loss and PyTorch's functional equivalents, forward and backward
LOSSES = {"mean_squared_error": "mse_loss", "binary_crossentropy_from_logits": "binary_cross_entropy_with_logits",
          "huber": "huber_loss"}


def loss_case(name, batch, width, libs, rng):
    """The mean loss and its gradient over (batch, width) outputs; GB/s of y, p and grad."""
    y = rng.random((batch, width)).astype(np.float32)
    p = rng.standard_normal((batch, width)).astype(np.float32)
    result = {}

    def run():
        result["fastdl"] = (ops.loss(name, y, p).mean(), ops.loss_backward(name, y, p))
    candidates = {"fastdl": run}
    if "numpy" in libs:
        candidates["numpy"] = _reference(lambda: (ops.loss(name, y, p).mean(), ops.loss_backward(name, y, p)))
    torch = libs.get("torch")
    if torch is not None:
        fn = getattr(torch.nn.functional, LOSSES[name])
        ty = torch.from_numpy(y)

        def run_torch():
            tp = torch.from_numpy(p).requires_grad_()
            value = fn(tp, ty)  # the mean over every element: fastdl's mean of per-sample means
            value.backward()
            result["torch"] = (value.item(), tp.grad.numpy())
        candidates["torch"] = run_torch

    def check():
        if "torch" in result:
            _close(np.asarray(result["fastdl"][0]), result["torch"][0], f"{name} value")
            _close(result["fastdl"][1], result["torch"][1], f"{name} gradient", atol=1e-6)
    return Case("kernels", f"loss {name} fwd+bwd", f"b{batch} x{width}", candidates, 3.0 * y.nbytes, "GB/s", check)


# (name, height, width, channels, kernel, stride): MobileNet's depthwise layers
DEPTHWISE_CONVS = [("mobilenet dw 32", 56, 56, 32, 3, 1), ("mobilenet dw 128 s2", 28, 28, 128, 3, 2)]


def depthwise_case(name, batch, h, w, c, k, stride, libs, rng):
    """Depthwise convolution forward + backward ('same' padding), against torch's
    conv2d with groups=C (NCHW and channels_last)."""
    x = rng.standard_normal((batch, h, w, c)).astype(np.float32)
    kernel = (rng.standard_normal((k, k, c, 1)) * 0.3).astype(np.float32)
    bias = rng.standard_normal(c).astype(np.float32)
    geometry = dict(strides=stride, padding="same")
    y = ops.depthwise_conv2d(x, kernel, bias, **geometry)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    result = {}

    def ours():
        out = ops.depthwise_conv2d(x, kernel, bias, **geometry)
        result["fastdl"] = (out, ops.depthwise_conv2d_backward(dy, x, kernel, **geometry)[0])
    candidates = {"fastdl": ours}
    torch = libs.get("torch")
    if torch is not None and stride == 1:  # torch's padding='same' takes stride 1 only
        weight = torch.from_numpy(np.ascontiguousarray(kernel.transpose(2, 3, 0, 1))).requires_grad_()
        tb = torch.from_numpy(bias).requires_grad_()
        for label, cl in (("torch", False), ("torch-cl", True)):
            tx = _torch_nchw(torch, x, cl).requires_grad_()
            tdy = _torch_nchw(torch, dy, cl)

            def theirs(tx=tx, tdy=tdy, label=label):
                tx.grad = weight.grad = tb.grad = None
                out = torch.nn.functional.conv2d(tx, weight, tb, padding="same", groups=c)
                out.backward(tdy)
                result[label] = (out.detach().permute(0, 2, 3, 1).numpy(), tx.grad.permute(0, 2, 3, 1).numpy())
            candidates[label] = theirs

    def check():
        for label in ("torch", "torch-cl"):
            if label in result:
                _close(result["fastdl"][0], result[label][0], f"{name} output")
                _close(result["fastdl"][1], result[label][1], f"{name} dx")
    flops = 3 * 2.0 * y.size * k * k
    return Case("kernels", f"depthwise {name} fwd+bwd", f"b{batch} {h}x{w}x{c} k{k} s{stride}", candidates, flops,
                "GFLOP/s", check)


def transpose_case(batch, h, w, c, filters, libs, rng):
    """A DCGAN generator's upsampling: Conv2DTranspose(filters, 4, strides=2,
    padding='same') forward + backward, against torch's conv_transpose2d (padding 1 is
    Keras's 'same' there), NCHW and channels_last."""
    x = rng.standard_normal((batch, h, w, c)).astype(np.float32)
    kernel = (rng.standard_normal((4, 4, filters, c)) * 0.1).astype(np.float32)
    bias = rng.standard_normal(filters).astype(np.float32)
    geometry = dict(strides=2, padding="same")
    y = ops.conv2d_transpose(x, kernel, bias, **geometry)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    result = {}

    def ours():
        out = ops.conv2d_transpose(x, kernel, bias, **geometry)
        result["fastdl"] = (out, ops.conv2d_transpose_backward(dy, x, kernel, **geometry)[0])
    candidates = {"fastdl": ours}
    torch = libs.get("torch")
    if torch is not None:
        weight = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))).requires_grad_()
        tb = torch.from_numpy(bias).requires_grad_()
        for label, cl in (("torch", False), ("torch-cl", True)):
            tx = _torch_nchw(torch, x, cl).requires_grad_()
            tdy = _torch_nchw(torch, dy, cl)

            def theirs(tx=tx, tdy=tdy, label=label):
                tx.grad = weight.grad = tb.grad = None
                out = torch.nn.functional.conv_transpose2d(tx, weight, tb, stride=2, padding=1)
                out.backward(tdy)
                result[label] = (out.detach().permute(0, 2, 3, 1).numpy(), tx.grad.permute(0, 2, 3, 1).numpy())
            candidates[label] = theirs

    def check():
        for label in ("torch", "torch-cl"):
            if label in result:
                _close(result["fastdl"][0], result[label][0], "conv2d_transpose output")
                _close(result["fastdl"][1], result[label][1], "conv2d_transpose dx")
    flops = 3 * 2.0 * x.size * 16 * filters
    return Case("kernels", "conv2d_transpose k4 s2 fwd+bwd", f"b{batch} {h}x{w}x{c}->{filters}", candidates, flops,
                "GFLOP/s", check)


def layer_norm_case(rows, width, libs, rng):
    """LayerNormalization forward + backward over (rows, width), against torch's."""
    x = rng.standard_normal((rows, width)).astype(np.float32)
    dy = rng.standard_normal((rows, width)).astype(np.float32)
    gamma, beta = rng.standard_normal(width).astype(np.float32), rng.standard_normal(width).astype(np.float32)
    result = {}

    def ours():
        y, mean, rstd = ops.layer_norm(x, gamma, beta, return_statistics=True)
        result["fastdl"] = (y, ops.layer_norm_backward(dy, x, mean, rstd, gamma)[0])
    candidates = {"fastdl": ours}
    torch = libs.get("torch")
    if torch is not None:
        tx = torch.from_numpy(x).requires_grad_()
        tg, tb = torch.from_numpy(gamma).requires_grad_(), torch.from_numpy(beta).requires_grad_()
        tdy = torch.from_numpy(dy)

        def theirs():
            tx.grad = tg.grad = tb.grad = None
            out = torch.nn.functional.layer_norm(tx, (width,), tg, tb, 1e-3)
            out.backward(tdy)
            result["torch"] = (out.detach().numpy(), tx.grad.numpy())
        candidates["torch"] = theirs

    def check():
        if "torch" in result:
            _close(result["fastdl"][0], result["torch"][0], "layer norm output")
            _close(result["fastdl"][1], result["torch"][1], "layer norm dx")
    return Case("kernels", "layer norm fwd+bwd", f"{rows}x{width}", candidates, 5.0 * x.nbytes, "GB/s", check)


def upsample_case(batch, h, w, c, libs, rng):
    """ZeroPadding2D(1) + UpSampling2D(2) forward and backward, against torch's pad and
    nearest interpolate (channels_last: the layout NHWC data has)."""
    x = rng.standard_normal((batch, h, w, c)).astype(np.float32)
    dy = rng.standard_normal((batch, 2 * (h + 2), 2 * (w + 2), c)).astype(np.float32)
    result = {}

    def ours():
        up = ops.upsample2d(ops.pad2d(x, 1), 2)
        result["fastdl"] = (up, ops.crop2d(ops.upsample2d_backward(dy, 2), 1))
    candidates = {"fastdl": ours}
    torch = libs.get("torch")
    if torch is not None:
        tx = _torch_nchw(torch, x, True).requires_grad_()
        tdy = _torch_nchw(torch, dy, True)

        def theirs():
            tx.grad = None
            out = torch.nn.functional.interpolate(torch.nn.functional.pad(tx, (1, 1, 1, 1)), scale_factor=2,
                                                  mode="nearest")
            out.backward(tdy)
            result["torch-cl"] = (out.detach().permute(0, 2, 3, 1).numpy(), tx.grad.permute(0, 2, 3, 1).numpy())
        candidates["torch-cl"] = theirs

    def check():
        if "torch-cl" in result:
            _close(result["fastdl"][0], result["torch-cl"][0], "pad+upsample output")
            _close(result["fastdl"][1], result["torch-cl"][1], "pad+upsample dx")
    return Case("kernels", "pad+upsample fwd+bwd", f"b{batch} {h}x{w}x{c} x2", candidates,
                2.0 * (x.nbytes + dy.nbytes), "GB/s", check)


def cases(quick, batches, libs):
    rng = np.random.default_rng(0)
    out = []
    for batch in batches:
        convs = SEED_CONVS + ([] if quick else DEEPBENCH_CONVS)
        for spec in convs:
            for backward in (False, True):
                out.append(conv_case(*spec[:1], batch, *spec[1:], backward=backward, libs=libs, rng=rng))
        for spec in SEED_POOLS:
            for backward in (False, True):
                out.append(pool_case(*spec[:1], batch, *spec[1:], backward=backward, libs=libs, rng=rng))
        out.append(matmul_case(batch, 2304, 128, libs, rng, activation="relu",
                               label=f"dense 2304->128 relu b{batch}"))
        for name in LOSSES if not quick else ("mean_squared_error",):
            out.append(loss_case(name, batch, 1000, libs, rng))
        layout = layout_case(batch, libs, rng)
        if layout is not None:
            out.append(layout)
    out.append(matmul_case(512 if quick else 1024, 512 if quick else 1024, 512 if quick else 1024,
                           libs, rng))
    for spec in DEPTHWISE_CONVS[:1] if quick else DEPTHWISE_CONVS:
        out.append(depthwise_case(*spec[:1], batches[0], *spec[1:], libs=libs, rng=rng))
    out.append(transpose_case(batches[0], 16, 16, 64, 32, libs, rng))
    out.append(layer_norm_case(1024 if quick else 4096, 256, libs, rng))
    out.append(upsample_case(batches[0], 16, 16, 32, libs, rng))
    return out
