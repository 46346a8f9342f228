"""flow_from_directory: batches of images read from one folder per class (Keras's
DirectoryIterator), decoded with Pillow, then augmented like any other batch."""
import os

import numpy as np

from fastdl.preprocessing.image import BatchIterator

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")
COLOR_MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}
CLASS_MODES = ("categorical", "binary", "sparse", "input", None)
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "hamming", "box", "lanczos")


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("flow_from_directory reads images with Pillow: pip install pillow "
                          "(or pip install 'fastdl[images]')") from None
    return Image


def _class_files(folder, follow_links):
    """The image files under folder (its subfolders too), sorted as Keras lists them."""
    found = []
    for root, _, names in sorted(os.walk(folder, followlinks=follow_links), key=lambda entry: entry[0]):
        found.extend(os.path.join(root, name) for name in sorted(names) if name.lower().endswith(EXTENSIONS))
    return found


def load_image(path, color_mode="rgb", target_size=None, interpolation="nearest", keep_aspect_ratio=False):
    """One image file as a float32 (H, W, C) array, converted to color_mode and resized to
    target_size (height, width) as Keras's load_img does (keep_aspect_ratio: the centred
    crop of the target's aspect ratio first)."""
    image_module = _pillow()
    with image_module.open(path) as img:
        img = img.convert(COLOR_MODES[color_mode]) if img.mode != COLOR_MODES[color_mode] else img.copy()
    if target_size is not None:
        height, width = target_size
        if img.size != (width, height):
            if keep_aspect_ratio:
                w, h = img.size
                crop_w, crop_h = min(w, h * width // height), min(h, w * height // width)
                left, top = (w - crop_w) // 2, (h - crop_h) // 2
                img = img.crop((left, top, left + crop_w, top + crop_h))
            img = img.resize((width, height), getattr(image_module.Resampling, interpolation.upper()))
    array = np.asarray(img, dtype=np.float32)
    return array[..., None] if array.ndim == 2 else array


class DirectoryIterator(BatchIterator):
    """Batches (x, labels) of the images in directory/<class>/..., augmented by
    `generator`. class_mode: 'categorical' (one-hot float32), 'binary' (float32 0/1),
    'sparse' (the class index), 'input' (x itself, for autoencoders) or None (x only).
    Attributes as Keras's: classes, class_indices, filenames, filepaths, labels."""

    def __init__(self, directory, generator, target_size=(256, 256), color_mode="rgb", classes=None,
                 class_mode="categorical", batch_size=32, shuffle=True, seed=None, follow_links=False,
                 subset=None, interpolation="nearest", keep_aspect_ratio=False):
        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            raise ValueError(f"directory {directory!r} is not a folder")
        if color_mode not in COLOR_MODES:
            raise ValueError(f"color_mode must be one of {tuple(COLOR_MODES)}; got {color_mode!r}")
        if class_mode not in CLASS_MODES:
            raise ValueError(f"class_mode must be one of {CLASS_MODES}; got {class_mode!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}; got {interpolation!r}")
        try:
            height, width = (int(v) for v in target_size)
        except (TypeError, ValueError):
            raise ValueError(f"target_size must be (height, width); got {target_size!r}") from None
        if height < 1 or width < 1:
            raise ValueError(f"target_size must be positive; got {target_size!r}")
        _pillow()  # fail now, not at the first batch
        if classes is None:
            classes = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())
        self.class_indices = {name: i for i, name in enumerate(classes)}
        start, stop = generator._subset_range(subset)
        paths, labels = [], []
        for name in classes:
            files = _class_files(os.path.join(directory, name), follow_links)
            files = files[int(start * len(files)):int(stop * len(files))]  # per class, as Keras splits
            paths.extend(files)
            labels.extend([self.class_indices[name]] * len(files))
        print(f"Found {len(paths)} images belonging to {len(classes)} classes.")
        self.directory, self.filepaths = directory, paths
        self.filenames = [os.path.relpath(path, directory) for path in paths]
        self.classes = self.labels = np.array(labels, dtype=np.int32)
        self.target_size, self.color_mode, self.class_mode = (height, width), color_mode, class_mode
        self.interpolation, self.keep_aspect_ratio = interpolation, keep_aspect_ratio
        self.image_shape = (height, width, len(COLOR_MODES[color_mode]))
        super().__init__(len(paths), generator, batch_size, shuffle, seed, None)

    def __len__(self):
        return super().__len__() if self.n else 0

    def _batch(self, idx):
        images = np.stack([load_image(self.filepaths[i], self.color_mode, self.target_size, self.interpolation,
                                      self.keep_aspect_ratio) for i in idx])
        x = self.generator.augment_batch(images, None, self.augment_rng)
        if self.class_mode is None:
            return x
        if self.class_mode == "input":
            return x, x.copy()
        labels = self.classes[idx]
        if self.class_mode == "sparse":
            return x, labels
        if self.class_mode == "binary":
            return x, labels.astype(np.float32)
        one_hot = np.zeros((len(idx), len(self.class_indices)), np.float32)
        one_hot[np.arange(len(idx)), labels] = 1
        return x, one_hot
