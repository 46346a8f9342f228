"""ImageDataGenerator with Keras semantics, over one batched compiled resampling kernel.

Per batch: draw each image's random transform (a private, seedable Generator), fold
rotation, shift, shear, zoom and flips into one affine map per image, resample the
whole batch in one call (fastdl.ops.affine_transform_batch, which also converts to
float32 and, when nothing else comes between, applies `rescale`), then Keras's
channel shift and brightness on the whole batch at once, then standardize.
"""
import math
import numbers

import numpy as np

from fastdl import ops
from fastdl.ops import _checks
from fastdl.utils import new_generator


def _shift_range(name, value):
    """Keras shift ranges: a float a uniform draw in [-v, v] (a fraction of the size when
    v < 1, pixels otherwise); an int v a whole number of pixels drawn from 0 .. v - 1 with
    a random sign; a sequence one of its values with a random sign (a fraction of the
    size when its largest value is below 1). Ints and sequences return the choices."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or a sequence of numbers; got {value!r}")
    if isinstance(value, numbers.Integral):
        if value < 0:
            raise ValueError(f"{name} must be >= 0; got {value!r}")
        return np.arange(value, dtype=np.float64) if value else 0.0
    if isinstance(value, numbers.Real):
        return _checks.finite_number(name, value, 0)
    try:
        choices = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or a sequence of numbers; got {value!r}") from None
    if choices.size == 0 or not np.isfinite(choices).all():
        raise ValueError(f"{name} must be a non-empty sequence of finite numbers; got {value!r}")
    return choices


class ImageDataGenerator:
    """Random augmentation and standardization of NHWC image batches (Keras's API).

    The outputs are Keras 3's for the same transform parameters (tests/test_augment_keras.py)
    with one exception: fill_mode='wrap' tiles the image with period n (exactly periodic),
    where Keras, through scipy.ndimage's legacy 'wrap', repeats with period n - 1.
    """

    def __init__(self, featurewise_center=False, samplewise_center=False,
                 featurewise_std_normalization=False, samplewise_std_normalization=False,
                 zca_whitening=False, rotation_range=0, width_shift_range=0.0,
                 height_shift_range=0.0, brightness_range=None, shear_range=0.0, zoom_range=0.0,
                 channel_shift_range=0.0, fill_mode="nearest", cval=0.0, horizontal_flip=False,
                 vertical_flip=False, rescale=None, preprocessing_function=None,
                 data_format="channels_last", validation_split=0.0, interpolation_order=1,
                 dtype="float32", seed=None):
        if zca_whitening:
            raise ValueError("zca_whitening is not supported")
        if data_format != "channels_last":
            raise ValueError(f"data_format must be 'channels_last' (NHWC); got {data_format!r}")
        if np.dtype(dtype) != np.float32:
            raise ValueError(f"dtype must be float32; got {dtype!r}")
        if interpolation_order != 1:
            raise ValueError(f"interpolation_order must be 1 (bilinear, Keras's default); got {interpolation_order!r}")
        validation_split = _checks.finite_number("validation_split", validation_split, 0)
        if validation_split >= 1:
            raise ValueError(f"validation_split must be in [0, 1); got {validation_split!r}")
        self.validation_split = validation_split
        self.channel_shift_range = _checks.finite_number("channel_shift_range", channel_shift_range, 0)
        if brightness_range is not None:
            try:
                lo, hi = (float(v) for v in brightness_range)
            except (TypeError, ValueError):
                raise ValueError(f"brightness_range must be a pair [lower, upper]; got {brightness_range!r}") from None
            if not (math.isfinite(lo) and math.isfinite(hi)) or not 0 <= lo <= hi:
                raise ValueError(f"brightness_range must be a pair 0 <= lower <= upper; got {brightness_range!r}")
            brightness_range = (lo, hi)
        self.brightness_range = brightness_range
        self.featurewise_center = featurewise_center
        self.samplewise_center = samplewise_center
        self.featurewise_std_normalization = featurewise_std_normalization
        self.samplewise_std_normalization = samplewise_std_normalization
        self.rotation_range = _checks.finite_number("rotation_range", rotation_range, 0)
        self.width_shift_range = _shift_range("width_shift_range", width_shift_range)
        self.height_shift_range = _shift_range("height_shift_range", height_shift_range)
        self.shear_range = _checks.finite_number("shear_range", shear_range, 0)
        if isinstance(zoom_range, numbers.Real) and not isinstance(zoom_range, bool):
            z = _checks.finite_number("zoom_range", zoom_range, 0)
            self.zoom_range = (1 - z, 1 + z)
        else:
            try:
                lo, hi = (float(v) for v in zoom_range)
            except (TypeError, ValueError):
                raise ValueError(f"zoom_range must be a float or a pair [lower, upper]; got {zoom_range!r}") from None
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
                raise ValueError(f"zoom_range must be a float or a pair lower <= upper; got {zoom_range!r}")
            self.zoom_range = (lo, hi)
        if self.zoom_range[0] <= 0:
            raise ValueError(f"zoom factors must be positive; got zoom_range={zoom_range!r}")
        if fill_mode not in ops.augment.FILL_MODES:
            raise ValueError(f"fill_mode must be one of {ops.augment.FILL_MODES}; got {fill_mode!r}")
        self.fill_mode = fill_mode
        self.cval = _checks.finite_number("cval", cval)
        self.horizontal_flip = bool(horizontal_flip)
        self.vertical_flip = bool(vertical_flip)
        self.rescale = None if rescale in (None, 0) else _checks.finite_number("rescale", rescale)
        self.preprocessing_function = preprocessing_function
        self.mean = self.std = None
        self.rng = new_generator(seed)

    # -- transforms -------------------------------------------------------------------

    # Keras's conventions, those of its ImageDataGenerator in Keras 3 (and tf.keras since
    # 2.9): its matrix is built in (x, y) and applied to (row, col) through a swap of the
    # axes, so tx, drawn from height_shift_range times the height, moves the image along
    # its columns, ty (width_shift_range) along its rows, zx zooms the columns, and theta
    # turns the other way round; flips are of the output's columns and rows. A square
    # image is augmented the same in either reading, and the per-image tests check these
    # outputs against Keras's own apply_transform.
    #
    # The affine part of a batch's transforms is a table, one row per image, in the
    # columns of kernels/augment.pyx's affine_matrices. Each column is a uniform draw
    # times a scale plus an offset (uniform(-r, r) = 2r u - r; a disabled transform has
    # scale 0; a flip column holds the draw itself, flipping below 0.5), so a batch costs
    # one draw and two array operations; shifts drawn from a list are the exception.
    COLUMNS = ("theta", "tx", "ty", "shear", "zx", "zy", "flip_horizontal", "flip_vertical")

    def _column_maps(self, height, width):
        """(scale, offset) rows of the table's columns for this image size."""
        def shift(value, size):
            if isinstance(value, np.ndarray) or not value:
                return 0.0, 0.0  # list choices are drawn apart
            span = value * size if value < 1 else value
            return 2 * span, -span

        (lo, hi), maps = self.zoom_range, [
            (2 * self.rotation_range, -self.rotation_range),
            shift(self.height_shift_range, height), shift(self.width_shift_range, width),
            (2 * self.shear_range, -self.shear_range)]
        maps += [(hi - lo, lo)] * 2
        maps += [(1.0, 0.0) if on else (0.0, 1.0) for on in (self.horizontal_flip, self.vertical_flip)]
        return np.array([m[0] for m in maps]), np.array([m[1] for m in maps])

    def _draw_table(self, n, height, width, rng):
        """(n, 8) transform table of n random draws (see COLUMNS)."""
        scale, offset = self._column_maps(height, width)
        table = rng.random((n, len(self.COLUMNS)))
        table *= scale
        table += offset
        for column, choices, size in ((1, self.height_shift_range, height), (2, self.width_shift_range, width)):
            if isinstance(choices, np.ndarray):  # Keras: a random sign; a fraction when all are below 1
                table[:, column] = rng.choice(choices, n) * rng.choice([-1.0, 1.0], n) * (
                    size if choices.max() < 1 else 1)
        return table

    def _draw_pixel_shifts(self, n, rng):
        """The channel shift intensities and brightness factors of n images (None when unset)."""
        intensity = (rng.uniform(-self.channel_shift_range, self.channel_shift_range, n)
                     if self.channel_shift_range else None)
        brightness = rng.uniform(*self.brightness_range, n) if self.brightness_range else None
        return intensity, brightness

    def random_transform_parameters(self, n, height, width, rng=None):
        """n draws of Keras's transform parameters: theta (degrees), tx (rows), ty (cols),
        shear (degrees), zx, zy, flip_horizontal, flip_vertical, channel_shift_intensity
        and brightness (None when their range is unset); from `rng` or the generator's own."""
        rng = rng or self.rng
        table = self._draw_table(n, height, width, rng)
        params = {name: table[:, i].copy() for i, name in enumerate(self.COLUMNS)}
        params["flip_horizontal"], params["flip_vertical"] = table[:, 6] < 0.5, table[:, 7] < 0.5
        params["channel_shift_intensity"], params["brightness"] = self._draw_pixel_shifts(n, rng)
        return params

    @classmethod
    def affine_matrices(cls, params, height, width):
        """(n, 2, 3) maps from output (row, col) to source (row, col), as Keras builds them:
        rotation @ shift @ shear @ zoom about the image centre, then the flips (the
        closed form is kernels/augment.pyx's affine_matrices)."""
        columns = [np.asarray(params[name], np.float64) for name in cls.COLUMNS[:6]]
        columns += [np.where(np.asarray(params[name], bool), 0.0, 1.0) for name in cls.COLUMNS[6:]]
        return cls._matrices(np.ascontiguousarray(np.stack(columns, axis=1)), height, width)

    @staticmethod
    def _matrices(table, height, width):
        from fastdl._kernels import augment as kernels

        out = np.empty((len(table), 2, 3))
        kernels.affine_matrices(table, float(height), float(width), out.reshape(-1, 6))
        return out

    def augment_batch(self, x, indices=None, rng=None, _checked=False):
        """Random transforms of x[indices] (all of x by default) as float32, standardized.
        (_checked: x and indices come from a flow, which checked them once.)"""
        if not _checked:
            x = _check_images(x)
            if indices is None:
                indices = np.arange(len(x))
        rng = rng or self.rng
        matrices = self._matrices(self._draw_table(len(indices), x.shape[1], x.shape[2], rng), x.shape[1],
                                  x.shape[2])
        intensity, brightness = self._draw_pixel_shifts(len(indices), rng)
        # rescale rides in the warp's weights unless a step in between sees unscaled values
        fold = self.preprocessing_function is None and intensity is None and brightness is None
        batch = self._transform(x, indices, matrices, intensity, brightness, (self.rescale or 1.0) if fold else 1.0,
                                checked=_checked)
        return self.standardize(batch, rescaled=fold)

    def apply_transform_batch(self, x, indices, params, scale=1.0):
        """x[indices] transformed by params (random_transform_parameters' form), in
        Keras's order: the affine warp with the flips, the channel shift, the brightness.
        Returns float32 times scale (the channel shift and brightness need scale 1)."""
        return self._transform(x, indices, self.affine_matrices(params, x.shape[1], x.shape[2]),
                               params.get("channel_shift_intensity"), params.get("brightness"), scale)

    def _transform(self, x, indices, matrices, intensity, brightness, scale, checked=False):
        if checked:
            batch = ops.augment.warp_checked_batch(x, indices, matrices, ops.augment.FILL_MODES.index(self.fill_mode),
                                                   float(self.cval), float(scale))
        else:
            batch = ops.affine_transform_batch(x, indices, matrices, fill_mode=self.fill_mode, cval=self.cval,
                                               scale=scale)
        if intensity is not None:
            batch = channel_shift(batch, intensity)
        if brightness is not None:
            batch = brightness_shift(batch, brightness)
        return batch

    def random_transform(self, x, seed=None):
        """One image (H, W, C) transformed (Keras's per-image method), without rescale."""
        if seed is not None:
            self.rng = new_generator(seed)
        img = _check_images(np.asarray(x)[None])
        return self.apply_transform_batch(img, [0], self.random_transform_parameters(1, img.shape[1], img.shape[2]))[0]

    # -- standardization --------------------------------------------------------------

    def standardize(self, x, rescaled=False):
        """Keras's order: preprocessing_function, rescale, samplewise then featurewise."""
        x = np.asarray(x, np.float32)
        if self.preprocessing_function is not None:
            x = np.stack([self.preprocessing_function(img) for img in x]).astype(np.float32)
        if self.rescale and not rescaled:
            x = x * np.float32(self.rescale)
        if self.samplewise_center:
            x = x - x.mean(axis=(1, 2, 3), keepdims=True)
        if self.samplewise_std_normalization:
            x = x / (x.std(axis=(1, 2, 3), keepdims=True) + np.float32(1e-6))
        if self.featurewise_center:
            if self.mean is None:
                raise ValueError("featurewise_center needs fit(x) first")
            x = x - self.mean
        if self.featurewise_std_normalization:
            if self.std is None:
                raise ValueError("featurewise_std_normalization needs fit(x) first")
            x = x / (self.std + np.float32(1e-6))
        return x

    def fit(self, x, augment=False, rounds=1, seed=None):
        """Per-channel mean and standard deviation for featurewise standardization."""
        x = _check_images(x).astype(np.float32)
        if self.rescale:
            x *= np.float32(self.rescale)
        if augment:
            gen = ImageDataGenerator(**{**self._transform_config(), "seed": seed})
            x = np.concatenate([gen.augment_batch(x) for _ in range(max(1, int(rounds)))])
        self.mean = x.mean(axis=(0, 1, 2)).reshape(1, 1, 1, -1).astype(np.float32)
        self.std = x.std(axis=(0, 1, 2)).reshape(1, 1, 1, -1).astype(np.float32)
        return self

    def _transform_config(self):
        return dict(rotation_range=self.rotation_range, width_shift_range=self.width_shift_range,
                    height_shift_range=self.height_shift_range, shear_range=self.shear_range,
                    zoom_range=list(self.zoom_range), fill_mode=self.fill_mode, cval=self.cval,
                    horizontal_flip=self.horizontal_flip, vertical_flip=self.vertical_flip,
                    channel_shift_range=self.channel_shift_range, brightness_range=self.brightness_range)

    # -- iteration --------------------------------------------------------------------

    def flow(self, x, y=None, batch_size=32, shuffle=True, sample_weight=None, seed=None,
             ignore_class_split=False, subset=None, shard=None):
        """An endless iterator of augmented (x, y) batches ((x, y, sample_weight) with
        weights), len() batches an epoch, each sample once an epoch, reshuffled every
        epoch. subset='validation' takes the first validation_split of the samples,
        'training' the rest (as Keras, refused when the two hold different classes unless
        ignore_class_split). shard=(rank, size) keeps this process's share of every batch
        (data-parallel training)."""
        return NumpyArrayIterator(x, y, self, batch_size, shuffle, seed, shard, sample_weight=sample_weight,
                                  subset=subset, ignore_class_split=ignore_class_split)

    def flow_from_directory(self, directory, target_size=(256, 256), color_mode="rgb", classes=None,
                            class_mode="categorical", batch_size=32, shuffle=True, seed=None,
                            follow_links=False, subset=None, interpolation="nearest",
                            keep_aspect_ratio=False):
        """Batches of augmented images read from directory/<class>/... (PNG, JPEG, BMP,
        PPM, TIFF; needs Pillow), labelled by their class folder (Keras's DirectoryIterator)."""
        from fastdl.preprocessing.directory import DirectoryIterator

        return DirectoryIterator(directory, self, target_size, color_mode, classes, class_mode, batch_size,
                                 shuffle, seed, follow_links, subset, interpolation, keep_aspect_ratio)

    def _subset_range(self, subset):
        """The [start, stop) fractions of the samples in `subset` (Keras: validation first)."""
        if subset is None:
            return 0.0, 1.0
        if subset not in ("training", "validation"):
            raise ValueError(f"subset must be 'training', 'validation' or None; got {subset!r}")
        if not self.validation_split:
            raise ValueError(f"subset={subset!r} needs ImageDataGenerator(validation_split=...) > 0")
        return (0.0, self.validation_split) if subset == "validation" else (self.validation_split, 1.0)


def channel_shift(batch, intensity):
    """Keras's channel shift: image i plus intensity[i] in every channel, clipped to that
    image's own [min, max]. batch (B, H, W, C) float32, changed in place and returned."""
    axes = (1, 2, 3)
    lo, hi = batch.min(axis=axes, keepdims=True), batch.max(axis=axes, keepdims=True)
    batch += np.asarray(intensity, np.float32).reshape(-1, 1, 1, 1)
    return np.clip(batch, lo, hi, out=batch)


def brightness_shift(batch, factor):
    """Keras's brightness (PIL's ImageEnhance.Brightness on the image as 8 bits): image i,
    mapped to [0, 255] if its values leave that range, truncated to uint8, times
    factor[i] in float32, truncated and clipped to [0, 255], mapped back. An alpha
    channel (C = 4) keeps its values. batch (B, H, W, C) float32; returns a new array."""
    axes = (1, 2, 3)
    lo, hi = batch.min(axis=axes, keepdims=True), batch.max(axis=axes, keepdims=True)
    mapped = (lo < 0) | (hi > 255)  # Keras scales such an image to 8 bits and back
    span = np.where(hi > lo, hi - lo, 1)
    values = np.where(mapped, (batch - lo) / span * 255, batch)
    u8 = values.astype(np.uint8).astype(np.float32)  # truncated, as array_to_img's astype
    out = np.clip(np.trunc(u8 * np.asarray(factor, np.float32).reshape(-1, 1, 1, 1)), 0, 255)
    if batch.shape[3] == 4:
        out[..., 3] = u8[..., 3]
    return np.where(mapped, out / 255 * (hi - lo) + lo, out).astype(np.float32)


def _check_images(x):
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"images must be 4-D (samples, height, width, channels); got shape {x.shape}")
    if x.shape[3] not in (1, 3, 4):
        raise ValueError(f"images must have 1, 3 or 4 channels (NHWC); got shape {x.shape}")
    if len(x) == 0:
        raise ValueError("images must not be empty")
    return x


