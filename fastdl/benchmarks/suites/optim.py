"""Optimizer suite: fused updates on flat float32 buffers (1M and 16M elements) and on
the reference CNN's parameters, at 1 thread and at the run's thread count, against
torch.optim with fused=True where PyTorch has it (else foreach=True)."""
import numpy as np

import fastdl
from fastdl import ops
from fastdl.benchmarks import baselines
from fastdl.benchmarks.harness import Case

# the reference CNN's 8 parameter arrays (315,722 elements)
SEED_CNN_SHAPES = [(3, 3, 3, 32), (32,), (3, 3, 32, 64), (64,), (2304, 128), (128,), (128, 10), (10,)]

# name: (bytes moved per element, fastdl update, torch optimizer factory)
UPDATES = {
    "adam": 28,      # reads p, g, m, v; writes p, m, v
    "adamw": 28,
    "sgd-momentum": 20,  # reads p, g, buf; writes p, buf
    "rmsprop": 20,   # reads p, g, s; writes p, s
}


def _fastdl_update(name, p, g, state, step):
    if name in ("adam", "adamw"):
        ops.adam_update(p, g, state[0], state[1], step=step, lr=1e-3, weight_decay=0.01 if name == "adamw" else 0.0,
                        decoupled_weight_decay=name == "adamw")
    elif name == "sgd-momentum":
        ops.sgd_update(p, g, lr=1e-2, momentum=0.9, velocity=state[0])
    else:
        ops.rmsprop_update(p, g, state[0], lr=1e-3)


def _torch_optimizer(torch, name, tensors):
    if name == "adam":
        return torch.optim.Adam(tensors, lr=1e-3, fused=True), "fused"
    if name == "adamw":
        return torch.optim.AdamW(tensors, lr=1e-3, weight_decay=0.01, fused=True), "fused"
    if name == "sgd-momentum":
        return torch.optim.SGD(tensors, lr=1e-2, momentum=0.9, fused=True), "fused"
    return torch.optim.RMSprop(tensors, lr=1e-3, foreach=True), "foreach"


def update_case(name, shapes, label, threads, libs, rng):
    sizes = [int(np.prod(s)) for s in shapes]
    total = sum(sizes)
    p = rng.standard_normal(total).astype(np.float32)
    g = (rng.standard_normal(total) * 1e-3).astype(np.float32)
    state = [np.zeros_like(p), np.zeros_like(p)]
    counter = {"step": 0}

    def run():
        counter["step"] += 1
        _fastdl_update(name, p, g, state, counter["step"])

    def setup():
        baselines.set_threads(libs, threads)

    candidates = {"fastdl": run}
    torch = libs.get("torch")
    notes = {}
    if torch is not None:
        offsets = np.cumsum([0] + sizes)
        tensors = [torch.from_numpy(p[a:b].reshape(s).copy()).requires_grad_(True)
                   for a, b, s in zip(offsets, offsets[1:], shapes)]
        for t, a, b, s in zip(tensors, offsets, offsets[1:], shapes):
            t.grad = torch.from_numpy(g[a:b].reshape(s).copy())
        opt, kind = _torch_optimizer(torch, name, tensors)
        notes["torch"] = kind

        candidates["torch"] = opt.step

    return Case("optim", f"{name} {label}", f"{total:,} floats, {len(shapes)} arrays, {threads} thr",
                candidates, float(UPDATES[name] * total), "GB/s", notes=notes, setup=setup)


def cases(quick, batches, libs):
    rng = np.random.default_rng(0)
    threads = fastdl.get_num_threads()
    thread_counts = sorted({1, threads})
    flat = [("flat 1M", [(1 << 20,)])] + ([] if quick else [("flat 16M", [(1 << 24,)])])
    if quick:
        flat.append(("flat 16M", [(1 << 24,)]))
    layouts = flat + [("seed CNN", SEED_CNN_SHAPES)]
    out = []
    for name in (["adam", "sgd-momentum"] if quick else list(UPDATES)):
        for label, shapes in layouts:
            for t in thread_counts:
                out.append(update_case(name, shapes, label, t, libs, rng))
    return out

