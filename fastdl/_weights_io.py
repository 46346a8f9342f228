"""Weight files, named for what they hold: `.weights.h5` is HDF5 in Keras 3's layout
(layers/<layer path>/vars/<i>, through h5py), `.npz` is fastdl's built-in format (arrays
0000, 0001, ... in the model's order). Both are written through fastdl._atomic.

A Keras 3 model and a fastdl model of the same layers read each other's .weights.h5
files: Conv2D kernels are HWIO and Dense kernels (in, out) in both, and Flatten reads
NHWC in the same order. Keras addresses a layer not by its name (counted per session)
but by its class, snake_cased and numbered within the model: conv2d, conv2d_1, dense...;
so does this module, and the Input is no entry (Keras's Sequential does not list it).
"""
import os
import zipfile

import numpy as np

from fastdl import _atomic
from fastdl.layers import InputLayer, _snake

H5_SUFFIX, NPZ_SUFFIX = ".weights.h5", ".npz"


def layer_paths(layers):
    """Each layer's group under layers/ (None for the Input, which has no entry)."""
    used, paths = {}, []
    for layer in layers:
        if isinstance(layer, InputLayer):
            paths.append(None)
            continue
        key = _snake(type(layer).__name__)
        used[key] = used.get(key, -1) + 1
        paths.append(key if used[key] == 0 else f"{key}_{used[key]}")
    return paths


def weight_groups(layer):
    """[(group under the layer's path, number of arrays)]: where Keras keeps a layer's
    weights (a recurrent layer in its cell, a wrapper in its wrapped layers)."""
    from fastdl.recurrent import _RNN, Bidirectional, TimeDistributed

    if isinstance(layer, _RNN):
        return [("cell/vars", len(layer.weight_specs()))]
    if isinstance(layer, Bidirectional):
        return [(f"{side}/{group}", count) for side, inner in (("forward_layer", layer.forward_layer),
                                                               ("backward_layer", layer.backward_layer))
                for group, count in weight_groups(inner)]
    if isinstance(layer, TimeDistributed):
        return [(f"layer/{group}", count) for group, count in weight_groups(layer.layer)]
    return [("vars", len(layer.weight_specs()) + len(layer.state_specs()))]


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
    """layers: [(layer object, [host arrays])] in the model's order."""
    if _format(filepath, "save") == "npz":
        arrays = {f"{i:04d}": w for i, w in enumerate(w for _, ws in layers for w in ws)}
        return _atomic.write(filepath, lambda f: np.savez(f, **arrays))
    return _atomic.write(filepath, lambda f: write_h5(f, model_name, layers))


def write_h5(f, model_name, layers, optimizer=None):
    """Keras 3's weights layout into the binary file f; optimizer: (name, [arrays]) as
    Keras orders its variables (fastdl.saving), or None."""
    with _h5py().File(f, "w", track_order=True) as h5:  # layers read back in this order
        group = h5.create_group("layers", track_order=True)
        for (layer, weights), path in zip(layers, layer_paths([layer for layer, _ in layers])):
            if path is None:
                continue
            start = 0
            group.require_group(f"{path}/vars")  # Keras has one for every object, variables or not
            for where, count in weight_groups(layer):
                parents = where.split("/")[:-2]
                for depth in range(1, len(parents) + 1):
                    group.require_group("/".join([path] + parents[:depth] + ["vars"]))
                variables = group.require_group(f"{path}/{where}")
                variables.attrs["name"] = layer.name
                for i, w in enumerate(weights[start:start + count]):
                    variables.create_dataset(str(i), data=w)
                start += count
        if optimizer is not None:
            variables = h5.create_group("optimizer").create_group("vars")
            variables.attrs["name"] = optimizer[0]
            for i, w in enumerate(optimizer[1]):
                variables.create_dataset(str(i), data=w)
        h5.create_group("vars").attrs["name"] = model_name


def load(filepath, layers):
    """The arrays of a weights file for layers [(layer object, number of arrays)], in
    their order; an .h5 file's groups are found by layer_paths."""
    path = os.fspath(filepath)
    if _format(filepath, "load") == "npz":
        return _load_npz(path)
    try:
        with _h5py().File(path, "r") as h5:
            return read_h5(h5, layers, repr(path))
    except (OSError, KeyError) as exc:
        raise ValueError(f"cannot read weights from {path!r}: {exc}") from None


def read_h5(h5, layers, source):
    """The layers' arrays from an open Keras 3 weights file (source names it in errors)."""
    stored = h5.get("layers")
    if stored is None:
        raise ValueError(f"{source} has no 'layers' group: not a Keras 3 or fastdl weights file")
    weights = []
    for (layer, count), key in zip(layers, layer_paths([layer for layer, _ in layers])):
        if not count:
            continue
        for where, n in weight_groups(layer):
            variables = stored.get(f"{key}/{where}")
            found = len(variables) if variables is not None else 0
            if found != n:
                raise ValueError(f"{source} holds {found} arrays at layers/{key}/{where} for layer "
                                 f"{layer.name!r}, which has {n} there (weights of another "
                                 f"architecture? the file has {sorted(stored)})")
            weights += [np.asarray(variables[str(i)]) for i in range(n)]
    return weights


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
