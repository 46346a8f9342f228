/* Fused in-place optimizer updates: one pass over memory, every element read and
 * written once. Built with target_clones like the other C loops (see pool_window.h).
 *
 * Shared conventions: g = (maximize ? -grad : grad) + l2 * p (coupled weight decay);
 * p *= decay first (decoupled weight decay: decay = 1 - lr * wd, else 1). Scalars
 * arrive prepared in double on the Python side and are cast to T once.
 */
#ifndef FASTDL_OPTIM_H
#define FASTDL_OPTIM_H
#include <math.h>
#include <stddef.h>

#include "simd.h"

#define FASTDL_OPTIM(T, S, SQRT)                                                         \
/* SGD. PyTorch form: buf = momentum*buf + (1-dampening)*g (buf = g when init),         \
 * step = nesterov ? g + momentum*buf : buf, p -= lr*step. Keras form (keras=1):         \
 * buf = momentum*buf - lr*g, p += nesterov ? momentum*buf - lr*g : buf. */              \
FASTDL_CLONES static void fastdl_sgd_##S(T *restrict p, const T *restrict grad,         \
        T *restrict buf, ptrdiff_t n, double lr_, double momentum_, double dampening_,   \
        double l2_, double decay_, double sign_, int nesterov, int init, int keras) {    \
    const T lr = (T)lr_, mom = (T)momentum_, keep = (T)(1.0 - dampening_);               \
    const T l2 = (T)l2_, decay = (T)decay_, sign = (T)sign_;                             \
    if (buf == NULL) {                                                                   \
        for (ptrdiff_t i = 0; i < n; i++) {                                              \
            T g = sign * grad[i] + l2 * p[i];                                            \
            p[i] = p[i] * decay - lr * g;                                                \
        }                                                                                \
    } else if (keras) {                                                                  \
        for (ptrdiff_t i = 0; i < n; i++) {                                              \
            T g = sign * grad[i] + l2 * p[i];                                            \
            T b = mom * buf[i] - lr * g;                                                 \
            buf[i] = b;                                                                  \
            p[i] = p[i] * decay + (nesterov ? mom * b - lr * g : b);                     \
        }                                                                                \
    } else {                                                                             \
        for (ptrdiff_t i = 0; i < n; i++) {                                              \
            T g = sign * grad[i] + l2 * p[i];                                            \
            T b = init ? g : mom * buf[i] + keep * g;                                    \
            buf[i] = b;                                                                  \
            p[i] = p[i] * decay - lr * (nesterov ? g + mom * b : b);                     \
        }                                                                                \
    }                                                                                    \
}                                                                                        \
/* AdaGrad: acc += g*g; p -= lr * g / (sqrt(acc) + eps), or / sqrt(acc + eps) when      \
 * eps_inside (Keras, and the formula of the seed's section 3.2.4). */                   \
FASTDL_CLONES static void fastdl_adagrad_##S(T *restrict p, const T *restrict grad,     \
        T *restrict acc, ptrdiff_t n, double lr_, double eps_, double l2_, double decay_,\
        int eps_inside) {                                                                \
    const T lr = (T)lr_, eps = (T)eps_, l2 = (T)l2_, decay = (T)decay_;                  \
    for (ptrdiff_t i = 0; i < n; i++) {                                                  \
        T g = grad[i] + l2 * p[i];                                                       \
        T a = acc[i] + g * g;                                                            \
        acc[i] = a;                                                                      \
        T denom = eps_inside ? SQRT(a + eps) : SQRT(a) + eps;                            \
        p[i] = p[i] * decay - lr * g / denom;                                            \
    }                                                                                    \
}                                                                                        \
/* RMSprop: sq = rho*sq + (1-rho)*g*g; centered: ga = rho*ga + (1-rho)*g and the        \
 * variance sq - ga*ga replaces sq. denom = sqrt(var) + eps (PyTorch) or sqrt(var + eps) \
 * (Keras). Momentum: buf = m*buf + g/denom, p -= lr*buf (PyTorch) or                    \
 * buf = m*buf + lr*g/denom, p -= buf (Keras); without it p -= lr*g/denom.               \
 * The body is inlined with constant flags below, one specialised loop per option set,  \
 * because GCC leaves loops with several runtime options unvectorised. */               \
