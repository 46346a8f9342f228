# cython: language_level=3
# Zero padding, cropping and nearest-neighbour upsampling of NHWC activations. Every
# kernel writes whole output rows (an image row of W*C values) on one thread each, as
# runs of contiguous channels (memcpy / memset), so no two threads touch one row.
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memcpy, memset


def pad2d(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out, Py_ssize_t top, Py_ssize_t left,
          int num_threads):
    """out = x placed at (top, left) in zeros."""
    cdef Py_ssize_t n = x.shape[0], h = x.shape[1], w = x.shape[2], c = x.shape[3]
    cdef Py_ssize_t oh = out.shape[1], ow = out.shape[2], r, i, y
    cdef size_t item = sizeof(floating)
    for r in prange(n * oh, nogil=True, schedule="static", num_threads=num_threads):
        i = r // oh
        y = r % oh
        if y < top or y >= top + h:
            memset(&out[i, y, 0, 0], 0, ow * c * item)
        else:
            memset(&out[i, y, 0, 0], 0, left * c * item)
            memcpy(&out[i, y, left, 0], &x[i, y - top, 0, 0], w * c * item)
            memset(&out[i, y, 0, 0] + (left + w) * c, 0, (ow - left - w) * c * item)


def crop2d(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out, Py_ssize_t top, Py_ssize_t left,
           int num_threads):
    """out = x[:, top:top + OH, left:left + OW]."""
    cdef Py_ssize_t n = out.shape[0], oh = out.shape[1], ow = out.shape[2], c = out.shape[3], r, i, y
    for r in prange(n * oh, nogil=True, schedule="static", num_threads=num_threads):
        i = r // oh
        y = r % oh
        memcpy(&out[i, y, 0, 0], &x[i, top + y, left, 0], ow * c * sizeof(floating))


def upsample2d(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out, Py_ssize_t sh, Py_ssize_t sw,
               int num_threads):
    """out[i, y, j] = x[i, y // sh, j // sw]."""
    cdef Py_ssize_t n = out.shape[0], oh = out.shape[1], ow = out.shape[2], c = out.shape[3], r, i, y, j
    for r in prange(n * oh, nogil=True, schedule="static", num_threads=num_threads):
        i = r // oh
        y = r % oh
        for j in range(ow):
            memcpy(&out[i, y, j, 0], &x[i, y // sh, j // sw, 0], c * sizeof(floating))


def upsample2d_backward(const floating[:, :, :, ::1] dy, floating[:, :, :, ::1] dx, Py_ssize_t sh,
                        Py_ssize_t sw, int num_threads):
    """dx[i, y, x] = the sum of dy over the (sh, sw) block that pixel was copied to."""
    cdef Py_ssize_t n = dx.shape[0], h = dx.shape[1], w = dx.shape[2], c = dx.shape[3], r, i, y, a, j, k
    for r in prange(n * h, nogil=True, schedule="static", num_threads=num_threads):
        i = r // h
        y = r % h
        memset(&dx[i, y, 0, 0], 0, w * c * sizeof(floating))
        for a in range(y * sh, y * sh + sh):
            for j in range(w * sw):
                for k in range(c):
                    dx[i, y, j // sw, k] += dy[i, a, j, k]
