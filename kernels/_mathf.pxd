# libm functions picked by the floating type, so float kernels stay in float arithmetic.
from cython cimport floating
from libc.math cimport exp, expf, log, logf, tanh, tanhf


cdef inline floating fexp(floating v) noexcept nogil:
    if floating is float:
        return expf(v)
    else:
        return exp(v)


cdef inline floating flog(floating v) noexcept nogil:
    if floating is float:
        return logf(v)
    else:
        return log(v)


cdef inline floating ftanh(floating v) noexcept nogil:
    if floating is float:
        return tanhf(v)
    else:
        return tanh(v)
