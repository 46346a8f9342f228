"""CI's smoke test of an installed wheel: run from outside the source tree, with no compiler
on PATH. Checks that the wheel's kernels load and compute, trains a small model through the
API, then (unless --no-data, for builders without the data set) runs `fastdl train` briefly
on Fashion-MNIST."""
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

# a small CNN learns a synthetic task (is the bright half of the image the top or the bottom?)
fastdl.utils.set_random_seed(0)
images = rng.random((512, 8, 8, 1)).astype(np.float32)
labels = rng.integers(0, 2, 512)
images[labels == 0, :4] += 1.0
images[labels == 1, 4:] += 1.0
model = fastdl.Sequential([fastdl.Input((8, 8, 1)), fastdl.layers.Conv2D(4, 3, activation="relu"),
                           fastdl.layers.MaxPooling2D(), fastdl.layers.Flatten(),
                           fastdl.layers.Dense(2, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
model.fit(images, labels, epochs=5, batch_size=32, verbose=0)
accuracy = model.evaluate(images, labels, verbose=0)[1]
assert accuracy > 0.9, f"the smoke model reached only {accuracy:.3f}"
print(f"a small CNN trained: accuracy {accuracy:.3f}")
if "--no-data" in sys.argv:
    sys.exit(0)

# a short train through the console script, as a user runs it
command = ["fastdl", "train", "--dataset", "fashion_mnist", "--limit", "2000", "--epochs", "1", "--verbose", "2"]
print("$", " ".join(command), flush=True)
subprocess.run(command, check=True)
sys.exit(0)
