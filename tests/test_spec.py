"""The backend contract (fastdl/backends/_spec.py): every backend implements every op
with the same parameters, and every copy of the shared constants agrees with it."""
import ast
import importlib
import importlib.util
import inspect
import os
import re

import pytest

from fastdl.backends import _spec, auto
from fastdl.ops import _geometry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ["reference", "cython"] + (["numba_cpu"] if importlib.util.find_spec("numba") else [])


def source(*parts):
    with open(os.path.join(ROOT, *parts)) as f:
        return f.read()


def ast_signatures(path):
    """{function name: (parameter names, names with a default of None)} of a module's
    top-level functions, read without importing it (the CUDA backend needs a GPU or the
    simulator to import)."""
    functions = {}
    for node in ast.parse(source(path)).body:
        if isinstance(node, ast.FunctionDef):
            names = tuple(a.arg for a in node.args.args)
            defaults = names[len(names) - len(node.args.defaults):]
            none = tuple(n for n, d in zip(defaults, node.args.defaults)
                         if isinstance(d, ast.Constant) and d.value is None)
            functions[node.name] = (names, none)
    return functions


def check_against_spec(name, signatures):
    for op in _spec.OPS:
        assert op.name in signatures, f"backend {name} lacks {op.name}"
        params, optional = signatures[op.name]
        assert params == op.params, f"{name}.{op.name}{params} differs from the contract {op.params}"
        assert optional == op.optional, f"{name}.{op.name}: None defaults {optional}, contract {op.optional}"


@pytest.mark.parametrize("name", BACKENDS)
def test_every_backend_implements_every_op_with_the_contracts_parameters(name):
    module = importlib.import_module(f"fastdl.backends.{name}")
    signatures = {}
    for op in _spec.NAMES:
        if hasattr(module, op):
            parameters = inspect.signature(getattr(module, op)).parameters.values()
            signatures[op] = (tuple(p.name for p in parameters),
                              tuple(p.name for p in parameters if p.default is None))
    check_against_spec(name, signatures)


def test_the_cuda_backend_implements_every_op_with_the_contracts_parameters():
    check_against_spec("cuda", ast_signatures(os.path.join("fastdl", "backends", "cuda", "__init__.py")))


def test_every_backend_says_where_its_arrays_live():
    for name in BACKENDS + ["auto"]:
        assert importlib.import_module(f"fastdl.backends.{name}").ARRAYS_ON_DEVICE is False
    assert re.search(r"^ARRAYS_ON_DEVICE = True$", source("fastdl", "backends", "cuda", "__init__.py"), re.M)


def test_the_contract_is_consistent():
    assert len(set(_spec.NAMES)) == len(_spec.NAMES)
    for op in _spec.OPS:
        assert set(op.fills) <= set(op.params) and set(op.optional) <= set(op.params)
        assert op.params[len(op.params) - len(op.optional):] == op.optional  # trailing


def test_auto_dispatches_exactly_the_contracts_ops():
    assert auto.OPS == _spec.NAMES
    assert all(callable(getattr(auto, op)) for op in _spec.NAMES)


def test_the_numba_backend_imports_no_other_backend():
    for fname in ("__init__.py", "kernels.py", "_runtime.py"):
        tree = ast.parse(source("fastdl", "backends", "numba_cpu", fname))
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {f"{node.module}.{a.name}" for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) for a in node.names}
        assert not {"fastdl.backends.cython", "fastdl.backends.reference", "fastdl.backends.cuda"} & imported


def test_numbas_cache_is_named_for_every_module_its_kernels_compile_in():
    pytest.importorskip("numba")
    from fastdl.backends.numba_cpu import _runtime

    tree = ast.parse(source("fastdl", "backends", "numba_cpu", "kernels.py"))
    compiled_in = {f"{a.name}.py" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                   and node.module == "fastdl.backends" for a in node.names}
    compiled_in |= {"_spec.py"} if any(isinstance(node, ast.ImportFrom) and node.module == "fastdl.backends._spec"
                                       for node in ast.walk(tree)) else set()
    assert compiled_in <= set(_runtime._COMPILED_IN)  # Numba would not notice their changes
    if not os.environ.get("NUMBA_CACHE_DIR"):
        assert _runtime._sources_digest() in _runtime.cache_dir()


def test_numba_warmup_runs_every_op(monkeypatch, tmp_path):
    pytest.importorskip("numba")
    from fastdl.backends import numba_cpu

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # its "compiled" marker stays here
    numba_cpu.warmup()  # raises RuntimeError naming any op it did not run
    assert auto.numba_ready()


