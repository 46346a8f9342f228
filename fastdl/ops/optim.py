"""Fused in-place optimizer updates for one parameter array and its state.

Each update reads and writes every element once, in place, and returns None. The
defaults follow torch.optim's documented algorithms; convention="keras" switches to
the Keras 3 formulas where the two differ (epsilon placement, momentum scaling, and
weight decay, which Keras always applies decoupled: p -= lr * wd * p).

Everything is validated before anything is written: a bad call changes nothing.
"""
import math

import numpy as np

from fastdl import _device
from fastdl._config import backend_module
from fastdl.ops import _checks

CONVENTIONS = ("torch", "keras")


def _in_place(name, array):
    """An array updated in place: a device array or a numpy.ndarray, C-contiguous and
    writeable."""
    if _device.is_device(array):
        array = _device.adopt(name, array)
        contiguous = writeable = array.is_c_contiguous()
    elif isinstance(array, np.ndarray):
        contiguous, writeable = array.flags.c_contiguous, array.flags.writeable
    else:
        raise TypeError(f"{name} must be a numpy.ndarray or a device array, updated in place; "
                        f"got {type(array).__name__}")
    if not contiguous or not writeable:
        raise ValueError(f"{name} must be C-contiguous and writeable (it is updated in place)")
    return array


def _param(param):
    param = _in_place("param", param)
    if param.dtype not in _checks.FLOAT_DTYPES:
        raise TypeError(f"param must have dtype float32 or float64; got {param.dtype}")
    return param


def _grad(grad, param):
    grad = _device.adopt("grad", grad) if _device.is_device(grad) else np.asarray(grad)
    if grad.dtype != param.dtype:
        raise TypeError(f"grad must have param's dtype {param.dtype}; got {grad.dtype}")
    _checks.shape_is("grad", grad, param.shape, "param's shape")
    if _device.is_device(grad):
        return _checks.float_array("grad", grad).reshape(-1)  # checks it is contiguous
    return _checks.contiguous("grad", grad).reshape(-1)


def _state(name, array, param, needed_for, written=()):
    """A state array updated in place: param's shape and dtype, contiguous, writeable,
    sharing memory with neither param nor the other state arrays."""
    if array is None:
        raise ValueError(f"{needed_for} needs {name}= (a state array shaped like param)")
    array = _in_place(name, array)
    if array.dtype != param.dtype:
        raise TypeError(f"{name} must have param's dtype {param.dtype}; got {array.dtype}")
    _checks.shape_is(name, array, param.shape, "param's shape")
    for other_name, other in (("param", param),) + tuple(written):
        if _device.may_share_memory(array, other):
            raise ValueError(f"{name} must not share memory with {other_name}")
    return array.reshape(-1)


def _step(step):
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"step must be an int >= 1 (the 1-based update count); got {step!r}")
    return int(step)


def _convention(convention):
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}; got {convention!r}")
    return convention == "keras"


def _weight_decay(weight_decay, lr, keras, decoupled=False):
    """(l2, decay): coupled L2 added to the gradient, or decoupled shrinkage of p."""
    wd = _checks.finite_number("weight_decay", weight_decay, 0)
    if keras or decoupled:
        return 0.0, 1.0 - lr * wd
    return wd, 1.0


def sgd_update(param, grad, *, lr, momentum=0.0, velocity=None, dampening=0.0, nesterov=False,
               weight_decay=0.0, maximize=False, step=None, convention="torch"):
    """Stochastic gradient descent, with optional (Nesterov) momentum.

    Plain gradient descent (the seed's 3.2.1): p -= lr * g.
    PyTorch momentum: v = momentum * v + (1 - dampening) * g; p -= lr * v (Nesterov:
    p -= lr * (g + momentum * v)). Pass step (1-based) to get PyTorch's first step,
    which sets v = g; without it v's current content is used.
    The seed's momentum (3.2.3), v = beta * v + (1 - beta) * g; W -= alpha * v, is
    sgd_update(W, g, lr=alpha, momentum=beta, dampening=beta, velocity=v) with v
    starting at zeros.
    convention="keras": v = momentum * v - lr * g; p += v (Nesterov: p += momentum * v - lr * g).
    """
    param = _param(param)
    g = _grad(grad, param)
    keras = _convention(convention)
    lr = _checks.finite_number("lr", lr, 0)
    momentum = _checks.finite_number("momentum", momentum, 0)
    dampening = _checks.finite_number("dampening", dampening, 0, 1)
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(f"nesterov needs momentum > 0 and dampening == 0; got momentum={momentum}, "
                         f"dampening={dampening}")
    init = False
    if step is not None:
        init = _step(step) == 1 and not keras
    buf = None
    if momentum > 0:
        buf = _state("velocity", velocity, param, f"sgd_update with momentum={momentum}")
    l2, decay = _weight_decay(weight_decay, lr, keras)
    backend_module().sgd_update(param.reshape(-1), g, buf, lr, momentum, dampening, l2, decay,
                                -1.0 if maximize else 1.0, bool(nesterov), init, keras)