class BatchIterator:
    """Keras's iterator protocol (len, next, [i], reset, on_epoch_end) over n samples in
    batches: each sample once an epoch, reshuffled every epoch; subclasses make a batch
    from its sample indices (_batch). shard=(rank, size) keeps this process's share of
    every batch, in the same epoch order on every rank."""

    def __init__(self, n, generator, batch_size, shuffle, seed, shard):
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}")
        self.n = n
        self.generator = generator
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.rank, self.size = shard if shard is not None else (0, 1)
        # the epoch order is the same on every shard; augmentation draws differ by rank
        self.order_rng = new_generator(seed)
        self.augment_rng = new_generator(None if seed is None else [seed, self.rank])
        self.epoch = 0
        self.batch_index = 0
        self._new_epoch()

    def __len__(self):
        return -(-self.n // self.batch_size)

    def set_shard(self, rank, size, order_seed):
        """Serve rank `rank`'s share of every batch; every rank shuffles with order_seed."""
        self.rank, self.size = rank, size
        self.order_rng = new_generator(order_seed)
        self.batch_index = 0
        self._new_epoch()

    def _new_epoch(self):
        self.index_array = self.order_rng.permutation(self.n) if self.shuffle else np.arange(self.n)

    def reset(self):
        self.batch_index = 0

    def on_epoch_end(self):
        self.epoch += 1
        self._new_epoch()

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} out of range for {len(self)} batches")
        idx = self.index_array[i * self.batch_size:(i + 1) * self.batch_size]
        return self._batch(idx[self.rank::self.size])

    def _batch(self, idx):
        raise NotImplementedError

    def __iter__(self):
        return self

    def __next__(self):
        if self.batch_index >= len(self):
            self.batch_index = 0
            self.on_epoch_end()
        batch = self[self.batch_index]
        self.batch_index += 1
        return batch


