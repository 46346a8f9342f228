"""Keras-style optimizers (Keras 3 names, defaults and formulas) over fastdl's fused updates.

Every update goes through fastdl.ops with convention="keras": epsilon where Keras puts
it, and weight decay applied decoupled (p -= lr * weight_decay * p), as Keras does for
every optimizer. A model whose parameters live in one flat buffer is updated by one
fused call (`apply_flat`); separate arrays are updated one call each (`apply`).
State arrays live where the variables do (host or GPU).
"""
import math
import warnings

import numpy as np

from fastdl import _device, ops
from fastdl.ops import _checks


class Optimizer:
    """Base class: learning rate (a number or a schedule called with the step count),
    gradient clipping, iteration count, state slots, config and saved state."""

    slot_names = ()

    def __init__(self, learning_rate=0.001, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name=None, **kwargs):
        if "lr" in kwargs:
            warnings.warn("the `lr` argument is deprecated, use `learning_rate` instead",
                          DeprecationWarning, stacklevel=3)
            learning_rate = kwargs.pop("lr")
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected arguments: {sorted(kwargs)}")
        if not callable(learning_rate):
            learning_rate = _checks.finite_number("learning_rate", learning_rate, 0)
        self.learning_rate = learning_rate
        self.weight_decay = 0.0 if weight_decay is None else _checks.finite_number("weight_decay", weight_decay, 0)
        if clipnorm is not None and global_clipnorm is not None:
            raise ValueError("only one of clipnorm and global_clipnorm can be set; "
                             f"got clipnorm={clipnorm}, global_clipnorm={global_clipnorm}")
        self.clipnorm = None if clipnorm is None else _checks.finite_number("clipnorm", clipnorm, 0, inclusive=False)
        self.clipvalue = (None if clipvalue is None
                          else _checks.finite_number("clipvalue", clipvalue, 0, inclusive=False))
        self.global_clipnorm = (None if global_clipnorm is None
                                else _checks.finite_number("global_clipnorm", global_clipnorm, 0, inclusive=False))
        self.name = name or type(self).__name__.lower()
        self.iterations = 0
        self._slots = None  # list (one dict of state arrays per variable) once built

    # -- the learning rate and clipping ------------------------------------------------

    def current_learning_rate(self):
        """The learning rate of the next update (a schedule sees the steps taken so far)."""
        if callable(self.learning_rate):
            return _checks.finite_number("learning_rate(step)", float(self.learning_rate(self.iterations)), 0)
        return self.learning_rate

    def _clip(self, grads):
        """Keras order: per-gradient norm, then global norm, then value. Returns new arrays
        only when something is clipped. Device gradients are clipped on the host (a copy
        each way), the one place a model on the GPU leaves it."""
        if self.clipnorm is None and self.global_clipnorm is None and self.clipvalue is None:
            return grads
        placed = [_device.is_device(g) for g in grads]
        grads = [_device.to_host(g) for g in grads]
        grads = self._clip_host(grads)
        return [_device.to_device(g) if on_device else g for g, on_device in zip(grads, placed)]

    def _clip_host(self, grads):
        if self.clipnorm is not None:
            grads = [g * (self.clipnorm / max(n, self.clipnorm)) if (n := _norm(g)) > self.clipnorm else g
                     for g in grads]
        if self.global_clipnorm is not None:
            total = math.sqrt(sum(_norm(g) ** 2 for g in grads))
            if total > self.global_clipnorm:
                grads = [g * (self.global_clipnorm / total) for g in grads]
        if self.clipvalue is not None:
            grads = [np.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        return grads

    # -- applying updates ----------------------------------------------------------------

    def build(self, variables):
        """Create the state slots for `variables` (called by the first update)."""
        self._slots = [{name: self._initial_slot(name, v) for name in self.active_slots()}
                       for v in variables]

    def active_slots(self):
        """The state arrays this configuration uses."""
        return self.slot_names

    def _initial_slot(self, name, variable):
        return _device.full_like(variable, 0)

    def _place_slots(self, variables):
        """Move restored (host) state to the device when the variables are there."""
        for v, slots in zip(variables, self._slots):
            if _device.is_device(v):
                for k, a in slots.items():
                    if not _device.is_device(a):
                        slots[k] = _device.to_device(a)

    def apply(self, grads, variables):
        """One update of each variable (updated in place) by its gradient."""
        grads, variables = list(grads), list(variables)
        if len(grads) != len(variables):
            raise ValueError(f"got {len(grads)} gradients for {len(variables)} variables")
        if self._slots is None:
            self.build(variables)
        elif len(self._slots) != len(variables):
            raise ValueError(f"this optimizer was built for {len(self._slots)} variables; got {len(variables)}")
        self._place_slots(variables)
        grads = self._clip(grads)
        lr = self.current_learning_rate()
        self.iterations += 1
        for g, v, slots in zip(grads, variables, self._slots):
            self._update(v, g, slots, lr, self.iterations)

    def apply_gradients(self, grads_and_vars):
        """Keras spelling: an iterable of (gradient, variable) pairs."""
        pairs = list(grads_and_vars)
        self.apply([g for g, _ in pairs], [v for _, v in pairs])

    def apply_flat(self, flat_grad, flat_variable, sizes=None):
        """One fused update of a whole model whose parameters live in one flat buffer.

        `sizes` (the element count of each variable in the buffer) is needed only for
        clipnorm, which clips each variable's gradient on its own.
        """
        if self.clipnorm is not None:
            if sizes is None:
                raise ValueError("apply_flat with clipnorm needs sizes= (each variable's element count)")
            on_device = _device.is_device(flat_grad)
            pieces = np.split(_device.to_host(flat_grad), np.cumsum(sizes)[:-1])
            flat_grad = np.concatenate(self._clip(pieces))
            if on_device:
                flat_grad = _device.to_device(flat_grad)
        else:
            flat_grad = self._clip([flat_grad])[0]
        if self._slots is None:
            self.build([flat_variable])
        self._place_slots([flat_variable])
        lr = self.current_learning_rate()
        self.iterations += 1
        self._update(flat_variable, flat_grad, self._slots[0], lr, self.iterations)

    def _update(self, variable, grad, slots, lr, step):
        raise NotImplementedError

    # -- config and state ----------------------------------------------------------------

    def get_config(self):
        return {"name": self.name, "learning_rate": self.learning_rate,
                "weight_decay": self.weight_decay or None, "clipnorm": self.clipnorm,
                "clipvalue": self.clipvalue, "global_clipnorm": self.global_clipnorm}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def get_state(self):
        """The iteration count and copies of every state array (for checkpoints)."""
        return {"iterations": self.iterations,
                "slots": None if self._slots is None else [{k: _device.host_copy(a) for k, a in s.items()}
                                                           for s in self._slots]}

    def set_state(self, state):
        """Restore what get_state returned; training then resumes bit for bit. Every
        slot is checked (names, and where this optimizer has state already, the number
        of variables, each array's shape and dtype) before anything changes."""
        if not isinstance(state, dict) or set(state) != {"iterations", "slots"}:
            raise ValueError(f"state must be a dict with 'iterations' and 'slots' (what get_state "
                             f"returns); got {type(state).__name__}"
                             f"{' with keys ' + str(sorted(state)) if isinstance(state, dict) else ''}")
        iterations = state["iterations"]
        if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 0:
            raise ValueError(f"state['iterations'] must be an int >= 0; got {iterations!r}")
        slots = state["slots"]
        if slots is not None:
            expected = set(self.active_slots())
            current = self._slots
            if current is not None and len(slots) != len(current):
                raise ValueError(f"state has slots for {len(slots)} variables; this optimizer has "
                                 f"{len(current)}")
            for i, s in enumerate(slots):
                if not isinstance(s, dict) or set(s) != expected:
                    names = sorted(s) if isinstance(s, dict) else type(s).__name__
                    raise ValueError(f"state has slots {names}; this optimizer uses {sorted(expected)}")
                shapes = {np.shape(a) for a in s.values()}
                if len(shapes) > 1:
                    raise ValueError(f"state slots of variable {i} differ in shape: {sorted(shapes)}")
                for name, a in s.items():
                    dtype = getattr(a, "dtype", None)
                    if dtype not in (np.float32, np.float64):
                        raise TypeError(f"state slot {name!r} of variable {i} must be float32 or "
                                        f"float64; got {dtype}")
                    if current is not None:
                        have = current[i][name]
                        if a.shape != have.shape or a.dtype != have.dtype:
                            raise ValueError(f"state slot {name!r} of variable {i} is {a.dtype} "
                                             f"{a.shape}; this optimizer's is {have.dtype} {have.shape}")
            slots = [{k: _device.host_copy(a) for k, a in s.items()} for s in slots]
        self._slots = slots
        self.iterations = int(iterations)


def _norm(g):
    flat = g.reshape(-1)
    return math.sqrt(float(np.dot(flat, flat)))


class SGD(Optimizer):
    """Keras SGD: v = momentum * v - lr * g; p += v (Nesterov: p += momentum * v - lr * g);
    without momentum p -= lr * g."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.momentum = _checks.finite_number("momentum", momentum, 0, 1)
        self.nesterov = bool(nesterov)

    def active_slots(self):
        return ("velocity",) if self.momentum > 0 else ()

    def _update(self, variable, grad, slots, lr, step):
        ops.sgd_update(variable, grad, lr=lr, momentum=self.momentum, velocity=slots.get("velocity"),
                       nesterov=self.nesterov, weight_decay=self.weight_decay, convention="keras")

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adagrad(Optimizer):
    """Keras Adagrad: acc += g * g; p -= lr * g / sqrt(acc + eps)."""

    slot_names = ("accumulator",)

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.initial_accumulator_value = _checks.finite_number(
            "initial_accumulator_value", initial_accumulator_value, 0)
        self.epsilon = _checks.finite_number("epsilon", epsilon, 0)

    def _initial_slot(self, name, variable):
        return _device.full_like(variable, self.initial_accumulator_value)

    def _update(self, variable, grad, slots, lr, step):
        ops.adagrad_update(variable, grad, slots["accumulator"], lr=lr, step=step,
                           epsilon=self.epsilon, weight_decay=self.weight_decay, convention="keras")

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


class RMSprop(Optimizer):
    """Keras RMSprop: s = rho * s + (1 - rho) * g * g (centered: minus the squared
    running mean of g); p -= lr * g / sqrt(s + eps), or through a momentum buffer."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.rho = _checks.finite_number("rho", rho, 0, 1)
        self.momentum = _checks.finite_number("momentum", momentum, 0, 1)
        self.epsilon = _checks.finite_number("epsilon", epsilon, 0)
        self.centered = bool(centered)

    def active_slots(self):
        return (("square_avg",) + (("grad_avg",) if self.centered else ())
                + (("momentum_buffer",) if self.momentum > 0 else ()))

    def _update(self, variable, grad, slots, lr, step):
        ops.rmsprop_update(variable, grad, slots["square_avg"], lr=lr, rho=self.rho,
                           epsilon=self.epsilon, momentum=self.momentum,
                           momentum_buffer=slots.get("momentum_buffer"), centered=self.centered,
                           grad_avg=slots.get("grad_avg"), weight_decay=self.weight_decay,
                           convention="keras")

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


class Adam(Optimizer):
    """Keras Adam: p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps), eps = 1e-7
    outside the square root; amsgrad uses the running maximum of v."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1 = _checks.finite_number("beta_1", beta_1, 0, 1)
        self.beta_2 = _checks.finite_number("beta_2", beta_2, 0, 1)
        self.epsilon = _checks.finite_number("epsilon", epsilon, 0)
        self.amsgrad = bool(amsgrad)

    def active_slots(self):
        return ("m", "v") + (("v_max",) if self.amsgrad else ())

    def _update(self, variable, grad, slots, lr, step):
        ops.adam_update(variable, grad, slots["m"], slots["v"], step=step, lr=lr,
                        beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
                        weight_decay=self.weight_decay, amsgrad=self.amsgrad,
                        v_max=slots.get("v_max"), convention="keras")

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras default 0.004): p -= lr * wd * p first."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, beta_1=beta_1,
                         beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad, **kwargs)


_BY_NAME = {"sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW}


def get(identifier):
    """An optimizer from a name ('adam', 'sgd', 'rmsprop', 'adagrad', 'adamw') or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise ValueError(f"unknown optimizer {identifier!r}; use one of {sorted(_BY_NAME)} or an Optimizer")
