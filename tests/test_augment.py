"""ImageDataGenerator and its batched resampling kernel against SciPy and Keras semantics."""
import numpy as np
import pytest
import scipy.ndimage as ndimage

import fastdl
from fastdl import ops
from fastdl.preprocessing.image import ImageDataGenerator

SCIPY_MODE = {"nearest": "nearest", "constant": "constant", "reflect": "reflect", "wrap": "grid-wrap"}


def scipy_transform(image, matrix, mode, cval=0.0):
    """The per-image SciPy resampling that Keras's ImageDataGenerator runs."""
    return np.stack([ndimage.affine_transform(image[..., k].astype(np.float64), matrix[:, :2], matrix[:, 2],
                                              order=1, mode=SCIPY_MODE[mode], cval=cval)
                     for k in range(image.shape[-1])], axis=-1)


def random_matrices(n, rng):
    theta = rng.uniform(-0.6, 0.6, n)
    m = np.zeros((n, 2, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = np.cos(theta), -np.sin(theta), np.sin(theta), np.cos(theta)
    m[:, :, :2] *= rng.uniform(0.7, 1.3, (n, 1, 1))
    m[:, :, 2] = rng.uniform(-3, 3, (n, 2))
    return m


@pytest.mark.parametrize("mode", ["nearest", "constant", "reflect", "wrap"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_kernel_matches_scipy_and_reference(backend, mode, dtype):
    rng = np.random.default_rng(0)
    images = (rng.random((5, 9, 7, 3)) * 255).astype(dtype)
    indices = np.array([4, 0, 2, 2])
    matrices = random_matrices(4, rng)
    out = ops.affine_transform_batch(images, indices, matrices, fill_mode=mode, cval=17.0, scale=0.5)
    assert out.dtype == np.float32 and out.shape == (4, 9, 7, 3)
    with fastdl.use_backend("reference"):
        ref = ops.affine_transform_batch(images, indices, matrices, fill_mode=mode, cval=17.0, scale=0.5)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-3)
    for b, i in enumerate(indices):
        np.testing.assert_allclose(out[b], 0.5 * scipy_transform(images[i], matrices[b], mode, 17.0),
                                   rtol=1e-5, atol=1e-3)


def fixed(gen, size=(6, 8), **params):
    """The generator's matrix for given parameters (the rest neutral), for a size image."""
    base = dict(theta=[0.0], tx=[0.0], ty=[0.0], shear=[0.0], zx=[1.0], zy=[1.0],
                flip_horizontal=np.array([False]), flip_vertical=np.array([False]))
    base.update({k: np.atleast_1d(v) for k, v in params.items()})
    return gen.affine_matrices(base, *size)


def test_shift_directions_follow_keras():
    gen = ImageDataGenerator()
    image = np.arange(6 * 8, dtype=np.float32).reshape(1, 6, 8, 1)
    # Keras 3 swaps x and y: tx (height_shift_range) moves columns, the output at column c
    # showing input column c + tx
    shifted = ops.affine_transform_batch(image, [0], fixed(gen, tx=2.0))
    np.testing.assert_array_equal(shifted[0, :, :6, 0], image[0, :, 2:, 0])
    # and ty (width_shift_range) moves rows
    shifted = ops.affine_transform_batch(image, [0], fixed(gen, ty=1.0))
    np.testing.assert_array_equal(shifted[0, :5, :, 0], image[0, 1:, :, 0])


def test_flips_and_rotation_about_the_centre():
    gen = ImageDataGenerator()
    image = np.random.default_rng(1).random((1, 6, 8, 2)).astype(np.float32)
    flipped = ops.affine_transform_batch(image, [0], fixed(gen, flip_horizontal=np.array([True])))
    np.testing.assert_allclose(flipped[0], image[0, :, ::-1], atol=1e-6)
    flipped = ops.affine_transform_batch(image, [0], fixed(gen, flip_vertical=np.array([True])))
    np.testing.assert_allclose(flipped[0], image[0, ::-1], atol=1e-6)
    # a half turn about the centre of a square image is both flips (Keras's swap of the
    # axes moves the centre of a non-square one)
    square = image[:, :6, :6].copy()
    turned = ops.affine_transform_batch(square, [0], fixed(gen, (6, 6), theta=180.0))
    np.testing.assert_allclose(turned[0], square[0, ::-1, ::-1], atol=1e-5)
    # a small rotation: Keras's matrix, about (h/2 - 0.5, w/2 - 0.5), its axes swapped
    # (built in (x, y), applied in (row, col)), through SciPy
    theta = np.deg2rad(7.0)
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    offset = np.array([[1, 0, 2.5], [0, 1, 3.5], [0, 0, 1]])
    reset = np.array([[1, 0, -2.5], [0, 1, -3.5], [0, 0, 1]])
    swap = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    keras_matrix = (swap @ offset @ rot @ reset @ swap)[:2]
    rotated = ops.affine_transform_batch(image, [0], fixed(gen, theta=7.0))
    np.testing.assert_allclose(rotated[0], scipy_transform(image[0], keras_matrix, "nearest"), atol=1e-5)


def test_random_parameters_respect_their_ranges():
    gen = ImageDataGenerator(rotation_range=10, width_shift_range=0.1, height_shift_range=3,
                             zoom_range=0.2, horizontal_flip=True, seed=0)
    p = gen.random_transform_parameters(4000, 32, 40)
    assert np.abs(p["theta"]).max() <= 10 and np.abs(p["theta"]).max() > 9
    assert np.abs(p["ty"]).max() <= 4.0 and np.abs(p["ty"]).max() > 3.5  # 0.1 of the width 40
    assert set(np.unique(p["tx"])) == {-2.0, -1.0, 0.0, 1.0, 2.0}  # int v: 0 .. v - 1 pixels, either sign
    assert 0.8 <= p["zx"].min() and p["zx"].max() <= 1.2
    assert 0.45 < p["flip_horizontal"].mean() < 0.55
    assert not p["flip_vertical"].any()


def test_seeded_flows_are_reproducible_and_cover_each_sample_once_an_epoch():
    x = np.random.default_rng(2).integers(0, 255, (70, 8, 8, 3)).astype(np.uint8)
    y = np.arange(70)
    gen = ImageDataGenerator(rotation_range=10, width_shift_range=0.1, horizontal_flip=True, rescale=1 / 255)
    first, second = gen.flow(x, y, batch_size=16, seed=5), gen.flow(x, y, batch_size=16, seed=5)
    assert len(first) == 5
    seen = []
    for _ in range(len(first)):
        (xa, ya), (xb, yb) = next(first), next(second)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
        assert xa.dtype == np.float32 and xa.max() <= 1.0
        seen.extend(ya)
    assert sorted(seen) == list(range(70))
    next_epoch = [next(first)[1] for _ in range(len(first))]
    assert sorted(np.concatenate(next_epoch)) == list(range(70))
    assert not np.array_equal(np.concatenate(next_epoch), seen)  # reshuffled


def test_standardization_and_fit():
    x = np.random.default_rng(3).random((20, 4, 4, 3)).astype(np.float32) * 10
    gen = ImageDataGenerator(featurewise_center=True, featurewise_std_normalization=True).fit(x)
    out = gen.standardize(x.copy())
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1, atol=1e-3)
    sample = ImageDataGenerator(samplewise_center=True).standardize(x.copy())
    np.testing.assert_allclose(sample.mean(axis=(1, 2, 3)), 0, atol=1e-4)
    with pytest.raises(ValueError, match="needs fit"):
        ImageDataGenerator(featurewise_center=True).standardize(x)


def test_seed_preprocessing_works_as_written():
    x_train = np.random.default_rng(4).integers(0, 255, (10, 32, 32, 3)).astype(np.uint8)
    x_train = x_train.astype("float32") / 255
    mean = np.mean(x_train, axis=0)
    x_train -= mean
    assert x_train.dtype == np.float32 and abs(float(x_train.mean())) < 1e-6


@pytest.mark.parametrize("call,error,message", [
    (lambda: ImageDataGenerator(rotation_range=-1), ValueError, r"rotation_range must be in \[0, inf\]"),
    (lambda: ImageDataGenerator(width_shift_range=-0.1), ValueError, r"width_shift_range must be in"),
    (lambda: ImageDataGenerator(fill_mode="mirror"), ValueError, r"fill_mode must be one of"),
    (lambda: ImageDataGenerator(zoom_range=(1.2, 0.8)), ValueError, r"lower <= upper"),
    (lambda: ImageDataGenerator().flow(np.zeros((4, 8, 8)), batch_size=2), ValueError, r"images must be 4-D"),
    (lambda: ImageDataGenerator().flow(np.zeros((4, 8, 8, 5))), ValueError, r"1, 3 or 4 channels"),
    (lambda: ImageDataGenerator().flow(np.zeros((4, 8, 8, 3)), np.zeros(3)), ValueError, r"same length; got 4 and 3"),
    (lambda: ImageDataGenerator().flow(np.zeros((4, 8, 8, 3)), batch_size=0), ValueError, r"batch_size must be an int >= 1"),
    (lambda: ops.affine_transform_batch(np.zeros((2, 4, 4, 1)), [2], np.zeros((1, 2, 3))), ValueError, r"indices must be in \[0, 2\)"),
    (lambda: ops.affine_transform_batch(np.zeros((2, 4, 4, 1)), [0], np.zeros((2, 2, 3))), ValueError, r"matrices must have shape \(1, 2, 3\)"),
    (lambda: ops.affine_transform_batch(np.zeros((2, 4, 4, 1), np.int16), [0], np.zeros((1, 2, 3))), TypeError, r"uint8, float32 or float64"),
    (lambda: ops.affine_transform_batch(np.zeros((2, 4, 4, 1)), [0], np.full((1, 2, 3), np.nan)), ValueError, r"finite"),
])
def test_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()
