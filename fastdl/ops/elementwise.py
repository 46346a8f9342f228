"""Elementwise arithmetic on arrays of one shape, wherever they live (host or device):
what layers need besides the kernels (Dropout's mask), without touching devices."""
from fastdl._config import backend_module
from fastdl.ops import _checks


def _binary(op, a, b, out):
    a = _checks.float_array("a", a)
    b = _checks.float_array("b", b)
    _checks.same_dtype(a=a, b=b)
    _checks.shape_is("b", b, a.shape, "the shape of a")
    y = _checks.output("out", out, a.shape, a.dtype, _checks.on_device(a, b))
    _checks.exact_or_distinct("out", y, a=a, b=b)  # in place on a or b is fine
    getattr(backend_module(), op)(a.reshape(-1), b.reshape(-1), y.reshape(-1))
    return y


def add(a, b, *, out=None):
    """a + b elementwise (one shape, one dtype); `out` may be a or b itself."""
    return _binary("add", a, b, out)


def multiply(a, b, *, out=None):
    """a * b elementwise (one shape, one dtype); `out` may be a or b itself."""
    return _binary("multiply", a, b, out)
