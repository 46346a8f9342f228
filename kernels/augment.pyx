# Batched image augmentation: one affine map per image, bilinear sampling, fill modes.
#
# The warp itself is affine_warp.h (its comment gives the map and the fast path); here
# the batch is split between threads, one image each. The source may be uint8 or float;
# the output is float32: the conversion happens here, one batch at a time, never for
# the whole data set. The fill-mode codes and COORD_LIMIT are affine_warp.h's #defines.
from cython.parallel cimport prange
from libc.math cimport M_PI, cos, sin

ctypedef unsigned char uint8
DEF WARP_PER_THREAD = 8192

ctypedef fused pixel:
    uint8
    float
    double

cdef extern from "affine_warp.h" nogil:
    void fastdl_warp_u8(const unsigned char *src, Py_ssize_t h, Py_ssize_t w, Py_ssize_t ch, const double *m,
                        float *out, int mode, float fill, double scale)
    void fastdl_warp_f(const float *src, Py_ssize_t h, Py_ssize_t w, Py_ssize_t ch, const double *m,
                       float *out, int mode, float fill, double scale)
    void fastdl_warp_d(const double *src, Py_ssize_t h, Py_ssize_t w, Py_ssize_t ch, const double *m,
                       float *out, int mode, float fill, double scale)


def affine_batch(const pixel[:, :, :, ::1] images, const Py_ssize_t[::1] indices,
                 const double[:, ::1] matrices, float[:, :, :, ::1] out, int mode, double cval,
                 double scale, int num_threads):
    """out[b] = images[indices[b]] resampled through matrices[b] (affine_warp.h), times scale."""
    cdef Py_ssize_t h = images.shape[1], w = images.shape[2]
    cdef Py_ssize_t channels = images.shape[3], batch = out.shape[0]
    cdef Py_ssize_t image = h * w * channels, b
    # a thread for every WARP_PER_THREAD output values at least: a parallel region costs
    # microseconds to start, more than a batch of small images takes to warp
    cdef int threads = <int> max(1, min(<Py_ssize_t> num_threads, batch, batch * image // WARP_PER_THREAD))
    cdef float fill = <float> (cval * scale)
    cdef const pixel *src = &images[0, 0, 0, 0]
    cdef float *dst = &out[0, 0, 0, 0] if batch else NULL
    if batch == 0:
        return
    for b in prange(batch, nogil=True, schedule="static", num_threads=threads):
        if pixel is uint8:
            fastdl_warp_u8(src + indices[b] * image, h, w, channels, &matrices[b, 0], dst + b * image,
                           mode, fill, scale)
        elif pixel is float:
            fastdl_warp_f(src + indices[b] * image, h, w, channels, &matrices[b, 0], dst + b * image,
                          mode, fill, scale)
        else:
            fastdl_warp_d(src + indices[b] * image, h, w, channels, &matrices[b, 0], dst + b * image,
                          mode, fill, scale)


# The columns of a transform-parameter table (ImageDataGenerator._draw): one row per image.
DEF THETA = 0   # rotation, degrees
DEF TX = 1      # shift along rows, pixels
DEF TY = 2      # shift along columns, pixels
DEF SHEAR = 3   # degrees
DEF ZX = 4
DEF ZY = 5
DEF FLIP_H = 6  # flip when < 0.5 (the column holds the uniform draw)
DEF FLIP_V = 7


def affine_matrices(const double[:, ::1] params, double height, double width, double[:, ::1] out):
    """out[i] (6 values: the (2, 3) map from an output (row, col) to its source) for
    params[i] (the columns above), as Keras 3 builds it: rotation @ shift @ shear @ zoom
    about o = (height/2 - 0.5, width/2 - 0.5), in closed form: with c, s = cos, sin(theta)
    and hs, hc = sin, cos(shear),
        A = [[c zx, -(c hs + s hc) zy], [s zx, (c hc - s hs) zy]],
        t = A @ -o + R @ (tx, ty) + o;
    then, as Keras, both axes of (A, t) swapped (its matrix is in (x, y), the image in
    (row, col)); then the flips: each negates a column of A and moves t by that column
    times (size - 1)."""
    cdef Py_ssize_t i
    cdef double theta, shear, c, s, hs, hc, a00, a01, a10, a11, t0, t1
    cdef double oy = height / 2 - 0.5, ox = width / 2 - 0.5, rad = M_PI / 180
    for i in range(params.shape[0]):
        theta = params[i, THETA] * rad
        shear = params[i, SHEAR] * rad
        c, s, hs, hc = cos(theta), sin(theta), sin(shear), cos(shear)
        a00 = c * params[i, ZX]
        a01 = -(c * hs + s * hc) * params[i, ZY]
        a10 = s * params[i, ZX]
        a11 = (c * hc - s * hs) * params[i, ZY]
        t0 = oy - a00 * oy - a01 * ox + c * params[i, TX] - s * params[i, TY]
        t1 = ox - a10 * oy - a11 * ox + s * params[i, TX] + c * params[i, TY]
        a00, a01, a10, a11, t0, t1 = a11, a10, a01, a00, t1, t0  # Keras's swap of x and y
        if params[i, FLIP_V] < 0.5:
            t0 += a00 * (height - 1)
            t1 += a10 * (height - 1)
            a00, a10 = -a00, -a10
        if params[i, FLIP_H] < 0.5:
            t0 += a01 * (width - 1)
            t1 += a11 * (width - 1)
            a01, a11 = -a01, -a11
        out[i, 0], out[i, 1], out[i, 2] = a00, a01, t0
        out[i, 3], out[i, 4], out[i, 5] = a10, a11, t1
