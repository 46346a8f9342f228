"""ImageDataGenerator's options against Keras 3's own (keras.src.legacy.preprocessing.image,
KERAS_BACKEND=numpy): per image on fixed parameters, subsets, sample weights, the
standardization order and flow_from_directory."""

import numpy as np
import pytest

from fastdl.preprocessing.image import ImageDataGenerator

from support import keras_or_skip

PARAMS = dict(theta=17.0, tx=1.5, ty=-2.25, shear=8.0, zx=0.9, zy=1.2, flip_horizontal=True, flip_vertical=True)


def keras_image():
    return keras_or_skip("keras.src.legacy.preprocessing.image")


def batch_params(n, **params):
    return {k: (None if v is None else np.array([v] * n)) for k, v in params.items()}


@pytest.mark.parametrize("mode", ["nearest", "constant", "reflect"])
@pytest.mark.parametrize("shift, brightness", [(None, None), (20.0, None), (None, 1.3), (35.0, 0.6)])
@pytest.mark.parametrize("offset", [0.0, -100.0])  # -100: outside [0, 255], Keras's 8-bit mapping
def test_apply_transform_matches_keras_per_image(mode, shift, brightness, offset):
    kimage = keras_image()
    x = (np.random.default_rng(0).random((3, 9, 11, 3)) * 255).astype(np.float32) + offset
    params = dict(PARAMS, channel_shift_intensity=shift, brightness=brightness)
    theirs = np.stack([kimage.ImageDataGenerator(fill_mode=mode, cval=7.0).apply_transform(img, params) for img in x])
    ours = ImageDataGenerator(fill_mode=mode, cval=7.0).apply_transform_batch(x, np.arange(3),
                                                                              batch_params(3, **params))
    np.testing.assert_allclose(ours, theirs, atol=2e-4 * max(1.0, np.abs(x).max()))


@pytest.mark.parametrize("channels", [1, 4])
def test_brightness_of_grey_and_rgba_images_matches_keras(channels):
    kimage = keras_image()
    x = (np.random.default_rng(1).random((2, 6, 5, channels)) * 255).astype(np.float32)
    params = dict(PARAMS, brightness=1.4, channel_shift_intensity=None)
    theirs = np.stack([kimage.ImageDataGenerator().apply_transform(img, params) for img in x])
    ours = ImageDataGenerator().apply_transform_batch(x, np.arange(2), batch_params(2, **params))
    np.testing.assert_allclose(ours, theirs, atol=1e-3)


def test_random_draws_follow_keras_ranges():
    gen = ImageDataGenerator(channel_shift_range=30, brightness_range=(0.5, 1.5), width_shift_range=[2, 5],
                             seed=0)
    p = gen.random_transform_parameters(4000, 20, 30)
    assert set(np.unique(p["ty"])) == {-5.0, -2.0, 2.0, 5.0}  # a list: one value, either sign
    assert -30 <= p["channel_shift_intensity"].min() < -29 and 29 < p["channel_shift_intensity"].max() <= 30
    assert 0.5 <= p["brightness"].min() < 0.51 and 1.49 < p["brightness"].max() <= 1.5


def test_rescale_comes_after_preprocessing_function_as_in_keras():
    kimage = keras_image()
    x = np.random.default_rng(2).random((4, 5, 5, 3)).astype(np.float32) * 255

    def square_root(img):
        return np.sqrt(img)

    settings = dict(rescale=1 / 255, preprocessing_function=square_root, samplewise_center=True)
    theirs = np.stack([kimage.ImageDataGenerator(**settings).standardize(img.copy()) for img in x])
    ours = ImageDataGenerator(**settings).augment_batch(x)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_validation_split_subsets_and_sample_weights_as_keras():
    kimage = keras_image()
    x = np.random.default_rng(3).random((10, 4, 4, 1)).astype(np.float32)
    y, w = np.arange(10) % 2, np.linspace(0.1, 1.0, 10)
    ours = ImageDataGenerator(validation_split=0.3)
    theirs = kimage.ImageDataGenerator(validation_split=0.3)
    for subset, part in (("validation", slice(0, 3)), ("training", slice(3, None))):
        flow = ours.flow(x, y, batch_size=20, shuffle=False, sample_weight=w, subset=subset)
        keras_flow = theirs.flow(x, y, batch_size=20, shuffle=False, sample_weight=w, subset=subset)
        xb, yb, wb = next(flow)
        kx, ky, _ = next(keras_flow)
        np.testing.assert_allclose(xb, kx, atol=1e-6)
        np.testing.assert_array_equal(yb, ky)
        # the weights stay with their samples (Keras 3 reads the unsplit weights from the start)
        np.testing.assert_allclose(wb, w[part])
    with pytest.raises(ValueError, match="different classes"):
        ours.flow(x, np.arange(10) >= 3, subset="training")
    assert len(ours.flow(x, np.arange(10) >= 3, subset="training", ignore_class_split=True).x) == 7
    with pytest.raises(ValueError, match="needs ImageDataGenerator\\(validation_split"):
        ImageDataGenerator().flow(x, y, subset="validation")
    with pytest.raises(ValueError, match="subset must be"):
        ours.flow(x, y, subset="test")
    with pytest.raises(ValueError, match="x and sample_weight must have the same length"):
        ours.flow(x, y, sample_weight=w[:4])