def adagrad_update(param, grad, accumulator, *, lr, step, lr_decay=0.0, epsilon=1e-10,
                   weight_decay=0.0, convention="torch"):
    """AdaGrad: acc += g * g; p -= lr / (1 + (step - 1) * lr_decay) * g / (sqrt(acc) + eps).

    convention="keras" (and the seed's 3.2.4): p -= lr * g / sqrt(acc + eps).
    """
    param = _param(param)
    g = _grad(grad, param)
    keras = _convention(convention)
    step = _step(step)
    lr = _checks.finite_number("lr", lr, 0)
    lr_decay = _checks.finite_number("lr_decay", lr_decay, 0)
    eps = _checks.finite_number("epsilon", epsilon, 0)
    acc = _state("accumulator", accumulator, param, "adagrad_update")
    l2, decay = _weight_decay(weight_decay, lr, keras)
    backend_module().adagrad_update(param.reshape(-1), g, acc, lr / (1 + (step - 1) * lr_decay),
                                    eps, l2, decay, keras)


def rmsprop_update(param, grad, square_avg, *, lr, rho=0.99, epsilon=1e-8, momentum=0.0,
                   momentum_buffer=None, centered=False, grad_avg=None, weight_decay=0.0,
                   convention="torch"):
    """RMSprop (PyTorch's alpha is rho here): s = rho * s + (1 - rho) * g * g;
    centered: a = rho * a + (1 - rho) * g and s - a * a replaces s;
    p -= lr * g / (sqrt(s) + eps), or with momentum b = momentum * b + g / (sqrt(s) + eps),
    p -= lr * b. convention="keras": sqrt(s + eps), and b accumulates lr * g / sqrt(s + eps)
    with p -= b (the seed's 3.2.5 is the Keras form without momentum).
    """
    param = _param(param)
    g = _grad(grad, param)
    keras = _convention(convention)
    lr = _checks.finite_number("lr", lr, 0)
    rho = _checks.finite_number("rho", rho, 0, 1)
    eps = _checks.finite_number("epsilon", epsilon, 0)
    momentum = _checks.finite_number("momentum", momentum, 0)
    sq = _state("square_avg", square_avg, param, "rmsprop_update")
    written = [("square_avg", square_avg)]
    ga = buf = None
    if centered:
        ga = _state("grad_avg", grad_avg, param, "rmsprop_update with centered=True", written)
        written.append(("grad_avg", grad_avg))
    if momentum > 0:
        buf = _state("momentum_buffer", momentum_buffer, param,
                     f"rmsprop_update with momentum={momentum}", written)
    l2, decay = _weight_decay(weight_decay, lr, keras)
    backend_module().rmsprop_update(param.reshape(-1), g, sq, ga, buf, lr, rho, eps, momentum,
                                    l2, decay, keras)


def adam_update(param, grad, m, v, *, step, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                weight_decay=0.0, decoupled_weight_decay=False, amsgrad=False, v_max=None,
                maximize=False, convention="torch"):
    """Adam: m = b1 * m + (1 - b1) * g; v = b2 * v + (1 - b2) * g * g;
    p -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps) (PyTorch), or
    p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps) (convention="keras",
    whose default epsilon is 1e-7). amsgrad uses v_max = max(v_max, v) in place of v.
    decoupled_weight_decay=True is AdamW: p *= 1 - lr * weight_decay first.
    """
    param = _param(param)
    g = _grad(grad, param)
    keras = _convention(convention)
    step = _step(step)
    lr = _checks.finite_number("lr", lr, 0)
    b1 = _checks.finite_number("beta_1", beta_1, 0, 1, inclusive=True)
    b2 = _checks.finite_number("beta_2", beta_2, 0, 1, inclusive=True)
    if b1 >= 1 or b2 >= 1:
        raise ValueError(f"beta_1 and beta_2 must be in [0, 1); got {beta_1!r}, {beta_2!r}")
    eps = _checks.finite_number("epsilon", epsilon, 0)
    m_flat = _state("m", m, param, "adam_update")
    v_flat = _state("v", v, param, "adam_update", [("m", m)])
    vmax = None
    if amsgrad:
        vmax = _state("v_max", v_max, param, "adam_update with amsgrad=True", [("m", m), ("v", v)])
    l2, decay = _weight_decay(weight_decay, lr, keras, decoupled_weight_decay)
    bc1, bc2 = 1 - b1 ** step, 1 - b2 ** step
    step_size = lr * math.sqrt(bc2) / bc1
    eps_hat = eps if keras else eps * math.sqrt(bc2)
    backend_module().adam_update(param.reshape(-1), g, m_flat, v_flat, vmax, step_size, eps_hat,
                                 b1, b2, l2, decay, -1.0 if maximize else 1.0)