# -- the constants the compiled kernels share --------------------------------------------------

def defs(text, names):
    """Cython DEF NAME = value (or #define NAME value) values for the names."""
    found = {}
    for name in names:
        match = re.search(rf"(?:DEF|#define)\s+{name}\s*=?\s*([0-9.]+)", text)
        assert match, f"{name} not defined"
        found[name] = float(match.group(1))
    return found


def test_activation_codes_agree_with_the_compiled_kernels():
    assert _spec.ACTIVATION_CODES == {None: 0, "relu": 1, "sigmoid": 2, "tanh": 3, "softmax": 4}
    values = defs(source("kernels", "activations.pyx"), ["RELU", "SIGMOID", "TANH", "SOFTMAX"])
    assert values == {"RELU": _spec.RELU, "SIGMOID": _spec.SIGMOID, "TANH": _spec.TANH, "SOFTMAX": _spec.SOFTMAX}
    for path in (("fastdl", "backends", "numba_cpu", "kernels.py"), ("fastdl", "backends", "cuda", "kernels.py")):
        assert not re.search(r"code == \d", source(*path)), f"{path}: a bare activation code"


def test_fill_modes_and_the_coordinate_limit_agree_with_the_compiled_kernels():
    text = source("kernels", "affine_warp.h")
    values = defs(text, ["NEAREST", "CONSTANT", "REFLECT", "WRAP", "COORD_LIMIT"])
    assert [values[m.upper()] for m in _spec.FILL_MODES] == [0, 1, 2, 3]
    assert (_spec.NEAREST, _spec.CONSTANT, _spec.REFLECT, _spec.WRAP) == (0, 1, 2, 3)
    assert values["COORD_LIMIT"] == _spec.COORD_LIMIT
    for path in (("fastdl", "backends", "numba_cpu", "kernels.py"), ("fastdl", "backends", "cuda", "kernels.py"),
                 ("fastdl", "backends", "reference.py"), ("fastdl", "backends", "_element_updates.py")):
        assert not re.search(r"mode == \d", source(*path)), f"{path}: a bare fill mode"


LOSS_CONSTANTS = ["MSE", "MAE", "MAPE", "MSLE", "HUBER", "LOG_COSH", "BCE", "BCE_LOGITS", "POISSON", "HINGE",
                  "SQUARED_HINGE", "KLD", "CATEGORICAL_HINGE"]


def test_loss_codes_agree_with_the_compiled_kernels():
    assert [getattr(_spec, name) for name in LOSS_CONSTANTS] == list(range(len(_spec.LOSSES)))
    assert [_spec.LOSS_CODES[name] for name in _spec.LOSSES] == list(range(len(_spec.LOSSES)))
    values = defs(source("kernels", "losses.pyx"), LOSS_CONSTANTS)
    assert values == {name: getattr(_spec, name) for name in LOSS_CONSTANTS}
    assert _spec.ROW_LOSSES == (_spec.KLD, _spec.CATEGORICAL_HINGE)
    assert "kind == KLD or kind == CATEGORICAL_HINGE" in source("kernels", "losses.pyx")


def test_argmax_none_agrees_with_the_compiled_kernels():
    assert defs(source("kernels", "pool_window.h"), ["FASTDL_ARGMAX_NONE"]) == {"FASTDL_ARGMAX_NONE": _spec.ARGMAX_NONE}
    from fastdl import ops
    assert ops.ARGMAX_NONE == _spec.ARGMAX_NONE


def test_the_window_field_order_agrees_everywhere():
    assert _geometry.Window._fields[:14] == _spec.WINDOW_FIELDS
    struct = re.search(r"cdef struct Window:(.*?)\n\n", source("kernels", "_geometry.pxd"), re.S).group(1)
    fields = [name.strip() for line in struct.splitlines() if "Py_ssize_t" in line
              for name in line.split("#")[0].replace("Py_ssize_t", "").split(",")]
    assert tuple(fields) == _spec.WINDOW_FIELDS
    unpack = re.search(r"\(win\.n,.*?\) = g", source("kernels", "_geometry.pxd"), re.S).group(0)
    assert tuple(re.findall(r"win\.(\w+)", unpack)) == _spec.WINDOW_FIELDS
    expected = ", ".join(_spec.WINDOW_FIELDS)
    for path in (("fastdl", "backends", "numba_cpu", "kernels.py"), ("fastdl", "backends", "cuda", "kernels.py")):
        lines = [line.strip() for line in source(*path).splitlines() if line.strip().endswith("= g")]
        assert lines, path
        for line in lines:
            assert line == f"{expected} = g", f"{path}: {line}"