@pytest.mark.parametrize("call, message", [
    (lambda: ImageDataGenerator(brightness_range=0.5), "brightness_range must be a pair"),
    (lambda: ImageDataGenerator(brightness_range=(1.2, 0.8)), "0 <= lower <= upper"),
    (lambda: ImageDataGenerator(channel_shift_range=-1), "channel_shift_range must be in"),
    (lambda: ImageDataGenerator(validation_split=1.0), "validation_split must be in \\[0, 1\\)"),
    (lambda: ImageDataGenerator(interpolation_order=3), "interpolation_order must be 1"),
])
def test_bad_options(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.fixture
def image_folder(tmp_path):
    """tmp/cats/*.png, tmp/dogs/*.jpg and a nested one, of different sizes and modes."""
    from PIL import Image

    rng = np.random.default_rng(4)
    for name, count, suffix in (("cats", 3, "png"), ("dogs", 4, "jpg")):
        (tmp_path / name / "more").mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (10 + i, 12, 3), dtype=np.uint8)
            folder = tmp_path / name / ("more" if i == count - 1 else "")
            Image.fromarray(pixels).save(folder / f"{i}.{suffix}")
    (tmp_path / "cats" / "notes.txt").write_text("not an image")
    return tmp_path


@pytest.mark.parametrize("class_mode", ["categorical", "binary", "sparse", "input", None])
@pytest.mark.parametrize("color_mode", ["rgb", "grayscale"])
def test_flow_from_directory_matches_keras(image_folder, class_mode, color_mode, capsys):
    kimage = keras_image()
    settings = dict(target_size=(8, 9), color_mode=color_mode, class_mode=class_mode, batch_size=16,
                    shuffle=False)
    ours = ImageDataGenerator(rescale=1 / 255).flow_from_directory(image_folder, **settings)
    theirs = kimage.ImageDataGenerator(rescale=1 / 255).flow_from_directory(str(image_folder), **settings)
    assert "Found 7 images belonging to 2 classes." in capsys.readouterr().out
    assert ours.class_indices == theirs.class_indices == {"cats": 0, "dogs": 1}
    assert ours.filenames == theirs.filenames and list(ours.classes) == list(theirs.classes)
    a, b = next(ours), next(theirs)
    if class_mode is None:
        np.testing.assert_allclose(a, b, atol=1e-6)
        return
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)
    assert a[0].shape == (7, 8, 9, 3 if color_mode == "rgb" else 1)
    np.testing.assert_allclose(a[1], b[1], atol=1e-6)


def test_flow_from_directory_subsets_and_errors(image_folder, tmp_path):
    gen = ImageDataGenerator(validation_split=0.5)
    validation = gen.flow_from_directory(image_folder, target_size=(5, 5), subset="validation")
    training = gen.flow_from_directory(image_folder, target_size=(5, 5), subset="training")
    assert len(validation.filenames) == 1 + 2 and len(training.filenames) == 2 + 2  # per class, first part
    assert not set(validation.filenames) & set(training.filenames)
    with pytest.raises(ValueError, match="is not a folder"):
        gen.flow_from_directory(tmp_path / "missing")
    with pytest.raises(ValueError, match="class_mode must be one of"):
        gen.flow_from_directory(image_folder, class_mode="multi")
    with pytest.raises(ValueError, match="target_size must be"):
        gen.flow_from_directory(image_folder, target_size=8)
