"""Output sizes and padding of 2-D sliding windows (convolution, pooling) on NHWC input.

Conventions (README's Conventions): output sizes round down; 'same' gives ceil(size / stride) and
puts the odd padding pixel at the bottom/right, as Keras and TensorFlow do.
"""
from typing import NamedTuple


class Window(NamedTuple):
    n: int   # batch
    h: int   # input height, width, channels
    w: int
    c: int
    kh: int  # window size
    kw: int
    sh: int  # strides
    sw: int
    dh: int  # dilation
    dw: int
    pt: int  # padding top, left (these two reach the kernels)
    pl: int
    oh: int  # output height, width
    ow: int
    pb: int  # padding bottom, right
    pr: int

    def kernel_args(self):
        """The leading 14 fields, in the order of the kernels' Window struct."""
        return tuple(self)[:14]


def _axis(name, size, k, stride, dilation, padding, explicit):
    """(pad_before, pad_after, out) along one axis."""
    span = (k - 1) * dilation + 1
    if padding == "same":
        out = -(-size // stride)
        total = max((out - 1) * stride + span - size, 0)
        return total // 2, total - total // 2, out
    before, after = explicit if padding != "valid" else (0, 0)
    padded = size + before + after
    if padded < span:
        note = ", dilation included" if dilation > 1 else ""
        raise ValueError(
            f"the {name} window ({span}{note}) is larger than the padded "
            f"input {name} ({padded})"
        )
    return before, after, (padded - span) // stride + 1


def window(x_shape, size, strides, dilation, padding):
    """Geometry of a window of `size` (kh, kw) sliding over x (N, H, W, C)."""
    n, h, w, c = x_shape
    explicit_h = explicit_w = None
    if isinstance(padding, tuple):
        explicit_h, explicit_w = padding[:2], padding[2:]
    pt, pb, oh = _axis("height", h, size[0], strides[0], dilation[0], padding, explicit_h)
    pl, pr, ow = _axis("width", w, size[1], strides[1], dilation[1], padding, explicit_w)
    return Window(n, h, w, c, size[0], size[1], strides[0], strides[1],
                  dilation[0], dilation[1], pt, pl, oh, ow, pb, pr)