class NumpyArrayIterator(BatchIterator):
    """Batches of augmented images from arrays: x, (x, y) or (x, y, sample_weight)."""

    def __init__(self, x, y, generator, batch_size=32, shuffle=True, seed=None, shard=None, sample_weight=None,
                 subset=None, ignore_class_split=False):
        x = _check_images(x)
        y = None if y is None else np.asarray(y)
        if y is not None and len(y) != len(x):
            raise ValueError(f"x and y must have the same length; got {len(x)} and {len(y)}")
        weights = None if sample_weight is None else np.asarray(sample_weight)
        if weights is not None and len(weights) != len(x):
            raise ValueError(f"x and sample_weight must have the same length; got {len(x)} and {len(weights)}")
        if subset is not None:
            generator._subset_range(subset)  # checks subset and validation_split
            split = int(len(x) * generator.validation_split)
            if y is not None and not ignore_class_split and not np.array_equal(np.unique(y[:split]),
                                                                                 np.unique(y[split:])):
                raise ValueError("the training and validation subsets hold different classes after the "
                                 "split (are the samples sorted by label? shuffle them, or pass "
                                 "ignore_class_split=True)")
            part = slice(0, split) if subset == "validation" else slice(split, None)
            total = len(x)
            x, y = x[part], None if y is None else y[part]
            weights = None if weights is None else weights[part]
            if len(x) == 0:
                raise ValueError(f"the {subset} subset of {total} samples is empty "
                                 f"(validation_split={generator.validation_split})")
        self.x, self.y, self.sample_weight = x, y, weights
        # the arrays the kernel takes as they are are checked here once, not every batch
        self._checked = x.dtype in (np.uint8, np.float32, np.float64) and x.flags.c_contiguous
        super().__init__(len(x), generator, batch_size, shuffle, seed, shard)

    def _batch(self, idx):
        if self._checked:  # the epoch's permutation: intp indices within [0, n)
            idx = np.ascontiguousarray(idx, dtype=np.intp)
        batch = self.generator.augment_batch(self.x, idx, self.augment_rng, _checked=self._checked)
        if self.y is None:
            return batch
        return (batch, self.y[idx]) if self.sample_weight is None else (batch, self.y[idx], self.sample_weight[idx])
