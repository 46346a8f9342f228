# Batched image augmentation: one affine map per image, bilinear sampling, fill modes.
#
# For output pixel (r, c) of image b the source position is
#     (r_in, c_in) = (m0 r + m1 c + m2, m3 r + m4 c + m5),    m = matrices[b]
# (rotation, shift, shear, zoom and flips all folded into m on the Python side), and
# the output is the bilinear blend of the four neighbours, scaled by `scale`. The
# source may be uint8 or float; the output is float32: the conversion happens here,
# one batch at a time, never for the whole data set.
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport floor

ctypedef fused pixel:
    unsigned char
    float
    double

DEF NEAREST = 0
DEF CONSTANT = 1
DEF REFLECT = 2
DEF WRAP = 3
# Source coordinates are clamped to +-2**31 before they become indices: far outside any
# image (so 'nearest' and 'constant' do not change), and a double beyond int64's range
# must never be converted (undefined in C). Every backend clamps the same way.
DEF COORD_LIMIT = 2147483648.0


cdef inline Py_ssize_t fold(Py_ssize_t i, Py_ssize_t n, int mode) noexcept nogil:
    """Map an index outside [0, n) into it (constant mode never gets here out of range)."""
    cdef Py_ssize_t period
    if 0 <= i < n:
        return i
    if mode == REFLECT:  # half-sample symmetric: d c b a | a b c d | d c b a
        period = 2 * n
        i = i % period
        if i < 0:
            i += period
        return period - 1 - i if i >= n else i
    if mode == WRAP:  # periodic: a b c d | a b c d
        i = i % n
        return i + n if i < 0 else i
    return 0 if i < 0 else n - 1  # nearest (and the clamped neighbour in constant mode)


def affine_batch(const pixel[:, :, :, ::1] images, const Py_ssize_t[::1] indices,
                 const double[:, ::1] matrices, float[:, :, :, ::1] out, int mode, double cval,
                 double scale, int num_threads):
    """out[b] = images[indices[b]] resampled through matrices[b] (see above), times scale."""
    cdef Py_ssize_t h = images.shape[1], w = images.shape[2]
    cdef Py_ssize_t channels = images.shape[3], batch = out.shape[0]
    cdef Py_ssize_t b, src, r, c, ch, r0, c0, r1, c1
    cdef double m0, m1, m2, m3, m4, m5, row_r, row_c, rin, cin, fr, fc, w00, w01, w10, w11
    cdef float fill = <float> (cval * scale)
    for b in prange(batch, nogil=True, schedule="static", num_threads=num_threads):
        src = indices[b]
        m0 = matrices[b, 0]
        m1 = matrices[b, 1]
        m2 = matrices[b, 2]
        m3 = matrices[b, 3]
        m4 = matrices[b, 4]
        m5 = matrices[b, 5]
        for r in range(h):
            row_r = m0 * r + m2
            row_c = m3 * r + m5
            for c in range(w):
                rin = row_r + m1 * c
                cin = row_c + m4 * c
                # SciPy's 'constant': no interpolation beyond the edges
                if mode == CONSTANT and (rin < -1e-9 or rin > h - 1 + 1e-9 or
                                         cin < -1e-9 or cin > w - 1 + 1e-9):
                    for ch in range(channels):
                        out[b, r, c, ch] = fill
                    continue
                rin = min(max(rin, -COORD_LIMIT), COORD_LIMIT)
                cin = min(max(cin, -COORD_LIMIT), COORD_LIMIT)
                r0 = <Py_ssize_t> floor(rin)
                c0 = <Py_ssize_t> floor(cin)
                fr = rin - r0
                fc = cin - c0
                if 0 <= r0 and r0 + 1 < h and 0 <= c0 and c0 + 1 < w:
                    r1 = r0 + 1  # inside: no fill mode to apply (most pixels)
                    c1 = c0 + 1
                else:
                    r1 = fold(r0 + 1, h, mode)
                    c1 = fold(c0 + 1, w, mode)
                    r0 = fold(r0, h, mode)
                    c0 = fold(c0, w, mode)
                w00 = (1 - fr) * (1 - fc) * scale
                w01 = (1 - fr) * fc * scale
                w10 = fr * (1 - fc) * scale
                w11 = fr * fc * scale
                for ch in range(channels):
                    out[b, r, c, ch] = <float> (w00 * images[src, r0, c0, ch] + w01 * images[src, r0, c1, ch]
                                                + w10 * images[src, r1, c0, ch] + w11 * images[src, r1, c1, ch])
