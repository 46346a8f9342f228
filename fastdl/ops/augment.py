"""Batched affine resampling of images: the kernel behind ImageDataGenerator."""
import numpy as np

from fastdl import _device
from fastdl._config import backend_module
from fastdl.ops import _checks

from fastdl.backends._spec import COORD_LIMIT, FILL_MODES  # noqa: F401  (shared with the kernels)


def affine_transform_batch(images, indices, matrices, *, fill_mode="nearest", cval=0.0, scale=1.0,
                           out=None):
    """out[b] = images[indices[b]] resampled bilinearly through the affine map matrices[b].

    images: (N, H, W, C) uint8, float32 or float64 (the whole data set: only the
    indexed images are read). matrices: (B, 2, 3), mapping an output pixel (row, col)
    to its source (row, col) = M[:, :2] @ (row, col) + M[:, 2]. fill_mode: 'nearest',
    'constant' (cval), 'reflect' (half-sample symmetric) or 'wrap' (periodic) for
    sources outside the image. Returns (B, H, W, C) float32, multiplied by `scale`.
    """
    device = _device.is_device(images)
    images = _device.adopt("images", images) if device else np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be 4-D (batch, height, width, channels); got shape {images.shape}")
    if images.dtype not in (np.uint8, np.float32, np.float64):
        raise TypeError(f"images must be uint8, float32 or float64; got {images.dtype}")
    if 0 in images.shape:
        raise ValueError(f"images must not be empty; got shape {images.shape}")
    images = _checks.device_contiguous("images", images) if device else _checks.contiguous("images", images)
    indices = np.asarray(_device.to_host(indices))
    if indices.dtype.kind not in "iu" or indices.ndim != 1:
        raise TypeError(f"indices must be a 1-D integer array; got {indices.dtype} {indices.shape}")
    if indices.size and (indices.min() < 0 or indices.max() >= len(images)):
        raise ValueError(f"indices must be in [0, {len(images)}); got {indices.min()}..{indices.max()}")
    matrices = np.ascontiguousarray(matrices, dtype=np.float64)
    if matrices.shape != (len(indices), 2, 3):
        raise ValueError(f"matrices must have shape ({len(indices)}, 2, 3); got {matrices.shape}")
    if not np.isfinite(matrices).all():
        raise ValueError("matrices must be finite")
    if fill_mode not in FILL_MODES:
        raise ValueError(f"fill_mode must be one of {FILL_MODES}; got {fill_mode!r}")
    cval = _checks.finite_number("cval", cval)
    scale = _checks.finite_number("scale", scale)
    y = _checks.output("out", out, (len(indices),) + images.shape[1:], np.dtype(np.float32), device)
    backend_module().affine_transform_batch(images, np.ascontiguousarray(indices, dtype=np.intp),
                                            matrices.reshape(-1, 6), y, FILL_MODES.index(fill_mode),
                                            cval, scale)
    return y


def warp_checked_batch(images, indices, matrices, mode, cval, scale):
    """affine_transform_batch for a caller that checked everything else once: images a
    C-contiguous (N, H, W, C) host array of a kernel dtype, indices (B,) intp within
    [0, N), mode an index into FILL_MODES, cval and scale finite. Only the matrices are
    checked (finite), as they are new every batch. ImageDataGenerator's flows use it:
    the full checks cost more than warping a batch of small images."""
    if not np.isfinite(matrices).all():
        raise ValueError("matrices must be finite")
    y = np.empty((len(indices),) + images.shape[1:], np.float32)
    backend_module().affine_transform_batch(images, indices, matrices.reshape(-1, 6), y, mode, cval, scale)
    return y
