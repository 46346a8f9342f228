"""ImageDataGenerator with Keras semantics, over one batched compiled resampling kernel.

Per batch: draw each image's random transform (a private, seedable Generator), fold
rotation, shift, shear, zoom and flips into one affine map per image, resample the
whole batch in one call (fastdl.ops.affine_transform_batch, which also converts to
float32 and applies `rescale`), then standardize.
"""
import math
import numbers

import numpy as np

from fastdl import ops
from fastdl.ops import _checks
from fastdl.utils import new_generator


def _shift_range(name, value):
    """Keras shift ranges: float < 1 a fraction of the size, float >= 1 pixels (uniform),
    int pixels drawn from the integers in [-v, v], or a sequence to choose from."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or a sequence of numbers; got {value!r}")
    if isinstance(value, numbers.Integral):
        if value < 0:
            raise ValueError(f"{name} must be >= 0; got {value!r}")
        return np.arange(-value, value + 1, dtype=np.float64) if value else 0.0
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
    """Random augmentation and standardization of NHWC image batches (Keras's API)."""

    def __init__(self, featurewise_center=False, samplewise_center=False,
                 featurewise_std_normalization=False, samplewise_std_normalization=False,
                 zca_whitening=False, rotation_range=0, width_shift_range=0.0,
                 height_shift_range=0.0, shear_range=0.0, zoom_range=0.0, fill_mode="nearest",
                 cval=0.0, horizontal_flip=False, vertical_flip=False, rescale=None,
                 preprocessing_function=None, data_format="channels_last", dtype="float32",
                 seed=None):
        if zca_whitening:
            raise ValueError("zca_whitening is not supported")
        if data_format != "channels_last":
            raise ValueError(f"data_format must be 'channels_last' (NHWC); got {data_format!r}")
        if np.dtype(dtype) != np.float32:
            raise ValueError(f"dtype must be float32; got {dtype!r}")
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

    @staticmethod
    def _draw_shift(rng, choices, n, size):
        if isinstance(choices, np.ndarray):
            shift = rng.choice(choices, n)
            fraction = np.abs(choices).max() < 1
        else:
            shift = rng.uniform(-choices, choices, n) if choices else np.zeros(n)
            fraction = choices < 1
        return shift * size if fraction else shift

    def random_transform_parameters(self, n, height, width, rng=None):
        """n draws of Keras's transform parameters: theta (degrees), tx (rows), ty (cols),
        shear (degrees), zx, zy, flip_horizontal, flip_vertical; from `rng` or the
        generator's own."""
        rng = rng or self.rng
        zero = np.zeros(n)
        return {
            "theta": rng.uniform(-self.rotation_range, self.rotation_range, n) if self.rotation_range else zero,
            "tx": self._draw_shift(rng, self.height_shift_range, n, height),
            "ty": self._draw_shift(rng, self.width_shift_range, n, width),
            "shear": rng.uniform(-self.shear_range, self.shear_range, n) if self.shear_range else zero,
            "zx": rng.uniform(*self.zoom_range, n) if self.zoom_range != (1, 1) else np.ones(n),
            "zy": rng.uniform(*self.zoom_range, n) if self.zoom_range != (1, 1) else np.ones(n),
            "flip_horizontal": (rng.random(n) < 0.5) if self.horizontal_flip else np.zeros(n, bool),
            "flip_vertical": (rng.random(n) < 0.5) if self.vertical_flip else np.zeros(n, bool),
        }

    @staticmethod
    def affine_matrices(params, height, width):
        """(n, 2, 3) maps from output (row, col) to source (row, col), as Keras builds them:
        rotation @ shift @ shear @ zoom about the image centre, then the flips.

        Written out in closed form (per image a few multiply-adds instead of five 3x3
        products): with c, s = cos, sin(theta) and hs, hc = sin, cos(shear),
            A = [[c zx, -(c hs + s hc) zy], [s zx, (c hc - s hs) zy]],
            t = A @ -o + R @ (tx, ty) + o,  o = (height/2 - 0.5, width/2 - 0.5);
        a flip negates a column of A and moves t by that column times (size - 1).
        """
        theta, shear = np.deg2rad(params["theta"]), np.deg2rad(params["shear"])
        c, s = np.cos(theta), np.sin(theta)
        hs, hc = np.sin(shear), np.cos(shear)
        zx, zy, tx, ty = params["zx"], params["zy"], params["tx"], params["ty"]
        m = np.empty((len(theta), 2, 3))
        m[:, 0, 0], m[:, 0, 1] = c * zx, -(c * hs + s * hc) * zy
        m[:, 1, 0], m[:, 1, 1] = s * zx, (c * hc - s * hs) * zy
        oy, ox = height / 2 - 0.5, width / 2 - 0.5
        m[:, 0, 2] = oy - m[:, 0, 0] * oy - m[:, 0, 1] * ox + c * tx - s * ty
        m[:, 1, 2] = ox - m[:, 1, 0] * oy - m[:, 1, 1] * ox + s * tx + c * ty
        fv, fh = params["flip_vertical"], params["flip_horizontal"]
        m[fv, :, 2] += m[fv, :, 0] * (height - 1)
        m[fv, :, 0] *= -1
        m[fh, :, 2] += m[fh, :, 1] * (width - 1)
        m[fh, :, 1] *= -1
        return m

    def augment_batch(self, x, indices=None, rng=None):
        """Random transforms of x[indices] (all of x by default) as float32, rescaled."""
        x = _check_images(x)
        if indices is None:
            indices = np.arange(len(x))
        params = self.random_transform_parameters(len(indices), x.shape[1], x.shape[2], rng)
        matrices = self.affine_matrices(params, x.shape[1], x.shape[2])
        batch = ops.affine_transform_batch(x, indices, matrices, fill_mode=self.fill_mode,
                                           cval=self.cval, scale=self.rescale or 1.0)
        return self.standardize(batch, rescaled=True)

    def random_transform(self, x, seed=None):
        """One image (H, W, C) transformed (Keras's per-image method), without rescale."""
        if seed is not None:
            self.rng = new_generator(seed)
        img = _check_images(np.asarray(x)[None])
        params = self.random_transform_parameters(1, img.shape[1], img.shape[2])
        return ops.affine_transform_batch(img, [0], self.affine_matrices(params, img.shape[1], img.shape[2]),
                                          fill_mode=self.fill_mode, cval=self.cval)[0]

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
                    horizontal_flip=self.horizontal_flip, vertical_flip=self.vertical_flip)

    # -- iteration --------------------------------------------------------------------

    def flow(self, x, y=None, batch_size=32, shuffle=True, seed=None, shard=None):
        """An endless iterator of augmented (x, y) batches, len() batches an epoch, each
        sample once an epoch, reshuffled every epoch. shard=(rank, size) keeps this
        process's share of every batch (data-parallel training)."""
        return NumpyArrayIterator(x, y, self, batch_size, shuffle, seed, shard)


