"""CI's smoke test of the installed wheel: run from outside the source tree, with no compiler
on PATH. Checks that the wheel's kernels load and compute, then trains briefly."""
import os
import shutil
import subprocess
import sys

import numpy as np

import fastdl
from fastdl import ops

compilers = [c for c in ("gcc", "cc", "g++", "clang") if shutil.which(c)]
assert not compilers, f"a compiler is on PATH: {compilers}"
assert "site-packages" in fastdl.__file__, f"fastdl imported from {fastdl.__file__}, not the wheel"
print(f"fastdl {fastdl.__version__} from {os.path.dirname(fastdl.__file__)}, backend {fastdl.get_backend()}")

# one convolution (stride 2, 'same', bias, ReLU) against a direct sum in NumPy
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 9, 8, 3)).astype(np.float32)
kernel = rng.standard_normal((3, 2, 3, 5)).astype(np.float32)
bias = rng.standard_normal(5).astype(np.float32)
y = ops.conv2d(x, kernel, bias, strides=2, padding="same", activation="relu")
xp = np.pad(x, ((0, 0), (1, 1), (0, 1), (0, 0)))  # 'same' for 9x8, 3x2 kernel, stride 2
want = np.zeros((2, 5, 4, 5), np.float64)
for i in range(5):
    for j in range(4):
        window = xp[:, 2 * i:2 * i + 3, 2 * j:2 * j + 2, :]
        want[:, i, j, :] = np.tensordot(window, kernel, axes=([1, 2, 3], [0, 1, 2]))
want = np.maximum(want + bias, 0)
np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
print("conv2d matches NumPy:", y.shape)

# a short train through the console script, as a user runs it
command = ["fastdl", "train", "--dataset", "fashion_mnist", "--limit", "2000", "--epochs", "1", "--verbose", "2"]
print("$", " ".join(command), flush=True)
subprocess.run(command, check=True)
sys.exit(0)
