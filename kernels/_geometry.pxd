# The shape of one 2-D sliding-window operation (convolution or pooling) on NHWC data.
# Built once on the Python side (fastdl.ops._geometry) and handed to the kernels.

cdef struct Window:
    Py_ssize_t n, h, w, c        # input batch, height, width, channels
    Py_ssize_t kh, kw            # window (kernel) size
    Py_ssize_t sh, sw            # strides
    Py_ssize_t dh, dw            # dilation
    Py_ssize_t pt, pl            # padding before the first row / column
    Py_ssize_t oh, ow            # output height, width


cdef inline Window window_from_tuple(tuple g):
    cdef Window win
    (win.n, win.h, win.w, win.c, win.kh, win.kw, win.sh, win.sw,
     win.dh, win.dw, win.pt, win.pl, win.oh, win.ow) = g
    return win
