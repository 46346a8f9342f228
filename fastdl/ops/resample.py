"""Spatial resampling of NHWC activations: zero padding, cropping and nearest-neighbour
upsampling (Keras's ZeroPadding2D, Cropping2D, UpSampling2D). Padding and cropping are
each other's backward pass; upsampling's backward sums each block of the gradient."""
from fastdl._config import backend_module
from fastdl.ops import _checks


def _margins(name, value):
    """Keras's forms: an int (all four sides), a pair (symmetric height, width), or
    ((top, bottom), (left, right)); as (top, bottom, left, right) non-negative ints."""
    def ints(items):
        if not all(_checks._is_int(v) for v in items):
            raise TypeError(f"{name} must be ints: an int, (height, width) or ((top, bottom), (left, right)); "
                            f"got {value!r}")
        if any(v < 0 for v in items):
            raise ValueError(f"{name} must be >= 0; got {value!r}")
        if any(v > _checks.MAX_WINDOW_INT for v in items):
            raise ValueError(f"{name} must be <= {_checks.MAX_WINDOW_INT}; got {value!r}")
        return tuple(int(v) for v in items)
    if _checks._is_int(value):
        return ints((value,) * 4)
    try:
        first, second = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an int, (height, width) or ((top, bottom), (left, right)); "
                        f"got {value!r}") from None
    if _checks._is_int(first) and _checks._is_int(second):
        return ints((first, first, second, second))
    try:
        (top, bottom), (left, right) = first, second
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an int, (height, width) or ((top, bottom), (left, right)); "
                        f"got {value!r}") from None
    return ints((top, bottom, left, right))


def _images(name, x):
    return _checks.float_array(name, x, 4, "(batch, height, width, channels)")


def _output(out, shape, source, name):
    """The output array (out, or new where source lives), sharing no memory with source."""
    y = _checks.output("out", out, shape, source.dtype, _checks.on_device(source))
    _checks.distinct("out", y, **{name: source})
    return y


def pad2d(x, padding, *, out=None):
    """x (N, H, W, C) with zero rows and columns around it: padding as ZeroPadding2D's."""
    x = _images("x", x)
    top, bottom, left, right = _margins("padding", padding)
    n, h, w, c = x.shape
    y = _output(out, (n, h + top + bottom, w + left + right, c), x, "x")
    backend_module().pad2d(x, y, top, left)
    return y


def crop2d(x, cropping, *, out=None):
    """x (N, H, W, C) without `cropping` rows and columns at its edges (Cropping2D's);
    pad2d's backward pass, and pad2d is its."""
    x = _images("x", x)
    top, bottom, left, right = _margins("cropping", cropping)
    n, h, w, c = x.shape
    if top + bottom >= h or left + right >= w:
        raise ValueError(f"cropping {((top, bottom), (left, right))} leaves nothing of x's {h}x{w} images")
    y = _output(out, (n, h - top - bottom, w - left - right, c), x, "x")
    backend_module().crop2d(x, y, top, left)
    return y


def upsample2d(x, size=2, *, out=None):
    """Nearest-neighbour upsampling (UpSampling2D): every pixel repeated size[0] times
    down and size[1] times across, (N, H, W, C) -> (N, H * s0, W * s1, C)."""
    x = _images("x", x)
    sh, sw = _checks.int_pair("size", size)
    n, h, w, c = x.shape
    y = _output(out, (n, h * sh, w * sw, c), x, "x")
    backend_module().upsample2d(x, y, sh, sw)
    return y


def upsample2d_backward(dy, size=2, *, out=None):
    """upsample2d's backward: each (size[0], size[1]) block of dy summed into one pixel."""
    dy = _images("dy", dy)
    sh, sw = _checks.int_pair("size", size)
    n, h, w, c = dy.shape
    if h % sh or w % sw:
        raise ValueError(f"dy's height and width ({h}, {w}) must be multiples of size {(sh, sw)} "
                         f"(upsample2d's output)")
    dx = _output(out, (n, h // sh, w // sw, c), dy, "dy")
    backend_module().upsample2d_backward(dy, dx, sh, sw)
    return dx
