"""Build the Cython kernels in kernels/ into the extension modules fastdl._kernels.*."""
import os
import sys

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

KERNELS = ["linalg", "conv", "pool", "activations", "losses", "optim", "augment", "runtime"]

# Portable flags: -fno-math-errno lets GCC vectorise sqrt; never
# -march=native or -ffast-math in a distributed build.
if sys.platform == "win32":
    compile_args, link_args = ["/O2", "/openmp"], []
else:
    compile_args = ["-O3", "-fno-math-errno", "-fopenmp", "-g0"]
    link_args = ["-fopenmp"]
compile_args += os.environ.get("FASTDL_EXTRA_CFLAGS", "").split()
# The optimizer loops give the same bits whichever elements the vector loop and the
# scalar ends take (those move with the arrays' alignment): no a * b + c fused into one
# rounding in one place and not the other.
own_args = {} if sys.platform == "win32" else {"optim": ["-ffp-contract=off"]}

extensions = [
    Extension(
        f"fastdl._kernels.{name}",
        [f"kernels/{name}.pyx"],
        include_dirs=[numpy.get_include(), "kernels"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args + own_args.get(name, []),
        extra_link_args=link_args,
    )
    for name in KERNELS
]

setup(
    ext_modules=cythonize(
        extensions,
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
