"""Augmentation suite: the seed's ImageDataGenerator settings on CIFAR-shaped images,
fastdl's batched kernel against the per-image scipy.ndimage.affine_transform loop that
Keras's ImageDataGenerator runs."""
import numpy as np

from fastdl.benchmarks.harness import Case
from fastdl.preprocessing.image import ImageDataGenerator

SEED_SETTINGS = dict(rotation_range=10, width_shift_range=0.1, height_shift_range=0.1, horizontal_flip=True)


def scipy_loop(generator, x, matrices):
    """What Keras does: one scipy.ndimage.affine_transform per image and channel."""
    import scipy.ndimage as ndimage

    out = np.empty(x.shape, np.float32)
    for i in range(len(x)):
        for ch in range(x.shape[3]):
            out[i, :, :, ch] = ndimage.affine_transform(x[i, :, :, ch], matrices[i, :, :2], matrices[i, :, 2],
                                                        order=1, mode="nearest")
    return out


def augment_case(n, libs, rng):
    x = rng.random((n, 32, 32, 3)).astype(np.float32)
    gen = ImageDataGenerator(**SEED_SETTINGS, seed=0)
    params = gen.random_transform_parameters(n, 32, 32)
    matrices = gen.affine_matrices(params, 32, 32)
    result = {}

    def fastdl_run():
        # a full epoch as training sees it: batches of 32 drawn by the generator
        for start in range(0, n, 32):
            gen.augment_batch(x, np.arange(start, min(start + 32, n)))

    candidates = {"fastdl": fastdl_run}

    def check():
        from fastdl import ops

        ours = ops.affine_transform_batch(x, np.arange(min(n, 64)), matrices[:64])
        theirs = scipy_loop(gen, x[:64], matrices[:64])
        if not np.allclose(ours, theirs, atol=1e-5):
            raise AssertionError("augmentation disagrees with scipy.ndimage")

    if "numpy" in libs:  # SciPy comes with fastdl; listed under the numpy baselines
        candidates["scipy-loop"] = lambda: result.__setitem__("scipy", scipy_loop(gen, x, matrices))
    return Case("augment", f"augment {n} images", "32x32x3, seed settings", candidates,
                float(x.nbytes * 2), "GB/s", check, repeats=3 if n > 5000 else None)


def cases(quick, batches, libs):
    rng = np.random.default_rng(0)
    return [augment_case(2000 if quick else 50000, libs, rng)]
