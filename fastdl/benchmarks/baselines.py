"""The baseline libraries: which are installed, and the same thread count for each."""
import importlib.util
import os
import sys

KNOWN = ("torch", "keras", "numpy", "onnxruntime", "openvino", "jax")
INSTALL_HINTS = {
    "torch": "pip install torch==2.13.0 (a CPU build)",
    "keras": "pip install 'fastdl[bench]' (tensorflow-cpu and keras)",
    "onnxruntime": "pip install 'fastdl[bench]' (onnx, onnxruntime, openvino)",
    "openvino": "pip install 'fastdl[bench]' (onnx, onnxruntime, openvino)",
    "jax": "pip install 'fastdl[bench]' (jax, jaxlib)",
}
# the inference engines run fastdl's own model exported to ONNX (fastdl.onnx), which needs onnx
ENGINES = ("onnxruntime", "openvino")


def resolve(requested, threads):
    """(available, skipped): baseline name -> module, and name -> why it was skipped.

    Every available library is set to `threads` threads: PyTorch's intra-op pool,
    TensorFlow's intra- and inter-op pools, XLA's CPU pool for JAX (which has a knob
    for one thread only: at other counts short of every core JAX is skipped); NumPy's
    BLAS is set by fastdl's own knob.
    """
    available, skipped = {}, {}
    for name in requested:
        if name not in KNOWN:
            raise ValueError(f"unknown baseline {name!r}; known: {', '.join(KNOWN)}")
        if name == "numpy":
            import numpy

            available[name] = numpy
            continue
        module_name = "tensorflow" if name == "keras" else name
        if name == "jax" and threads not in (1, os.cpu_count()):
            skipped[name] = (f"XLA's CPU pool takes every core ({os.cpu_count()}) or, with XLA_FLAGS, one; "
                             f"not {threads}")
            continue
        if importlib.util.find_spec(module_name) is None or (
                name in ENGINES and importlib.util.find_spec("onnx") is None):
            skipped[name] = f"not installed ({INSTALL_HINTS[name]})"
            continue
        try:
            available[name] = _load(name, threads)
        except Exception as exc:  # a broken install is reported, not fatal
            skipped[name] = f"failed to load: {type(exc).__name__}: {exc}"
    return available, skipped


def _load(name, threads):
    if name == "torch":
        import torch

        torch.set_num_threads(threads)
        return torch
    if name in ENGINES:  # their thread counts are per session (fastdl.benchmarks.engines)
        return importlib.import_module(name)
    if name == "jax":
        return _load_jax(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    # TensorFlow fixes its pools at first use: set once, before any op runs
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras

    if keras.backend.backend() != "tensorflow":  # e.g. imported earlier with KERAS_BACKEND=numpy
        raise ImportError(f"keras runs on its {keras.backend.backend()!r} backend in this process, not TensorFlow")
    return keras


def _load_jax(threads):
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if threads == 1 and os.cpu_count() != 1:
        if "jax" in sys.modules:
            raise ImportError("jax was imported before its thread count could be set to 1")
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
    import jax

    return jax


def set_threads(libs, threads):
    """Put fastdl (OpenMP and BLAS) and PyTorch at `threads` threads."""
    import fastdl

    fastdl.set_num_threads(threads)
    if "torch" in libs:
        libs["torch"].set_num_threads(threads)


def versions(available):
    out = {}
    for name, module in available.items():
        if name == "keras":
            import tensorflow

            out["tensorflow"] = tensorflow.__version__
        out[name] = getattr(module, "__version__", "?")
    return out