def _check_images(x):
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"images must be 4-D (samples, height, width, channels); got shape {x.shape}")
    if x.shape[3] not in (1, 3, 4):
        raise ValueError(f"images must have 1, 3 or 4 channels (NHWC); got shape {x.shape}")
    if len(x) == 0:
        raise ValueError("images must not be empty")
    return x


class NumpyArrayIterator:
    """Batches of augmented images; Keras's iterator protocol (len, next, [i], reset)."""

    def __init__(self, x, y, generator, batch_size=32, shuffle=True, seed=None, shard=None):
        self.x = _check_images(x)
        self.y = None if y is None else np.asarray(y)
        if self.y is not None and len(self.y) != len(self.x):
            raise ValueError(f"x and y must have the same length; got {len(self.x)} and {len(self.y)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}")
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
        return -(-len(self.x) // self.batch_size)

    def set_shard(self, rank, size, order_seed):
        """Serve rank `rank`'s share of every batch; every rank shuffles with order_seed."""
        self.rank, self.size = rank, size
        self.order_rng = new_generator(order_seed)
        self.batch_index = 0
        self._new_epoch()

    def _new_epoch(self):
        n = len(self.x)
        self.index_array = self.order_rng.permutation(n) if self.shuffle else np.arange(n)

    def reset(self):
        self.batch_index = 0

    def on_epoch_end(self):
        self.epoch += 1
        self._new_epoch()

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} out of range for {len(self)} batches")
        idx = self.index_array[i * self.batch_size:(i + 1) * self.batch_size]
        idx = idx[self.rank::self.size]
        batch = self.generator.augment_batch(self.x, idx, self.augment_rng)
        return batch if self.y is None else (batch, self.y[idx])

    def __iter__(self):
        return self

    def __next__(self):
        if self.batch_index >= len(self):
            self.batch_index = 0
            self.on_epoch_end()
        batch = self[self.batch_index]
        self.batch_index += 1
        return batch
