"""Augmentation suite: an epoch of ImageDataGenerator(seed settings).flow(x, y,
batch_size=32) on CIFAR-shaped images, float32 and uint8, against the per-image
scipy.ndimage.affine_transform loop that Keras's ImageDataGenerator runs and against
Keras's own ImageDataGenerator (its legacy preprocessing module, pure NumPy and SciPy,
where Keras is installed); and the per-batch cost of flow on images too small to warp."""
import importlib.util
import os
import sys

import numpy as np

from fastdl.benchmarks.harness import Case
from fastdl.preprocessing.image import ImageDataGenerator

SEED_SETTINGS = dict(rotation_range=10, width_shift_range=0.1, height_shift_range=0.1, horizontal_flip=True)
BATCH = 32


def scipy_loop(x, matrices):
    """What Keras does: one scipy.ndimage.affine_transform per image and channel."""
    import scipy.ndimage as ndimage

    out = np.empty(x.shape, np.float32)
    for i in range(len(x)):
        for ch in range(x.shape[3]):
            out[i, :, :, ch] = ndimage.affine_transform(x[i, :, :, ch], matrices[i, :, :2], matrices[i, :, 2],
                                                        order=1, mode="nearest")
    return out


def keras_image_module(libs):
    """Keras's legacy ImageDataGenerator module, or None. It needs no TensorFlow: where
    TensorFlow is missing, Keras is imported on its NumPy backend (unless this process
    imported Keras already)."""
    if "keras" not in libs:
        if importlib.util.find_spec("keras") is None or importlib.util.find_spec("tensorflow") is not None:
            return None
        if "keras" not in sys.modules:
            os.environ.setdefault("KERAS_BACKEND", "numpy")
    try:
        from keras.src.legacy.preprocessing import image
    except ImportError:
        return None
    return image


def epoch(iterator):
    """Every batch of one epoch of a flow."""
    for _ in range(len(iterator)):
        next(iterator)


def flow_case(n, dtype, libs, rng):
    x = rng.random((n, 32, 32, 3)) * 255
    x = x.astype(np.uint8) if dtype == "uint8" else x.astype(np.float32)
    y = rng.integers(0, 10, n)
    ours = ImageDataGenerator(**SEED_SETTINGS).flow(x, y, batch_size=BATCH, seed=0)
    candidates = {"fastdl": lambda: epoch(ours)}
    drawn = ImageDataGenerator(**SEED_SETTINGS, seed=0)
    matrices = drawn.affine_matrices(drawn.random_transform_parameters(n, 32, 32), 32, 32)
    if "numpy" in libs:  # SciPy comes with fastdl; listed under the numpy baselines
        candidates["scipy-loop"] = lambda: scipy_loop(x, matrices)
    kimage = keras_image_module(libs)
    if kimage is not None:
        theirs = kimage.ImageDataGenerator(**SEED_SETTINGS).flow(x, y, batch_size=BATCH, seed=0)
        candidates["keras-idg"] = lambda: epoch(theirs)

    def check():
        from fastdl import ops

        mine = ops.affine_transform_batch(x, np.arange(min(n, 64)), matrices[:64])
        if not np.allclose(mine, scipy_loop(x[:64].astype(np.float32), matrices[:64]), atol=1e-3):
            raise AssertionError("augmentation disagrees with scipy.ndimage")
        if kimage is not None:  # the same parameters give Keras's images
            params = drawn.random_transform_parameters(8, 32, 32)
            keras_gen = kimage.ImageDataGenerator(**SEED_SETTINGS)
            one = [{k: (None if v is None else v[i]) for k, v in params.items()} for i in range(8)]
            keras_out = np.stack([keras_gen.apply_transform(x[i].astype(np.float32), one[i]) for i in range(8)])
            if not np.allclose(drawn.apply_transform_batch(x, np.arange(8), params), keras_out, atol=1e-3):
                raise AssertionError("augmentation disagrees with Keras's ImageDataGenerator")

    return Case("augment", f"flow epoch {n} images {dtype}", f"32x32x3 batch {BATCH}, seed settings", candidates,
                float(n), "k img/s", check, repeats=3 if n > 2000 else None)


def overhead_case(libs, rng):
    """flow on 1x1 images: what a batch costs beyond the warp (drawing, indexing, Python)."""
    n = BATCH * 64
    x = rng.random((n, 1, 1, 1)).astype(np.float32)
    ours = ImageDataGenerator(**SEED_SETTINGS).flow(x, np.zeros(n), batch_size=BATCH, seed=0)
    return Case("augment", "flow per-batch overhead", f"64 batches of {BATCH} 1x1x1", {"fastdl": lambda: epoch(ours)},
                64.0, "k batch/s")


def cases(quick, batches, libs):
    rng = np.random.default_rng(0)
    n = 1000 if quick else 5000
    return [flow_case(n, "float32", libs, rng), flow_case(n, "uint8", libs, rng), overhead_case(libs, rng)]
