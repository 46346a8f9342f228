"""Weight files, named for what they hold: `.weights.h5` is HDF5 in Keras 3's layout
(layers/<layer name>/vars/<i>, through h5py), `.npz` is fastdl's built-in format (arrays
0000, 0001, ... in the model's order). Both are written through fastdl._atomic.

A Keras 3 model and a fastdl model of the same layers read each other's .weights.h5
files: Conv2D kernels are HWIO and Dense kernels (in, out) in both, and Flatten reads
NHWC in the same order.
"""
import os
import zipfile

import numpy as np

from fastdl import _atomic

H5_SUFFIX, NPZ_SUFFIX = ".weights.h5", ".npz"


def _format(filepath, action):
    path = os.fspath(filepath)
    if path.endswith(H5_SUFFIX):
        return "h5"
    if path.endswith(NPZ_SUFFIX):
        return "npz"
    raise ValueError(f"cannot {action} weights as {path!r}: the file name must end in {H5_SUFFIX!r} "
                     f"(HDF5, as Keras writes) or {NPZ_SUFFIX!r} (fastdl's NumPy archive)")


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError(f"{H5_SUFFIX} files need h5py (pip install h5py); or name the file "
                          f"'...{NPZ_SUFFIX}' for fastdl's built-in format") from None
    return h5py


def save(filepath, model_name, layers):
    """layers: [(layer name, [host arrays])] in the model's order."""
    if _format(filepath, "save") == "npz":
        arrays = {f"{i:04d}": w for i, w in enumerate(w for _, ws in layers for w in ws)}
        return _atomic.write(filepath, lambda f: np.savez(f, **arrays))
    h5py = _h5py()

    def write(f):
        with h5py.File(f, "w", track_order=True) as h5:  # layers read back in this order
            h5.create_group("vars").attrs["name"] = model_name
            group = h5.create_group("layers", track_order=True)
            for name, weights in layers:
                variables = group.create_group(name).create_group("vars")
                variables.attrs["name"] = name
                for i, w in enumerate(weights):
                    variables.create_dataset(str(i), data=w)
    return _atomic.write(filepath, write)


def load(filepath, layers):
    """The arrays of a weights file, in the order of layers: [(name, number of arrays)].
    An .h5 file's layers are matched by name, or when the names differ (a model built
    in another session counts its layers differently) in the file's order."""
    path = os.fspath(filepath)
    if _format(filepath, "load") == "npz":
        return _load_npz(path)
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as h5:
            if "layers" not in h5:
                raise ValueError(f"{path!r} has no 'layers' group: not a Keras 3 or fastdl weights file")
            stored = [(name, group.get("vars")) for name, group in h5["layers"].items()]
            stored = [(name, [np.asarray(v[str(i)]) for i in range(len(v))] if v is not None else [])
                      for name, v in stored]
    except (OSError, KeyError) as exc:
        raise ValueError(f"cannot read weights from {path!r}: {exc}") from None
    by_name = dict(stored)
    wanted = [name for name, count in layers if count]
    if all(name in by_name for name in wanted):
        return [w for name, count in layers if count for w in by_name[name]]
    weighted = [ws for _, ws in stored if ws]
    if len(weighted) != len(wanted):
        missing = [name for name in wanted if name not in by_name]
        raise ValueError(f"{path!r} has weights for layers {[n for n, ws in stored if ws]}; this model has "
                         f"{wanted} (missing by name: {missing})")
    return [w for ws in weighted for w in ws]


def _load_npz(path):
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = sorted(data.files)
            weights = [data[k] for k in keys]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"cannot read weights from {path!r}: {exc}") from None
    if keys != [f"{i:04d}" for i in range(len(keys))]:
        raise ValueError(f"{path!r} is not a fastdl weights file (keys {keys[:5]}...)")
    return weights
