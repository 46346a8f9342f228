"""Fused ops written as their parts, for the backends that do not fuse them."""
from fastdl import _device
from fastdl.ops._geometry import window
from fastdl.ops.pool import ARGMAX_NONE


def conv2d_max_pool(conv2d, max_pool2d, x, kernel, bias, conv_out, out, g, activation, ph, pw,
                    argmax=None, mark_no_gradient=None):
    """A backend's conv2d into conv_out (or a temporary), then its max_pool2d into out (and
    the maxima's positions into argmax); after a ReLU, the windows whose maximum is not
    above 0 pass no gradient, which mark_no_gradient(out, argmax) records (host arrays
    by default)."""
    f = kernel.shape[3]
    conv = conv_out
    if conv is None:
        conv = _device.empty((g.n, g.oh, g.ow, f), x.dtype, _device.on_device(x, kernel, out))
    conv2d(x, kernel, bias, conv, g, activation)
    max_pool2d(conv, out, window(conv.shape, (ph, pw), (ph, pw), (1, 1), "valid"), argmax)
    if argmax is not None and activation == "relu":
        (mark_no_gradient or _mark_no_gradient)(out, argmax)


def _mark_no_gradient(y, argmax):
    argmax[~(y > 0)] = ARGMAX_NONE
