"""The real-GPU check: every kernel of the 'cuda' backend against 'reference', then the
reference CNN's training step at batch 32, 128 and 512 on the GPU, beside PyTorch on
the same GPU when it is installed. Prints one table.

    FASTDL_REAL_GPU=1 python bench/gpu_check.py
"""
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def kernels_against_reference():
    env = {**os.environ, "FASTDL_REAL_GPU": "1"}
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests_cuda",
                           "-k", "not simulator"], cwd=ROOT, env=env, capture_output=True, text=True)
    return proc.stdout.strip().splitlines()[-1] if proc.stdout else proc.stderr[-500:]


def median_ms(fn, repeats=10):
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * sorted(times)[len(times) // 2]


def main():
    import fastdl
    from fastdl.train import seed_cnn

    if not fastdl.cuda_available():
        print("no CUDA GPU here: nothing to check")
        return 1
    print("kernels against reference:", kernels_against_reference())
    rows = []
    rng = np.random.default_rng(0)
    try:
        import torch
        gpu_torch = torch.cuda.is_available()
    except ImportError:
        gpu_torch = False
    for batch in (32, 128, 512):
        x = rng.random((batch, 32, 32, 3), dtype=np.float32)
        y = rng.integers(0, 10, batch)
        with fastdl.use_backend("cuda"):
            model = seed_cnn((32, 32, 3))
            model.compile("adam", "sparse_categorical_crossentropy")
            ours = median_ms(lambda: model.train_on_batch(x, y))
        theirs = float("nan")
        if gpu_torch:
            net = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                      torch.nn.Conv2d(32, 64, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                      torch.nn.Flatten(), torch.nn.Linear(2304, 128), torch.nn.ReLU(),
                                      torch.nn.Linear(128, 10)).cuda()
            opt = torch.optim.Adam(net.parameters(), fused=True)
            tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).cuda()
            ty = torch.from_numpy(y).cuda()

            def step():
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(net(tx), ty).backward()
                opt.step()
                torch.cuda.synchronize()
            theirs = median_ms(step)
        rows.append((batch, ours, theirs))
    print(f"{'batch':>6} {'fastdl cuda ms':>15} {'torch cuda ms':>14} {'ratio':>6}")
    for batch, ours, theirs in rows:
        print(f"{batch:>6} {ours:>15.2f} {theirs:>14.2f} {ours / theirs:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