static inline __attribute__((always_inline)) void fastdl_rmsprop_body_##S(               \
        T *restrict p, const T *restrict grad, T *restrict sq, T *restrict ga,           \
        T *restrict buf, ptrdiff_t n, T lr, T rho, T rest, T eps, T mom, T l2, T decay,  \
        const int centered, const int momentum, const int keras) {                       \
    for (ptrdiff_t i = 0; i < n; i++) {                                                  \
        T g = grad[i] + l2 * p[i];                                                       \
        T s = rho * sq[i] + rest * g * g;                                                \
        sq[i] = s;                                                                       \
        T var = s;                                                                       \
        if (centered) {                                                                  \
            T a = rho * ga[i] + rest * g;                                                \
            ga[i] = a;                                                                   \
            var = s - a * a;                                                             \
        }                                                                                \
        T denom = keras ? SQRT(var + eps) : SQRT(var) + eps;                             \
        T q = p[i] * decay;                                                              \
        if (momentum) {                                                                  \
            T b = keras ? mom * buf[i] + lr * g / denom : mom * buf[i] + g / denom;      \
            buf[i] = b;                                                                  \
            p[i] = keras ? q - b : q - lr * b;                                           \
        } else {                                                                         \
            p[i] = q - lr * g / denom;                                                   \
        }                                                                                \
    }                                                                                    \
}                                                                                        \
FASTDL_CLONES static void fastdl_rmsprop_##S(T *restrict p, const T *restrict grad,     \
        T *restrict sq, T *restrict ga, T *restrict buf, ptrdiff_t n, double lr_,        \
        double rho_, double eps_, double momentum_, double l2_, double decay_,           \
        int keras) {                                                                     \
    const T lr = (T)lr_, rho = (T)rho_, rest = (T)(1.0 - rho_), eps = (T)eps_;           \
    const T mom = (T)momentum_, l2 = (T)l2_, decay = (T)decay_;                          \
    const int centered = ga != NULL, momentum = buf != NULL;                             \
    /* the plain forms (no centring, no momentum) get loops of their own */              \
    if (!centered && !momentum && keras)                                                 \
        fastdl_rmsprop_body_##S(p, grad, sq, ga, buf, n, lr, rho, rest, eps, mom, l2, decay, 0, 0, 1); \
    else if (!centered && !momentum)                                                     \
        fastdl_rmsprop_body_##S(p, grad, sq, ga, buf, n, lr, rho, rest, eps, mom, l2, decay, 0, 0, 0); \
    else if (keras)                                                                      \
        fastdl_rmsprop_body_##S(p, grad, sq, ga, buf, n, lr, rho, rest, eps, mom, l2, decay, centered, momentum, 1); \
    else                                                                                 \
        fastdl_rmsprop_body_##S(p, grad, sq, ga, buf, n, lr, rho, rest, eps, mom, l2, decay, centered, momentum, 0); \
}                                                                                        \
/* Adam: m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g; amsgrad: vmax = max(vmax, v) is    \
 * used for v; p -= step_size * m / (sqrt(v) + eps_hat). The caller folds the bias      \
 * corrections into step_size and eps_hat, per convention. */                           \
FASTDL_CLONES static void fastdl_adam_##S(T *restrict p, const T *restrict grad,        \
        T *restrict m, T *restrict v, T *restrict vmax, ptrdiff_t n, double step_size_,  \
        double eps_hat_, double beta1_, double beta2_, double l2_, double decay_,        \
        double sign_) {                                                                  \
    const T step = (T)step_size_, eps = (T)eps_hat_, b1 = (T)beta1_, b2 = (T)beta2_;     \
    const T r1 = (T)(1.0 - beta1_), r2 = (T)(1.0 - beta2_);                              \
    const T l2 = (T)l2_, decay = (T)decay_, sign = (T)sign_;                             \
    for (ptrdiff_t i = 0; i < n; i++) {                                                  \
        T g = sign * grad[i] + l2 * p[i];                                                \
        T mi = b1 * m[i] + r1 * g;                                                       \
        T vi = b2 * v[i] + r2 * g * g;                                                   \
        m[i] = mi;                                                                       \
        v[i] = vi;                                                                       \
        if (vmax != NULL) {                                                              \
            vi = vi > vmax[i] ? vi : vmax[i];                                            \
            vmax[i] = vi;                                                                \
        }                                                                                \
        p[i] = p[i] * decay - step * mi / (SQRT(vi) + eps);                              \
    }                                                                                    \
}

FASTDL_OPTIM(float, f, sqrtf)
FASTDL_OPTIM(double, d, sqrt)

#endif
