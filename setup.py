"""Build the Cython kernels in kernels/ into the extension modules fastdl._kernels.*."""
import importlib.util
import os
import sys

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KERNELS = ["linalg", "conv", "pool", "activations", "losses", "optim", "augment", "norm", "recurrent", "resample",
           "depthwise", "runtime"]

# Portable flags: -fno-math-errno lets GCC vectorise sqrt; never
# -march=native or -ffast-math in a distributed build.
if sys.platform == "win32":
    compile_args, link_args = ["/O2", "/openmp"], []
elif sys.platform == "darwin":  # Apple's clang: OpenMP from Homebrew's libomp (see pyproject's cibuildwheel)
    compile_args = ["-O3", "-fno-math-errno", "-Xpreprocessor", "-fopenmp", "-g0"]
    link_args = ["-lomp"]
else:
    compile_args = ["-O3", "-fno-math-errno", "-fopenmp", "-g0"]
    link_args = ["-fopenmp"]
compile_args += os.environ.get("FASTDL_EXTRA_CFLAGS", "").split()
# FASTDL_SANITIZE=address,undefined: a build for .ci/sanitize, where an out-of-bounds
# access or undefined behaviour stops the tests even when the answer comes out right
# (Python itself is not instrumented: the ASan runtime goes in through LD_PRELOAD)
SANITIZE = os.environ.get("FASTDL_SANITIZE", "").strip()
if SANITIZE:
    if sys.platform == "win32":
        raise SystemExit("FASTDL_SANITIZE needs GCC or clang")
    flags = [f"-fsanitize={SANITIZE}", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]
    compile_args = [a for a in compile_args if a not in ("-O3", "-g0")] + ["-O1", "-g"] + flags
    link_args = link_args + flags
# The optimizer loops give the same bits whichever elements the vector loop and the
# scalar ends take (those move with the arrays' alignment): no a * b + c fused into one
# rounding in one place and not the other.
own_args = {} if sys.platform == "win32" else {"optim": ["-ffp-contract=off"]}


def kernels_digest():
    """fastdl/_kernels/_digest.py's digest of kernels/, loaded by path (fastdl is not importable yet)."""
    spec = importlib.util.spec_from_file_location("_digest", os.path.join("fastdl", "_kernels", "_digest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.kernels_digest("kernels")


# The runtime module carries the digest of the sources it was built from (runtime.source_digest()),
# so it is rebuilt whenever any of them changes.
own_macros = {"runtime": [("FASTDL_SOURCE_DIGEST", f'"{kernels_digest()}"')]}
own_depends = {"runtime": sorted(os.path.join("kernels", name) for name in os.listdir("kernels")
                                 if name.endswith((".pyx", ".pxd", ".h")))}


class ParallelBuildExt(build_ext):
    """Compiles the extensions side by side on every core (pip and `python -m build` ask
    for one at a time) unless --parallel / -j says otherwise."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

extensions = [
    Extension(
        f"fastdl._kernels.{name}",
        [f"kernels/{name}.pyx"],
        include_dirs=[numpy.get_include(), "kernels"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")] + own_macros.get(name, []),
        extra_compile_args=compile_args + own_args.get(name, []),
        extra_link_args=link_args,
        depends=own_depends.get(name, []),
    )
    for name in KERNELS
]

setup(
    cmdclass={"build_ext": ParallelBuildExt},
    ext_modules=cythonize(
        extensions,
        nthreads=os.cpu_count() or 1,
        include_path=["kernels"],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
)
